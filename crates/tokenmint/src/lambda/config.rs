//! The Lambda's environment, parsed once into validated types: the mode, the invoke-mode broker settings (github-token-broker's variables and rules), the http-mode config path, and the log level.

use crate::aws::{AwsEnv, AwsEnvError};
use crate::github::Permissions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tracing::level_filters::LevelFilter;
use url::Url;

/// Selects the mode; `invoke` when unset.
pub const MODE_VAR: &str = "TOKENMINT_MODE";
/// http mode: path of the tokenmint TOML config.
pub const CONFIG_VAR: &str = "TOKENMINT_CONFIG";
/// http mode: log level (invoke mode uses github-token-broker's variable).
pub const HTTP_LOG_LEVEL_VAR: &str = "TOKENMINT_LOG_LEVEL";
/// invoke mode: the repository owner.
pub const OWNER_VAR: &str = "GITHUB_TOKEN_BROKER_REPOSITORY_OWNER";
/// invoke mode: the repository name.
pub const NAME_VAR: &str = "GITHUB_TOKEN_BROKER_REPOSITORY_NAME";
/// invoke mode: the permission map (JSON).
pub const PERMISSIONS_VAR: &str = "GITHUB_TOKEN_BROKER_PERMISSIONS";
/// invoke mode: SSM name of the App's client id.
pub const CLIENT_ID_PARAM_VAR: &str = "GITHUB_TOKEN_BROKER_CLIENT_ID_PARAM";
/// invoke mode: SSM name of the installation id.
pub const INSTALLATION_ID_PARAM_VAR: &str = "GITHUB_TOKEN_BROKER_INSTALLATION_ID_PARAM";
/// invoke mode: SSM name of the private key PEM.
pub const PRIVATE_KEY_PARAM_VAR: &str = "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM";
/// invoke mode: GitHub's REST API root.
pub const API_BASE_URL_VAR: &str = "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL";
/// invoke mode: log level.
pub const LOG_LEVEL_VAR: &str = "GITHUB_TOKEN_BROKER_LOG_LEVEL";
/// invoke mode (tokenmint only): sign App JWTs with this KMS key instead of a PEM from SSM.
pub const KMS_KEY_VAR: &str = "TOKENMINT_GITHUB_APP_KMS_KEY_ID";

const DEFAULT_PERMISSIONS: &str = r#"{"contents":"read"}"#;
const DEFAULT_CLIENT_ID_PARAM: &str = "/github-token-broker/app/client-id";
const DEFAULT_INSTALLATION_ID_PARAM: &str = "/github-token-broker/app/installation-id";
const DEFAULT_PRIVATE_KEY_PARAM: &str = "/github-token-broker/app/private-key-pem";
const DEFAULT_API_BASE_URL: &str = "https://api.github.com";
/// Longest value echoed back in an error.
const MAX_ECHO: usize = 120;

/// The process environment as read once at start (tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The real process environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// `pairs` as an environment.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The trimmed value of `name`; `None` when unset or blank (blank means "use the default").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Why the environment is unusable. Reported through the Runtime API's
/// init-error endpoint, so each message names the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `TOKENMINT_MODE` is neither `invoke` nor `http`.
    #[error("TOKENMINT_MODE {0} is not a mode; use invoke (the default, github-token-broker compatible) or http")]
    Mode(String),
    /// A required variable is unset.
    #[error("{0} is required")]
    Required(&'static str),
    /// An owner or repository name breaks GitHub's naming rule.
    #[error("{var} {value} is invalid: use 1 to 100 of A-Z a-z 0-9 _ . - (not `.` or `..`)")]
    RepositoryName {
        /// The variable.
        var: &'static str,
        /// The value, quoted.
        value: String,
    },
    /// The permission map is not a non-empty JSON object of strings.
    #[error("GITHUB_TOKEN_BROKER_PERMISSIONS must be a non-empty JSON object of permission names to levels, e.g. {{\"contents\":\"read\"}}: {0}")]
    PermissionsShape(String),
    /// A permission name or level outside GitHub's vocabulary.
    #[error("GITHUB_TOKEN_BROKER_PERMISSIONS: {0}")]
    Permissions(#[from] crate::github::PermissionError),
    /// An SSM parameter name is not a literal absolute path.
    #[error("{var} {value} must be a literal absolute SSM parameter path matching ^/[A-Za-z0-9_.-/]+$ (no wildcard, no ARN)")]
    ParameterPath {
        /// The variable.
        var: &'static str,
        /// The value, quoted.
        value: String,
    },
    /// The GitHub API URL is unusable.
    #[error("GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL {value} must be an absolute https URL (http only on localhost, 127.0.0.0/8 or ::1) without credentials, query or fragment")]
    ApiBaseUrl {
        /// The value, quoted.
        value: String,
    },
    /// The KMS key is not a literal key id, key ARN or alias.
    #[error("TOKENMINT_GITHUB_APP_KMS_KEY_ID {0} must be a literal KMS key id, key ARN, alias/NAME or alias ARN (no wildcard)")]
    KmsKey(String),
    /// An unknown log level (the original silently used `info`).
    #[error("{var} {value} is not a log level; use debug, info, warn or error")]
    LogLevel {
        /// The variable.
        var: &'static str,
        /// The value, quoted.
        value: String,
    },
    /// The AWS environment (region, credentials, endpoint overrides).
    #[error(transparent)]
    Aws(#[from] AwsEnvError),
}

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl LogLevel {
    /// The matching `tracing` filter.
    pub fn filter(self) -> LevelFilter {
        match self {
            Self::Debug => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warn => LevelFilter::WARN,
            Self::Error => LevelFilter::ERROR,
        }
    }

    fn parse(var: &'static str, raw: Option<&str>) -> Result<Self, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Self::Info);
        };
        match raw.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err(ConfigError::LogLevel {
                var,
                value: crate::text::quote(raw, MAX_ECHO),
            }),
        }
    }
}

