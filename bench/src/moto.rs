//! SSM for the Lambda bench: moto's server as a child process, seeded with the GitHub App's parameters, behind a tiny counting HTTP proxy so SSM calls per invocation can be counted.

use anyhow::{anyhow, bail, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The parameter names github-token-broker reads by default.
pub(crate) const CLIENT_ID_PARAM: &str = "/github-token-broker/app/client-id";
pub(crate) const INSTALLATION_ID_PARAM: &str = "/github-token-broker/app/installation-id";
pub(crate) const PRIVATE_KEY_PARAM: &str = "/github-token-broker/app/private-key-pem";
/// SSM bodies are a few KiB; anything larger is refused.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The pinned AWS venv: `--aws-venv`, else what `scripts/python-env aws` prints
/// (found in the current directory, then in the source tree the bench was built from).
pub(crate) fn aws_venv(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-env");
    let script = [PathBuf::from("scripts/python-env"), built_from]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!("scripts/python-env not found: run from the repository root or pass --aws-venv")
        })?;
    let out = Command::new(&script)
        .arg("aws")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {} aws", script.display()))?;
    if !out.status.success() {
        bail!("{} aws failed ({})", script.display(), out.status);
    }
    let venv = String::from_utf8(out.stdout).context("the venv path is not UTF-8")?;
    Ok(PathBuf::from(venv.trim()))
}

/// moto's server on a loopback port; killed on drop.
#[derive(Debug)]
pub(crate) struct Moto {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Moto {
    /// Starts `<venv>/bin/moto_server` and waits until it answers (at most 30 s).
    pub(crate) async fn start(venv: &Path, log: &Path) -> anyhow::Result<Self> {
        let port = crate::stack::free_loopback_port()?.port();
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicate the log handle")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {}/bin/moto_server", venv.display()))?;
        let moto = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                .is_ok()
            {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "moto_server did not answer on port {port} within 30 s (log: {})",
            log.display()
        )
    }

    /// `PutParameter` over moto's awsJson API (moto does not check signatures).
    pub(crate) async fn put(&self, name: &str, value: &str, secure: bool) -> anyhow::Result<()> {
        let resp = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AmazonSSM.PutParameter")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(
                serde_json::json!({
                    "Name": name,
                    "Value": value,
                    "Type": if secure { "SecureString" } else { "String" },
                    "Overwrite": true
                })
                .to_string(),
            )
            .send()
            .await
            .with_context(|| format!("PutParameter {name}"))?;
        if !resp.status().is_success() {
            bail!("PutParameter {name}: moto answered {}", resp.status());
        }
        Ok(())
    }

    /// Seeds the three default parameters.
    pub(crate) async fn seed(
        &self,
        client_id: &str,
        installation_id: u64,
        pem: &str,
    ) -> anyhow::Result<()> {
        self.put(CLIENT_ID_PARAM, client_id, false).await?;
        self.put(INSTALLATION_ID_PARAM, &installation_id.to_string(), false)
            .await?;
        self.put(PRIVATE_KEY_PARAM, pem, true).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Requests forwarded so far, by `X-Amz-Target` (`-` when absent).
type Counts = BTreeMap<String, u64>;

/// A counting HTTP proxy on loopback in front of one upstream (moto).
#[derive(Debug, Clone)]
pub(crate) struct CountingProxy {
    counts: Arc<Mutex<Counts>>,
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_SSM`.
    pub(crate) url: String,
    task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Mutex<Counts>>,
}

impl CountingProxy {
    /// Serves on a fresh loopback port, forwarding to `upstream` (`http://host:port`).
    pub(crate) async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("bind the SSM proxy")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .tcp_nodelay(true)
                .build()
                .context("build the proxy's client")?,
            counts: Arc::clone(&counts),
        };
        let router = Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            counts,
            url: format!("http://{addr}"),
            task: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    /// Every request forwarded so far.
    pub(crate) fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Requests forwarded so far, by `X-Amz-Target`.
    pub(crate) fn snapshot(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops serving (also happens when the last clone is dropped).
    pub(crate) fn stop(self) {
        self.task.0.abort();
    }
}

/// Headers that belong to one hop, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "te"
    )
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    *state
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target)
        .or_default() += 1;
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = state
        .http
        .request(parts.method, format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("SSM proxy: {error}")).into_response()
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes: Bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("SSM proxy: {error}")).into_response()
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// Sums the counts in `after` that are not in `before`.
pub(crate) fn calls_between(before: &Counts, after: &Counts) -> u64 {
    after
        .iter()
        .map(|(k, v)| v.saturating_sub(before.get(k).copied().unwrap_or(0)))
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn calls_between_counts_new_requests_only() {
        let before: Counts = [("AmazonSSM.GetParameters".to_owned(), 2)].into();
        let after: Counts = [
            ("AmazonSSM.GetParameters".to_owned(), 5),
            ("AmazonSSM.PutParameter".to_owned(), 1),
        ]
        .into();
        assert_eq!(calls_between(&before, &after), 4);
        assert_eq!(calls_between(&after, &after), 0);
    }

    /// The proxy forwards method, path, headers and body, answers with the
    /// upstream's status and body, and counts by `X-Amz-Target`.
    #[tokio::test]
    async fn forwards_and_counts() {
        use axum::routing::post;
        let upstream = Router::new().route(
            "/echo",
            post(|headers: axum::http::HeaderMap, body: Bytes| async move {
                let target = headers
                    .get("x-amz-target")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (
                    StatusCode::CREATED,
                    [("x-upstream", "yes")],
                    format!("{target}:{}", String::from_utf8_lossy(&body)),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, upstream).await });
        let proxy = CountingProxy::start(&format!("http://{addr}"))
            .await
            .unwrap();

        let client = reqwest::Client::new();
        for _ in 0..3 {
            let resp = client
                .post(format!("{}/echo", proxy.url))
                .header("x-amz-target", "AmazonSSM.GetParameters")
                .body("hello")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            assert_eq!(resp.headers()["x-upstream"], "yes");
            assert_eq!(resp.text().await.unwrap(), "AmazonSSM.GetParameters:hello");
        }
        client
            .post(format!("{}/echo", proxy.url))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(proxy.total(), 4);
        assert_eq!(proxy.snapshot()["AmazonSSM.GetParameters"], 3);
        assert_eq!(proxy.snapshot()["-"], 1);
    }
}
