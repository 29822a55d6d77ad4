//! A local stand-in for the AWS Lambda Runtime API (`/2018-06-01/runtime/…`) on loopback, so tests and `tokenmint-bench` can run the real `bootstrap`; it is not Lambda and says so on every response.
//!
//! It serves the four calls a custom runtime makes:
//!
//! - `GET /2018-06-01/runtime/invocation/next` blocks until an invocation is
//!   queued, then answers with its payload and the `Lambda-Runtime-Aws-Request-Id`,
//!   `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
//!   `Lambda-Runtime-Trace-Id` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and
//!   `POST /2018-06-01/runtime/invocation/{id}/error` (with the optional
//!   `Lambda-Runtime-Function-Error-Type` header) complete that invocation;
//! - `POST /2018-06-01/runtime/init/error` records an initialisation error.
//!
//! A [`LambdaRuntime`] handle queues payloads ([`LambdaRuntime::queue`]) and
//! awaits each one's [`Answer`], timestamped where the emulator saw each step,
//! so a caller can time an invocation without its own scheduling in the way.
//! Like Lambda, it hands out one invocation per `/next` call, in queue order.
//! Each function instance should get its own emulator, as each Lambda
//! execution environment has its own Runtime API endpoint: an invocation
//! handed to a process that then dies is lost, as it would be on Lambda.
//!
//! It binds only loopback addresses, checks no credentials, and keeps no
//! history beyond what is pending.

use crate::clock::{Clock as _, SystemClock};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The header every emulator response carries, so nobody mistakes it for Lambda.
pub const DEV_HEADER: &str = "x-tokenmint-dev";
/// The value of [`DEV_HEADER`].
pub const DEV_HEADER_VALUE: &str = "lambda-runtime-api-stand-in";
/// The invoked function ARN handed out unless [`RuntimeConfig`] names another.
pub const DEFAULT_FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:broker";
/// Lambda's own limit on a synchronous payload and on a response.
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// How the emulated function is described to the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `Lambda-Runtime-Invoked-Function-Arn` on every invocation.
    pub function_arn: String,
    /// The function timeout: `Lambda-Runtime-Deadline-Ms` is the time an
    /// invocation is handed out plus this.
    pub timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            function_arn: DEFAULT_FUNCTION_ARN.to_owned(),
            timeout: Duration::from_secs(900),
        }
    }
}

