//! A local stand-in for the GitHub API (installation lookup, token minting, revocation, and a token's repositories) behind `tokenmint dev` and the tests; it is not GitHub and says so on every response.
//!
//! It checks what real GitHub checks and a little more, so that tests prove
//! the client behaves: the App JWT is verified cryptographically against the
//! configured public key, the required headers must be present on App calls,
//! and a token request must name both a repository restriction and
//! permissions. Calls made *with* an installation token (revoking it, listing
//! its repositories) are judged as GitHub judges them: only `User-Agent` is
//! required, so third-party clients such as octo-sts/action's post step work
//! unchanged. Faults
//! ([`Fault`]) make it misbehave in the ways the client must survive.

use crate::clock::{Clock as _, SystemClock};
use crate::keys::RsaPublicJwk;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::Rng as _;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

/// The header every stand-in response carries, so nobody mistakes it for GitHub.
pub const DEV_HEADER: &str = "x-tokenmint-dev";
/// The value of [`DEV_HEADER`].
pub const DEV_HEADER_VALUE: &str = "github-api-stand-in";
/// What `GET /` answers.
pub const BANNER: &str = "This is NOT GitHub.\n\
    It is tokenmint's local stand-in for the GitHub API, for development and tests only.\n\
    Tokens it issues are worthless outside this process.\n";

/// The request headers GitHub expects on every REST call; the stand-in refuses App calls without them.
const REQUIRED_ACCEPT: &str = "application/vnd.github+json";
const REQUIRED_API_VERSION: &str = "2022-11-28";
/// Request bodies larger than this are refused (the client sends a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How big an oversized response body is: well past the client's 1 MiB cap.
const OVERSIZED_BYTES: usize = 4 * 1024 * 1024;
/// GitHub refuses App JWTs that live longer than ten minutes.
const MAX_APP_JWT_LIFETIME_SECS: i64 = 600;
/// Leeway for an `iat` slightly ahead of the stand-in's clock.
const IAT_LEEWAY_SECS: i64 = 60;
/// Installation tokens live for one hour, as on GitHub.
const TOKEN_LIFETIME_SECS: i64 = 3600;
/// The stand-in's hourly request budget, as GitHub's for an App installation.
pub const RATE_LIMIT: u64 = 5000;

/// What the stand-in knows: one GitHub App and where it is installed.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// The App JWT's expected `iss`.
    pub app_id: String,
    /// The App's public key; App JWTs must verify against it.
    pub app_public_key: RsaPublicJwk,
    /// `(owner/repo, installation id, repository id)` for every repository the
    /// App is installed on. Several repositories may share an installation.
    pub installations: Vec<(String, u64, u64)>,
}

/// A way to make the stand-in misbehave. Set with [`GithubStandIn::set_fault`];
/// it applies to every later API call until replaced (a `Status` fault clears
/// itself after `times` calls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Answer the next `times` API calls (any endpoint) with `status`, then behave normally.
    Status {
        /// The HTTP status to answer with.
        status: u16,
        /// How many calls get it.
        times: usize,
    },
    /// Answer the next `times` token requests (`POST .../access_tokens` only) with `status`.
    TokenStatus {
        /// The HTTP status to answer with.
        status: u16,
        /// How many token requests get it.
        times: usize,
    },
    /// Answer every API call with a truncated JSON body and status 200.
    MalformedJson,
    /// Wait this long before handling each API call.
    Delay(Duration),
    /// Answer every API call with a `307` redirect to this location.
    Redirect(String),
    /// Answer every API call with a body past 1 MiB, with a `Content-Length`.
    OversizedBody,
    /// Answer every API call with a body past 1 MiB, chunked, without a `Content-Length`.
    OversizedChunkedBody,
    /// Grant a permission that was not requested (`administration: write`).
    GrantExtraPermission,
    /// Grant a permission that was not requested, then refuse to revoke the
    /// token (`DELETE /installation/token` answers 500).
    GrantExtraPermissionUnrevocable,
    /// Report a different repository than the one requested.
    WrongRepository,
    /// Report the requested repository under a different repository id.
    WrongRepositoryId,
    /// Report an extra repository besides the requested one.
    ExtraRepository,
    /// Report `repository_selection: all` and no repository list.
    AllRepositories,
    /// Answer with an empty `token`.
    EmptyToken,
    /// Answer with an `expires_at` one hour in the past.
    ExpiredToken,
    /// Leave `expires_at` out.
    OmitExpiration,
    /// Leave `permissions` out.
    OmitPermissions,
    /// Answer every API call the way GitHub answers an exhausted rate limit:
    /// 403 with `x-ratelimit-remaining: 0`, `x-ratelimit-reset` this far in
    /// the future and, when set, `retry-after`.
    RateLimited {
        /// Time from the answer until `x-ratelimit-reset`.
        reset_in: Duration,
        /// The `retry-after` to send, if any.
        retry_after: Option<Duration>,
    },
}

