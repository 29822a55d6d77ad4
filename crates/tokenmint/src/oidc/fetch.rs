//! Bounded outbound HTTP GETs for discovery and JWKS: timeouts, a size cap, and redirects only within the same origin.

use bytes::Bytes;
use std::time::Duration;
use url::Url;

/// Responses larger than this are refused.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;
/// Redirects followed at most (same origin only).
const MAX_REDIRECTS: usize = 3;

/// Why a fetch failed. Messages never include response bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connect failure, timeout, TLS error, cross-origin redirect…
    #[error("GET {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// Cause, without secrets.
        reason: String,
    },
    /// A non-2xx answer.
    #[error("GET {url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Over [`MAX_BODY_BYTES`].
    #[error("GET {url} returned more than {MAX_BODY_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
}

/// A fetched body and its `Cache-Control` header.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) cache_control: Option<String>,
}

/// An HTTP client for issuer metadata.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    pub(crate) fn new(
        connect_timeout: Duration,
        total_timeout: Duration,
    ) -> Result<Self, FetchError> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if same_origin {
                attempt.follow()
            } else {
                attempt.error("redirect to another origin refused")
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(total_timeout)
            .redirect(policy)
            .user_agent(concat!("tokenmint/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self { client })
    }

    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_string(),
            reason: describe(&e),
        };
        let resp = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let cache_control = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = crate::net::read_capped(resp, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                crate::net::CappedReadError::TooLarge => FetchError::TooLarge {
                    url: url.to_string(),
                },
                crate::net::CappedReadError::Transport(e) => transport(e),
            })?;
        Ok(Fetched {
            body,
            cache_control,
        })
    }
}

/// A short, secret-free description of a reqwest error.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_redirect() {
        "redirect refused (only same-origin redirects are followed)".to_owned()
    } else {
        // reqwest's Display includes the URL, which we already report.
        let mut text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(url.as_str(), "").trim().to_owned();
        }
        text
    }
}