/// The three SSM parameter names holding the App's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmParameterNames {
    /// The App's client id (or numeric App id): the App JWT's `iss`.
    pub client_id: String,
    /// The installation id, in decimal.
    pub installation_id: String,
    /// The App's private key, PEM (a SecureString).
    pub private_key: String,
}

/// invoke mode: everything one github-token-broker deployment configures.
#[derive(Debug, Clone)]
pub struct InvokeConfig {
    /// The repository owner.
    pub owner: String,
    /// The repository name.
    pub repo: String,
    /// The permissions every token gets (checked against GitHub's vocabulary).
    pub permissions: Permissions,
    /// Where the App's credentials are in SSM.
    pub parameters: SsmParameterNames,
    /// When set, App JWTs are signed by this KMS key and the private-key
    /// parameter is not read.
    pub kms_key_id: Option<String>,
    /// GitHub's REST API root.
    pub api_url: Url,
    /// Region, credentials and endpoints for SSM.
    pub aws: AwsEnv,
}

/// What the function does, decided by configuration only (never by a payload).
#[derive(Debug, Clone)]
pub enum Mode {
    /// github-token-broker compatible: each invocation mints one token.
    Invoke(Box<InvokeConfig>),
    /// tokenmint's HTTP API behind a Function URL or API Gateway HTTP API.
    Http {
        /// The tokenmint TOML config.
        config_path: PathBuf,
    },
}

/// The validated environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// The mode and its settings.
    pub mode: Mode,
    /// How much to log.
    pub log_level: LogLevel,
}

impl LambdaConfig {
    /// Parses and checks the whole environment in one step.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get(MODE_VAR) {
            None | Some("invoke") => Ok(Self {
                log_level: LogLevel::parse(LOG_LEVEL_VAR, env.get(LOG_LEVEL_VAR))?,
                mode: Mode::Invoke(Box::new(invoke_config(env)?)),
            }),
            Some("http") => Ok(Self {
                log_level: LogLevel::parse(HTTP_LOG_LEVEL_VAR, env.get(HTTP_LOG_LEVEL_VAR))?,
                mode: Mode::Http {
                    config_path: PathBuf::from(
                        env.get(CONFIG_VAR)
                            .ok_or(ConfigError::Required(CONFIG_VAR))?,
                    ),
                },
            }),
            Some(other) => Err(ConfigError::Mode(crate::text::quote(other, MAX_ECHO))),
        }
    }
}

/// The log level to start logging with, before (or despite) the rest of the
/// configuration: an invalid value falls back to `info` here and is then
/// reported as a configuration error by [`LambdaConfig::from_env`].
pub fn initial_log_level(env: &Env) -> LogLevel {
    let var = if env.get(MODE_VAR) == Some("http") {
        HTTP_LOG_LEVEL_VAR
    } else {
        LOG_LEVEL_VAR
    };
    LogLevel::parse(var, env.get(var)).unwrap_or(LogLevel::Info)
}

