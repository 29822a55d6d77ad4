//! `policy explain`: why a token (or a claim set) would be allowed or denied by one broker, check by check and condition by condition.
//!
//! This is a diagnostic, not an authorization path. It runs the same checks
//! as [`crate::oidc::Verifier::verify`] and [`crate::policy::TrustPolicy`],
//! but it does not stop at the first failure (except where a later check
//! needs an earlier one's result), so an operator sees everything that is
//! wrong at once. Nothing here produces [`crate::oidc::VerifiedClaims`].
//!
//! Two modes:
//!
//! - **verified** (`--token`): the token is parsed strictly, its issuer,
//!   algorithm, signature (the issuer's keys are fetched through a
//!   [`Verifier`]), required claims, times and audience are checked;
//! - **claims only** (`--token … --no-verify`, or `--claims FILE.json`): the
//!   signature is not checked and keys are never fetched. Every other check
//!   that the claims allow still runs, so `allowed` means "would be allowed
//!   if the signature is good".

use crate::config::{Broker, Config, IssuerConfig};
use crate::oidc::{self, jose, Verifier, VerifyError};
use crate::policy::ConditionOutcome;
use serde_json::{json, Map, Value};
use std::fmt;
use time::OffsetDateTime;

/// Why an explanation could not be produced at all (a usage or config
/// problem, as opposed to a token that would be denied).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The named broker is not configured.
    #[error("explain: unknown broker {name:?}; configured brokers: {known:?}")]
    UnknownBroker {
        /// The name asked for.
        name: String,
        /// The configured broker names.
        known: Vec<String>,
    },
    /// The broker names an issuer the config does not have (only possible
    /// with hand-built configs; [`Config::load`] refuses it).
    #[error("explain: broker {broker:?} names unknown issuer {issuer:?}")]
    UnknownIssuer {
        /// The broker.
        broker: String,
        /// Its issuer name.
        issuer: String,
    },
}

/// How the explanation was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A token, fully verified including its signature.
    Verified,
    /// A token whose signature was deliberately not checked (`--no-verify`).
    ClaimsOnlyNoVerify,
    /// A bare claim set (`--claims FILE.json`): there is no signature to check.
    ClaimsOnlyFile,
}

impl Mode {
    /// A stable keyword for machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::ClaimsOnlyNoVerify => "claims-only (--no-verify)",
            Self::ClaimsOnlyFile => "claims-only (--claims)",
        }
    }

    /// Whether the signature is out of scope in this mode.
    pub fn is_claims_only(self) -> bool {
        !matches!(self, Self::Verified)
    }
}

/// The result of one verification check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The check ran and held.
    Passed,
    /// The check ran and failed.
    Failed,
    /// The check did not run: the mode excludes it, or it needs the result
    /// of an earlier check that failed. `detail` says which.
    Skipped,
}

impl CheckStatus {
    /// `pass`, `FAIL` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "pass",
            Self::Failed => "FAIL",
            Self::Skipped => "skip",
        }
    }
}

/// One verification step, named as in the README's check order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `structure`, `issuer`, `broker issuer`, `algorithm`, `signature`,
    /// `required claims`, `time` or `audience`.
    pub name: &'static str,
    /// Whether it held.
    pub status: CheckStatus,
    /// What was checked or why it failed. Token content in here is quoted
    /// and escaped.
    pub detail: String,
}

impl Check {
    /// Whether the check ran and held.
    pub fn passed(&self) -> bool {
        self.status == CheckStatus::Passed
    }

    fn new(name: &'static str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_str(), self.name, self.detail)
    }
}

/// Everything `policy explain` reports for one broker and one input.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The broker explained.
    pub broker: String,
    /// How it was produced.
    pub mode: Mode,
    /// Verification checks, in the verifier's order, with the broker's
    /// issuer binding after the issuer lookup.
    pub checks: Vec<Check>,
    /// Every trust-policy condition, in evaluation order; empty when the
    /// input had no readable claims.
    pub conditions: Vec<ConditionOutcome>,
    /// Whether the server would allow it (in claims-only modes: would allow
    /// it if the signature is good). False unless every check that ran
    /// passed, the signature passed (verified mode) and every condition held.
    pub allowed: bool,
}