/// One request the stand-in received, for assertions.
#[derive(Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// The path as received, without the query.
    pub path: String,
    /// The body parsed as JSON; `None` when empty or not JSON.
    pub body: Option<Value>,
    /// The `Authorization: Bearer` credential, if any (an App JWT or an
    /// installation token). Redacted in `Debug`.
    pub bearer: Option<String>,
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body", &self.body)
            .field("bearer", &self.bearer.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// One installation token the stand-in issued.
#[derive(Clone, PartialEq)]
pub struct IssuedToken {
    /// The token value (`ghs_` and 36 alphanumerics). Redacted in `Debug`.
    pub token: String,
    /// The installation it was issued for.
    pub installation_id: u64,
    /// The permissions as requested.
    pub permissions: BTreeMap<String, String>,
    /// The repositories it covers, as `owner/repo`.
    pub repositories: Vec<String>,
    /// Whether `DELETE /installation/token` revoked it.
    pub revoked: bool,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("installation_id", &self.installation_id)
            .field("permissions", &self.permissions)
            .field("repositories", &self.repositories)
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// A running stand-in. Cloning shares it; when the last handle is dropped
/// the background server stops.
#[derive(Clone)]
pub struct GithubStandIn {
    /// Configuration and recorded state, shared with the handlers.
    shared: Arc<Shared>,
    /// Where the server listens.
    url: Url,
    /// Aborts the server task when the last handle goes.
    _task: Arc<AbortOnDrop>,
}

impl fmt::Debug for GithubStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubStandIn")
            .field("url", &self.url.as_str())
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One repository the App is installed on.
#[derive(Debug, Clone)]
struct Installed {
    owner: String,
    name: String,
    installation_id: u64,
    repository_id: u64,
}

impl Installed {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// Everything the handlers share.
struct Shared {
    /// Expected `iss` of App JWTs.
    app_id: String,
    /// Decoded RSA public key (modulus and exponent bytes) for RS256 checks.
    public_key: RsaPublicKeyComponents<Vec<u8>>,
    /// Where the App is installed.
    installed: Vec<Installed>,
    /// What happened so far, and the current fault.
    state: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<RecordedRequest>,
    tokens: Vec<IssuedToken>,
    fault: Fault,
}

impl Shared {
    fn new(config: StandInConfig) -> io::Result<Self> {
        let decode = |what: &str, b64: &str| {
            URL_SAFE_NO_PAD.decode(b64).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("GitHub stand-in: the App public key's `{what}` is not base64url"),
                )
            })
        };
        let public_key = RsaPublicKeyComponents {
            n: decode("n", &config.app_public_key.n)?,
            e: decode("e", &config.app_public_key.e)?,
        };
        let mut installed = Vec::with_capacity(config.installations.len());
        for (full_name, installation_id, repository_id) in config.installations {
            let Some((owner, name)) = full_name.split_once('/') else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "GitHub stand-in: installation repository `{full_name}` is not owner/repo"
                    ),
                ));
            };
            installed.push(Installed {
                owner: owner.to_owned(),
                name: name.to_owned(),
                installation_id,
                repository_id,
            });
        }
        Ok(Self {
            app_id: config.app_id,
            public_key,
            installed,
            state: Mutex::new(Recorded::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A poisoned lock still holds consistent records (every update is a
        // single push or assignment); keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GithubStandIn {
    /// Serves the stand-in on `listener` in a background task.
    pub async fn spawn(
        listener: tokio::net::TcpListener,
        config: StandInConfig,
    ) -> io::Result<GithubStandIn> {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            // Bound to every interface: point clients at loopback.
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let url = Url::parse(&format!("http://{addr}/"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared::new(config)?);
        let router = build_router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "GitHub API stand-in stopped");
            }
        });
        Ok(Self {
            shared,
            url,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT/`. The API is also served
    /// under `/api/v3/`, as on GitHub Enterprise Server.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// The stand-in's routes, sharing this handle's state, for embedding in
    /// another server.
    pub fn router(&self) -> Router {
        build_router(self.shared.clone())
    }

    /// Every request received so far (except `GET /`), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every installation token issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.shared.lock().tokens.clone()
    }

    /// Makes later calls misbehave; `Fault::None` restores normal behaviour.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().fault = fault;
    }

    /// How many requests were received (except `GET /`).
    pub fn call_count(&self) -> usize {
        self.shared.lock().requests.len()
    }
}

fn build_router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/repos/{owner}/{repo}/installation", get(installation))
        .route("/app/installations/{id}/access_tokens", post(access_tokens))
        .route("/installation/token", delete(revoke))
        .route("/installation/repositories", get(token_repositories))
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .route("/", get(banner))
        .nest("/api/v3", api.clone())
        .merge(api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .layer(middleware::map_response(label))
        .with_state(shared)
}

/// The stand-in reads the real clock: it is dev tooling that judges real App
/// JWTs and hands out tokens with real expiry times.
fn wall_clock_now() -> OffsetDateTime {
    SystemClock.now()
}

/// A GitHub-shaped error body.
fn gh_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "note": "tokenmint GitHub API stand-in, not GitHub",
        })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

async fn label(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(DEV_HEADER),
        HeaderValue::from_static(DEV_HEADER_VALUE),
    );
    response
}

async fn banner() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        BANNER,
    )
        .into_response()
}

async fn not_found() -> Response {
    gh_error(StatusCode::NOT_FOUND, "Not Found")
}

/// Records every request (except the banner) with its body, and gives its
/// answer GitHub's rate-limit headers.
async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return gh_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    if !(parts.method == Method::GET && parts.uri.path() == "/") {
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body: serde_json::from_slice(&bytes).ok(),
            bearer: bearer(&parts.headers).map(str::to_owned),
        };
        let calls = {
            let mut state = shared.lock();
            state.requests.push(recorded);
            state.requests.len()
        };
        let mut response = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        add_rate_limit_headers(&mut response, calls);
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// What a fault does to a call before the handler sees it.
enum Interference {
    Answer(Response),
    Delay(Duration),
}

/// Checks the headers GitHub requires, then applies whole-call faults.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    // GitHub itself defaults `Accept` and the API version; only App calls
    // (tokenmint's own client) are held to sending them.
    let app_call = !matches!(
        request.uri().path().trim_start_matches("/api/v3"),
        "/installation/token" | "/installation/repositories"
    );
    if let Some(problem) = missing_header(request.headers(), app_call) {
        return gh_error(StatusCode::BAD_REQUEST, problem);
    }
    let interference = {
        let mut state = shared.lock();
        match &mut state.fault {
            Fault::Status { status, times } if *times > 0 => {
                *times -= 1;
                let status = *status;
                if *times == 0 {
                    state.fault = Fault::None;
                }
                Some(Interference::Answer(fault_status(status)))
            }
            Fault::MalformedJson => Some(Interference::Answer(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"id": 1, "token": "ghs_"#,
                )
                    .into_response(),
            )),
            Fault::Delay(delay) => Some(Interference::Delay(*delay)),
            Fault::RateLimited {
                reset_in,
                retry_after,
            } => Some(Interference::Answer(rate_limited(*reset_in, *retry_after))),
            Fault::Redirect(location) => Some(Interference::Answer(
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location.clone())],
                )
                    .into_response(),
            )),
            Fault::OversizedBody => {
                let mut body = Vec::with_capacity(OVERSIZED_BYTES);
                body.extend_from_slice(b"{\"padding\":\"");
                body.resize(OVERSIZED_BYTES - 2, b'a');
                body.extend_from_slice(b"\"}");
                Some(Interference::Answer(
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                        .into_response(),
                ))
            }
            Fault::OversizedChunkedBody => Some(Interference::Answer(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    Body::new(Whitespace {
                        remaining: OVERSIZED_BYTES,
                    }),
                )
                    .into_response(),
            )),
            _ => None,
        }
    };
    match interference {
        Some(Interference::Answer(response)) => response,
        Some(Interference::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        None => next.run(request).await,
    }
}

/// GitHub's answer to a call over its rate limit.
fn rate_limited(reset_in: Duration, retry_after: Option<Duration>) -> Response {
    let reset = wall_clock_now().unix_timestamp()
        + i64::try_from(reset_in.as_secs()).unwrap_or(i64::MAX / 2);
    let mut response = gh_error(
        StatusCode::FORBIDDEN,
        "API rate limit exceeded for installation (injected fault)",
    );
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
    headers.insert("x-ratelimit-used", HeaderValue::from(RATE_LIMIT));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    if let Some(wait) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
    }
    response
}

/// Adds GitHub's rate-limit headers to an answer that has none: the
/// remaining count goes down by one per call (from 4999 after the first),
/// wrapping before it would reach 0, and the window resets in an hour.
fn add_rate_limit_headers(response: &mut Response, calls: usize) {
    let headers = response.headers_mut();
    if headers.contains_key("x-ratelimit-remaining") {
        return;
    }
    let used = calls as u64 % RATE_LIMIT;
    let reset = wall_clock_now().unix_timestamp() + 3600;
    headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(RATE_LIMIT - used),
    );
    headers.insert("x-ratelimit-used", HeaderValue::from(used));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
}

fn fault_status(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    gh_error(status, "injected fault")
}

/// A body of JSON whitespace streamed in 64 KiB chunks with no declared length.
struct Whitespace {
    remaining: usize,
}

impl HttpBody for Whitespace {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b' ';
            n
        ])))))
    }
}

fn missing_header(headers: &HeaderMap, app_call: bool) -> Option<&'static str> {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if app_call && value(header::ACCEPT) != Some(REQUIRED_ACCEPT) {
        return Some("the stand-in requires `Accept: application/vnd.github+json`");
    }
    if app_call
        && value(HeaderName::from_static("x-github-api-version")) != Some(REQUIRED_API_VERSION)
    {
        return Some("the stand-in requires `X-GitHub-Api-Version: 2022-11-28`");
    }
    if value(header::USER_AGENT).is_none_or(|ua| ua.trim().is_empty()) {
        return Some("the stand-in requires a `User-Agent` header, as GitHub does");
    }
    None
}

/// Verifies an App JWT as GitHub does: RS256 over the configured key, `iss`
/// equal to the App id, unexpired, and at most ten minutes long.
fn verify_app_jwt(shared: &Shared, headers: &HeaderMap) -> Result<(), &'static str> {
    let jwt = bearer(headers).ok_or("an App JWT is required: `Authorization: Bearer <jwt>`")?;
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("A JSON web token could not be decoded");
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("A JSON web token could not be decoded")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("the App JWT must be signed with RS256");
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| "A JSON web token could not be decoded")?;
    // Three parts: the signing input is all before the last dot.
    let (signing_input, _) = jwt
        .rsplit_once('.')
        .ok_or("A JSON web token could not be decoded")?;
    shared
        .public_key
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| "the App JWT signature does not verify with the App's public key")?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("A JSON web token could not be decoded")?;
    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("the App JWT has no `iss`"),
    };
    if iss != shared.app_id {
        return Err("the App JWT's `iss` is not this App");
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err("the App JWT needs integer `iat` and `exp` claims");
    };
    let now = wall_clock_now().unix_timestamp();
    if exp <= now {
        return Err("'Expiration time' claim ('exp') is too far in the past");
    }
    if exp - iat > MAX_APP_JWT_LIFETIME_SECS {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if iat > now + IAT_LEEWAY_SECS {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past");
    }
    Ok(())
}

/// `GET /repos/{owner}/{repo}/installation`
async fn installation(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(problem) = verify_app_jwt(&shared, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, problem);
    }
    let found = shared
        .installed
        .iter()
        .find(|i| i.owner.eq_ignore_ascii_case(&owner) && i.name.eq_ignore_ascii_case(&repo));
    match found {
        Some(i) => Json(json!({
            "id": i.installation_id,
            "account": { "login": i.owner, "type": "Organization" },
            "app_id": shared.app_id,
            "repository_selection": "selected",
        }))
        .into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `POST /app/installations/{id}/access_tokens`
async fn access_tokens(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(problem) = verify_app_jwt(&shared, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, problem);
    }
    let fault = {
        let mut state = shared.lock();
        if let Fault::TokenStatus { status, times } = &mut state.fault {
            if *times > 0 {
                *times -= 1;
                let status = *status;
                if *times == 0 {
                    state.fault = Fault::None;
                }
                return fault_status(status);
            }
        }
        state.fault.clone()
    };
    let Ok(installation_id) = id.parse::<u64>() else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let candidates: Vec<&Installed> = shared
        .installed
        .iter()
        .filter(|i| i.installation_id == installation_id)
        .collect();
    if candidates.is_empty() {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let (permissions, repositories) = match parse_token_request(&request, &candidates) {
        Ok(parsed) => parsed,
        Err(problem) => return gh_error(StatusCode::UNPROCESSABLE_ENTITY, &problem),
    };

    let token = if fault == Fault::EmptyToken {
        String::new()
    } else {
        random_token()
    };
    let now = wall_clock_now();
    let expires_at = if fault == Fault::ExpiredToken {
        now.unix_timestamp() - TOKEN_LIFETIME_SECS
    } else {
        now.unix_timestamp() + TOKEN_LIFETIME_SECS
    };
    let Some(expires_at) = OffsetDateTime::from_unix_timestamp(expires_at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
    else {
        return gh_error(StatusCode::INTERNAL_SERVER_ERROR, "clock out of range");
    };

    shared.lock().tokens.push(IssuedToken {
        token: token.clone(),
        installation_id,
        permissions: permissions.clone(),
        repositories: repositories.iter().map(|r| r.full_name()).collect(),
        revoked: false,
    });

    let mut granted = permissions;
    granted
        .entry("metadata".to_owned())
        .or_insert_with(|| "read".to_owned());
    let mut listed: Vec<Value> = repositories.iter().map(|r| repository_json(r)).collect();
    match fault {
        Fault::GrantExtraPermission | Fault::GrantExtraPermissionUnrevocable => {
            granted.insert("administration".to_owned(), "write".to_owned());
        }
        Fault::WrongRepository => {
            listed = repositories
                .iter()
                .map(|r| {
                    repository_json(&Installed {
                        name: format!("not-{}", r.name),
                        repository_id: r.repository_id + 1,
                        ..(*r).clone()
                    })
                })
                .collect();
        }
        Fault::WrongRepositoryId => {
            listed = repositories
                .iter()
                .map(|r| {
                    repository_json(&Installed {
                        repository_id: r.repository_id + 1,
                        ..(*r).clone()
                    })
                })
                .collect();
        }
        Fault::ExtraRepository => {
            if let Some(first) = repositories.first() {
                listed.push(repository_json(&Installed {
                    name: format!("{}-extra", first.name),
                    repository_id: first.repository_id + 1_000_000,
                    ..(*first).clone()
                }));
            }
        }
        _ => {}
    }
    let mut response = Map::new();
    response.insert("token".into(), Value::String(token));
    if fault != Fault::OmitExpiration {
        response.insert("expires_at".into(), Value::String(expires_at));
    }
    if fault != Fault::OmitPermissions {
        response.insert("permissions".into(), json!(granted));
    }
    if fault == Fault::AllRepositories {
        response.insert("repository_selection".into(), json!("all"));
    } else {
        response.insert("repository_selection".into(), json!("selected"));
        response.insert("repositories".into(), Value::Array(listed));
    }
    (StatusCode::CREATED, Json(Value::Object(response))).into_response()
}

/// Validates a token request body: `permissions` plus exactly one of
/// `repositories`/`repository_ids`, each naming repositories of this installation.
fn parse_token_request<'a>(
    request: &Map<String, Value>,
    candidates: &[&'a Installed],
) -> Result<(BTreeMap<String, String>, Vec<&'a Installed>), String> {
    let Some(Value::Object(raw_permissions)) = request.get("permissions") else {
        return Err("the stand-in requires `permissions` (omitting it grants everything the installation has)".into());
    };
    let mut permissions = BTreeMap::new();
    for (name, level) in raw_permissions {
        match level.as_str() {
            Some(level @ ("read" | "write" | "admin")) => {
                permissions.insert(name.clone(), level.to_owned());
            }
            _ => return Err(format!("permission `{name}` has an invalid level")),
        }
    }
    if permissions.is_empty() {
        return Err("`permissions` is empty (that grants everything the installation has)".into());
    }
    let find = |pred: &dyn Fn(&Installed) -> bool| candidates.iter().copied().find(|i| pred(i));
    let repositories: Vec<&Installed> =
        match (request.get("repositories"), request.get("repository_ids")) {
            (Some(Value::Array(names)), None) if !names.is_empty() => names
                .iter()
                .map(|n| {
                    n.as_str()
                        .and_then(|n| find(&|i| i.name.eq_ignore_ascii_case(n)))
                        .ok_or_else(|| {
                            "There is at least one repository that does not exist or is not accessible to the parent installation.".to_owned()
                        })
                })
                .collect::<Result<_, _>>()?,
            (None, Some(Value::Array(ids))) if !ids.is_empty() => ids
                .iter()
                .map(|id| {
                    id.as_u64()
                        .and_then(|id| find(&|i| i.repository_id == id))
                        .ok_or_else(|| {
                            "There is at least one repository that does not exist or is not accessible to the parent installation.".to_owned()
                        })
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("the stand-in requires exactly one non-empty list: `repositories` or `repository_ids` (omitting both grants every repository)".into()),
        };
    Ok((permissions, repositories))
}

fn repository_json(r: &Installed) -> Value {
    json!({
        "id": r.repository_id,
        "name": r.name,
        "full_name": r.full_name(),
        "private": true,
    })
}

/// `ghs_` and 36 random alphanumerics: the classic installation-token shape.
fn random_token() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("ghs_{suffix}")
}

/// `GET /installation/repositories`, authenticated with an installation
/// token: the repositories it covers. A revoked or unknown token gets 401, as
/// on GitHub, so tests can tell whether a token still works.
async fn token_repositories(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let state = shared.lock();
    let Some(issued) = state
        .tokens
        .iter()
        .find(|t| !t.revoked && !t.token.is_empty() && t.token == token)
    else {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    let repositories: Vec<Value> = shared
        .installed
        .iter()
        .filter(|i| issued.repositories.contains(&i.full_name()))
        .map(repository_json)
        .collect();
    Json(json!({
        "total_count": repositories.len(),
        "repository_selection": "selected",
        "repositories": repositories,
    }))
    .into_response()
}

/// `DELETE /installation/token`, authenticated with the token itself.
async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let mut state = shared.lock();
    if state.fault == Fault::GrantExtraPermissionUnrevocable {
        return fault_status(500);
    }
    match state
        .tokens
        .iter_mut()
        .find(|t| !t.revoked && !t.token.is_empty() && t.token == token)
    {
        Some(issued) => {
            issued.revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaSigningKey;

    fn config(key: &RsaSigningKey) -> StandInConfig {
        StandInConfig {
            app_id: "12345".into(),
            app_public_key: key.public_jwk(),
            installations: vec![
                ("acme/widgets".into(), 42, 1001),
                ("acme/gadgets".into(), 42, 1002),
                ("other/thing".into(), 7, 2001),
            ],
        }
    }

    async fn spawn(key: &RsaSigningKey) -> GithubStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        GithubStandIn::spawn(listener, config(key)).await.unwrap()
    }

    fn app_jwt(key: &RsaSigningKey, iss: &str, iat_offset: i64, exp_offset: i64) -> String {
        let now = wall_clock_now().unix_timestamp();
        key.sign_jwt(
            &json!({"iss": iss, "iat": now + iat_offset, "exp": now + exp_offset}),
            false,
        )
        .unwrap()
    }

    fn api(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: Url,
        bearer: &str,
    ) -> reqwest::RequestBuilder {
        http.request(method, url)
            .header("accept", REQUIRED_ACCEPT)
            .header("x-github-api-version", REQUIRED_API_VERSION)
            .header("user-agent", "standin-test")
            .bearer_auth(bearer)
    }

    #[tokio::test]
    async fn github_standin_labels_itself() {
        let key = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let resp = http.get(standin.url()).send().await.unwrap();
        assert_eq!(resp.headers()[DEV_HEADER], DEV_HEADER_VALUE);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = resp.text().await.unwrap();
        assert!(text.contains("NOT GitHub"));
        assert!(text.contains("development and tests only"));
        // Unknown paths and refusals carry the label too.
        let resp = http
            .get(standin.url().join("nope").unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[DEV_HEADER], DEV_HEADER_VALUE);
        assert_eq!(standin.call_count(), 1);
    }

    #[tokio::test]
    async fn github_standin_requires_github_headers() {
        let key = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let url = standin
            .url()
            .join("repos/acme/widgets/installation")
            .unwrap();
        let jwt = app_jwt(&key, "12345", -60, 540);
        for skip in ["accept", "x-github-api-version", "user-agent"] {
            let mut req = http.get(url.clone()).bearer_auth(&jwt);
            for (name, value) in [
                ("accept", REQUIRED_ACCEPT),
                ("x-github-api-version", REQUIRED_API_VERSION),
                ("user-agent", "t"),
            ] {
                if name != skip {
                    req = req.header(name, value);
                }
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 400, "missing {skip}");
            assert_eq!(resp.headers()[DEV_HEADER], DEV_HEADER_VALUE);
        }
        let resp = api(&http, reqwest::Method::GET, url, &jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["id"], 42);
    }

    #[tokio::test]
    async fn github_standin_verifies_app_jwt() {
        let key = RsaSigningKey::generate().unwrap();
        let other = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let url = standin
            .url()
            .join("repos/acme/widgets/installation")
            .unwrap();
        let cases = [
            ("wrong key", app_jwt(&other, "12345", -60, 540)),
            ("wrong iss", app_jwt(&key, "999", -60, 540)),
            ("expired", app_jwt(&key, "12345", -700, -10)),
            ("too long", app_jwt(&key, "12345", -60, 600)),
            ("iat in future", app_jwt(&key, "12345", 300, 500)),
            ("garbage", "a.b.c".to_owned()),
        ];
        for (what, jwt) in cases {
            let resp = api(&http, reqwest::Method::GET, url.clone(), &jwt)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{what}");
        }
        // A tampered payload fails even with a valid signature from the key.
        let good = app_jwt(&key, "12345", -60, 540);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iss":"12345","iat":0,"exp":99999999999}"#);
        parts[1] = &forged;
        let resp = api(&http, reqwest::Method::GET, url.clone(), &parts.join("."))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let resp = api(&http, reqwest::Method::GET, url, &good)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let missing = standin
            .url()
            .join("repos/acme/unknown/installation")
            .unwrap();
        let resp = api(&http, reqwest::Method::GET, missing, &good)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    #[tokio::test]
    async fn github_standin_sends_decreasing_rate_limit_headers() {
        let key = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let jwt = app_jwt(&key, "12345", -60, 540);
        let url = standin
            .url()
            .join("repos/acme/widgets/installation")
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let resp = api(&http, reqwest::Method::GET, url.clone(), &jwt)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
            assert_eq!(header("x-ratelimit-limit"), RATE_LIMIT.to_string());
            assert_eq!(header("x-ratelimit-resource"), "core");
            seen.push(header("x-ratelimit-remaining").parse::<u64>().unwrap());
        }
        assert_eq!(seen, [RATE_LIMIT - 1, RATE_LIMIT - 2, RATE_LIMIT - 3]);
        // The banner is not an API call and carries no budget.
        let resp = http.get(standin.url()).send().await.unwrap();
        assert!(resp.headers().get("x-ratelimit-remaining").is_none());
    }

    #[tokio::test]
    async fn github_standin_validates_token_requests_and_revokes() {
        let key = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let jwt = app_jwt(&key, "12345", -60, 540);
        let url = standin
            .url()
            .join("app/installations/42/access_tokens")
            .unwrap();
        let post = |body: Value| {
            api(&http, reqwest::Method::POST, url.clone(), &jwt)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let refused = [
            json!({"repositories": ["widgets"]}),
            json!({"repositories": ["widgets"], "permissions": {}}),
            json!({"permissions": {"contents": "read"}}),
            json!({"repositories": ["widgets"], "repository_ids": [1001], "permissions": {"contents": "read"}}),
            json!({"repositories": [], "permissions": {"contents": "read"}}),
            json!({"repositories": ["thing"], "permissions": {"contents": "read"}}),
            json!({"repository_ids": [2001], "permissions": {"contents": "read"}}),
            json!({"repositories": ["widgets"], "permissions": {"contents": "all"}}),
        ];
        for body in refused {
            let resp = post(body.clone()).await.unwrap();
            assert_eq!(resp.status(), 422, "{body}");
        }
        let resp = post(json!({"repositories": ["Widgets"], "permissions": {"contents": "read"}}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("ghs_"));
        assert_eq!(token.len(), 40);
        assert!(token[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            body["permissions"],
            json!({"contents": "read", "metadata": "read"})
        );
        assert_eq!(body["repositories"][0]["full_name"], "acme/widgets");
        assert_eq!(body["repositories"][0]["id"], 1001);

        // The token works: it lists its repository. Calls made with an
        // installation token need no Accept or API-version header, as on
        // GitHub (octo-sts/action's post step sends only Authorization).
        let repos_url = standin.url().join("installation/repositories").unwrap();
        let bare = |method: reqwest::Method, url: Url, bearer: &str| {
            http.request(method, url)
                .bearer_auth(bearer)
                .header("user-agent", "node")
        };
        let resp = bare(reqwest::Method::GET, repos_url.clone(), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["repositories"][0]["full_name"], "acme/widgets");
        assert_eq!(body["total_count"], 1);
        let revoke_url = standin.url().join("installation/token").unwrap();
        // User-Agent is still required.
        let resp = http
            .delete(revoke_url.clone())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let resp = bare(reqwest::Method::DELETE, revoke_url.clone(), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        // Revoked, it no longer works.
        let resp = bare(reqwest::Method::GET, repos_url, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let issued = standin.issued_tokens();
        assert_eq!(issued.len(), 1);
        assert!(issued[0].revoked);
        assert_eq!(issued[0].repositories, vec!["acme/widgets".to_owned()]);
        assert!(!format!("{issued:?}").contains(&token));
        // Revoking again, or an unknown token, is refused.
        for bearer in [token.as_str(), "ghs_unknown"] {
            let resp = api(&http, reqwest::Method::DELETE, revoke_url.clone(), bearer)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401);
        }
        // A wrong installation id is a 404.
        let resp = api(
            &http,
            reqwest::Method::POST,
            standin
                .url()
                .join("app/installations/9/access_tokens")
                .unwrap(),
            &jwt,
        )
        .header("content-type", "application/json")
        .body(json!({"repositories": ["widgets"], "permissions": {"contents": "read"}}).to_string())
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 404);
    }

    #[tokio::test]
    async fn github_standin_status_fault_clears_itself() {
        let key = RsaSigningKey::generate().unwrap();
        let standin = spawn(&key).await;
        let http = reqwest::Client::new();
        let jwt = app_jwt(&key, "12345", -60, 540);
        let url = standin
            .url()
            .join("repos/acme/widgets/installation")
            .unwrap();
        standin.set_fault(Fault::Status {
            status: 503,
            times: 2,
        });
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let resp = api(&http, reqwest::Method::GET, url.clone(), &jwt)
                .send()
                .await
                .unwrap();
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, vec![503, 503, 200]);
        assert_eq!(standin.call_count(), 3);
        // The API is also served under the GHES prefix.
        let ghes = standin
            .url()
            .join("api/v3/repos/acme/widgets/installation")
            .unwrap();
        let resp = api(&http, reqwest::Method::GET, ghes, &jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            standin.requests()[3].path,
            "/api/v3/repos/acme/widgets/installation"
        );
    }
}
