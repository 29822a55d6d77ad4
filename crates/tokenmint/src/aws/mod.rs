//! AWS plumbing shared by the Lambda and key custody: credentials and region from the standard environment, endpoint resolution, SigV4 request signing, and the SSM client.
//!
//! tokenmint talks to a handful of AWS JSON APIs (SSM `GetParameters`, KMS
//! `Sign`), so instead of the AWS SDK it signs requests itself
//! ([`sigv4`], checked against AWS's published test vector) and sends them
//! with the same rustls `reqwest` client as everything else.

pub mod sigv4;
pub mod ssm;

use secrecy::{ExposeSecret as _, SecretString};
use std::fmt;
use url::Url;

/// Why the AWS environment is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsEnvError {
    /// A required variable is unset or empty.
    #[error("{0} is not set; the Lambda runtime sets it, elsewhere export it (or use an AWS profile exporter)")]
    Missing(&'static str),
    /// An endpoint override is not an acceptable URL.
    #[error("{var} must be an absolute https URL (http only on localhost, 127.0.0.0/8 or ::1) without credentials, query or path: {reason}")]
    Endpoint {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The region is not a plausible AWS region name.
    #[error("AWS_REGION {0:?} is not a region name like eu-west-1")]
    Region(String),
}

/// AWS credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// (for temporary credentials, as in Lambda) `AWS_SESSION_TOKEN`. The secret
/// and session token are redacted in `Debug`.
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key id (not secret; it appears in every signed request).
    pub access_key_id: String,
    /// The secret key that derives signing keys.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// The session token, when there is one.
    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_ref().map(|t| t.expose_secret())
    }
}

/// Where and as whom to call AWS: validated once from the environment.
#[derive(Debug, Clone)]
pub struct AwsEnv {
    /// The region requests are signed for.
    pub region: String,
    /// The credentials requests are signed with.
    pub credentials: AwsCredentials,
    /// `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` when set, per service.
    endpoints: Vec<(String, Url)>,
    /// `AWS_ENDPOINT_URL`, when set.
    default_endpoint: Option<Url>,
}

/// The variable names, in one place for docs and errors.
const SERVICES: &[(&str, &str)] = &[
    ("ssm", "AWS_ENDPOINT_URL_SSM"),
    ("kms", "AWS_ENDPOINT_URL_KMS"),
];

impl AwsEnv {
    /// Reads the standard variables through `get` (values are trimmed; empty
    /// means unset).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, AwsEnvError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or(AwsEnvError::Missing("AWS_REGION"))?;
        if region.len() > 32
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(AwsEnvError::Region(crate::text::printable(&region, 40)));
        }
        let access_key_id =
            var("AWS_ACCESS_KEY_ID").ok_or(AwsEnvError::Missing("AWS_ACCESS_KEY_ID"))?;
        let secret_access_key =
            var("AWS_SECRET_ACCESS_KEY").ok_or(AwsEnvError::Missing("AWS_SECRET_ACCESS_KEY"))?;
        let session_token = var("AWS_SESSION_TOKEN").map(SecretString::from);
        let mut endpoints = Vec::new();
        for (service, name) in SERVICES {
            if let Some(raw) = var(name) {
                endpoints.push(((*service).to_owned(), parse_endpoint(name, &raw)?));
            }
        }
        let default_endpoint = var("AWS_ENDPOINT_URL")
            .map(|raw| parse_endpoint("AWS_ENDPOINT_URL", &raw))
            .transpose()?;
        Ok(Self {
            region,
            credentials: AwsCredentials {
                access_key_id,
                secret_access_key: SecretString::from(secret_access_key),
                session_token,
            },
            endpoints,
            default_endpoint,
        })
    }

    /// The endpoint for `service` (`ssm`, `kms`): its override, the global
    /// override, or `https://<service>.<region>.amazonaws.com/`.
    pub fn endpoint(&self, service: &str) -> Result<Url, AwsEnvError> {
        if let Some((_, url)) = self.endpoints.iter().find(|(s, _)| s == service) {
            return Ok(url.clone());
        }
        if let Some(url) = &self.default_endpoint {
            return Ok(url.clone());
        }
        Url::parse(&format!("https://{service}.{}.amazonaws.com/", self.region)).map_err(|_| {
            AwsEnvError::Endpoint {
                var: "AWS_REGION",
                reason: "the region does not form a valid host name",
            }
        })
    }
}

/// Whether `url` may be used: https anywhere, http only on loopback.
pub(crate) fn https_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn parse_endpoint(var: &'static str, raw: &str) -> Result<Url, AwsEnvError> {
    let err = |reason| AwsEnvError::Endpoint { var, reason };
    let url = Url::parse(raw).map_err(|_| err("not an absolute URL"))?;
    if url.host().is_none() {
        return Err(err("no host"));
    }
    if !https_or_loopback(&url) {
        return Err(err("plain http is allowed only on loopback"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("credentials in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(err("a path, query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ("AWS_SESSION_TOKEN", "session-secret"),
    ];

    #[test]
    fn reads_credentials_and_default_endpoint_and_redacts() {
        let aws = AwsEnv::from_env(env(BASE)).unwrap();
        assert_eq!(
            aws.endpoint("ssm").unwrap().as_str(),
            "https://ssm.eu-west-1.amazonaws.com/"
        );
        let shown = format!("{aws:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("session-secret"));
    }

    #[test]
    fn endpoint_overrides_are_per_service_then_global() {
        let mut pairs = BASE.to_vec();
        pairs.push(("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5000"));
        pairs.push(("AWS_ENDPOINT_URL", "https://aws.internal.example"));
        let aws = AwsEnv::from_env(env(&pairs)).unwrap();
        assert_eq!(
            aws.endpoint("ssm").unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            aws.endpoint("kms").unwrap().as_str(),
            "https://aws.internal.example/"
        );
    }

    #[test]
    fn plain_http_endpoint_off_loopback_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("AWS_ENDPOINT_URL_SSM", "http://ssm.example.com"));
        assert!(matches!(
            AwsEnv::from_env(env(&pairs)),
            Err(AwsEnvError::Endpoint {
                var: "AWS_ENDPOINT_URL_SSM",
                ..
            })
        ));
    }

    #[test]
    fn missing_credentials_are_named() {
        let pairs: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY")
            .collect();
        assert_eq!(
            AwsEnv::from_env(env(&pairs)).unwrap_err(),
            AwsEnvError::Missing("AWS_SECRET_ACCESS_KEY")
        );
    }
}