/// How the runtime completed one invocation.
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST …/{id}/response` with this body.
    Response(Bytes),
    /// `POST …/{id}/error` with this body and `Lambda-Runtime-Function-Error-Type`, if sent.
    Error {
        /// The body, normally `{"errorMessage","errorType"}`.
        body: Bytes,
        /// The `Lambda-Runtime-Function-Error-Type` header.
        error_type: Option<String>,
    },
}

impl Outcome {
    /// The body, whichever endpoint it came to.
    pub fn body(&self) -> &Bytes {
        match self {
            Self::Response(body) | Self::Error { body, .. } => body,
        }
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(self.body())
    }
}

impl fmt::Debug for Outcome {
    // Bodies may hold tokens: show sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Response(body) => f
                .debug_struct("Response")
                .field("body_bytes", &body.len())
                .finish(),
            Self::Error { body, error_type } => f
                .debug_struct("Error")
                .field("body_bytes", &body.len())
                .field("error_type", error_type)
                .finish(),
        }
    }
}

/// One completed invocation, with when the emulator saw each step.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The `Lambda-Runtime-Aws-Request-Id` it was handed out under (and answered to).
    pub request_id: String,
    /// The response or error the runtime posted.
    pub outcome: Outcome,
    /// When [`LambdaRuntime::queue`] accepted it.
    pub queued_at: Instant,
    /// When a `/next` call took it.
    pub delivered_at: Instant,
    /// When its response or error arrived.
    pub answered_at: Instant,
}

impl Answer {
    /// From queueing to the posted answer: what a caller of `Invoke` waits, less Lambda's front end.
    pub fn latency(&self) -> Duration {
        self.answered_at.saturating_duration_since(self.queued_at)
    }
}

/// What the runtime posted to `/runtime/init/error`.
#[derive(Debug, Clone)]
pub struct InitErrorReport {
    /// The body, normally `{"errorMessage","errorType"}`.
    pub body: Bytes,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: Option<String>,
    /// When it arrived.
    pub received_at: Instant,
}

/// Why an invocation could not be queued or awaited.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The request id is already pending.
    #[error("Lambda Runtime API stand-in: request id {0:?} is already pending")]
    DuplicateRequestId(String),
    /// The request id would not survive the Lambda-Runtime-Aws-Request-Id header.
    #[error("Lambda Runtime API stand-in: request id {0:?} is not a short token of letters, digits, '-', '_' or '.'")]
    BadRequestId(String),
    /// The emulator stopped before the invocation was answered.
    #[error("Lambda Runtime API stand-in stopped before the invocation was answered")]
    Stopped,
}

/// An invocation waiting for its answer.
#[derive(Debug)]
pub struct PendingInvocation {
    /// Its request id.
    request_id: String,
    /// Where the answer arrives.
    answer: oneshot::Receiver<Answer>,
}

impl PendingInvocation {
    /// The `Lambda-Runtime-Aws-Request-Id` it is handed out under.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Waits until the runtime posts a response or error for it.
    pub async fn answer(self) -> Result<Answer, EmulatorError> {
        self.answer.await.map_err(|_| EmulatorError::Stopped)
    }
}

/// A running emulator. Cloning shares it; when the last handle is dropped it
/// stops, and a runtime blocked in `/next` gets `410 Gone`.
#[derive(Clone)]
pub struct LambdaRuntime {
    /// Queue, pending invocations and init errors, shared with the handlers.
    shared: Arc<Shared>,
    /// Where it listens.
    addr: SocketAddr,
    /// Stops the server and wakes blocked `/next` calls when the last handle goes.
    _stop: Arc<StopOnDrop>,
}

impl fmt::Debug for LambdaRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaRuntime")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct StopOnDrop {
    task: tokio::task::AbortHandle,
    stopped: watch::Sender<bool>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.stopped.send(true);
        self.task.abort();
    }
}

/// An invocation not yet handed out.
struct Queued {
    request_id: String,
    payload: Bytes,
}

/// An invocation handed out (or queued) and not yet answered.
struct Waiting {
    reply: oneshot::Sender<Answer>,
    queued_at: Instant,
    /// Set when `/next` hands it out.
    delivered_at: Option<Instant>,
}

struct Shared {
    config: RuntimeConfig,
    /// Invocations in the order `/next` hands them out.
    queue_tx: mpsc::UnboundedSender<Queued>,
    /// Taken by one `/next` call at a time, as Lambda serves one invocation at a time.
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    /// Queued or handed-out invocations by request id.
    waiting: Mutex<HashMap<String, Waiting>>,
    init_tx: mpsc::UnboundedSender<InitErrorReport>,
    init_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<InitErrorReport>>,
    /// Numbers generated request ids.
    counter: AtomicU64,
    /// Becomes true when the last handle is dropped.
    stopped: watch::Receiver<bool>,
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, HashMap<String, Waiting>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LambdaRuntime {
    /// Serves the emulator on `listener`, which must be bound to a loopback address.
    pub async fn spawn(
        listener: tokio::net::TcpListener,
        config: RuntimeConfig,
    ) -> io::Result<LambdaRuntime> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Lambda Runtime API stand-in: refusing to serve on non-loopback {addr}"),
            ));
        }
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (init_tx, init_rx) = mpsc::unbounded_channel();
        let (stop_tx, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            waiting: Mutex::new(HashMap::new()),
            init_tx,
            init_rx: tokio::sync::Mutex::new(init_rx),
            counter: AtomicU64::new(0),
            stopped,
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::map_response(label))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "Lambda Runtime API stand-in stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            _stop: Arc::new(StopOnDrop {
                task: task.abort_handle(),
                stopped: stop_tx,
            }),
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`: `host:port`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `payload` under a generated request id
    /// (`00000000-0000-4000-8000-` and a 12-digit sequence number).
    pub fn queue(&self, payload: impl Into<Bytes>) -> Result<PendingInvocation, EmulatorError> {
        let payload = payload.into();
        loop {
            let n = self.shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("00000000-0000-4000-8000-{n:012}");
            match self.queue_with_id(id, payload.clone()) {
                // A caller chose this id for another invocation: take the next number.
                Err(EmulatorError::DuplicateRequestId(_)) => continue,
                queued => return queued,
            }
        }
    }

    /// Queues `payload` under `request_id`, which must not be pending already.
    pub fn queue_with_id(
        &self,
        request_id: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<PendingInvocation, EmulatorError> {
        let request_id = request_id.into();
        let usable = !request_id.is_empty()
            && request_id.len() <= 128
            && request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !usable {
            return Err(EmulatorError::BadRequestId(request_id));
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut waiting = self.shared.waiting();
            if waiting.contains_key(&request_id) {
                return Err(EmulatorError::DuplicateRequestId(request_id));
            }
            waiting.insert(
                request_id.clone(),
                Waiting {
                    reply,
                    queued_at: Instant::now(),
                    delivered_at: None,
                },
            );
        }
        self.shared
            .queue_tx
            .send(Queued {
                request_id: request_id.clone(),
                payload: payload.into(),
            })
            .map_err(|_| EmulatorError::Stopped)?;
        Ok(PendingInvocation { request_id, answer })
    }

    /// Waits for the next report posted to `/runtime/init/error`.
    pub async fn init_error(&self) -> Option<InitErrorReport> {
        self.shared.init_rx.lock().await.recv().await
    }
}