impl Explanation {
    /// Whether every trust-policy condition held (ignoring verification).
    pub fn policy_allowed(&self) -> bool {
        !self.conditions.is_empty() && self.conditions.iter().all(|c| c.passed)
    }

    /// Machine-readable form for `--json`. Claim values are JSON strings,
    /// so JSON escaping covers them.
    pub fn to_json(&self) -> Value {
        json!({
            "broker": self.broker,
            "mode": match self.mode {
                Mode::Verified => "verified",
                Mode::ClaimsOnlyNoVerify | Mode::ClaimsOnlyFile => "claims-only",
            },
            "signature_checked": !self.mode.is_claims_only(),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "status": match c.status {
                    CheckStatus::Passed => "pass",
                    CheckStatus::Failed => "fail",
                    CheckStatus::Skipped => "skipped",
                },
                "passed": c.passed(),
                "detail": c.detail,
            })).collect::<Vec<_>>(),
            "conditions": self.conditions.iter().map(|c| json!({
                "claim": c.claim,
                "actual": c.actual,
                "expected": c.expected,
                "passed": c.passed,
            })).collect::<Vec<_>>(),
            "policy_allowed": self.policy_allowed(),
            "allowed": self.allowed,
        })
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "broker {}: {}", self.broker, self.mode.as_str())?;
        if self.mode.is_claims_only() {
            writeln!(
                f,
                "  note: claims only; the signature was not checked, so this shows what the claims would meet, not that a token carrying them is genuine"
            )?;
        }
        writeln!(f, "verification:")?;
        for check in &self.checks {
            writeln!(f, "  {check}")?;
        }
        writeln!(f, "trust policy:")?;
        if self.conditions.is_empty() {
            writeln!(f, "  (not evaluated: no readable claims)")?;
        }
        for condition in &self.conditions {
            writeln!(f, "  {condition}")?;
        }
        let verdict = match (self.allowed, self.mode.is_claims_only()) {
            (true, false) => "ALLOWED",
            (true, true) => "ALLOWED (if the signature is good)",
            (false, _) => "DENIED",
        };
        writeln!(f, "result: {verdict}")
    }
}

/// Explains `token` for broker `broker_name` at `now`. With a `verifier`
/// the signature is checked (this may fetch the issuer's keys); with
/// `None` the evaluation is claims-only.
pub async fn explain_token(
    config: &Config,
    broker_name: &str,
    token: &str,
    verifier: Option<&Verifier>,
    now: OffsetDateTime,
) -> Result<Explanation, ExplainError> {
    let broker = find_broker(config, broker_name)?;
    let mode = if verifier.is_some() {
        Mode::Verified
    } else {
        Mode::ClaimsOnlyNoVerify
    };
    let mut checks = Vec::new();

    // 1–2. Size and structure. Without them there are no claims to show.
    let jws = match jose::parse(token) {
        Ok(jws) => {
            checks.push(Check::new(
                "structure",
                CheckStatus::Passed,
                format!("compact JWS, alg {}", jws.alg.as_str()),
            ));
            jws
        }
        Err(e) => {
            checks.push(Check::new("structure", CheckStatus::Failed, e.to_string()));
            for name in [
                "issuer",
                "broker issuer",
                "algorithm",
                "signature",
                "required claims",
                "time",
                "audience",
            ] {
                checks.push(skipped_after(name, "structure"));
            }
            return Ok(finish(broker, mode, checks, Vec::new()));
        }
    };

    // 3. Issuer lookup and the broker's binding to one issuer.
    let issuer = issuer_checks(config, broker, &jws.claims, &mut checks);

    // 4. Algorithm, against the issuer's list (never the token's say-so).
    let alg_ok = match issuer {
        Some(issuer) if issuer.algorithms.contains(&jws.alg) => {
            checks.push(Check::new(
                "algorithm",
                CheckStatus::Passed,
                format!(
                    "{} is allowed for issuer {:?}",
                    jws.alg.as_str(),
                    issuer.name
                ),
            ));
            true
        }
        Some(issuer) => {
            let allowed: Vec<&str> = issuer.algorithms.iter().map(|a| a.as_str()).collect();
            checks.push(Check::new(
                "algorithm",
                CheckStatus::Failed,
                format!(
                    "{} is not allowed for issuer {:?} (allowed: {})",
                    jws.alg.as_str(),
                    issuer.name,
                    allowed.join(", ")
                ),
            ));
            false
        }
        None => {
            checks.push(skipped_after("algorithm", "issuer"));
            false
        }
    };

    // 5–6. Key lookup and signature, through the real verifier.
    match verifier {
        None => checks.push(Check::new(
            "signature",
            CheckStatus::Skipped,
            "not checked (--no-verify)",
        )),
        Some(_) if !alg_ok => checks.push(skipped_after(
            "signature",
            if issuer.is_some() {
                "algorithm"
            } else {
                "issuer"
            },
        )),
        Some(verifier) => checks.push(signature_check(verifier, token, now).await),
    }

    // 7–9. Claims, time and audience, offline.
    claim_checks(issuer, &jws.claims, now, &mut checks);

    // 10. The trust policy, every condition.
    let conditions = broker.policy.explain(&jws.claims);
    Ok(finish(broker, mode, checks, conditions))
}

