//! The system under test: the local OIDC issuer and GitHub API stand-in on their own thread in this process, and the real `tokenmint serve` as a child process.

use anyhow::{anyhow, bail, Context as _};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenmint::dev::github_standin::{GithubStandIn, StandInConfig};
use tokenmint::dev::issuer::{DevIssuer, IssuerConfig};
use tokenmint::keys::RsaSigningKey;

/// The name of the thread that runs the issuer and the stand-in, so its CPU
/// time can be read apart from the load generator's.
pub(crate) const STANDIN_THREAD: &str = "bench-standin";

/// The audience the broker accepts and the tokens carry.
pub(crate) const AUDIENCE: &str = "tokenmint";
/// The broker the load hits.
pub(crate) const BROKER: &str = "widgets-read";
/// The GitHub App's id (the App JWT's `iss`) the stand-in expects.
pub(crate) const APP_ID: &str = "1";
/// The repository the App is installed on, as owner and name.
pub(crate) const OWNER: &str = "acme";
pub(crate) const REPO: &str = "widgets";
/// Its installation.
pub(crate) const INSTALLATION_ID: u64 = 4242;

/// The issuer and stand-in, served by a dedicated single-threaded runtime.
#[derive(Debug)]
pub(crate) struct Upstreams {
    pub(crate) issuer: DevIssuer,
    pub(crate) github: GithubStandIn,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstreams {
    /// Starts both on 127.0.0.1 on a thread named [`STANDIN_THREAD`]; returns
    /// them and the App's private key PEM (for tokenmint's config).
    pub(crate) fn start() -> anyhow::Result<(Self, String)> {
        let (app_key, app_pem) =
            RsaSigningKey::generate_pem().context("generate the GitHub App key")?;
        let public_jwk = app_key.public_jwk();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(STANDIN_THREAD.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow!(e).context("start the stand-in runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = async {
                        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                        let issuer = DevIssuer::spawn(
                            tokio::net::TcpListener::bind(loopback).await?,
                            IssuerConfig::new("bench-request-token"),
                        )
                        .await
                        .context("start the local OIDC issuer")?;
                        let github = GithubStandIn::spawn(
                            tokio::net::TcpListener::bind(loopback).await?,
                            StandInConfig {
                                app_id: APP_ID.into(),
                                app_public_key: public_jwk,
                                installations: vec![(
                                    format!("{OWNER}/{REPO}"),
                                    INSTALLATION_ID,
                                    56789,
                                )],
                            },
                        )
                        .await
                        .context("start the GitHub API stand-in")?;
                        anyhow::Ok((issuer, github))
                    }
                    .await;
                    let ok = started.is_ok();
                    let _ = ready_tx.send(started);
                    if ok {
                        // Serve until told to stop (or the handle is dropped).
                        let _ = stop_rx.await;
                    }
                });
            })
            .context("spawn the stand-in thread")?;
        let (issuer, github) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the issuer and stand-in did not start within 30 s")??;
        Ok((
            Self {
                issuer,
                github,
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            app_pem,
        ))
    }

    /// Stops the servers and joins their thread.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A free loopback port (bound, read, released: a tiny race with other programs is accepted).
pub(crate) fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("find a free loopback port")?;
    listener.local_addr().context("read the bound address")
}

/// tokenmint's config: the audit store (SQLite by default), the stand-in as GitHub, the local
/// issuer, and one broker whose policy the issuer's default tokens satisfy
/// using every condition form (exact, list, like, matches).
pub(crate) fn config_text(
    listen: SocketAddr,
    github_url: &str,
    issuer_url: &str,
    audit_database: &str,
    chain: &str,
) -> String {
    format!(
        r#"# Written by tokenmint-bench. The issuer and GitHub API are local stand-ins.
[server]
listen = "{listen}"

[audit]
database = "{audit_database}"
chain = "{chain}"

[github]
api_url = "{github_url}"
app_id = "1"
private_key_file = "app.pem"

# Every bench token has the same sub and broker: lift the exchange rate limits
# so they measure throughput, not the limiter's defaults (10/s per subject).
[limits]
per_broker = {{ rate_per_second = 1000000, burst = 1000000 }}
per_subject = {{ rate_per_second = 1000000, burst = 1000000 }}

[[issuer]]
name = "bench"
url = "{issuer_url}"
audiences = ["{AUDIENCE}"]

[[broker]]
name = "{BROKER}"
issuer = "bench"
repository = "acme/widgets"
permissions = {{ contents = "read", issues = "write" }}
[broker.claims]
repository_owner_id = "987654321"
repository_id = "123456789"
sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]
job_workflow_ref = {{ like = "acme/app/.github/workflows/*@refs/heads/main" }}
ref = {{ matches = "refs/heads/(main|release/.*)" }}
"#
    )
}

/// The last 4 KiB of the file at `path` (empty if unreadable), for error messages.
pub(crate) fn file_tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// The `tokenmint serve` child process.
#[derive(Debug)]
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) base: String,
    log_path: PathBuf,
}

impl Server {
    /// Spawns `bin serve --config config`, logging to `log_path`.
    pub(crate) fn spawn(
        bin: &Path,
        config: &Path,
        listen: SocketAddr,
        log_path: PathBuf,
    ) -> anyhow::Result<Self> {
        if !listen.ip().is_loopback() {
            bail!("refusing to serve on non-loopback {listen}");
        }
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "start {}; build it first with `cargo build --release -p tokenmint-cli`, or pass --tokenmint-bin",
                    bin.display()
                )
            })?;
        let pid = child.id();
        Ok(Self {
            child: Some(child),
            pid,
            base: format!("http://{listen}"),
            log_path,
        })
    }

    /// The last few lines of the child's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        file_tail(&self.log_path)
    }

    /// Polls `GET /readyz` until 200, the child exits, or `timeout` passes.
    pub(crate) async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.base);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("poll the tokenmint child")? {
                    bail!(
                        "tokenmint exited with {status} before it was ready; its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "tokenmint was not ready within {timeout:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    pub(crate) fn stop(&mut self, grace: Duration) -> anyhow::Result<String> {
        let Some(mut child) = self.child.take() else {
            return Ok("already stopped".into());
        };
        if let Some(status) = child.try_wait()? {
            return Ok(format!("had already exited ({status})"));
        }
        // The workspace forbids `unsafe`, so no libc::kill: ask kill(1).
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if matches!(term, Ok(s) if s.success()) {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    return Ok(format!("stopped on SIGTERM ({status})"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        child.kill().context("kill tokenmint")?;
        let status = child.wait().context("reap tokenmint")?;
        Ok(format!("killed after {grace:?} ({status})"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn config_is_valid_for_tokenmint() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pem) = RsaSigningKey::generate_pem().unwrap();
        std::fs::write(dir.path().join("app.pem"), pem).unwrap();
        let path = dir.path().join("tokenmint.toml");
        std::fs::write(
            &path,
            config_text(
                "127.0.0.1:1".parse().unwrap(),
                "http://127.0.0.1:2/",
                "http://127.0.0.1:3",
                "sqlite://audit.db",
                "bench",
            ),
        )
        .unwrap();
        let config = tokenmint::config::Config::load(&path).unwrap();
        assert!(config.server.listen.ip().is_loopback());
    }
}
