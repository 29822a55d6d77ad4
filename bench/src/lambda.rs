//! `tokenmint-bench --lambda`: the real `bootstrap` against local stand-ins (the Lambda Runtime API emulator, moto for SSM behind a counting proxy, the GitHub stand-in): its size, cold starts, a warm instance's per-invocation cost, and a model of the original's per-invocation work measured in the same run.

use crate::elf::BinaryFacts;
use crate::lambda_report::{
    mib, new_app_jwts, ColdReport, ColdStart, LambdaReport, Latency, ModelReport, ModelStep,
    WarmReport, CREDENTIALS_TTL_SECS,
};
use crate::moto::{self, CountingProxy, Moto};
use crate::procfs::{self, CpuTicks, TickSource};
use crate::report::per;
use crate::stack::{self, APP_ID, INSTALLATION_ID, OWNER, REPO};
use anyhow::{anyhow, bail, Context as _};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenmint::clock::{Clock as _, SystemClock};
use tokenmint::dev::github_standin::GithubStandIn;
use tokenmint::dev::lambda_runtime::{
    Answer, LambdaRuntime, Outcome, PendingInvocation, RuntimeConfig,
};
use tokenmint::keys::RsaSigningKey;

/// How long one invocation (cold or warm) may take before the bench gives up.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the bench waits after an answer before reading the process's CPU
/// figures, so it is back in `/next` and the kernel's counters are settled.
const SETTLE: Duration = Duration::from_millis(20);
/// The name of the thread that runs the model, so its CPU time is its own.
const MODEL_THREAD: &str = "bench-model";

/// What `--lambda` was asked to do, validated.
#[derive(Debug, Clone)]
pub(crate) struct LambdaArgs {
    pub(crate) bootstrap_bin: PathBuf,
    pub(crate) cold_starts: usize,
    pub(crate) invocations: u64,
    pub(crate) model_reps: u64,
    pub(crate) aws_venv: Option<PathBuf>,
    pub(crate) keep_dir: bool,
}

/// The fixed environment of every `bootstrap`: a github-token-broker deployment
/// with the default parameter names, SSM at the proxy, GitHub at the stand-in.
fn bootstrap_env(ssm_url: &str, github_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDBENCH".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret".into()),
        ("AWS_SESSION_TOKEN", "bench-session".into()),
        ("AWS_ENDPOINT_URL_SSM", ssm_url.into()),
        ("GITHUB_TOKEN_BROKER_REPOSITORY_OWNER", OWNER.into()),
        ("GITHUB_TOKEN_BROKER_REPOSITORY_NAME", REPO.into()),
        ("GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL", github_url.into()),
    ]
}

/// One `bootstrap` process (one execution environment) with its own Runtime API.
struct Instance {
    child: Option<Child>,
    pid: u32,
    runtime: LambdaRuntime,
    log_path: PathBuf,
}

