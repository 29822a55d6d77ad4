//! The local development OIDC issuer: a stand-in for GitHub Actions' token service, behind `tokenmint dev` and the tests. It is never GitHub.
//!
//! It speaks the same protocol a job sees on a GitHub-hosted runner:
//!
//! - `GET /_apis/pipelines/token?api-version=2.0&audience=<aud>` with
//!   `Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>` answers
//!   `{"value": "<jwt>", "count": 1}`, so `@actions/core`'s `getIDToken`
//!   works unchanged against [`DevIssuer::request_url`].
//! - `GET /.well-known/openid-configuration` and `GET /.well-known/jwks`
//!   serve discovery and the signing keys, as a verifier expects.
//! - `GET /` is a plain-text banner saying what this server is.
//!
//! Every response carries `x-tokenmint-dev: oidc-issuer-stand-in`, so nothing
//! can mistake it for the real service. Claims are GitHub-shaped (every custom
//! claim value is a string) and come only from [`IssuerConfig`] and
//! [`DevIssuer::mint`]; query parameters cannot change them.
//!
//! Tests drive failure modes through the handle: key rotation, a JWKS that is
//! down, slow, garbage or empty, its `Cache-Control`, and fetch counters.

use crate::clock::{Clock as _, SystemClock};
use crate::keys::{KeyError, RsaSigningKey};
use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// How long minted tokens live unless configured otherwise: GitHub's 5 minutes.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The `Cache-Control` value the JWKS carries until [`DevIssuer::set_cache_control`] changes it.
pub const DEFAULT_JWKS_CACHE_CONTROL: &str = "max-age=300";

/// The header every response carries, so the stand-in is never mistaken for GitHub.
pub const DEV_HEADER_NAME: &str = "x-tokenmint-dev";

/// The value of [`DEV_HEADER_NAME`].
pub const DEV_HEADER_VALUE: &str = "oidc-issuer-stand-in";

/// Path of the token endpoint, as on GitHub's runners.
const TOKEN_PATH: &str = "/_apis/pipelines/token";
/// Discovery document path, relative to the issuer.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// JWKS path, relative to the issuer (the same as github.com's).
const JWKS_PATH: &str = "/.well-known/jwks";

/// What `GET /` answers.
const BANNER: &str = "\
tokenmint LOCAL development OIDC issuer.

This is NOT GitHub and NOT GitHub Actions' token service. It is a stand-in
run by `tokenmint dev` and tokenmint's tests. Tokens it issues are signed
with a throwaway key and are for local development and tests only.
";

/// The claims GitHub documents for Actions tokens, as listed in discovery.
const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "actor",
    "actor_id",
    "base_ref",
    "head_ref",
    "check_run_id",
    "enterprise",
    "enterprise_id",
    "environment",
    "event_name",
    "job_workflow_ref",
    "job_workflow_sha",
    "ref",
    "ref_type",
    "ref_protected",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "run_id",
    "run_number",
    "run_attempt",
    "runner_environment",
    "sha",
    "workflow",
    "workflow_ref",
    "workflow_sha",
];

/// The built-in GitHub-shaped claims of a push to `main` of `acme/app`
/// (`iss`, `sub` and the per-token claims are added separately). Every value
/// is a string, as GitHub sends them.
const BUILTIN_CLAIMS: &[(&str, &str)] = &[
    ("actor", "octocat"),
    ("actor_id", "583231"),
    ("base_ref", ""),
    ("head_ref", ""),
    ("event_name", "push"),
    (
        "job_workflow_ref",
        "acme/app/.github/workflows/deploy.yml@refs/heads/main",
    ),
    ("job_workflow_sha", DEFAULT_SHA),
    ("ref", "refs/heads/main"),
    ("ref_type", "branch"),
    ("ref_protected", "false"),
    ("repository", "acme/app"),
    ("repository_id", "123456789"),
    ("repository_owner", "acme"),
    ("repository_owner_id", "987654321"),
    ("repository_visibility", "private"),
    ("run_id", "1000000001"),
    ("run_number", "1"),
    ("run_attempt", "1"),
    ("runner_environment", "github-hosted"),
    ("sha", DEFAULT_SHA),
    ("workflow", "deploy"),
    (
        "workflow_ref",
        "acme/app/.github/workflows/deploy.yml@refs/heads/main",
    ),
    ("workflow_sha", DEFAULT_SHA),
];

/// The commit every default token claims to come from.
const DEFAULT_SHA: &str = "5d2c0a1c8e4b7f3a9e6d1b0c2f4a8e7d3c9b1a05";

/// How to run a [`DevIssuer`].
#[derive(Clone)]
pub struct IssuerConfig {
    /// The `ACTIONS_ID_TOKEN_REQUEST_TOKEN` the token endpoint accepts as its bearer; must not be empty.
    pub request_token: String,
    /// Claims merged over the built-in GitHub-shaped defaults for every token;
    /// a key set to `null` removes that claim. Pinning `sub` stops it being
    /// derived; pinning `iat`, `nbf`, `exp` or `jti` stops them being fresh per token.
    pub default_claims: Map<String, Value>,
    /// `exp - iat` of minted tokens (whole seconds); [`DEFAULT_TOKEN_LIFETIME`] unless changed.
    pub token_lifetime: Duration,
}