fn invoke_config(env: &Env) -> Result<InvokeConfig, ConfigError> {
    let owner = repository_part(env, OWNER_VAR)?;
    let repo = repository_part(env, NAME_VAR)?;
    let permissions = permissions(env.get(PERMISSIONS_VAR).unwrap_or(DEFAULT_PERMISSIONS))?;
    let parameters = SsmParameterNames {
        client_id: parameter_path(env, CLIENT_ID_PARAM_VAR, DEFAULT_CLIENT_ID_PARAM)?,
        installation_id: parameter_path(
            env,
            INSTALLATION_ID_PARAM_VAR,
            DEFAULT_INSTALLATION_ID_PARAM,
        )?,
        private_key: parameter_path(env, PRIVATE_KEY_PARAM_VAR, DEFAULT_PRIVATE_KEY_PARAM)?,
    };
    let api_url = api_base_url(env.get(API_BASE_URL_VAR).unwrap_or(DEFAULT_API_BASE_URL))?;
    let kms_key_id = env.get(KMS_KEY_VAR).map(kms_key_id).transpose()?;
    let aws = AwsEnv::from_env(|name| env.get(name).map(str::to_owned))?;
    Ok(InvokeConfig {
        owner,
        repo,
        permissions,
        parameters,
        kms_key_id,
        api_url,
        aws,
    })
}

fn repository_part(env: &Env, var: &'static str) -> Result<String, ConfigError> {
    let value = env.get(var).ok_or(ConfigError::Required(var))?;
    let valid = value.len() <= 100
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && value != "."
        && value != "..";
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::RepositoryName {
            var,
            value: crate::text::quote(value, MAX_ECHO),
        })
    }
}

fn permissions(raw: &str) -> Result<Permissions, ConfigError> {
    let shape = |m: &str| ConfigError::PermissionsShape(m.to_owned());
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| shape("the value is not JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| shape("the value is not a JSON object"))?;
    if object.is_empty() {
        return Err(shape("the object is empty"));
    }
    let mut pairs = Vec::with_capacity(object.len());
    for (name, level) in object {
        match level.as_str() {
            Some(level) if !level.is_empty() && !name.is_empty() => {
                pairs.push((name.as_str(), level))
            }
            _ => return Err(shape("every name and level must be a non-empty string")),
        }
    }
    Ok(Permissions::parse(pairs)?)
}

fn parameter_path(env: &Env, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let value = env.get(var).unwrap_or(default);
    let valid = crate::aws::is_literal_parameter_name(value);
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::ParameterPath {
            var,
            value: crate::text::quote(value, MAX_ECHO),
        })
    }
}

fn kms_key_id(raw: &str) -> Result<String, ConfigError> {
    if crate::aws::is_literal_kms_key_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::KmsKey(crate::text::quote(raw, MAX_ECHO)))
    }
}