impl Instance {
    /// Starts the Runtime API emulator for a new instance (not yet spawned).
    async fn runtime() -> anyhow::Result<LambdaRuntime> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("bind the Runtime API emulator")?;
        LambdaRuntime::spawn(listener, RuntimeConfig::default())
            .await
            .context("start the Runtime API emulator")
    }

    /// Spawns `bin` against `runtime`, appending its output to `log_path`.
    fn spawn(
        bin: &Path,
        env: &[(&'static str, String)],
        runtime: LambdaRuntime,
        log_path: PathBuf,
    ) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let child = Command::new(bin)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", runtime.runtime_api())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            runtime,
            log_path,
        })
    }

    /// The end of the log all instances append to, for error messages.
    fn log_tail(&self) -> String {
        stack::file_tail(&self.log_path)
    }

    /// Waits for `pending`'s answer; fails on an init error, an exit, a timeout
    /// or an error answer.
    async fn answer(&mut self, pending: PendingInvocation) -> anyhow::Result<Answer> {
        let waited = {
            let child = &mut self.child;
            let runtime = &self.runtime;
            let exited = async move {
                loop {
                    if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                answer = pending.answer() => Waited::Answer(answer),
                report = runtime.init_error() => Waited::InitError(report),
                status = exited => Waited::Exited(status),
                _ = tokio::time::sleep(INVOCATION_TIMEOUT) => Waited::TimedOut,
            }
        };
        let answer = match waited {
            Waited::Answer(answer) => answer?,
            Waited::InitError(report) => {
                let body = report
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .unwrap_or_default();
                bail!(
                    "bootstrap reported an init error: {body}\nits log:\n{}",
                    self.log_tail()
                )
            }
            Waited::Exited(status) => bail!(
                "bootstrap exited ({status}) before answering; its log:\n{}",
                self.log_tail()
            ),
            Waited::TimedOut => bail!(
                "bootstrap did not answer within {INVOCATION_TIMEOUT:?}; its log:\n{}",
                self.log_tail()
            ),
        };
        match &answer.outcome {
            Outcome::Response(body) if !body.is_empty() => Ok(answer),
            other => bail!(
                "bootstrap answered {other:?}: {}\nits log:\n{}",
                String::from_utf8_lossy(other.body()),
                self.log_tail()
            ),
        }
    }

    /// Kills the process (Lambda freezes and discards environments; no clean exit to wait for).
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill bootstrap")?;
            child.wait().context("reap bootstrap")?;
        }
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// How waiting for an invocation ended.
enum Waited {
    Answer(Result<Answer, tokenmint::dev::lambda_runtime::EmulatorError>),
    InitError(Option<tokenmint::dev::lambda_runtime::InitErrorReport>),
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Counters before a measured window.
struct Mark {
    ssm: std::collections::BTreeMap<String, u64>,
    github: usize,
}

/// The stand-ins a measured window reads its counts from.
struct Counters<'a> {
    proxy: &'a CountingProxy,
    github: &'a GithubStandIn,
}