impl IssuerConfig {
    /// A config accepting `request_token`, with the built-in claims and a 300 s lifetime.
    pub fn new(request_token: impl Into<String>) -> Self {
        Self {
            request_token: request_token.into(),
            default_claims: Map::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("request_token", &"[REDACTED]")
            .field("default_claims", &self.default_claims)
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

/// How the JWKS endpoint behaves, so tests can exercise a verifier's failure paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JwksMode {
    /// Serve the published keys.
    #[default]
    Normal,
    /// Answer 500, as an outage would.
    Down,
    /// Wait this long, then serve the published keys.
    Slow(Duration),
    /// Answer 200 with a body that is not a JWKS (an HTML page).
    Garbage,
    /// Answer 200 with `{"keys":[]}`.
    Empty,
}

/// Why the dev issuer could not start or mint.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// [`IssuerConfig::request_token`] was empty, which would let any empty bearer in.
    #[error("start dev OIDC issuer: the request token must not be empty")]
    EmptyRequestToken,
    /// [`IssuerConfig::token_lifetime`] does not fit a JWT timestamp.
    #[error("start dev OIDC issuer: token lifetime {0:?} is too large")]
    Lifetime(Duration),
    /// The listener's local address could not be read.
    #[error("start dev OIDC issuer: read the listener's address")]
    ListenerAddr(#[source] std::io::Error),
    /// A fresh signing key could not be generated.
    #[error("generate dev OIDC issuer signing key")]
    GenerateKey(#[source] KeyError),
    /// Per-token overrides were neither a JSON object nor `null`.
    #[error("mint dev OIDC token: overrides must be a JSON object")]
    OverridesNotObject,
    /// The token's timestamps overflowed (the clock or lifetime is absurd).
    #[error("mint dev OIDC token: timestamp out of range")]
    TimeRange,
    /// The token could not be signed.
    #[error("sign dev OIDC token")]
    Sign(#[source] KeyError),
}

/// A handle on a running dev issuer. Clones share the server; it stops when
/// the last handle is dropped. `Debug` shows key ids only, never key material
/// or the request token.
#[derive(Clone)]
pub struct DevIssuer {
    /// What the HTTP handlers and the handle both read and change.
    shared: Arc<Shared>,
    /// Aborts the server task when the last handle goes.
    _server: Arc<ServerTask>,
}

/// State shared between the handle and the HTTP handlers.
struct Shared {
    /// `http://127.0.0.1:PORT`: the discovery `issuer` and the default `iss`.
    issuer_url: String,
    /// The bearer the token endpoint accepts.
    request_token: String,
    /// SHA-256 of `request_token`, compared instead of the token so the check does not leak it by timing.
    request_token_digest: Vec<u8>,
    /// `exp - iat` in seconds.
    lifetime_secs: i64,
    /// Built-in claims with config merged in, `iss` and the derived `sub`: where every token starts.
    template: Map<String, Value>,
    /// Claim names the config set (or removed); those are not regenerated per token.
    pinned: BTreeSet<String>,
    /// `https://github.com/<repository_owner>`, the audience when a request names none.
    default_audience: String,
    /// The signing key and any retired keys still published.
    keys: RwLock<KeySet>,
    /// How the JWKS endpoint behaves.
    jwks_mode: Mutex<JwksMode>,
    /// The JWKS `Cache-Control` header; `None` sends none.
    cache_control: Mutex<Option<String>>,
    /// Requests the JWKS endpoint has received, in any mode.
    jwks_fetches: AtomicUsize,
    /// Requests the discovery endpoint has received.
    discovery_fetches: AtomicUsize,
}

/// The current key signs; retired keys stay in the JWKS only if rotation kept them.
struct KeySet {
    /// Signs every new token.
    current: RsaSigningKey,
    /// Earlier keys still published, newest first.
    retired: Vec<RsaSigningKey>,
}

/// The background server; aborting it closes the listener.
#[derive(Debug)]
struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.shared.read_keys();
        let retired: Vec<&str> = keys.retired.iter().map(RsaSigningKey::kid).collect();
        f.debug_struct("DevIssuer")
            .field("issuer_url", &self.shared.issuer_url)
            .field("request_token", &"[REDACTED]")
            .field("current_kid", &keys.current.kid())
            .field("retired_kids", &retired)
            .field("jwks_mode", &self.shared.mode())
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Generates a signing key and serves the issuer on `listener` in a
    /// background task. A listener bound to an unspecified address
    /// (`0.0.0.0`) is advertised as loopback.
    pub async fn spawn(
        listener: tokio::net::TcpListener,
        config: IssuerConfig,
    ) -> Result<DevIssuer, IssuerError> {
        if config.request_token.is_empty() {
            return Err(IssuerError::EmptyRequestToken);
        }
        let lifetime_secs = i64::try_from(config.token_lifetime.as_secs())
            .map_err(|_| IssuerError::Lifetime(config.token_lifetime))?;
        let addr = listener.local_addr().map_err(IssuerError::ListenerAddr)?;
        let issuer_url = format!("http://{}", advertised(addr));
        let key = RsaSigningKey::generate().map_err(IssuerError::GenerateKey)?;

        let template = build_template(&issuer_url, &config.default_claims);
        let owner = template
            .get("repository_owner")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let default_audience = format!("https://github.com/{owner}");
        let request_token_digest = sha256(config.request_token.as_bytes());

        let shared = Arc::new(Shared {
            issuer_url,
            request_token: config.request_token,
            request_token_digest,
            lifetime_secs,
            template,
            pinned: config.default_claims.keys().cloned().collect(),
            default_audience,
            keys: RwLock::new(KeySet {
                current: key,
                retired: Vec::new(),
            }),
            jwks_mode: Mutex::new(JwksMode::Normal),
            cache_control: Mutex::new(Some(DEFAULT_JWKS_CACHE_CONTROL.to_owned())),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });

        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "dev OIDC issuer stopped serving");
            }
        });
        tracing::info!(
            issuer = %shared.issuer_url,
            "dev OIDC issuer (local stand-in for GitHub Actions, not GitHub) listening"
        );
        Ok(DevIssuer {
            shared,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// The issuer URL, `http://127.0.0.1:PORT` without a trailing slash:
    /// exactly the `iss` of minted tokens and the discovery `issuer`.
    pub fn issuer_url(&self) -> String {
        self.shared.issuer_url.clone()
    }

    /// The `ACTIONS_ID_TOKEN_REQUEST_URL` to hand a job. It already carries a
    /// query string, so clients append `&audience=...`.
    pub fn request_url(&self) -> String {
        format!("{}{TOKEN_PATH}?api-version=2.0", self.shared.issuer_url)
    }

    /// The `ACTIONS_ID_TOKEN_REQUEST_TOKEN` the token endpoint accepts.
    pub fn request_token(&self) -> &str {
        &self.shared.request_token
    }

    /// Mints a token for `audience`, signed by the current key with its `kid`.
    ///
    /// `overrides` is a JSON object (or `null` for none) merged last: a key set
    /// to `null` removes that claim, and any claim (`iss`, `exp`, `nbf`, ...)
    /// may be replaced. Unless `sub` is overridden here or pinned by the
    /// config, it is derived from the final `repository`, `environment`,
    /// `event_name` and `ref`, as GitHub does.
    pub fn mint(&self, audience: &str, overrides: Value) -> Result<String, IssuerError> {
        let overrides = match overrides {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(IssuerError::OverridesNotObject),
        };
        self.shared.mint(audience, &overrides)
    }

    /// The current signing key, for tests that hand-craft hostile tokens.
    pub fn current_key(&self) -> RsaSigningKey {
        self.shared.read_keys().current.clone()
    }

    /// Replaces the signing key with a fresh one and returns it. With
    /// `keep_old_in_jwks` the previous keys stay published; without it the
    /// JWKS holds only the new key, so tokens signed earlier stop verifying.
    pub fn rotate(&self, keep_old_in_jwks: bool) -> Result<RsaSigningKey, IssuerError> {
        let fresh = RsaSigningKey::generate().map_err(IssuerError::GenerateKey)?;
        let mut keys = self.shared.write_keys();
        let old = std::mem::replace(&mut keys.current, fresh.clone());
        if keep_old_in_jwks {
            keys.retired.insert(0, old);
        } else {
            keys.retired.clear();
        }
        tracing::info!(kid = %fresh.kid(), keep_old_in_jwks, "dev OIDC issuer rotated its key");
        Ok(fresh)
    }

    /// Sets how the JWKS endpoint behaves from the next request on.
    pub fn set_jwks_mode(&self, mode: JwksMode) {
        *lock(&self.shared.jwks_mode) = mode;
    }

    /// Sets the JWKS `Cache-Control` header (default [`DEFAULT_JWKS_CACHE_CONTROL`]);
    /// `None` sends none. It goes on every 200 answer (normal, slow, empty and
    /// garbage modes) but not on [`JwksMode::Down`]'s 500. A value that is not
    /// a valid header value is not sent.
    pub fn set_cache_control(&self, value: Option<String>) {
        *lock(&self.shared.cache_control) = value;
    }

    /// Requests the JWKS endpoint has received, whatever its mode.
    pub fn jwks_fetch_count(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Requests the discovery endpoint has received.
    pub fn discovery_fetch_count(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The claims [`DevIssuer::mint`] starts from, before the per-token
    /// claims (`aud`, `iat`, `nbf`, `exp`, `jti`) and overrides: the built-in
    /// defaults with the config merged in, plus `iss` and the derived `sub`.
    pub fn claims_template(&self) -> Map<String, Value> {
        self.shared.template.clone()
    }
}

impl Shared {
    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        // A poisoned lock still holds a usable key set.
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, KeySet> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    fn mode(&self) -> JwksMode {
        *lock(&self.jwks_mode)
    }

    /// Builds and signs one token; see [`DevIssuer::mint`].
    fn mint(&self, audience: &str, overrides: &Map<String, Value>) -> Result<String, IssuerError> {
        let claims = self.claims_for(audience, overrides, wall_clock_now())?;
        let key = self.read_keys().current.clone();
        let jwt = key.sign_jwt(&claims, true).map_err(IssuerError::Sign)?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::debug!(
            sub,
            aud = audience,
            kid = key.kid(),
            "dev OIDC issuer minted a token"
        );
        Ok(jwt)
    }

    /// The claim set of one token issued at `now`.
    fn claims_for(
        &self,
        audience: &str,
        overrides: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Map<String, Value>, IssuerError> {
        let iat = now.unix_timestamp();
        let exp = iat
            .checked_add(self.lifetime_secs)
            .ok_or(IssuerError::TimeRange)?;
        let mut claims = self.template.clone();
        let fresh = [
            ("iat", Value::from(iat)),
            ("nbf", Value::from(iat)),
            ("exp", Value::from(exp)),
            ("jti", Value::from(uuid::Uuid::new_v4().to_string())),
        ];
        for (name, value) in fresh {
            if !self.pinned.contains(name) {
                claims.insert(name.to_owned(), value);
            }
        }
        claims.insert("aud".to_owned(), Value::from(audience));
        merge(&mut claims, overrides);
        if !self.pinned.contains("sub") && !overrides.contains_key("sub") {
            let sub = default_sub(&claims);
            claims.insert("sub".to_owned(), Value::from(sub));
        }
        Ok(claims)
    }

    /// Whether `headers` carry `Authorization: Bearer <request token>` (scheme in any case).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && sha256(token.trim_start().as_bytes()) == self.request_token_digest
    }
}

/// The one place the issuer reads the wall clock: it is dev tooling that
/// mints tokens for real verifiers, so `iat` must be the real time. It goes
/// through [`SystemClock`], the crate's sanctioned clock reader.
fn wall_clock_now() -> OffsetDateTime {
    SystemClock.now()
}

/// Locks `m`, carrying on past poisoning: the values guarded here stay valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// The address to advertise: an unspecified bind address becomes loopback,
/// since no client can connect to `0.0.0.0`.
fn advertised(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Built-in claims, then `iss`, then the config's claims, then `sub` derived
/// from the result unless the config set it.
fn build_template(issuer_url: &str, config: &Map<String, Value>) -> Map<String, Value> {
    let mut claims: Map<String, Value> = BUILTIN_CLAIMS
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
        .collect();
    claims.insert("iss".to_owned(), Value::from(issuer_url));
    merge(&mut claims, config);
    if !config.contains_key("sub") {
        let sub = default_sub(&claims);
        claims.insert("sub".to_owned(), Value::from(sub));
    }
    claims
}

/// Merges `overrides` into `claims`; a `null` value removes the claim.
fn merge(claims: &mut Map<String, Value>, overrides: &Map<String, Value>) {
    for (name, value) in overrides {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
}

/// GitHub's default `sub`, by the first rule that applies: an environment,
/// then a `pull_request` event, then the ref. A `:` inside a value becomes `%3A`.
fn default_sub(claims: &Map<String, Value>) -> String {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    let encode = |value: &str| value.replace(':', "%3A");
    let repo = encode(text("repository"));
    let environment = text("environment");
    if !environment.is_empty() {
        format!("repo:{repo}:environment:{}", encode(environment))
    } else if text("event_name") == "pull_request" {
        format!("repo:{repo}:pull_request")
    } else {
        format!("repo:{repo}:ref:{}", encode(text("ref")))
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(banner))
        .route(DISCOVERY_PATH, get(discovery))
        .route(JWKS_PATH, get(jwks))
        .route(TOKEN_PATH, get(token))
        .fallback(not_found)
        .layer(axum::middleware::map_response(mark_as_stand_in))
        .with_state(shared)
}

/// Stamps every response, including 404s and 405s, as coming from the stand-in.
async fn mark_as_stand_in(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(DEV_HEADER_NAME),
        HeaderValue::from_static(DEV_HEADER_VALUE),
    );
    response
}

async fn banner() -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        BANNER,
    )
        .into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found")
}

/// A fixed JSON error body; the strings never include request data.
fn error_response(status: StatusCode, message: &'static str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = &shared.issuer_url;
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": CLAIMS_SUPPORTED,
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let mut response = match shared.mode() {
        JwksMode::Down => return error_response(StatusCode::INTERNAL_SERVER_ERROR, "JWKS down"),
        JwksMode::Garbage => (
            [(CONTENT_TYPE, HeaderValue::from_static("text/html"))],
            "<html><body>this is not a JWKS</body></html>",
        )
            .into_response(),
        JwksMode::Empty => Json(json!({ "keys": [] })).into_response(),
        JwksMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Json(published_keys(&shared)).into_response()
        }
        JwksMode::Normal => Json(published_keys(&shared)).into_response(),
    };
    let cache_control = lock(&shared.cache_control).clone();
    if let Some(value) = cache_control {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                response.headers_mut().insert(CACHE_CONTROL, value);
            }
            Err(_) => tracing::warn!(
                "dev OIDC issuer: Cache-Control value is not a valid header; sending none"
            ),
        }
    }
    response
}

