//! Trust policies (placeholder until the policy engine lands; denies everything).

/// Placeholder.
#[derive(Debug, Clone)]
pub struct TrustPolicy;

/// Placeholder.
#[derive(Debug, thiserror::Error)]
#[error("policy engine not built yet")]
pub struct PolicyError;

/// Placeholder.
#[derive(Debug)]
#[must_use]
pub enum Decision {
    /// Denied.
    Deny(Denial),
    /// Allowed.
    Allow,
}

/// Placeholder.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Claim.
    pub claim: String,
    /// Reason.
    pub reason: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl TrustPolicy {
    /// Placeholder.
    pub fn compile(table: &toml::Table) -> Result<Self, PolicyError> {
        if table.is_empty() {
            return Err(PolicyError);
        }
        Ok(Self)
    }
    /// Placeholder.
    pub fn evaluate(&self, _claims: &crate::oidc::VerifiedClaims) -> Decision {
        Decision::Deny(Denial {
            claim: String::new(),
            reason: "placeholder".into(),
        })
    }
}