async fn label(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(DEV_HEADER),
        HeaderValue::from_static(DEV_HEADER_VALUE),
    );
    response
}

/// A Runtime API error body.
fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "errorType": error_type,
            "errorMessage": message,
            "note": "tokenmint Lambda Runtime API stand-in, not Lambda",
        })),
    )
        .into_response()
}

async fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such Runtime API call",
    )
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `GET …/invocation/next`: the next queued invocation, as soon as there is one.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let mut stopped = shared.stopped.clone();
    let queued = {
        let mut queue = shared.queue_rx.lock().await;
        tokio::select! {
            queued = queue.recv() => queued,
            _ = stopped.wait_for(|stop| *stop) => None,
        }
    };
    let Some(Queued {
        request_id,
        payload,
    }) = queued
    else {
        return api_error(
            StatusCode::GONE,
            "Stopped",
            "the Lambda Runtime API stand-in stopped",
        );
    };
    let now = Instant::now();
    if let Some(waiting) = shared.waiting().get_mut(&request_id) {
        waiting.delivered_at = Some(now);
    }
    let deadline = SystemClock.now() + shared.config.timeout;
    let deadline_ms = deadline.unix_timestamp_nanos() / 1_000_000;
    // An X-Ray-shaped trace id (not sampled); the runtime only passes it on.
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        deadline.unix_timestamp(),
        shared.counter.load(Ordering::Relaxed),
        deadline_ms
    );
    (
        [
            ("lambda-runtime-aws-request-id", request_id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                shared.config.function_arn.clone(),
            ),
            ("lambda-runtime-trace-id", trace),
        ],
        payload,
    )
        .into_response()
}

/// Completes the invocation `id` with `outcome`.
fn complete(shared: &Shared, id: String, outcome: Outcome) -> Response {
    let answered_at = Instant::now();
    let waiting = {
        let mut waiting = shared.waiting();
        // Only an invocation that was handed out can be answered.
        match waiting.get(&id) {
            Some(w) if w.delivered_at.is_some() => waiting.remove(&id),
            _ => None,
        }
    };
    let Some(Waiting {
        reply,
        queued_at,
        delivered_at: Some(delivered_at),
    }) = waiting
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no invocation with this request id is in progress",
        );
    };
    // The caller may have stopped waiting; the runtime's answer was still valid.
    let _ = reply.send(Answer {
        request_id: id,
        outcome,
        queued_at,
        delivered_at,
        answered_at,
    });
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

/// `POST …/invocation/{id}/response`.
async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, id, Outcome::Response(body))
}

/// `POST …/invocation/{id}/error`.
async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error_type = error_type(&headers);
    complete(&shared, id, Outcome::Error { body, error_type })
}