fn api_base_url(raw: &str) -> Result<Url, ConfigError> {
    let err = || ConfigError::ApiBaseUrl {
        value: crate::text::quote(raw, MAX_ECHO),
    };
    let url = Url::parse(raw).map_err(|_| err())?;
    let ok = url.host().is_some()
        && crate::aws::https_or_loopback(&url)
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if ok {
        Ok(url)
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (OWNER_VAR, "acme"),
            (NAME_VAR, "widgets"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<LambdaConfig, ConfigError> {
        let mut pairs = base();
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v));
        }
        LambdaConfig::from_env(&Env::from_pairs(pairs))
    }

    fn invoke(c: LambdaConfig) -> InvokeConfig {
        match c.mode {
            Mode::Invoke(c) => *c,
            Mode::Http { .. } => panic!("expected invoke mode"),
        }
    }

    #[test]
    fn defaults_match_github_token_broker() {
        let c = with(&[]).unwrap();
        assert_eq!(c.log_level, LogLevel::Info);
        let c = invoke(c);
        assert_eq!(
            serde_json::to_string(&c.permissions).unwrap(),
            r#"{"contents":"read"}"#
        );
        assert_eq!(c.parameters.client_id, "/github-token-broker/app/client-id");
        assert_eq!(
            c.parameters.installation_id,
            "/github-token-broker/app/installation-id"
        );
        assert_eq!(
            c.parameters.private_key,
            "/github-token-broker/app/private-key-pem"
        );
        assert_eq!(c.api_url.as_str(), "https://api.github.com/");
    }

    #[test]
    fn values_are_trimmed_and_blank_means_default() {
        let c = invoke(
            with(&[
                (OWNER_VAR, "  acme \n"),
                (PERMISSIONS_VAR, "   "),
                (LOG_LEVEL_VAR, " "),
            ])
            .unwrap(),
        );
        assert_eq!(c.owner, "acme");
        assert_eq!(
            serde_json::to_string(&c.permissions).unwrap(),
            r#"{"contents":"read"}"#
        );
    }

    #[test]
    fn repository_names_follow_the_rule() {
        for bad in [".", "..", "a/b", "a b", "ä", "*"] {
            assert!(
                matches!(
                    with(&[(OWNER_VAR, bad)]),
                    Err(ConfigError::RepositoryName { var: OWNER_VAR, .. })
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    with(&[(NAME_VAR, bad)]),
                    Err(ConfigError::RepositoryName { var: NAME_VAR, .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            with(&[(OWNER_VAR, "")]).unwrap_err(),
            ConfigError::Required(OWNER_VAR)
        );
        assert!(with(&[(NAME_VAR, "my.repo_name-2")]).is_ok());
        assert!(with(&[(NAME_VAR, ".github")]).is_ok());
    }

    #[test]
    fn permissions_must_be_a_known_non_empty_object_of_strings() {
        for bad in [
            "{}",
            "[]",
            "\"read\"",
            "{\"contents\":1}",
            "{\"contents\":\"\"}",
            "{",
            "null",
        ] {
            assert!(
                matches!(
                    with(&[(PERMISSIONS_VAR, bad)]),
                    Err(ConfigError::PermissionsShape(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            with(&[(PERMISSIONS_VAR, r#"{"contents":"owner"}"#)]),
            Err(ConfigError::Permissions(_))
        ));
        assert!(matches!(
            with(&[(PERMISSIONS_VAR, r#"{"everything":"write"}"#)]),
            Err(ConfigError::Permissions(_))
        ));
        let c =
            invoke(with(&[(PERMISSIONS_VAR, r#"{"issues":"write","contents":"read"}"#)]).unwrap());
        assert_eq!(
            serde_json::to_string(&c.permissions).unwrap(),
            r#"{"contents":"read","issues":"write"}"#
        );
    }

    #[test]
    fn parameter_paths_are_literal_absolute_paths() {
        for bad in [
            "relative/name",
            "/",
            "/app/*",
            "/app/key?",
            "arn:aws:ssm:us-east-1:123456789012:parameter/app/key",
            "/app key",
        ] {
            assert!(
                matches!(
                    with(&[(PRIVATE_KEY_PARAM_VAR, bad)]),
                    Err(ConfigError::ParameterPath {
                        var: PRIVATE_KEY_PARAM_VAR,
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let c = invoke(with(&[(CLIENT_ID_PARAM_VAR, "/my-app/client_id.v2")]).unwrap());
        assert_eq!(c.parameters.client_id, "/my-app/client_id.v2");
    }

    #[test]
    fn api_base_url_is_https_or_loopback_http() {
        for ok in [
            "https://ghe.example.com/api/v3",
            "http://localhost:8080",
            "http://127.0.0.2:1",
            "http://[::1]:9",
        ] {
            assert!(with(&[(API_BASE_URL_VAR, ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.github.com",
            "http://10.0.0.1",
            "api.github.com",
            "ftp://x",
            "https://u:p@api.github.com",
            "https://api.github.com/?x=1",
        ] {
            assert!(
                matches!(
                    with(&[(API_BASE_URL_VAR, bad)]),
                    Err(ConfigError::ApiBaseUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn kms_key_is_a_literal_key_or_alias() {
        for ok in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/github-app",
            "arn:aws:kms:us-east-1:123456789012:alias/github-app",
        ] {
            let c = invoke(with(&[(KMS_KEY_VAR, ok)]).unwrap());
            assert_eq!(c.kms_key_id.as_deref(), Some(ok));
        }
        for bad in ["alias/*", "arn:aws:kms:*:*:key/*", "key id", "x/y"] {
            assert!(
                matches!(with(&[(KMS_KEY_VAR, bad)]), Err(ConfigError::KmsKey(_))),
                "{bad}"
            );
        }
        assert_eq!(invoke(with(&[]).unwrap()).kms_key_id, None);
    }

    #[test]
    fn unknown_log_level_is_an_error_not_info() {
        assert!(matches!(
            with(&[(LOG_LEVEL_VAR, "verbose")]),
            Err(ConfigError::LogLevel { .. })
        ));
        assert_eq!(
            with(&[(LOG_LEVEL_VAR, "DEBUG")]).unwrap().log_level,
            LogLevel::Debug
        );
        assert_eq!(
            initial_log_level(&Env::from_pairs([(LOG_LEVEL_VAR, "verbose")])),
            LogLevel::Info
        );
    }

    #[test]
    fn region_is_required_and_mode_is_checked() {
        let pairs: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "AWS_REGION")
            .collect();
        assert!(matches!(
            LambdaConfig::from_env(&Env::from_pairs(pairs)),
            Err(ConfigError::Aws(AwsEnvError::Missing("AWS_REGION")))
        ));
        assert!(matches!(
            with(&[(MODE_VAR, "HTTP")]),
            Err(ConfigError::Mode(_))
        ));
        assert_eq!(
            with(&[(MODE_VAR, "http")]).unwrap_err(),
            ConfigError::Required(CONFIG_VAR)
        );
        let c = with(&[(MODE_VAR, "http"), (CONFIG_VAR, "/var/task/tokenmint.toml")]).unwrap();
        assert!(matches!(c.mode, Mode::Http { .. }));
    }
}