/// `{"keys": [current, retired...]}`.
fn published_keys(shared: &Shared) -> Value {
    let keys = shared.read_keys();
    let jwks: Vec<_> = std::iter::once(&keys.current)
        .chain(keys.retired.iter())
        .map(RsaSigningKey::public_jwk)
        .collect();
    json!({ "keys": jwks })
}

/// The token endpoint: bearer first, then the audience, then mint.
async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // 1. Only the job's request token may ask for an ID token.
    if !shared.authorized(&headers) {
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer request token",
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    // 2. The audience comes from the (percent-decoded) query; nothing else there matters.
    let audience = match requested_audience(query.as_deref()) {
        Ok(Some(audience)) => audience,
        Ok(None) => shared.default_audience.clone(),
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    // 3. Claims come only from the config; the request cannot change them.
    match shared.mint(&audience, &Map::new()) {
        Ok(jwt) => Json(json!({ "value": jwt, "count": 1 })).into_response(),
        Err(error) => {
            tracing::error!(%error, "dev OIDC issuer could not mint a token");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "could not mint token")
        }
    }
}

/// The single `audience` query parameter, decoded; `None` when absent.
fn requested_audience(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let mut audiences = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "audience")
        .map(|(_, value)| value.into_owned());
    let first = audiences.next();
    if audiences.next().is_some() {
        return Err("give at most one audience parameter");
    }
    match first {
        Some(audience) if audience.is_empty() => Err("audience must not be empty"),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    use std::time::Instant;

    const REQUEST_TOKEN: &str = "test-request-token-7f3a";

    async fn start(config: IssuerConfig) -> DevIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        DevIssuer::spawn(listener, config).await.unwrap()
    }

    async fn start_default() -> DevIssuer {
        start(IssuerConfig::new(REQUEST_TOKEN)).await
    }

    fn config_with(claims: Value) -> IssuerConfig {
        let Value::Object(default_claims) = claims else {
            panic!("claims must be an object")
        };
        IssuerConfig {
            default_claims,
            ..IssuerConfig::new(REQUEST_TOKEN)
        }
    }

    fn part(jwt: &str, index: usize) -> Map<String, Value> {
        let segment = jwt.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    fn claims(jwt: &str) -> Map<String, Value> {
        part(jwt, 1)
    }

    fn header(jwt: &str) -> Map<String, Value> {
        part(jwt, 0)
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::get(url).await.unwrap()
    }

    async fn json_of(response: reqwest::Response) -> Value {
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    /// Requests a token as `@actions/core`'s `getIDToken` does.
    async fn request_token_with(
        issuer: &DevIssuer,
        audience_query: Option<&str>,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut url = issuer.request_url();
        if let Some(audience) = audience_query {
            url = format!("{url}&audience={audience}");
        }
        let mut request = reqwest::Client::new()
            .get(url)
            .header("Accept", "application/json");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.unwrap()
    }

    async fn fetch_jwt(issuer: &DevIssuer, audience_query: Option<&str>) -> String {
        let bearer = format!("Bearer {}", issuer.request_token());
        let response = request_token_with(issuer, audience_query, Some(&bearer)).await;
        assert_eq!(response.status(), 200);
        let body = json_of(response).await;
        assert_eq!(body["count"], 1);
        body["value"].as_str().unwrap().to_owned()
    }

    async fn jwks_of(issuer: &DevIssuer) -> Value {
        json_of(get(&format!("{}/.well-known/jwks", issuer.issuer_url())).await).await
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Verifies `jwt` with the JWKS key named by its `kid`, using ring directly.
    fn verifies_with(jwt: &str, jwks: &Value) -> bool {
        let kid = header(jwt)["kid"].as_str().unwrap().to_owned();
        let Some(jwk) = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
        else {
            return false;
        };
        let b64 = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        let public = RsaPublicKeyComponents {
            n: b64("n"),
            e: b64("e"),
        };
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        public
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
            .is_ok()
    }

    #[tokio::test]
    async fn discovery_issuer_is_issuer_url_and_jwks_uri_serves_the_key() {
        let issuer = start_default().await;
        let url = issuer.issuer_url();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(!url.ends_with('/'));

        let response = get(&format!("{url}/.well-known/openid-configuration")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[DEV_HEADER_NAME], DEV_HEADER_VALUE);
        let doc = json_of(response).await;
        assert_eq!(doc["issuer"], url.as_str());
        assert_eq!(doc["jwks_uri"], format!("{url}/.well-known/jwks"));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
        assert!(doc["response_types_supported"].is_array());
        assert!(doc["subject_types_supported"].is_array());
        assert!(doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("repository_owner_id")));

        let jwks = json_of(get(doc["jwks_uri"].as_str().unwrap()).await).await;
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], issuer.current_key().kid());
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "RS256");
        assert!(key["n"].as_str().unwrap().len() > 300);
        assert_eq!(key["e"], "AQAB");
    }

    #[tokio::test]
    async fn banner_and_stand_in_header_on_every_response() {
        let issuer = start_default().await;
        let response = get(&format!("{}/", issuer.issuer_url())).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[DEV_HEADER_NAME], DEV_HEADER_VALUE);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = response.text().await.unwrap();
        assert!(text.contains("LOCAL development OIDC issuer"));
        assert!(text.contains("NOT GitHub"));
        assert!(text.contains("development and tests only"));

        let missing = get(&format!("{}/nope", issuer.issuer_url())).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()[DEV_HEADER_NAME], DEV_HEADER_VALUE);
        let refused = request_token_with(&issuer, None, None).await;
        assert_eq!(refused.headers()[DEV_HEADER_NAME], DEV_HEADER_VALUE);
    }

    #[tokio::test]
    async fn token_endpoint_requires_the_request_token_as_bearer() {
        let issuer = start_default().await;
        let right = issuer.request_token().to_owned();
        let truncated = &right[..right.len() - 1];
        for authorization in [
            None,
            Some("Bearer wrong".to_owned()),
            Some(format!("Bearer {truncated}")),
            Some(format!("Basic {right}")),
            Some(right.clone()),
            Some("Bearer ".to_owned()),
        ] {
            let response = request_token_with(&issuer, None, authorization.as_deref()).await;
            assert_eq!(response.status(), 401, "{authorization:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body = json_of(response).await;
            assert!(body["message"].is_string());
            assert!(body.get("value").is_none());
        }
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let response =
                request_token_with(&issuer, None, Some(&format!("{scheme} {right}"))).await;
            assert_eq!(response.status(), 200, "{scheme}");
        }
    }

    #[tokio::test]
    async fn request_url_already_has_a_query_string() {
        let issuer = start_default().await;
        assert_eq!(
            issuer.request_url(),
            format!(
                "{}/_apis/pipelines/token?api-version=2.0",
                issuer.issuer_url()
            )
        );
    }

    #[tokio::test]
    async fn audience_comes_from_the_url_encoded_query_or_defaults_to_the_owner() {
        let issuer = start_default().await;
        // What `getIDToken` sends: `encodeURIComponent("https://example.com")`.
        let jwt = fetch_jwt(&issuer, Some("https%3A%2F%2Fexample.com")).await;
        let c = claims(&jwt);
        assert_eq!(c["aud"], "https://example.com");
        assert_eq!(c["iss"], issuer.issuer_url().as_str());

        let jwt = fetch_jwt(&issuer, Some("api%3A%2F%2FAzureADTokenExchange")).await;
        assert_eq!(claims(&jwt)["aud"], "api://AzureADTokenExchange");
        let jwt = fetch_jwt(&issuer, Some("sts.amazonaws.com")).await;
        assert_eq!(claims(&jwt)["aud"], "sts.amazonaws.com");

        let jwt = fetch_jwt(&issuer, None).await;
        assert_eq!(claims(&jwt)["aud"], "https://github.com/acme");

        let other = start(config_with(json!({"repository_owner": "octo-org"}))).await;
        let jwt = fetch_jwt(&other, None).await;
        assert_eq!(claims(&jwt)["aud"], "https://github.com/octo-org");
    }

    #[tokio::test]
    async fn query_parameters_cannot_change_claims() {
        let issuer = start_default().await;
        let jwt = fetch_jwt(
            &issuer,
            Some("x&sub=repo%3Aevil%2Fx%3Aref%3Arefs%2Fheads%2Fmain&repository=evil%2Fx&environment=prod"),
        )
        .await;
        let c = claims(&jwt);
        assert_eq!(c["aud"], "x");
        assert_eq!(c["sub"], "repo:acme/app:ref:refs/heads/main");
        assert_eq!(c["repository"], "acme/app");
        assert!(c.get("environment").is_none());

        let bearer = format!("Bearer {REQUEST_TOKEN}");
        for query in ["a&audience=b", ""] {
            let response = request_token_with(&issuer, Some(query), Some(&bearer)).await;
            assert_eq!(response.status(), 400, "{query:?}");
        }
    }

    #[tokio::test]
    async fn default_sub_follows_environment_then_pull_request_then_ref() {
        let issuer = start_default().await;
        assert_eq!(
            issuer.claims_template()["sub"],
            "repo:acme/app:ref:refs/heads/main"
        );
        let sub = |overrides: Value| claims(&issuer.mint("aud", overrides).unwrap())["sub"].clone();
        assert_eq!(sub(Value::Null), "repo:acme/app:ref:refs/heads/main");
        assert_eq!(
            sub(json!({"environment": "prod"})),
            "repo:acme/app:environment:prod"
        );
        assert_eq!(
            sub(json!({"event_name": "pull_request", "ref": "refs/pull/7/merge"})),
            "repo:acme/app:pull_request"
        );
        assert_eq!(
            sub(json!({"event_name": "pull_request", "environment": "staging"})),
            "repo:acme/app:environment:staging"
        );
        assert_eq!(
            sub(json!({"ref": "refs/tags/v1.2.0", "ref_type": "tag"})),
            "repo:acme/app:ref:refs/tags/v1.2.0"
        );
        assert_eq!(
            sub(json!({"repository": "octo/web", "ref": "refs/heads/dev"})),
            "repo:octo/web:ref:refs/heads/dev"
        );
        assert_eq!(
            sub(json!({"environment": "prod:eu"})),
            "repo:acme/app:environment:prod%3Aeu"
        );
        assert_eq!(
            sub(json!({"environment": "prod", "sub": "custom"})),
            "custom"
        );

        let env = start(config_with(json!({"environment": "prod"}))).await;
        assert_eq!(
            env.claims_template()["sub"],
            "repo:acme/app:environment:prod"
        );
        let jwt = env.mint("aud", json!({"environment": null})).unwrap();
        assert_eq!(claims(&jwt)["sub"], "repo:acme/app:ref:refs/heads/main");

        let pinned = start(config_with(json!({"sub": "pinned"}))).await;
        let jwt = pinned.mint("aud", json!({"environment": "prod"})).unwrap();
        assert_eq!(claims(&jwt)["sub"], "pinned");
    }

    #[tokio::test]
    async fn default_token_is_github_shaped() {
        let issuer = start_default().await;
        let before = SystemClock.now().unix_timestamp();
        let jwt = issuer.mint("https://example.com", Value::Null).unwrap();
        let after = SystemClock.now().unix_timestamp();

        let h = header(&jwt);
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["kid"], issuer.current_key().kid());

        let c = claims(&jwt);
        let iat = c["iat"].as_i64().unwrap();
        assert!((before..=after).contains(&iat));
        assert_eq!(c["nbf"].as_i64(), Some(iat));
        assert_eq!(c["exp"].as_i64(), Some(iat + 300));
        assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());
        assert_ne!(
            claims(&issuer.mint("https://example.com", Value::Null).unwrap())["jti"],
            c["jti"]
        );
        assert_eq!(c["aud"], "https://example.com");
        assert_eq!(c["iss"], issuer.issuer_url().as_str());
        assert_eq!(c["repository"], "acme/app");
        assert_eq!(c["repository_owner"], "acme");
        assert_eq!(c["ref"], "refs/heads/main");
        assert_eq!(c["event_name"], "push");
        assert_eq!(c["runner_environment"], "github-hosted");
        assert!(c.get("environment").is_none());
        for name in [
            "actor",
            "actor_id",
            "base_ref",
            "head_ref",
            "job_workflow_ref",
            "job_workflow_sha",
            "ref_type",
            "ref_protected",
            "repository_id",
            "repository_owner_id",
            "repository_visibility",
            "run_id",
            "run_number",
            "run_attempt",
            "sha",
            "workflow",
            "workflow_ref",
            "workflow_sha",
        ] {
            assert!(c[name].is_string(), "{name} must be a string claim");
        }
    }

    #[tokio::test]
    async fn overrides_replace_and_null_removes_claims() {
        let issuer = start(IssuerConfig {
            token_lifetime: Duration::from_secs(60),
            ..config_with(json!({"base_ref": null, "actor": "config-actor"}))
        })
        .await;
        let template = issuer.claims_template();
        assert!(template.get("base_ref").is_none());
        assert_eq!(template["actor"], "config-actor");
        assert_eq!(template["iss"], issuer.issuer_url().as_str());
        for per_token in ["aud", "iat", "nbf", "exp", "jti"] {
            assert!(template.get(per_token).is_none(), "{per_token}");
        }

        let jwt = issuer
            .mint(
                "aud",
                json!({"ref_protected": null, "actor": "mallory", "exp": 1, "iss": "https://evil.example"}),
            )
            .unwrap();
        let c = claims(&jwt);
        assert!(c.get("ref_protected").is_none());
        assert!(c.get("base_ref").is_none());
        assert_eq!(c["actor"], "mallory");
        assert_eq!(c["exp"], 1);
        assert_eq!(c["iss"], "https://evil.example");

        let c = claims(&issuer.mint("aud", json!({})).unwrap());
        assert_eq!(c["actor"], "config-actor");
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);

        assert!(matches!(
            issuer.mint("aud", json!(["not", "an", "object"])),
            Err(IssuerError::OverridesNotObject)
        ));

        let pinned = start(config_with(json!({"exp": 42, "jti": "fixed"}))).await;
        let c = claims(&pinned.mint("aud", Value::Null).unwrap());
        assert_eq!(c["exp"], 42);
        assert_eq!(c["jti"], "fixed");
    }

    #[tokio::test]
    async fn tokens_verify_against_the_published_key_with_ring() {
        let issuer = start_default().await;
        let jwt = fetch_jwt(&issuer, Some("aud")).await;
        let jwks = jwks_of(&issuer).await;
        assert!(verifies_with(&jwt, &jwks));

        let (head, rest) = jwt.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"sub":"repo:evil/x:ref:refs/heads/main"}"#);
        let forged = format!("{head}.{forged_payload}.{signature}");
        assert!(!verifies_with(&forged, &jwks));

        // A hand-crafted token signed with the current key verifies too.
        let raw = issuer
            .current_key()
            .sign_raw(
                format!(
                    r#"{{"alg":"RS256","kid":"{}"}}"#,
                    issuer.current_key().kid()
                )
                .as_bytes(),
                b"{}",
            )
            .unwrap();
        assert!(verifies_with(&raw, &jwks));
    }

    #[tokio::test]
    async fn rotation_changes_kid_and_keep_old_controls_the_jwks() {
        let issuer = start_default().await;
        let first = issuer.current_key();
        let old_jwt = issuer.mint("aud", Value::Null).unwrap();

        let second = issuer.rotate(true).unwrap();
        assert_ne!(second.kid(), first.kid());
        assert_eq!(issuer.current_key().kid(), second.kid());
        let new_jwt = issuer.mint("aud", Value::Null).unwrap();
        assert_eq!(header(&new_jwt)["kid"], second.kid());
        let jwks = jwks_of(&issuer).await;
        assert_eq!(kids(&jwks), vec![second.kid(), first.kid()]);
        assert!(verifies_with(&old_jwt, &jwks));
        assert!(verifies_with(&new_jwt, &jwks));

        let third = issuer.rotate(false).unwrap();
        let jwks = jwks_of(&issuer).await;
        assert_eq!(kids(&jwks), vec![third.kid()]);
        assert!(!verifies_with(&old_jwt, &jwks));
        assert!(!verifies_with(&new_jwt, &jwks));
        assert!(verifies_with(
            &issuer.mint("aud", Value::Null).unwrap(),
            &jwks
        ));
    }

    #[tokio::test]
    async fn jwks_modes_and_fetch_counters() {
        let issuer = start_default().await;
        let url = format!("{}/.well-known/jwks", issuer.issuer_url());
        assert_eq!(issuer.jwks_fetch_count(), 0);
        assert_eq!(issuer.discovery_fetch_count(), 0);

        issuer.set_jwks_mode(JwksMode::Down);
        let response = get(&url).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[DEV_HEADER_NAME], DEV_HEADER_VALUE);

        issuer.set_jwks_mode(JwksMode::Garbage);
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");

        issuer.set_jwks_mode(JwksMode::Empty);
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(response).await, json!({"keys": []}));

        let delay = Duration::from_millis(300);
        issuer.set_jwks_mode(JwksMode::Slow(delay));
        let started = Instant::now();
        let response = get(&url).await;
        assert!(started.elapsed() >= delay);
        assert_eq!(
            kids(&json_of(response).await),
            vec![issuer.current_key().kid()]
        );
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        assert!(impatient.get(&url).send().await.unwrap_err().is_timeout());

        issuer.set_jwks_mode(JwksMode::Normal);
        let started = Instant::now();
        assert_eq!(
            kids(&jwks_of(&issuer).await),
            vec![issuer.current_key().kid()]
        );
        assert!(started.elapsed() < delay);

        assert_eq!(issuer.jwks_fetch_count(), 6);
        assert_eq!(issuer.discovery_fetch_count(), 0);
        for _ in 0..2 {
            get(&format!(
                "{}/.well-known/openid-configuration",
                issuer.issuer_url()
            ))
            .await;
        }
        assert_eq!(issuer.discovery_fetch_count(), 2);
        assert_eq!(issuer.jwks_fetch_count(), 6);
    }

    #[tokio::test]
    async fn jwks_cache_control_is_honoured() {
        let issuer = start_default().await;
        let url = format!("{}/.well-known/jwks", issuer.issuer_url());
        let cache_control = |response: &reqwest::Response| {
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            cache_control(&get(&url).await).as_deref(),
            Some("max-age=300")
        );
        issuer.set_cache_control(Some("no-store".to_owned()));
        assert_eq!(cache_control(&get(&url).await).as_deref(), Some("no-store"));
        issuer.set_jwks_mode(JwksMode::Empty);
        assert_eq!(cache_control(&get(&url).await).as_deref(), Some("no-store"));
        issuer.set_cache_control(None);
        assert_eq!(cache_control(&get(&url).await), None);
        issuer.set_cache_control(Some("bad\nvalue".to_owned()));
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(cache_control(&response), None);
    }

    #[tokio::test]
    async fn debug_shows_no_key_material_or_request_token() {
        let issuer = start_default().await;
        issuer.rotate(true).unwrap();
        let debug = format!("{issuer:?}");
        assert!(debug.contains(issuer.current_key().kid()), "{debug}");
        assert!(debug.contains("REDACTED"));
        assert!(!debug.contains(REQUEST_TOKEN));
        let jwks = jwks_of(&issuer).await;
        for key in jwks["keys"].as_array().unwrap() {
            let n = key["n"].as_str().unwrap();
            assert!(!debug.contains(&n[..32]));
        }
        let config = format!("{:?}", IssuerConfig::new(REQUEST_TOKEN));
        assert!(!config.contains(REQUEST_TOKEN), "{config}");
    }

    #[tokio::test]
    async fn spawn_refuses_an_empty_request_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(matches!(
            DevIssuer::spawn(listener, IssuerConfig::new("")).await,
            Err(IssuerError::EmptyRequestToken)
        ));
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_server() {
        let issuer = start_default().await;
        let url = format!("{}/", issuer.issuer_url());
        let clone = issuer.clone();
        drop(issuer);
        assert_eq!(get(&url).await.status(), 200);
        drop(clone);
        tokio::task::yield_now().await;
        assert!(reqwest::get(&url).await.is_err());
    }
}
