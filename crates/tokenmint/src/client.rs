//! The CI-side client behind `tokenmint exchange`: get the job's OIDC token, call a broker, and hand the result to the job without leaking it.

use crate::config::{check_url_scheme, is_valid_name};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// Connect timeout for the client's calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Total timeout for each call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses are refused past this size.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The longest `Retry-After` the one retry waits for; a longer one fails at once.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Why the client failed. Messages never include a token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or environment.
    #[error("{0}")]
    Usage(String),
    /// The OIDC token could not be obtained.
    #[error("get the job's OIDC token: {0}")]
    IdToken(String),
    /// The broker call failed at the transport level.
    #[error("call {url}: {reason}")]
    Transport {
        /// The URL called.
        url: String,
        /// Why.
        reason: String,
    },
    /// The broker refused.
    #[error("tokenmint refused ({status} {code}): {message} [request_id {request_id}]")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
        /// Request id, for the operator.
        request_id: String,
    },
    /// The broker's answer is malformed.
    #[error("tokenmint's answer is malformed: {0}")]
    BadResponse(String),
    /// Writing the output failed.
    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Where the OIDC token comes from.
#[derive(Debug)]
pub enum IdTokenSource {
    /// A file holding the token (e.g. GitLab's `id_tokens`, or a test).
    File(PathBuf),
    /// GitHub Actions' token service.
    Actions {
        /// `ACTIONS_ID_TOKEN_REQUEST_URL`.
        request_url: String,
        /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
        request_token: SecretString,
    },
}

/// What the broker returned.
#[derive(Debug, Deserialize)]
pub struct BrokerResponse {
    /// The credential. Only [`emit`] reads it.
    #[serde(deserialize_with = "secret_string")]
    pub token: SecretString,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// Repositories it covers.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The broker that minted it.
    #[serde(default)]
    pub broker: String,
    /// Request id.
    #[serde(default)]
    pub request_id: String,
}

fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    request_id: String,
}

fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tokenmint-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Usage(format!("build HTTP client: {e}")))
}

async fn read_capped(resp: reqwest::Response) -> Result<bytes::Bytes, String> {
    crate::net::read_capped(resp, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| match e {
            crate::net::CappedReadError::TooLarge => "response too large".to_owned(),
            crate::net::CappedReadError::Transport(e) => e.without_url().to_string(),
        })
}

/// Gets the job's OIDC token for `audience`.
pub async fn fetch_id_token(
    source: &IdTokenSource,
    audience: &str,
) -> Result<SecretString, ClientError> {
    match source {
        IdTokenSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::IdToken(format!("read {}: {e}", path.display())))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(ClientError::IdToken(format!("{} is empty", path.display())));
            }
            Ok(SecretString::from(token.to_owned()))
        }
        IdTokenSource::Actions {
            request_url,
            request_token,
        } => {
            let sep = if request_url.contains('?') { '&' } else { '?' };
            let encoded: String =
                url::form_urlencoded::byte_serialize(audience.as_bytes()).collect();
            let url = format!("{request_url}{sep}audience={encoded}");
            let parsed = Url::parse(&url).map_err(|e| {
                ClientError::IdToken(format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"))
            })?;
            check_url_scheme(&parsed)
                .map_err(|m| ClientError::IdToken(format!("ACTIONS_ID_TOKEN_REQUEST_URL: {m}")))?;
            let client = http_client()?;
            let resp = client
                .get(parsed)
                .bearer_auth(request_token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| ClientError::IdToken(e.without_url().to_string()))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ClientError::IdToken(format!(
                    "the token service answered HTTP {}; does the job have `permissions: id-token: write`?",
                    status.as_u16()
                )));
            }
            #[derive(Deserialize)]
            struct Value {
                value: Option<String>,
            }
            let body = read_capped(resp).await.map_err(ClientError::IdToken)?;
            let v: Value = serde_json::from_slice(&body).map_err(|_| {
                ClientError::IdToken("the token service's answer is not JSON".into())
            })?;
            v.value
                .filter(|t| !t.is_empty())
                .map(SecretString::from)
                .ok_or_else(|| {
                    ClientError::IdToken("the token service's answer has no `value`".into())
                })
        }
    }
}

/// Calls `POST {base}/v1/brokers/{broker}/token` with `id_token`, with an
/// empty body. Retries once on a connection failure, a 503 or a 429 (no
/// token was minted in any of them, and a rate-limited single-use token is
/// not used up), after the server's `Retry-After` when it is at most 10 s;
/// never on other errors.
pub async fn call_broker(
    base: &Url,
    broker: &str,
    id_token: &SecretString,
) -> Result<BrokerResponse, ClientError> {
    if !is_valid_name(broker) {
        return Err(ClientError::Usage(format!(
            "{broker:?} is not a broker name ([A-Za-z0-9_.-]{{1,64}})"
        )));
    }
    check_url_scheme(base).map_err(|m| ClientError::Usage(format!("--url: {m}")))?;
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| ClientError::Usage("--url cannot be a base URL".into()))?
        .pop_if_empty()
        .extend(["v1", "brokers", broker, "token"]);
    let client = http_client()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .post(url.clone())
            .bearer_auth(id_token.expose_secret())
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if attempt == 1 && e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                return Err(ClientError::Transport {
                    url: url.to_string(),
                    reason: e.without_url().to_string(),
                })
            }
        };
        let status = resp.status();
        if attempt == 1 {
            if let Some(wait) = retry_wait(status, resp.headers()) {
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        let body = read_capped(resp)
            .await
            .map_err(|reason| ClientError::Transport {
                url: url.to_string(),
                reason,
            })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                ClientError::BadResponse("expected a JSON object with token and expires_at".into())
            });
        }
        let err: ErrorBody = serde_json::from_slice(&body).map_err(|_| {
            ClientError::BadResponse(format!("HTTP {} with a non-JSON body", status.as_u16()))
        })?;
        return Err(ClientError::Refused {
            status: status.as_u16(),
            code: err.error,
            message: err.message,
            request_id: err.request_id,
        });
    }
}