/// Explains a bare claim set (`--claims FILE.json`) for broker
/// `broker_name` at `now`. There is no signature, so this is always
/// claims-only.
pub fn explain_claims(
    config: &Config,
    broker_name: &str,
    claims: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<Explanation, ExplainError> {
    let broker = find_broker(config, broker_name)?;
    let mut checks = vec![Check::new(
        "structure",
        CheckStatus::Skipped,
        "a claims file, not a token",
    )];
    let issuer = issuer_checks(config, broker, claims, &mut checks);
    checks.push(Check::new(
        "algorithm",
        CheckStatus::Skipped,
        "a claims file has no header",
    ));
    checks.push(Check::new(
        "signature",
        CheckStatus::Skipped,
        "a claims file has no signature",
    ));
    claim_checks(issuer, claims, now, &mut checks);
    let conditions = broker.policy.explain(claims);
    Ok(finish(broker, Mode::ClaimsOnlyFile, checks, conditions))
}

fn find_broker<'a>(config: &'a Config, name: &str) -> Result<&'a Broker, ExplainError> {
    config
        .brokers
        .get(name)
        .map(AsRef::as_ref)
        .ok_or_else(|| ExplainError::UnknownBroker {
            name: name.to_owned(),
            known: config.brokers.keys().cloned().collect(),
        })
}

fn skipped_after(name: &'static str, failed: &str) -> Check {
    Check::new(
        name,
        CheckStatus::Skipped,
        format!("not reached: the {failed} check failed"),
    )
}

/// Step 3 and the broker's issuer binding. Returns the configured issuer
/// the claims name, if any.
fn issuer_checks<'a>(
    config: &'a Config,
    broker: &Broker,
    claims: &Map<String, Value>,
    checks: &mut Vec<Check>,
) -> Option<&'a IssuerConfig> {
    let issuer = match claims.get("iss").and_then(Value::as_str) {
        None => {
            checks.push(Check::new(
                "issuer",
                CheckStatus::Failed,
                VerifyError::NoIssuer.to_string(),
            ));
            None
        }
        Some(iss) => match config.issuers.iter().find(|i| i.url == iss) {
            Some(issuer) => {
                checks.push(Check::new(
                    "issuer",
                    CheckStatus::Passed,
                    format!("iss {iss:?} is configured issuer {:?}", issuer.name),
                ));
                Some(issuer.as_ref())
            }
            None => {
                let urls: Vec<&str> = config.issuers.iter().map(|i| i.url.as_str()).collect();
                checks.push(Check::new(
                    "issuer",
                    CheckStatus::Failed,
                    format!(
                        "iss {:?} is not a configured issuer (compared byte for byte with {urls:?})",
                        short(iss)
                    ),
                ));
                None
            }
        },
    };
    let binding = match issuer {
        Some(issuer) if issuer.name == broker.issuer => Check::new(
            "broker issuer",
            CheckStatus::Passed,
            format!(
                "broker {:?} accepts tokens from issuer {:?}",
                broker.name, broker.issuer
            ),
        ),
        Some(issuer) => Check::new(
            "broker issuer",
            CheckStatus::Failed,
            format!(
                "broker {:?} accepts tokens from issuer {:?}, not {:?}",
                broker.name, broker.issuer, issuer.name
            ),
        ),
        None => Check::new(
            "broker issuer",
            CheckStatus::Failed,
            format!(
                "broker {:?} accepts tokens from issuer {:?} only",
                broker.name, broker.issuer
            ),
        ),
    };
    checks.push(binding);
    issuer
}

