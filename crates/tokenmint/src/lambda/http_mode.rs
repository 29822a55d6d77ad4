//! http mode: a Function URL or API Gateway HTTP API event (payload format 2.0) becomes an `http::Request` for the shared router, and its response becomes the event answer.

use super::runtime::{Invocation, InvocationError};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tower::ServiceExt as _;

/// Largest response body converted back (the router's answers are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The parts of a payload-format-2.0 event the router needs.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    version: Option<String>,
    raw_path: String,
    #[serde(default)]
    raw_query_string: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    cookies: Vec<String>,
    request_context: RequestContext,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext {
    http: HttpContext,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpContext {
    method: String,
    #[serde(default)]
    source_ip: Option<String>,
}

/// The answer Function URLs and HTTP APIs expect.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status_code: u16,
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<String>,
    body: String,
    is_base64_encoded: bool,
}

/// Serves the shared router over Lambda events.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    router: Router,
}

fn bad_event(why: &str) -> InvocationError {
    InvocationError {
        message: format!(
            "http mode expects a Lambda Function URL or API Gateway HTTP API event (payload format 2.0): {why}"
        ),
        error_type: "InvalidEvent",
    }
}

impl HttpHandler {
    /// Wraps `router` (normally [`crate::http::router`]).
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    /// Runs one event through the router; the `Ok` value is the JSON answer.
    pub async fn handle(&self, invocation: &Invocation) -> Result<Vec<u8>, InvocationError> {
        let event: Event = serde_json::from_slice(&invocation.payload)
            .map_err(|_| bad_event("the payload is not such an event"))?;
        if event.version.as_deref().is_some_and(|v| v != "2.0") {
            return Err(bad_event("only payload format version 2.0 is supported"));
        }
        let request = to_request(event)?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|never| match never {})?;
        let answer = to_answer(response).await?;
        serde_json::to_vec(&answer).map_err(|_| InvocationError {
            message: "encode the HTTP answer".into(),
            error_type: "InternalError",
        })
    }
}

fn to_request(event: Event) -> Result<http::Request<Body>, InvocationError> {
    let uri = if event.raw_query_string.is_empty() {
        event.raw_path.clone()
    } else {
        format!("{}?{}", event.raw_path, event.raw_query_string)
    };
    let mut builder = http::Request::builder()
        .method(event.request_context.http.method.as_str())
        .uri(uri);
    for (name, value) in &event.headers {
        // Repeated headers arrive comma-joined, which is their HTTP meaning too.
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !event.cookies.is_empty() {
        builder = builder.header(http::header::COOKIE, event.cookies.join("; "));
    }
    let body = match event.body {
        None => Vec::new(),
        Some(b) if event.is_base64_encoded => STANDARD
            .decode(b.as_bytes())
            .map_err(|_| bad_event("the body is marked base64 but is not"))?,
        Some(b) => b.into_bytes(),
    };
    let mut request = builder
        .body(Body::from(body))
        .map_err(|_| bad_event("the method, path or a header is not valid HTTP"))?;
    // The caller's address, as the TCP server would record it.
    let ip = event
        .request_context
        .http
        .source_ip
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    Ok(request)
}

async fn to_answer(response: axum::response::Response) -> Result<Answer, InvocationError> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|_| InvocationError {
            message: "read the HTTP answer".into(),
            error_type: "InternalError",
        })?;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        if name == http::header::SET_COOKIE {
            cookies.push(value.to_owned());
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let (body, is_base64_encoded) = match String::from_utf8(body.to_vec()) {
        Ok(text) => (text, false),
        Err(e) => (STANDARD.encode(e.into_bytes()), true),
    };
    Ok(Answer {
        status_code: parts.status.as_u16(),
        headers,
        cookies,
        body,
        is_base64_encoded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    fn invocation(payload: serde_json::Value) -> Invocation {
        Invocation {
            request_id: "req-1".into(),
            invoked_function_arn: None,
            cognito_identity_id: None,
            deadline_ms: None,
            payload: payload.to_string().into(),
        }
    }

    #[tokio::test]
    async fn event_round_trips_through_a_router() {
        let router = Router::new().route(
            "/echo/{x}",
            post(
                |axum::extract::Path(x): axum::extract::Path<String>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 headers: http::HeaderMap,
                 body: String| async move {
                    format!(
                        "{x}|{}|{}|{body}",
                        peer.ip(),
                        headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                    )
                },
            ),
        );
        let handler = HttpHandler::new(router);
        let out = handler
            .handle(&invocation(serde_json::json!({
                "version": "2.0",
                "rawPath": "/echo/abc",
                "rawQueryString": "q=1",
                "headers": {"authorization": "Bearer x"},
                "requestContext": {"http": {"method": "POST", "sourceIp": "203.0.113.9"}},
                "body": STANDARD.encode("hello"),
                "isBase64Encoded": true
            })))
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(answer["statusCode"], 200);
        assert_eq!(answer["body"], "abc|203.0.113.9|Bearer x|hello");
        assert_eq!(answer["isBase64Encoded"], false);
    }

    #[tokio::test]
    async fn non_events_are_refused() {
        let handler = HttpHandler::new(Router::new());
        for payload in [serde_json::json!(null), serde_json::json!({"rawPath": "/"})] {
            let err = handler.handle(&invocation(payload)).await.unwrap_err();
            assert_eq!(err.error_type, "InvalidEvent");
        }
        let err = handler
            .handle(&invocation(serde_json::json!({
                "version": "1.0", "rawPath": "/",
                "requestContext": {"http": {"method": "GET"}}
            })))
            .await
            .unwrap_err();
        assert!(err.message.contains("2.0"));
    }
}
