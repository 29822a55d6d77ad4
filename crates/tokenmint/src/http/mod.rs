//! The axum router shared by `tokenmint serve` and the Lambda adapter, and the one place errors become HTTP statuses.
//!
//! # Endpoints
//!
//! - `POST /v1/brokers/{name}/token`: exchange (see [`crate::exchange`]).
//! - `GET|POST /sts/exchange?scope=OWNER/REPO&identity=NAME`: the same
//!   exchange for octo-sts/action (see [`crate::octo_sts`]); `scopes=` too.
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: config is loaded and the audit store answers.
//! - `POST /`: the AWS STS Query protocol (see [`crate::sts`]), only when the
//!   config has `[[role]]` entries; its errors are AWS XML, mapped in
//!   [`crate::sts::error_status`].
//! - `GET /metrics`: Prometheus metrics (see [`crate::metrics`]), unless
//!   `[server] metrics = false`.
//!
//! Errors are `{"error": CODE, "message": "...", "request_id": "..."}`.

pub(crate) mod finish;

use crate::exchange::{ExchangeError, ExchangeRequest, Grant, Service};
use crate::oidc::VerifyError;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use finish::{FinishOnDrop, Panicked};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// Request bodies are read up to this many bytes, only to tell whether one
/// was sent (any body is refused).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A body not fully received within this time counts as a (refused) body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A backstop for one exchange; its own steps have tighter timeouts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Maps an exchange error to its status and code. This is the only place
/// that decides HTTP statuses for errors.
pub fn error_status(err: &ExchangeError) -> (StatusCode, &'static str) {
    match err {
        ExchangeError::InvalidRequest(_) | ExchangeError::OctoStsQuery(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        ExchangeError::MissingToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
        ExchangeError::InvalidToken(VerifyError::KeysUnavailable { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        ExchangeError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        ExchangeError::NoJti { .. } | ExchangeError::Replayed { .. } => {
            (StatusCode::UNAUTHORIZED, "invalid_token")
        }
        ExchangeError::AccessDenied { .. } => (StatusCode::FORBIDDEN, "access_denied"),
        ExchangeError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        ExchangeError::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ExchangeError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        ExchangeError::UpstreamBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "upstream_busy"),
        ExchangeError::UpstreamRateLimited { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_rate_limited")
        }
        ExchangeError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
    }
}

/// The message the caller sees. Denials are generic unless
/// `explain_denials` is on; the precise reason is always in the audit log.
fn error_message(err: &ExchangeError, explain_denials: bool) -> String {
    match err {
        ExchangeError::AccessDenied { reason } if explain_denials => {
            format!("not authorized to use this broker: {reason}")
        }
        ExchangeError::AccessDenied { .. } => {
            "not authorized to use this broker (unknown broker, or its trust policy does not match the token); the operator can see why in the audit log".to_owned()
        }
        ExchangeError::InvalidToken(VerifyError::KeysUnavailable { .. }) => {
            "the token issuer's signing keys cannot be fetched right now; retry shortly".to_owned()
        }
        other => other.to_string(),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    request_id: &'a str,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
    expires_at: String,
    repositories: &'a [String],
    permissions: &'a crate::github::Permissions,
    broker: &'a str,
    request_id: &'a str,
}

/// Builds the router. The caller decides how to serve it (TCP listener,
/// Lambda); the peer address is read from `ConnectInfo` when present.
pub fn router(service: Arc<Service>) -> Router {
    let mut router = Router::new();
    router = if service.sts().is_some() {
        // The AWS STS Query protocol, only when `[[role]]`s are configured.
        router.route("/", post(crate::sts::http::handle))
    } else {
        router.route("/", post(sts_not_configured))
    };
    router = router
        .route("/v1/brokers/{name}/token", post(token))
        // HEAD would otherwise run the GET handler: a token minted for nobody.
        .route(
            "/sts/exchange",
            get(octo_sts).post(octo_sts).head(method_not_allowed),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if service.config().server.metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_context))
        .with_state(service)
}

/// The id of the request being handled: in the `x-request-id` response
/// header, error and token bodies, the audit row, and every log line
/// written while handling it.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) Arc<str>);

/// Gives each request a fresh id, runs it inside a `request` span carrying
/// that id (so every log line written while handling it has `request_id`),
/// and puts the id in the `x-request-id` response header.
async fn request_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let id: Arc<str> = Arc::from(new_request_id());
    request.extensions_mut().insert(RequestId(Arc::clone(&id)));
    let span = tracing::info_span!("request", request_id = %id, method = %request.method());
    let uri = request.uri().clone();
    let mut resp = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            path = %crate::text::printable(uri.path(), 128),
            status = resp.status().as_u16(),
            "request handled"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn json_error(status: StatusCode, code: &str, message: String, request_id: &str) -> Response {
    let mut resp = (
        status,
        Json(ErrorBody {
            error: code,
            message,
            request_id,
        }),
    )
        .into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    resp
}

async fn token(
    State(service): State<Arc<Service>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
    request: axum::extract::Request,
) -> Response {
    let broker = match path {
        Ok(Path(name)) => name,
        // Undecodable path segments fall through as an invalid name.
        Err(_) => String::from("\u{fffd}"),
    };
    exchange(service, request_id, broker, None, request).await
}

/// octo-sts/action's `GET /sts/exchange?scope=..&scopes=..&identity=..`
/// (POST is accepted too): `identity` names the broker, and the exchange
/// refuses it unless every scope is that broker's repository.
async fn octo_sts(
    State(service): State<Arc<Service>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    request: axum::extract::Request,
) -> Response {
    let (broker, scopes) = match crate::octo_sts::parse_query(request.uri().query()) {
        Ok(query) => (query.identity, Ok(query.scopes)),
        Err(e) => (String::new(), Err(e)),
    };
    exchange(service, request_id, broker, Some(scopes), request).await
}

/// Runs one exchange for either endpoint and turns its outcome into a response.
async fn exchange(
    service: Arc<Service>,
    request_id: Arc<str>,
    broker: String,
    octo_sts_scopes: Option<Result<Vec<String>, crate::octo_sts::OctoStsError>>,
    request: axum::extract::Request,
) -> Response {
    let request_id = request_id.to_string();
    // Shed first: under overload a refusal must cost next to nothing.
    let permit = match service.admit(&broker) {
        Ok(permit) => permit,
        Err(err) => return error_response(&err, false, &request_id),
    };
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string());
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let body_is_empty = body_is_empty(&headers, body).await;
    let req = ExchangeRequest {
        request_id: request_id.clone(),
        broker,
        authorization: headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect(),
        body_is_empty,
        client_addr,
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        octo_sts_scopes,
    };
    // A client that disconnects must not cancel the exchange half-way (after
    // minting, before auditing or revoking): dropped, it finishes in a task.
    let task = FinishOnDrop::new(
        async move {
            let now = service.clock().now();
            let result = service.exchange(&req, now).await;
            drop(permit);
            (result, service.config().server.explain_denials)
        }
        .in_current_span(),
    );
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(Panicked(message))) => {
            tracing::error!(%request_id, panic = %message, "exchange failed: it panicked");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "internal error; retry shortly".to_owned(),
                &request_id,
            );
        }
        Err(_) => {
            tracing::error!(%request_id, "exchange exceeded the request timeout; it completes and is audited in the background");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the exchange took too long; retry shortly".to_owned(),
                &request_id,
            );
        }
    };
    match outcome {
        (Ok(grant), _) => grant_response(&grant, &request_id),
        (Err(err), explain_denials) => error_response(&err, explain_denials, &request_id),
    }
}