/// How long to wait before retrying an answer with `status`, if it is worth
/// one retry: a 503 (1 s unless `Retry-After` says otherwise) or a 429 with a
/// `Retry-After`; either only when the wait is at most [`MAX_RETRY_WAIT`].
fn retry_wait(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Option<Duration> {
    let advertised = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let wait = match status {
        reqwest::StatusCode::SERVICE_UNAVAILABLE => advertised.unwrap_or(Duration::from_secs(1)),
        reqwest::StatusCode::TOO_MANY_REQUESTS => advertised?,
        _ => return None,
    };
    (wait <= MAX_RETRY_WAIT).then_some(wait)
}

/// Where the token goes.
#[derive(Debug)]
pub struct OutputTarget<'a> {
    /// `GITHUB_ACTIONS=true`.
    pub github_actions: bool,
    /// `GITHUB_OUTPUT`, the step-output file.
    pub github_output: Option<&'a Path>,
}

/// Hands the token to the job. In GitHub Actions: `::add-mask::` on stdout
/// (so the runner masks it in every later log line), then `token=...` and
/// `expires_at=...` appended to `$GITHUB_OUTPUT`; the token itself is never
/// printed. Elsewhere: the token alone on stdout.
pub fn emit(
    resp: &BrokerResponse,
    target: &OutputTarget<'_>,
    stdout: &mut dyn Write,
) -> Result<(), ClientError> {
    let token = resp.token.expose_secret();
    // A token with whitespace or control characters could inject workflow
    // commands or extra outputs; refuse it.
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ClientError::BadResponse(
            "the token is empty or contains whitespace or control characters".into(),
        ));
    }
    if resp.expires_at.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ClientError::BadResponse(
            "expires_at contains whitespace or control characters".into(),
        ));
    }
    if target.github_actions {
        let path = target.github_output.ok_or_else(|| {
            ClientError::Usage(
                "GITHUB_ACTIONS is set but GITHUB_OUTPUT is not; cannot hand over the token safely"
                    .into(),
            )
        })?;
        writeln!(stdout, "::add-mask::{token}")?;
        stdout.flush()?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(file, "token={token}")?;
        writeln!(file, "expires_at={}", resp.expires_at)?;
    } else {
        writeln!(stdout, "{token}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_for_retry_after_within_bounds() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        use reqwest::StatusCode;
        let after = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            h
        };
        let none = HeaderMap::new();
        let secs = Duration::from_secs;
        assert_eq!(
            retry_wait(StatusCode::SERVICE_UNAVAILABLE, &none),
            Some(secs(1))
        );
        assert_eq!(
            retry_wait(StatusCode::SERVICE_UNAVAILABLE, &after("3")),
            Some(secs(3))
        );
        assert_eq!(
            retry_wait(StatusCode::TOO_MANY_REQUESTS, &after("10")),
            Some(secs(10))
        );
        // Too long a wait, no advice on a 429, or any other status: no retry.
        assert_eq!(
            retry_wait(StatusCode::SERVICE_UNAVAILABLE, &after("30")),
            None
        );
        assert_eq!(
            retry_wait(StatusCode::TOO_MANY_REQUESTS, &after("11")),
            None
        );
        assert_eq!(retry_wait(StatusCode::TOO_MANY_REQUESTS, &none), None);
        assert_eq!(retry_wait(StatusCode::FORBIDDEN, &after("1")), None);
        assert_eq!(retry_wait(StatusCode::BAD_GATEWAY, &none), None);
    }

    fn response(token: &str) -> BrokerResponse {
        BrokerResponse {
            token: SecretString::from(token.to_owned()),
            expires_at: "2026-11-23T06:00:00Z".into(),
            repositories: vec!["acme/widgets".into()],
            broker: "b".into(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn plain_mode_prints_token_only() {
        let mut out = Vec::new();
        emit(
            &response("ghs_abc"),
            &OutputTarget {
                github_actions: false,
                github_output: None,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"ghs_abc\n");
    }

    #[test]
    fn actions_mode_masks_and_writes_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        std::fs::write(&file, "earlier=1\n").unwrap();
        let mut out = Vec::new();
        let target = OutputTarget {
            github_actions: true,
            github_output: Some(&file),
        };
        emit(&response("ghs_abc"), &target, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "::add-mask::ghs_abc\n");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "earlier=1\ntoken=ghs_abc\nexpires_at=2026-11-23T06:00:00Z\n"
        );
    }

    #[test]
    fn injection_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        for bad in ["ghs_a\nevil=1", "ghs a", "", "ghs_\r"] {
            let mut out = Vec::new();
            let target = OutputTarget {
                github_actions: true,
                github_output: Some(&file),
            };
            assert!(emit(&response(bad), &target, &mut out).is_err(), "{bad:?}");
            assert!(out.is_empty());
        }
        assert!(!file.exists());
        let target = OutputTarget {
            github_actions: true,
            github_output: None,
        };
        assert!(matches!(
            emit(&response("ghs_a"), &target, &mut Vec::new()),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn debug_redacts_token() {
        assert!(!format!("{:?}", response("ghs_secret")).contains("ghs_secret"));
    }
}
