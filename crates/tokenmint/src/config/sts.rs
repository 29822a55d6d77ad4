//! `[[role]]` and `[sts]`: the roles the AWS STS-compatible endpoint can assume, parsed into validated [`Role`]s.
//!
//! ```toml
//! [[role]]
//! arn = "arn:aws:iam::123456789012:role/ci/deployer"
//! trust_policy_file = "deployer-trust.json"
//! max_session_duration = 3600   # 3600..=43200, default 3600
//!
//! [sts]
//! secret_file = "sts.key"       # optional; without it a fresh secret per process
//! ```
//!
//! A role's trust policy must name, in some `Principal.Federated`, the OIDC
//! provider of a configured `[[issuer]]` in the role's own account
//! (`arn:aws:iam::<role account>:oidc-provider/<issuer URL without https://>`),
//! which is how AWS registers providers: per account.

use super::{provider_host_path, ConfigError, Validator};
use crate::iam::{IamPolicy, Principal, PrincipalKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// AWS's default role session duration (and `DurationSeconds` default).
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(3600);
/// The smallest `max_session_duration` AWS allows for a role.
pub const MIN_ROLE_MAX_SESSION_DURATION: Duration = Duration::from_secs(3600);
/// The largest `max_session_duration` AWS allows for a role.
pub const MAX_SESSION_DURATION: Duration = Duration::from_secs(43_200);

/// Bytes a `[sts] secret_file` must hold at least.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    arn: String,
    trust_policy_file: PathBuf,
    max_session_duration: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSts {
    secret_file: Option<PathBuf>,
}

/// The STS-compatible endpoint's configuration. With no roles the endpoint
/// does not exist.
#[derive(Debug, Clone, Default)]
pub struct StsConfig {
    /// `[[role]]` entries by ARN.
    pub roles: BTreeMap<String, Arc<Role>>,
    /// The key credentials are derived from, from `[sts] secret_file`; `None`
    /// means a fresh random key per process (credentials die with it).
    pub key: Option<StsKey>,
}

impl StsConfig {
    /// Whether the endpoint is on (at least one `[[role]]`).
    pub fn enabled(&self) -> bool {
        !self.roles.is_empty()
    }
}

/// The 32-byte key the STS endpoint derives secret access keys and session
/// token MACs from. `Debug` redacts it.
#[derive(Clone)]
pub struct StsKey([u8; 32]);

impl StsKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for StsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StsKey(REDACTED)")
    }
}

/// A validated IAM role ARN, `arn:aws:iam::<12 digits>:role/<path/><name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    /// The ARN as written.
    arn: String,
    /// The 12-digit account.
    account: String,
    /// The role name (the last path segment).
    name: String,
}