impl Counters<'_> {
    fn mark(&self) -> Mark {
        Mark {
            ssm: self.proxy.snapshot(),
            github: self.github.call_count(),
        }
    }

    /// SSM calls, GitHub calls and new App JWTs since `mark`.
    fn since(&self, mark: &Mark, known: &HashSet<String>) -> (u64, u64, HashSet<String>) {
        let ssm = moto::calls_between(&mark.ssm, &self.proxy.snapshot());
        let requests = self.github.requests();
        let window = requests.get(mark.github..).unwrap_or_default();
        (ssm, window.len() as u64, new_app_jwts(window, known))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ticks_ms(ticks: u64, hz: u64) -> f64 {
    ms(procfs::ticks_to_duration(ticks, hz))
}

/// Runs the whole `--lambda` bench.
pub(crate) async fn bench(args: &LambdaArgs) -> anyhow::Result<LambdaReport> {
    let (hz, tick_source) = procfs::clock_ticks_per_second();
    if tick_source == TickSource::Assumed {
        eprintln!("note: `getconf CLK_TCK` failed; assuming 100 clock ticks per second");
    }
    let binary = BinaryFacts::read(&args.bootstrap_bin).with_context(|| {
        format!(
            "{}: build it with `cargo build --release -p tokenmint-lambda`, or pass --bootstrap-bin",
            args.bootstrap_bin.display()
        )
    })?;
    eprintln!(
        "bootstrap: {} bytes ({:.1} MiB), {}",
        binary.bytes,
        mib(binary.bytes),
        binary.describe()
    );

    let dir = tempfile::Builder::new()
        .prefix("tokenmint-bench-lambda-")
        .tempdir()
        .context("create a temporary directory")?;
    eprintln!(
        "starting the GitHub API stand-in, moto (SSM) and the counting SSM proxy on 127.0.0.1"
    );
    let (upstreams, app_pem) = stack::Upstreams::start()?;
    let venv = moto::aws_venv(args.aws_venv.as_deref())?;
    let moto = Moto::start(&venv, &dir.path().join("moto.log")).await?;
    moto.seed(APP_ID, INSTALLATION_ID, &app_pem).await?;
    let proxy = CountingProxy::start(&moto.url).await?;
    let counters = Counters {
        proxy: &proxy,
        github: &upstreams.github,
    };
    let github_url = upstreams.github.url().to_string();
    let env = bootstrap_env(&proxy.url, &github_url);
    let log = dir.path().join("bootstrap.log");

    let outcome = async {
        let cold = cold_starts(args, &env, &counters, &log, hz).await?;
        let warm = warm_instance(args, &env, &counters, &log, hz).await?;
        let model = run_model(
            args.model_reps,
            &proxy,
            &upstreams.github,
            &app_pem,
            &github_url,
        )?;
        anyhow::Ok((cold, warm, model))
    }
    .await;

    proxy.stop();
    drop(moto);
    upstreams.stop();
    if args.keep_dir {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    let (cold, warm, original_model) = outcome?;
    Ok(LambdaReport {
        bootstrap_bin: args.bootstrap_bin.display().to_string(),
        binary_mib: mib(binary.bytes),
        stripped: binary.stripped(),
        binary,
        clock_ticks_per_second: hz,
        clock_tick_source: tick_source,
        cold,
        warm,
        original_model,
    })
}

/// Spawns a new instance with one `null` invocation queued and measures it up to its response.
async fn first_invocation(
    args: &LambdaArgs,
    env: &[(&'static str, String)],
    counters: &Counters<'_>,
    log: &Path,
    hz: u64,
) -> anyhow::Result<(Instance, ColdStart, Answer, HashSet<String>)> {
    let runtime = Instance::runtime().await?;
    let pending = runtime.queue(&b"null"[..])?;
    let mark = counters.mark();
    let spawned = Instant::now();
    let mut instance = Instance::spawn(&args.bootstrap_bin, env, runtime, log.to_owned())?;
    let answer = instance.answer(pending).await?;
    // Let it finish the answer and block in `/next`, so its CPU figures are settled.
    tokio::time::sleep(SETTLE).await;
    let cpu = procfs::process_cpu(instance.pid)?;
    let cpu_ns = procfs::process_cpu_ns(instance.pid)?;
    let peak = procfs::peak_rss(instance.pid)?;
    let (ssm_calls, github_calls, jwts) = counters.since(&mark, &HashSet::new());
    let start = ColdStart {
        spawn_to_response_ms: ms(answer.answered_at.saturating_duration_since(spawned)),
        init_ms: ms(answer.delivered_at.saturating_duration_since(spawned)),
        first_invocation_ms: ms(answer
            .answered_at
            .saturating_duration_since(answer.delivered_at)),
        cpu_ms: cpu_ns as f64 / 1e6,
        cpu_ticks_ms: ticks_ms(cpu.total(), hz),
        peak_rss_mib: mib(peak),
        ssm_calls,
        github_calls,
        app_jwt_signs: jwts.len() as u64,
    };
    Ok((instance, start, answer, jwts))
}

async fn cold_starts(
    args: &LambdaArgs,
    env: &[(&'static str, String)],
    counters: &Counters<'_>,
    log: &Path,
    hz: u64,
) -> anyhow::Result<ColdReport> {
    eprintln!("cold starts: {}", args.cold_starts);
    let mut starts = Vec::with_capacity(args.cold_starts);
    for _ in 0..args.cold_starts {
        let (mut instance, start, _, _) = first_invocation(args, env, counters, log, hz).await?;
        instance.kill()?;
        starts.push(start);
    }
    let report = ColdReport::new(starts);
    eprintln!(
        "  spawn → response p50 {:.2} ms, max {:.2} ms",
        report.spawn_to_response_ms.p50, report.spawn_to_response_ms.max
    );
    Ok(report)
}

async fn warm_instance(
    args: &LambdaArgs,
    env: &[(&'static str, String)],
    counters: &Counters<'_>,
    log: &Path,
    hz: u64,
) -> anyhow::Result<WarmReport> {
    eprintln!(
        "warm instance: 1 cold invocation, then {} warm ones",
        args.invocations
    );
    let (mut instance, first, first_answer, known) =
        first_invocation(args, env, counters, log, hz).await?;
    let check = first_answer
        .outcome
        .json()
        .context("the first answer is not JSON")?;
    if !check["token"].is_string() {
        bail!("the first answer has no token");
    }

    let mut latency_us = crate::load::new_histogram()?;
    let mark = counters.mark();
    let cpu0 = procfs::process_cpu(instance.pid)?;
    let cpu_ns0 = procfs::process_cpu_ns(instance.pid)?;
    let started = Instant::now();
    let mut last = first_answer.answered_at;
    for _ in 0..args.invocations {
        let pending = instance.runtime.queue(&b"null"[..])?;
        let answer = instance.answer(pending).await?;
        let micros = u64::try_from(answer.latency().as_micros()).unwrap_or(u64::MAX);
        latency_us.saturating_record(micros.max(1));
        last = answer.answered_at;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let cpu: CpuTicks = procfs::process_cpu(instance.pid)?.since(cpu0);
    let cpu_ns = procfs::process_cpu_ns(instance.pid)?.saturating_sub(cpu_ns0);
    let peak = procfs::peak_rss(instance.pid)?;
    let (ssm_calls, github_calls, jwts) = counters.since(&mark, &known);
    instance.kill()?;

    let n = args.invocations as f64;
    let since_read = last
        .saturating_duration_since(first_answer.answered_at)
        .as_secs_f64();
    let report = WarmReport {
        invocations: args.invocations,
        elapsed_secs: elapsed.as_secs_f64(),
        latency_ms: Latency::from_us(&latency_us),
        cpu_ms_per_invocation: per(ticks_ms(cpu.total(), hz), n),
        user_ms_per_invocation: per(ticks_ms(cpu.user, hz), n),
        system_ms_per_invocation: per(ticks_ms(cpu.system, hz), n),
        schedstat_cpu_ms_per_invocation: per(cpu_ns as f64 / 1e6, n),
        peak_rss_mib: mib(peak),
        ssm_calls,
        github_calls,
        app_jwt_signs: jwts.len() as u64,
        ssm_calls_per_invocation: per(ssm_calls as f64, n),
        github_calls_per_invocation: per(github_calls as f64, n),
        app_jwt_signs_per_invocation: per(jwts.len() as f64, n),
        secs_since_credentials_read: since_read,
        credentials_ttl_secs: CREDENTIALS_TTL_SECS,
        crossed_credentials_ttl: since_read >= CREDENTIALS_TTL_SECS,
        first_invocation: first,
    };
    eprintln!(
        "  p50 {:.2} ms, p99 {:.2} ms, CPU {:.3} ms/invocation, {:.3} GitHub and {:.3} SSM calls/invocation",
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.cpu_ms_per_invocation,
        report.github_calls_per_invocation,
        report.ssm_calls_per_invocation
    );
    Ok(report)
}

/// The App JWT claims github-token-broker signs: `iat` 60 s back, `exp` 9 minutes on.
#[derive(serde::Serialize)]
struct AppClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

fn app_claims(now: time::OffsetDateTime) -> AppClaims<'static> {
    let now = now.unix_timestamp();
    AppClaims {
        iat: now - 60,
        exp: now + 540,
        iss: APP_ID,
    }
}

/// Times `reps` runs of `step` on this thread: wall time per run and this thread's CPU.
async fn measure<F, Fut>(
    what: &str,
    reps: u64,
    calls: impl Fn() -> u64,
    mut step: F,
) -> anyhow::Result<ModelStep>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // One untimed run: connections, lazy initialisation.
    step().await.with_context(|| format!("model step {what}"))?;
    let mut latency_us = crate::load::new_histogram()?;
    let calls0 = calls();
    let cpu0 = procfs::this_thread_cpu_ns()?;
    for _ in 0..reps {
        let started = Instant::now();
        step().await.with_context(|| format!("model step {what}"))?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        latency_us.saturating_record(micros.max(1));
    }
    let cpu_ns = procfs::this_thread_cpu_ns()?.saturating_sub(cpu0);
    let n = reps as f64;
    Ok(ModelStep {
        what: what.to_owned(),
        reps,
        calls_per_step: per(calls().saturating_sub(calls0) as f64, n),
        latency_ms: Latency::from_us(&latency_us),
        cpu_ms_per_step: per(cpu_ns as f64 / 1e6, n),
    })
}

/// The original's per-invocation work, step by step, on a thread of its own.
fn run_model(
    reps: u64,
    proxy: &CountingProxy,
    github: &GithubStandIn,
    app_pem: &str,
    github_url: &str,
) -> anyhow::Result<ModelReport> {
    eprintln!("model of the original's per-invocation work: {reps} reps per step");
    let proxy = proxy.clone();
    let github = github.clone();
    let pem = app_pem.to_owned();
    let base = github_url.trim_end_matches('/').to_owned();
    let thread = std::thread::Builder::new()
        .name(MODEL_THREAD.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the model's runtime")?;
            runtime.block_on(model(reps, &proxy, &github, &pem, &base))
        })
        .context("spawn the model thread")?;
    thread
        .join()
        .map_err(|_| anyhow!("the model thread panicked"))?
}

async fn model(
    reps: u64,
    proxy: &CountingProxy,
    github: &GithubStandIn,
    pem: &str,
    base: &str,
) -> anyhow::Result<ModelReport> {
    use tokenmint::aws::ssm::SsmClient;
    use tokenmint::aws::AwsEnv;

    // 1. One GetParameters for the three names, WithDecryption, through the same proxy.
    let aws = AwsEnv::from_env(|name| match name {
        "AWS_REGION" => Some("us-east-1".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKIDBENCH".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("bench-secret".to_owned()),
        "AWS_SESSION_TOKEN" => Some("bench-session".to_owned()),
        "AWS_ENDPOINT_URL_SSM" => Some(proxy.url.clone()),
        _ => None,
    })
    .context("the model's AWS environment")?;
    let ssm = SsmClient::new(aws, Duration::from_secs(10)).context("the model's SSM client")?;
    let names = [
        moto::CLIENT_ID_PARAM,
        moto::INSTALLATION_ID_PARAM,
        moto::PRIVATE_KEY_PARAM,
    ];
    let (ssm, names) = (&ssm, &names);
    let ssm_step = measure(
        "SSM GetParameters (3 names, WithDecryption)",
        reps,
        || proxy.total(),
        move || async move {
            let got = ssm.get_parameters(names, SystemClock.now()).await?;
            if got.found.len() != 3 {
                bail!("GetParameters found {} of 3 parameters", got.found.len());
            }
            Ok(())
        },
    )
    .await?;

    // 2. The original parses the PEM it just read, then signs a new App JWT.
    let pem_step = measure(
        "parse the App key PEM (the original does it every invocation too)",
        reps,
        || 0,
        move || async move {
            RsaSigningKey::from_pem(pem.as_bytes())?;
            Ok(())
        },
    )
    .await?;
    let key = &RsaSigningKey::from_pem(pem.as_bytes())?;
    let sign_step = measure(
        "RSA-2048 PKCS#1 v1.5 SHA-256 sign of the App JWT",
        reps,
        || 0,
        move || async move {
            key.sign_jwt(&app_claims(SystemClock.now()), false)?;
            Ok(())
        },
    )
    .await?;

    // 3. Installation lookup and mint, as the original sends them, over a keep-alive client.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .context("the model's HTTP client")?;
    let jwt = key.sign_jwt(&app_claims(SystemClock.now()), false)?;
    let lookup = format!("{base}/repos/{OWNER}/{REPO}/installation");
    let mint = format!("{base}/app/installations/{INSTALLATION_ID}/access_tokens");
    let body = serde_json::json!({"repositories": [REPO], "permissions": {"contents": "read"}})
        .to_string();
    let (http, lookup, mint, body, jwt) = (&http, &lookup, &mint, &body, &jwt);
    let github_step = measure(
        "GitHub installation lookup + mint (2 calls)",
        reps,
        || github.call_count() as u64,
        move || async move {
            for request in [
                http.get(lookup),
                http.post(mint)
                    .header("content-type", "application/json")
                    .body(body.clone()),
            ] {
                let resp = request
                    .bearer_auth(jwt)
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28")
                    .header("user-agent", "tokenmint-bench-model")
                    .send()
                    .await?;
                let status = resp.status();
                resp.bytes().await?;
                if !status.is_success() {
                    bail!("the stand-in answered {status}");
                }
            }
            Ok(())
        },
    )
    .await?;
    Ok(ModelReport::new(ssm_step, sign_step, github_step, pem_step))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn env_is_a_valid_invoke_mode_config() {
        use tokenmint::lambda::{Env, LambdaConfig, Mode};
        let env = bootstrap_env("http://127.0.0.1:1", "http://127.0.0.1:2/");
        let config = LambdaConfig::from_env(&Env::from_pairs(env)).unwrap();
        assert!(matches!(config.mode, Mode::Invoke(_)));
    }

    #[test]
    fn app_claims_fit_githubs_window() {
        let now = time::macros::datetime!(2026-01-01 12:00:00 UTC);
        let c = app_claims(now);
        assert_eq!(c.exp - c.iat, 600);
        assert!(c.iat < now.unix_timestamp());
    }
}