/// Steps 5–6: what [`Verifier::verify`] says about the key and signature.
/// A rejection after step 6 carries the signed claims, which proves the
/// signature held; a rejection without them is a key or signature failure
/// (steps 1–4 already passed here).
async fn signature_check(verifier: &Verifier, token: &str, now: OffsetDateTime) -> Check {
    match verifier.verify(token, now).await {
        Ok(_) => Check::new(
            "signature",
            CheckStatus::Passed,
            "verified with the issuer's published key",
        ),
        Err(rejection) if rejection.signed.is_some() => Check::new(
            "signature",
            CheckStatus::Passed,
            "verified with the issuer's published key",
        ),
        Err(rejection) => Check::new(
            "signature",
            CheckStatus::Failed,
            rejection.error.to_string(),
        ),
    }
}

/// Steps 7–9 via [`oidc::check_claims`], which stops at the first failure;
/// the step that failed is reported as failed and the later ones as skipped.
fn claim_checks(
    issuer: Option<&IssuerConfig>,
    claims: &Map<String, Value>,
    now: OffsetDateTime,
    checks: &mut Vec<Check>,
) {
    const STEPS: [&str; 3] = ["required claims", "time", "audience"];
    let Some(issuer) = issuer else {
        for name in STEPS {
            checks.push(skipped_after(name, "issuer"));
        }
        return;
    };
    let failed = oidc::check_claims(issuer, claims, now)
        .err()
        .map(|e| (step_of(&e), e.to_string()));
    for (index, name) in STEPS.into_iter().enumerate() {
        let check = match &failed {
            Some((step, why)) if *step == index => {
                Check::new(name, CheckStatus::Failed, why.clone())
            }
            Some((step, _)) if *step < index => skipped_after(name, STEPS[*step]),
            _ => Check::new(name, CheckStatus::Passed, passed_detail(index, issuer)),
        };
        checks.push(check);
    }
}

fn passed_detail(step: usize, issuer: &IssuerConfig) -> String {
    match step {
        0 => "iss, sub, aud, exp and iat present and well-typed".to_owned(),
        1 => format!(
            "within exp/nbf/iat (leeway {} s), age at most {} s, lifetime at most {} s",
            issuer.leeway.as_secs(),
            issuer.max_token_age.as_secs(),
            issuer.max_token_lifetime.as_secs()
        ),
        _ => format!("aud contains one of {:?}", issuer.audiences),
    }
}

/// Which of steps 7 (0), 8 (1) and 9 (2) an error from
/// [`oidc::check_claims`] belongs to.
fn step_of(error: &VerifyError) -> usize {
    match error {
        VerifyError::Expired { .. }
        | VerifyError::NotYetValid { .. }
        | VerifyError::IssuedInFuture { .. }
        | VerifyError::TooOld { .. }
        | VerifyError::LifetimeTooLong { .. } => 1,
        VerifyError::AudienceNotAccepted { .. } => 2,
        _ => 0,
    }
}

fn finish(
    broker: &Broker,
    mode: Mode,
    checks: Vec<Check>,
    conditions: Vec<ConditionOutcome>,
) -> Explanation {
    // Deny by default: allowed only if nothing failed, the signature passed
    // unless the mode excludes it, and there is at least one condition and
    // every condition held.
    let nothing_failed = checks.iter().all(|c| c.status != CheckStatus::Failed);
    let signature_ok =
        mode.is_claims_only() || checks.iter().any(|c| c.name == "signature" && c.passed());
    let policy_ok = !conditions.is_empty() && conditions.iter().all(|c| c.passed);
    Explanation {
        broker: broker.name.clone(),
        mode,
        allowed: nothing_failed && signature_ok && policy_ok,
        checks,
        conditions,
    }
}

/// Cuts token content for messages (it is quoted with `{:?}` by callers).
fn short(s: &str) -> &str {
    crate::text::head(s, 200)
}

#[cfg(test)]
mod tests;
