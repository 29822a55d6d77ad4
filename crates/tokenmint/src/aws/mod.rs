//! AWS plumbing shared by the Lambda and key custody: credentials and region from the standard environment, endpoint resolution, SigV4 request signing, and the SSM client.
//!
//! tokenmint talks to a handful of AWS JSON APIs (SSM `GetParameters`, KMS
//! `Sign`), so instead of the AWS SDK it signs requests itself
//! ([`sigv4`], checked against AWS's published test vector) and sends them
//! with the same rustls `reqwest` client as everything else.

pub mod kms;
pub mod sigv4;
pub mod ssm;

use secrecy::{ExposeSecret as _, SecretString};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// Longest AWS error message quoted in our errors.
const MAX_AWS_MESSAGE: usize = 300;

/// Why an AWS API call failed. Never carries a secret or a returned value.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The endpoint could not be resolved from the environment.
    #[error(transparent)]
    Env(#[from] AwsEnvError),
    /// The HTTP client could not be built.
    #[error("build AWS HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// No answer (connection refused, timeout, TLS failure).
    #[error("{service} request failed: {source}")]
    Transport {
        /// `SSM`, `KMS`.
        service: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// AWS refused the request (`AccessDeniedException`, `ValidationException`, throttling, …).
    #[error("{code}: {message} (HTTP {status})")]
    Aws {
        /// The HTTP status.
        status: u16,
        /// AWS's error code, e.g. `AccessDeniedException`.
        code: String,
        /// AWS's message (cut to a few hundred characters).
        message: String,
    },
    /// The answer is not the JSON expected, or is too large.
    #[error("{service} response is not the expected JSON")]
    Malformed {
        /// `SSM`, `KMS`.
        service: &'static str,
    },
}

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

/// One AWS JSON API (awsJson1_1): SigV4-signed `POST /` with an `X-Amz-Target`.
#[derive(Debug, Clone)]
pub(crate) struct JsonApi {
    http: reqwest::Client,
    endpoint: Url,
    env: AwsEnv,
    /// The signing name, e.g. `ssm`, `kms`.
    service: &'static str,
    /// `SSM`, `KMS`: for messages.
    label: &'static str,
    content_type: &'static str,
}

#[derive(serde::Deserialize)]
struct RawError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl JsonApi {
    pub(crate) fn new(
        env: AwsEnv,
        service: &'static str,
        content_type: &'static str,
        timeout: Duration,
    ) -> Result<Self, AwsError> {
        let endpoint = env.endpoint(service)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(AwsError::HttpClient)?;
        let label = match service {
            "ssm" => "SSM",
            "kms" => "KMS",
            _ => "AWS",
        };
        Ok(Self {
            http,
            endpoint,
            env,
            service,
            label,
            content_type,
        })
    }

    /// Calls `target` with `body`, signed at `now`; the 2xx body, at most `cap` bytes.
    pub(crate) async fn call(
        &self,
        target: &str,
        body: &serde_json::Value,
        cap: usize,
        now: OffsetDateTime,
    ) -> Result<bytes::Bytes, AwsError> {
        let body = body.to_string().into_bytes();
        let host = host_header(&self.endpoint);
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                host: &host,
                path: "/",
                query: "",
                headers: &[
                    ("content-type", self.content_type),
                    ("x-amz-target", target),
                ],
                body: &body,
            },
            &self.env.credentials,
            &self.env.region,
            self.service,
            now,
        );
        let malformed = AwsError::Malformed {
            service: self.label,
        };
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header("content-type", self.content_type)
            .header("x-amz-target", target);
        for (name, value) in signed {
            let Ok(mut value) = reqwest::header::HeaderValue::try_from(value) else {
                return Err(malformed);
            };
            value.set_sensitive(name != "x-amz-date");
            request = request.header(name, value);
        }
        let transport = |source| AwsError::Transport {
            service: self.label,
            source,
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let reply = crate::net::read_capped(response, cap)
            .await
            .map_err(|e| match e {
                crate::net::CappedReadError::TooLarge => AwsError::Malformed {
                    service: self.label,
                },
                crate::net::CappedReadError::Transport(e) => transport(e),
            })?;
        if (200..300).contains(&status) {
            Ok(reply)
        } else {
            Err(aws_error(status, &reply))
        }
    }
}

/// The `Host` header reqwest sends for `url`: host, plus the port when it is not the default.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn aws_error(status: u16, body: &[u8]) -> AwsError {
    let raw: RawError = serde_json::from_slice(body).unwrap_or(RawError {
        kind: String::new(),
        message: String::new(),
    });
    // `__type` may be `com.amazonaws.ssm#AccessDeniedException`.
    let code = raw.kind.rsplit('#').next().unwrap_or_default();
    AwsError::Aws {
        status,
        code: if code.is_empty() {
            "UnknownError".to_owned()
        } else {
            crate::text::printable(code, 80)
        },
        message: crate::text::printable(&raw.message, MAX_AWS_MESSAGE),
    }
}

/// Whether `name` is a literal absolute SSM parameter path (`^/[A-Za-z0-9_.\-/]+$`): no wildcard, no ARN.
pub fn is_literal_parameter_name(name: &str) -> bool {
    name.len() > 1
        && name.len() <= 2048
        && name.starts_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
}

/// Whether `key` is a literal KMS key id, key ARN, `alias/NAME` or alias ARN (no wildcard).
pub fn is_literal_kms_key_id(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 2048
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
        && (key.starts_with("arn:aws") || key.starts_with("alias/") || !key.contains(['/', ':']))
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
    fn aws_errors_keep_code_and_message() {
        let e = aws_error(
            400,
            br#"{"__type":"com.amazonaws.ssm#AccessDeniedException","message":"not allowed"}"#,
        );
        assert_eq!(
            e.to_string(),
            "AccessDeniedException: not allowed (HTTP 400)"
        );
    }

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