/// The JSON error answer for `err`, with `WWW-Authenticate` on 401 and
/// `Retry-After` where the error suggests a wait.
fn error_response(err: &ExchangeError, explain_denials: bool, request_id: &str) -> Response {
    let (status, code) = error_status(err);
    let message = error_message(err, explain_denials);
    let mut resp = json_error(status, code, message, request_id);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    if let Some(wait) = err.retry_after() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::limits::retry_after_secs(wait)),
        );
    }
    resp
}

fn grant_response(grant: &Grant, request_id: &str) -> Response {
    let expires_at = crate::clock::rfc3339(grant.expires_at);
    let body = TokenBody {
        token: grant.token.expose_secret(),
        expires_at,
        repositories: &grant.repositories,
        permissions: &grant.permissions,
        broker: &grant.broker,
        request_id,
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    // Where the time went: GitHub's share and the audit commit's, so a slow
    // exchange can be told apart from a slow GitHub. Only on success, after
    // the caller has been authorized.
    if let Ok(v) = HeaderValue::from_str(&grant.timing.header_value()) {
        headers.insert("server-timing", v);
    }
    resp
}

/// Whether the request had no body. Any byte, `{}` included, counts as a body.
async fn body_is_empty(headers: &HeaderMap, body: Body) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 0) {
        return false;
    }
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes.is_empty(),
        // Too large, broken or too slow: certainly not an empty body.
        Ok(Err(_)) | Err(_) => false,
    }
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        "ok\n",
    )
        .into_response()
}

async fn readyz(
    State(service): State<Arc<Service>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
) -> Response {
    match service.audit().ping().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            "ready\n",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: audit store unavailable");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the audit store is not answering".to_owned(),
                &request_id,
            )
        }
    }
}

async fn metrics(
    State(service): State<Arc<Service>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
) -> Response {
    match service.metrics().render() {
        Ok(text) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(_) => {
            tracing::error!("rendering metrics failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "rendering metrics failed; retry shortly".to_owned(),
                &request_id,
            )
        }
    }
}

async fn not_found(Extension(RequestId(request_id)): Extension<RequestId>) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; tokens are minted by POST /v1/brokers/{name}/token (or, for octo-sts clients, GET /sts/exchange)".to_owned(),
        &request_id,
    )
}

/// `POST /` without any `[[role]]`: most likely an AWS SDK pointed at a
/// tokenmint that does not serve STS, so say how to turn it on.
async fn sts_not_configured(Extension(RequestId(request_id)): Extension<RequestId>) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "the AWS STS endpoint (POST /) is off: it serves AssumeRoleWithWebIdentity only when the config defines at least one [[role]]".to_owned(),
        &request_id,
    )
}

async fn method_not_allowed(Extension(RequestId(request_id)): Extension<RequestId>) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed; use POST for /v1/brokers/{name}/token, GET or POST for /sts/exchange, and GET for /healthz, /readyz and /metrics".to_owned(),
        &request_id,
    )
}

/// Limits that keep slow or idle clients from starving others.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time allowed to receive a request's headers (also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown is requested, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish for at most
/// [`ServeOptions::shutdown_grace`], and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // Take a connection slot first: at the cap, new clients wait in the
        // kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = router.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(grace_s = options.shutdown_grace.as_secs(), "shutdown grace period over; closing remaining connections");
        }
    }
    Ok(())
}