/// `POST …/init/error`.
async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let report = InitErrorReport {
        body,
        error_type: error_type(&headers),
        received_at: Instant::now(),
    };
    // The receiver lives as long as `shared`.
    let _ = shared.init_tx.send(report);
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    async fn start() -> (LambdaRuntime, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runtime = LambdaRuntime::spawn(listener, RuntimeConfig::default())
            .await
            .unwrap();
        let base = format!("http://{}/2018-06-01/runtime", runtime.runtime_api());
        (runtime, base)
    }

    #[tokio::test]
    async fn hands_out_an_invocation_and_returns_its_response() {
        let (runtime, base) = start().await;
        let http = reqwest::Client::new();
        let pending = runtime.queue_with_id("req-1", "null").unwrap();
        assert_eq!(pending.request_id(), "req-1");

        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), 200);
        let h = next.headers().clone();
        assert_eq!(h["lambda-runtime-aws-request-id"], "req-1");
        assert_eq!(
            h["lambda-runtime-invoked-function-arn"],
            DEFAULT_FUNCTION_ARN
        );
        assert_eq!(h[DEV_HEADER], DEV_HEADER_VALUE);
        let deadline: i128 = h["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let now_ms = SystemClock.now().unix_timestamp_nanos() / 1_000_000;
        assert!(
            deadline > now_ms + 800_000 && deadline <= now_ms + 900_000,
            "{deadline}"
        );
        assert!(h["lambda-runtime-trace-id"]
            .to_str()
            .unwrap()
            .starts_with("Root=1-"));
        assert_eq!(next.bytes().await.unwrap(), "null");

        let posted = http
            .post(format!("{base}/invocation/req-1/response"))
            .body(r#"{"token":"t"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        let answer = pending.answer().await.unwrap();
        assert_eq!(answer.request_id, "req-1");
        assert_eq!(answer.outcome.json().unwrap(), json!({"token": "t"}));
        assert!(answer.queued_at <= answer.delivered_at);
        assert!(answer.delivered_at <= answer.answered_at);
        assert!(!format!("{:?}", answer.outcome).contains("token"));

        // A second answer to the same invocation is refused.
        let again = http
            .post(format!("{base}/invocation/req-1/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 400);
    }

    #[tokio::test]
    async fn errors_keep_their_type_and_queue_order_holds() {
        let (runtime, base) = start().await;
        let http = reqwest::Client::new();
        let first = runtime.queue(Bytes::from_static(b"1")).unwrap();
        let second = runtime.queue(Bytes::from_static(b"2")).unwrap();
        assert_ne!(first.request_id(), second.request_id());

        // Not handed out yet: an answer is refused.
        let early = http
            .post(format!(
                "{base}/invocation/{}/response",
                second.request_id()
            ))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(early.status(), 400);

        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            next.headers()["lambda-runtime-aws-request-id"],
            first.request_id()
        );
        assert_eq!(next.bytes().await.unwrap(), "1");
        http.post(format!("{base}/invocation/{}/error", first.request_id()))
            .header("lambda-runtime-function-error-type", "Oops")
            .body(r#"{"errorMessage":"m","errorType":"Oops"}"#)
            .send()
            .await
            .unwrap();
        match first.answer().await.unwrap().outcome {
            Outcome::Error { body, error_type } => {
                assert_eq!(error_type.as_deref(), Some("Oops"));
                assert_eq!(body, r#"{"errorMessage":"m","errorType":"Oops"}"#);
            }
            other => panic!("{other:?}"),
        }
        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.bytes().await.unwrap(), "2");

        assert!(matches!(
            runtime.queue_with_id(second.request_id(), "x"),
            Err(EmulatorError::DuplicateRequestId(_))
        ));
        assert!(matches!(
            runtime.queue_with_id("a b", "x"),
            Err(EmulatorError::BadRequestId(_))
        ));
    }

    #[tokio::test]
    async fn init_errors_are_recorded() {
        let (runtime, base) = start().await;
        let posted = reqwest::Client::new()
            .post(format!("{base}/init/error"))
            .header("lambda-runtime-function-error-type", "Runtime.ConfigError")
            .body(r#"{"errorMessage":"bad","errorType":"Runtime.ConfigError"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        let report = runtime.init_error().await.unwrap();
        assert_eq!(report.error_type.as_deref(), Some("Runtime.ConfigError"));
        assert_eq!(
            serde_json::from_slice::<Value>(&report.body).unwrap()["errorMessage"],
            "bad"
        );
    }

    #[tokio::test]
    async fn a_blocked_next_ends_when_the_emulator_is_dropped() {
        let (runtime, base) = start().await;
        let waiting = tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{base}/invocation/next"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(runtime);
        let status = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap();
        // Either the 410 arrived or the connection was cut: never a hang.
        assert!(matches!(status, Ok(410) | Err(_)), "{status:?}");
    }

    #[tokio::test]
    async fn refuses_non_loopback_listeners() {
        let Ok(listener) = tokio::net::TcpListener::bind("0.0.0.0:0").await else {
            return;
        };
        let err = LambdaRuntime::spawn(listener, RuntimeConfig::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("non-loopback"), "{err}");
    }
}