impl RoleArn {
    /// Parses a role ARN: the account is 12 digits; the path segments and the
    /// name use IAM's role-name characters (`[\w+=,.@-]`), the name at most
    /// 64 of them; the whole ARN is 20 to 2048 characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{text:?} is not an IAM role ARN ({why}); write \"arn:aws:iam::123456789012:role/NAME\" or \"arn:aws:iam::123456789012:role/PATH/NAME\"")
        };
        if !(20..=2048).contains(&text.len()) {
            return Err(bad("it must be 20 to 2048 characters"));
        }
        let rest = text
            .strip_prefix("arn:aws:iam::")
            .ok_or_else(|| bad("it must start with arn:aws:iam::"))?;
        let (account, resource) = rest.split_once(':').ok_or_else(|| bad("no account"))?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the account must be 12 digits"));
        }
        let path = resource
            .strip_prefix("role/")
            .ok_or_else(|| bad("the resource must be role/..."))?;
        let segments: Vec<&str> = path.split('/').collect();
        let name = segments.last().copied().unwrap_or_default();
        if !(1..=64).contains(&name.len()) {
            return Err(bad("the role name must be 1 to 64 characters"));
        }
        if segments
            .iter()
            .any(|s| s.is_empty() || !s.chars().all(is_role_char))
        {
            return Err(bad(
                "path segments and the name use only A-Z a-z 0-9 _ + = , . @ -",
            ));
        }
        Ok(Self {
            arn: text.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The 12-digit account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The role name, without its path.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// IAM's role and session name characters: `[\w+=,.@-]` (ASCII `\w`).
pub(crate) fn is_role_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// One `[[role]]`: a role the STS endpoint can assume.
#[derive(Debug, Clone)]
pub struct Role {
    /// Its ARN.
    pub arn: RoleArn,
    /// Its trust policy, evaluated the way STS does.
    pub policy: IamPolicy,
    /// The file the policy came from (for messages).
    pub file: PathBuf,
    /// The longest session `DurationSeconds` may ask for.
    pub max_session_duration: Duration,
}

impl Validator<'_> {
    pub(super) fn sts(
        &self,
        raw_roles: Vec<RawRole>,
        raw_sts: Option<RawSts>,
        issuers: &BTreeMap<String, String>,
    ) -> Result<StsConfig, ConfigError> {
        let mut roles = BTreeMap::new();
        for raw in raw_roles {
            let role = self.role(raw, issuers)?;
            if roles.contains_key(role.arn.as_str()) {
                return Err(self.invalid(
                    &format!("[[role]] {:?}", role.arn.as_str()),
                    "duplicate role ARN; give each [[role]] a unique arn",
                ));
            }
            roles.insert(role.arn.as_str().to_owned(), Arc::new(role));
        }
        let key = match raw_sts {
            None | Some(RawSts { secret_file: None }) => None,
            Some(RawSts {
                secret_file: Some(file),
            }) => Some(self.sts_key(&file)?),
        };
        if key.is_some() && roles.is_empty() {
            return Err(self.invalid(
                "[sts]",
                "[sts] is set but no [[role]] is configured, so the STS endpoint is off; add a [[role]] or remove [sts]",
            ));
        }
        Ok(StsConfig { roles, key })
    }

    fn sts_key(&self, file: &Path) -> Result<StsKey, ConfigError> {
        let entry = "[sts] secret_file";
        let path = self.base.join(file);
        let bytes = std::fs::read(&path)
            .map_err(|e| self.invalid(entry, format!("cannot read {}: {e}", path.display())))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(self.invalid(
                entry,
                format!(
                    "{} holds {} bytes; it needs at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32 > sts.key`)",
                    path.display(),
                    trimmed.len()
                ),
            ));
        }
        Ok(StsKey(Sha256::digest(trimmed).into()))
    }

    fn role(&self, raw: RawRole, issuers: &BTreeMap<String, String>) -> Result<Role, ConfigError> {
        let entry = format!("[[role]] {:?}", raw.arn);
        let arn = RoleArn::parse(&raw.arn).map_err(|m| self.invalid(&format!("{entry} arn"), m))?;
        let max = raw
            .max_session_duration
            .map_or(DEFAULT_SESSION_DURATION, Duration::from_secs);
        if !(MIN_ROLE_MAX_SESSION_DURATION..=MAX_SESSION_DURATION).contains(&max) {
            return Err(self.invalid(
                &format!("{entry} max_session_duration"),
                format!(
                    "{} is out of range; AWS allows 3600 to 43200 seconds (1 to 12 hours)",
                    max.as_secs()
                ),
            ));
        }
        let file_entry = format!("{entry} trust_policy_file");
        let path = self.base.join(&raw.trust_policy_file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.invalid(&file_entry, format!("cannot read {}: {e}", path.display()))
        })?;
        let policy = IamPolicy::parse(&text)
            .map_err(|e| self.invalid(&file_entry, format!("{}: {e}", path.display())))?;
        let providers: Vec<String> = issuers
            .values()
            .map(|url| {
                format!(
                    "arn:aws:iam::{}:oidc-provider/{}",
                    arn.account(),
                    provider_host_path(url)
                )
            })
            .collect();
        let names_an_issuer = policy
            .statements()
            .iter()
            .filter_map(|st| match st.principal() {
                Principal::Listed(ids) => Some(ids),
                Principal::Everyone => None,
            })
            .flatten()
            .any(|id| id.kind == PrincipalKind::Federated && providers.contains(&id.value));
        if !names_an_issuer {
            return Err(self.invalid(
                &file_entry,
                format!(
                    "{}: no statement's Principal.Federated names a configured issuer's OIDC provider in the role's account {}; use one of {providers:?}",
                    path.display(),
                    arn.account()
                ),
            ));
        }
        Ok(Role {
            arn,
            policy,
            file: path,
            max_session_duration: max,
        })
    }
}
