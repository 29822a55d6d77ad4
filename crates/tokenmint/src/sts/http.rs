//! The `POST /` handler: reads the form body, dispatches on `Action`, and writes STS's XML responses and errors.

use super::params::{self, Call};
use super::sigv4::Received;
use super::xml::{error_document, Xml};
use super::{error::error_message, error_status, Assumed, Caller, RequestMeta, StsError};
use crate::exchange::Service;
use crate::http::finish::{FinishOnDrop, Panicked};
use crate::http::{BODY_READ_TIMEOUT, REQUEST_TIMEOUT};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument as _;

/// Largest form body read (a `WebIdentityToken` is at most 20000 characters).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Handles one STS Query-protocol request.
pub(crate) async fn handle(
    State(service): State<Arc<Service>>,
    axum::Extension(crate::http::RequestId(request_id)): axum::Extension<crate::http::RequestId>,
    request: axum::extract::Request,
) -> Response {
    let explain = service.config().server.explain_denials;
    match run(service, request, &request_id).await {
        Ok(body) => xml_response(StatusCode::OK, body, &request_id),
        Err(err) => {
            let (status, kind, code) = error_status(&err);
            let message = error_message(&err, explain);
            xml_response(
                status,
                error_document(kind, code, &message, &request_id),
                &request_id,
            )
        }
    }
}

async fn run(
    service: Arc<Service>,
    request: axum::extract::Request,
    request_id: &str,
) -> Result<String, StsError> {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(StsError::Validation(
            "send the parameters as an application/x-www-form-urlencoded body".into(),
        ));
    }
    if parts.uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(StsError::Validation(
            "send the parameters in the POST body, not the query string".into(),
        ));
    }
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_FORM_BYTES)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) | Err(_) => {
            return Err(StsError::Validation(format!(
                "the request body could not be read within {} s or is larger than {MAX_FORM_BYTES} bytes",
                BODY_READ_TIMEOUT.as_secs()
            )))
        }
    };
    let sts = service.sts().ok_or(StsError::Internal)?;
    let meta = RequestMeta {
        request_id: request_id.to_owned(),
        client_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    let call = match params::parse(&body) {
        Ok(call) => call,
        Err(err) => {
            let param = |name: &str| {
                url::form_urlencoded::parse(&body)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            if param("Action").as_deref() == Some("AssumeRoleWithWebIdentity") {
                let role_arn = param("RoleArn").unwrap_or_default();
                let now = service.clock().now();
                super::audit_refused_parameters(&service, &meta, &role_arn, &err, now).await;
            }
            return Err(err);
        }
    };
    match call {
        Call::AssumeRoleWithWebIdentity(req) => {
            // A client that goes away must not cancel it between minting
            // and auditing: dropped, it finishes in a task.
            let task = FinishOnDrop::new(
                async move {
                    let Some(sts) = service.sts() else {
                        return Err(StsError::Internal);
                    };
                    let now = service.clock().now();
                    super::assume_role_with_web_identity(&service, sts, &req, &meta, now)
                        .await
                        .map(|a| assumed_document(&a, &meta.request_id))
                }
                .in_current_span(),
            );
            match tokio::time::timeout(REQUEST_TIMEOUT, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(Panicked(message))) => {
                    tracing::error!(panic = %message, "AssumeRoleWithWebIdentity failed: it panicked");
                    Err(StsError::Internal)
                }
                Err(_) => {
                    tracing::error!("AssumeRoleWithWebIdentity exceeded the request timeout; it completes and is audited in the background");
                    Err(StsError::Internal)
                }
            }
        }
        Call::GetCallerIdentity => {
            let received = Received {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                body: &body,
            };
            let now = service.clock().now();
            let caller = super::get_caller_identity(sts, &received, now)?;
            Ok(caller_document(&caller, request_id))
        }
    }
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v.clone());
        headers.insert("x-request-id", v);
    }
    resp
}

/// `AssumeRoleWithWebIdentityResponse`.
fn assumed_document(a: &Assumed, request_id: &str) -> String {
    const ROOT: &str = "AssumeRoleWithWebIdentityResponse";
    let expiration = a
        .expiration
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let mut xml = Xml::document(ROOT);
    xml.open("AssumeRoleWithWebIdentityResult")
        .open("Credentials")
        .text("AccessKeyId", &a.access_key_id)
        .text("SecretAccessKey", a.secret_access_key.expose_secret())
        .text("SessionToken", a.session_token.expose_secret())
        .text("Expiration", &expiration)
        .close("Credentials")
        .text("SubjectFromWebIdentityToken", &a.subject)
        .open("AssumedRoleUser")
        .text("AssumedRoleId", &a.assumed_role_id)
        .text("Arn", &a.assumed_role_arn)
        .close("AssumedRoleUser")
        .text("PackedPolicySize", "0")
        .text("Provider", &a.provider)
        .text("Audience", &a.audience)
        .close("AssumeRoleWithWebIdentityResult")
        .open("ResponseMetadata")
        .text("RequestId", request_id)
        .close("ResponseMetadata");
    xml.finish(ROOT)
}

/// `GetCallerIdentityResponse`.
fn caller_document(c: &Caller, request_id: &str) -> String {
    const ROOT: &str = "GetCallerIdentityResponse";
    let mut xml = Xml::document(ROOT);
    xml.open("GetCallerIdentityResult")
        .text("Arn", &c.arn)
        .text("UserId", &c.user_id)
        .text("Account", &c.account)
        .close("GetCallerIdentityResult")
        .open("ResponseMetadata")
        .text("RequestId", request_id)
        .close("ResponseMetadata");
    xml.finish(ROOT)
}
