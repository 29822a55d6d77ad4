//! `tokenmint-bench`: a rerunnable closed-loop load benchmark of the real `tokenmint serve` binary, on loopback, against the local OIDC issuer and GitHub API stand-in; with `--lambda`, the real `bootstrap` against local stand-ins.
//!
//! Build both first: `cargo build --release -p tokenmint-cli -p tokenmint-bench`,
//! then run `target/release/tokenmint-bench` (see `--help` and BENCHMARKS.md).
//! For the Lambda: `cargo build --release -p tokenmint-lambda -p tokenmint-bench`,
//! then `target/release/tokenmint-bench --lambda --bootstrap-bin target/release/bootstrap`.

mod elf;
mod lambda;
mod lambda_report;
mod load;
mod moto;
mod procfs;
mod report;
mod stack;

use anyhow::{bail, Context as _};
use clap::Parser;
use procfs::{CpuTicks, TickSource};
use report::{LevelReport, RunReport, SoakReport, SoakSample};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest timed run per level: every level gets freshly minted tokens, which live 300 s.
const MAX_DURATION_SECS: u64 = 240;

/// Load-test the real `tokenmint serve` binary on loopback.
///
/// Starts the local OIDC issuer and GitHub API stand-in in this process,
/// writes a config to a temporary directory (SQLite audit log), spawns
/// `tokenmint serve`, warms it up, then runs closed-loop clients at each
/// concurrency level and prints a Markdown table.
#[derive(Debug, Parser)]
#[command(name = "tokenmint-bench", version)]
struct Args {
    /// The `tokenmint` binary to benchmark. Build it with `cargo build --release -p tokenmint-cli`.
    #[arg(long, default_value = "target/release/tokenmint")]
    tokenmint_bin: PathBuf,
    /// Concurrency levels (closed-loop clients), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up (16 clients) before the first level.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// OIDC tokens pre-minted per level and reused round-robin.
    #[arg(long, default_value_t = 512)]
    tokens: usize,
    /// Print JSON instead of the Markdown table.
    #[arg(long)]
    json: bool,
    /// After the levels, a soak: this many seconds of load, in windows of
    /// `--soak-window` seconds (fresh tokens each), sampling tokenmint's RSS
    /// after every window. 0 = no soak. 600 gives the 10-minute soak.
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// Closed-loop clients during the soak.
    #[arg(long, default_value_t = 64)]
    soak_clients: usize,
    /// Seconds per soak window (one RSS sample each).
    #[arg(long, default_value_t = 60)]
    soak_window: u64,
    /// Paced instead of closed-loop: the clients together offer this many
    /// requests per second at every level, and latency counts from each
    /// request's scheduled send time. Use it for latency at a load the
    /// service can carry (closed-loop latency is mostly queueing).
    #[arg(long)]
    rate: Option<f64>,
    /// The audit store tokenmint writes to: SQLite in the temporary directory
    /// by default, or e.g. `postgres://postgres@127.0.0.1:5432/test`. Each
    /// run appends to its own chain (`bench-<unix time>`), so runs against a
    /// shared PostgreSQL database do not continue each other's chains.
    #[arg(long, default_value = "sqlite://audit.db")]
    audit_database: String,
    /// Keep the temporary directory (config, audit DB, tokenmint's log) and print its path.
    #[arg(long)]
    keep_dir: bool,
    /// Benchmark the Lambda `bootstrap` instead of `tokenmint serve`: its size,
    /// cold starts, a warm instance's per-invocation cost, and a model of
    /// github-token-broker's per-invocation work, against the Lambda Runtime
    /// API emulator, moto (SSM) behind a counting proxy and the GitHub stand-in.
    #[arg(long, requires = "bootstrap_bin")]
    lambda: bool,
    /// The `bootstrap` binary (with --lambda). Build it with `cargo build --release -p tokenmint-lambda`.
    #[arg(long)]
    bootstrap_bin: Option<PathBuf>,
    /// Cold starts to measure (with --lambda).
    #[arg(long, default_value_t = 20)]
    cold_starts: usize,
    /// Sequential warm invocations of one instance (with --lambda).
    #[arg(long, default_value_t = 2000)]
    invocations: u64,
    /// Repetitions of each step of the model of the original's per-invocation work (with --lambda).
    #[arg(long, default_value_t = 500)]
    model_reps: u64,
    /// The Python venv with moto's server (with --lambda); default: what `scripts/python-env aws` prints.
    #[arg(long)]
    aws_venv: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenmint-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.lambda {
        return run_lambda(&args);
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs one or more levels, each at least 1");
    }
    if args.duration == 0 || args.duration > MAX_DURATION_SECS {
        bail!("--duration must be 1..={MAX_DURATION_SECS} s (tokens live 300 s)");
    }
    if args.soak > 0
        && (args.soak_clients == 0 || args.soak_window == 0 || args.soak_window > MAX_DURATION_SECS)
    {
        bail!("--soak needs --soak-clients >= 1 and --soak-window 1..={MAX_DURATION_SECS} s");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.tokens == 0 {
        bail!("--tokens must be at least 1");
    }
    if !args.tokenmint_bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p tokenmint-cli`, \
             or pass --tokenmint-bin (with CARGO_TARGET_DIR set it is $CARGO_TARGET_DIR/release/tokenmint)",
            args.tokenmint_bin.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("start the load generator's runtime")?;
    let report = runtime.block_on(bench(&args))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report::markdown(&report).as_bytes())?;
    }
    Ok(())
}

/// `--lambda`: validates the arguments, runs [`lambda::bench`], prints the report.
fn run_lambda(args: &Args) -> anyhow::Result<()> {
    let Some(bootstrap_bin) = args.bootstrap_bin.clone() else {
        bail!("--lambda needs --bootstrap-bin PATH");
    };
    if !bootstrap_bin.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p tokenmint-lambda` \
             (with CARGO_TARGET_DIR set it is $CARGO_TARGET_DIR/release/bootstrap)",
            bootstrap_bin.display()
        );
    }
    if args.cold_starts == 0 || args.invocations == 0 || args.model_reps == 0 {
        bail!("--cold-starts, --invocations and --model-reps must each be at least 1");
    }
    let lambda_args = lambda::LambdaArgs {
        bootstrap_bin,
        cold_starts: args.cold_starts,
        invocations: args.invocations,
        model_reps: args.model_reps,
        aws_venv: args.aws_venv.clone(),
        keep_dir: args.keep_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("start the bench's runtime")?;
    let report = runtime.block_on(lambda::bench(&lambda_args))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(lambda_report::markdown(&report).as_bytes())?;
    }
    Ok(())
}

async fn bench(args: &Args) -> anyhow::Result<RunReport> {
    let (hz, tick_source) = procfs::clock_ticks_per_second();
    if tick_source == TickSource::Assumed {
        eprintln!("note: `getconf CLK_TCK` failed; assuming 100 clock ticks per second");
    }

    eprintln!("starting the local OIDC issuer and GitHub API stand-in on 127.0.0.1");
    let (upstreams, app_pem) = stack::Upstreams::start()?;
    let dir = tempfile::Builder::new()
        .prefix("tokenmint-bench-")
        .tempdir()
        .context("create a temporary directory")?;
    std::fs::write(dir.path().join("app.pem"), &app_pem).context("write the App key")?;
    let listen = stack::free_loopback_port()?;
    let config_path = dir.path().join("tokenmint.toml");
    std::fs::write(
        &config_path,
        stack::config_text(
            listen,
            upstreams.github.url().as_str(),
            &upstreams.issuer.issuer_url(),
            &args.audit_database,
            &format!(
                "bench-{}",
                tokenmint::clock::Clock::now(&tokenmint::clock::SystemClock).unix_timestamp()
            ),
        ),
    )
    .context("write tokenmint.toml")?;

    eprintln!(
        "spawning {} serve --config {}",
        args.tokenmint_bin.display(),
        config_path.display()
    );
    let mut server = stack::Server::spawn(
        &args.tokenmint_bin,
        &config_path,
        listen,
        dir.path().join("tokenmint.log"),
    )?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;

    let outcome = measure(args, &client, &upstreams, &mut server, hz, dir.path()).await;

    let stopped = server.stop(Duration::from_secs(10));
    upstreams.stop();
    let mut report = outcome?;
    report.clock_ticks_per_second = hz;
    report.clock_tick_source = tick_source;
    report.child_exit = stopped?;
    eprintln!("tokenmint {}", report.child_exit);
    if args.keep_dir {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(report)
}

/// Everything between "the child is spawned" and "stop it", so the caller
/// always stops the child, whatever fails here.
async fn measure(
    args: &Args,
    client: &reqwest::Client,
    upstreams: &stack::Upstreams,
    server: &mut stack::Server,
    hz: u64,
    dir: &Path,
) -> anyhow::Result<RunReport> {
    server.wait_ready(client, Duration::from_secs(30)).await?;
    let pid = server.pid;
    let url = format!("{}/v1/brokers/{}/token", server.base, stack::BROKER);
    eprintln!("tokenmint is ready (pid {pid})");

    let mint = |n: usize| -> anyhow::Result<Arc<Vec<String>>> {
        let tokens = (0..n)
            .map(|_| {
                upstreams
                    .issuer
                    .mint(stack::AUDIENCE, serde_json::Value::Null)
            })
            .collect::<Result<Vec<_>, _>>()
            .context("mint OIDC tokens")?;
        Ok(Arc::new(tokens))
    };

    // One cold exchange: checks the setup and shows the cold-cache GitHub cost.
    let tokens = mint(args.tokens)?;
    let calls_before = upstreams.github.call_count();
    let first = client
        .post(&url)
        .bearer_auth(tokens.first().map(String::as_str).unwrap_or_default())
        .send()
        .await
        .context("first exchange")?;
    let status = first.status();
    let body = first.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        bail!(
            "the first exchange got {status}: {body}\ntokenmint's log:\n{}",
            server.log_tail()
        );
    }
    let cold_github_calls = upstreams.github.call_count() - calls_before;
    eprintln!("first exchange OK ({cold_github_calls} GitHub calls with cold caches)");

    if args.warmup > 0 {
        eprintln!("warming up: 16 clients for {} s", args.warmup);
        let warm = load::run(
            client,
            &url,
            Arc::clone(&tokens),
            16,
            Duration::from_secs(args.warmup),
            None,
        )
        .await?;
        if warm.ok == 0 {
            bail!(
                "no successful exchange during warm-up (non-200: {:?}, transport errors: {})\ntokenmint's log:\n{}",
                warm.non_200,
                warm.transport_errors,
                server.log_tail()
            );
        }
    }

    let mut levels = Vec::new();
    for &clients in &args.concurrency {
        let tokens = mint(args.tokens)?;
        // Let the previous level's connections settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("level: {clients} clients for {} s", args.duration);

        let svc0 = procfs::process_cpu(pid)?;
        let self0 = procfs::self_cpu()?;
        let standin0 = procfs::self_threads_cpu(stack::STANDIN_THREAD)?;
        let calls0 = upstreams.github.call_count();

        let result = load::run(
            client,
            &url,
            tokens,
            clients,
            Duration::from_secs(args.duration),
            args.rate,
        )
        .await?;

        let svc = procfs::process_cpu(pid)?.since(svc0);
        let own = procfs::self_cpu()?.since(self0);
        let standin = procfs::self_threads_cpu(stack::STANDIN_THREAD)?.since(standin0);
        let calls = upstreams.github.call_count() - calls0;
        let peak_rss = procfs::peak_rss(pid)?;

        let level = LevelReport::new(
            clients,
            &result,
            Cpu { svc, own, standin },
            hz,
            calls,
            peak_rss,
        );
        eprintln!(
            "  {:.0} exchanges/s, p50 {:.2} ms, p99 {:.2} ms (added by tokenmint: p99 {:.2} ms), service CPU {:.3} ms/exchange, {:.3} GitHub calls/exchange",
            level.exchanges_per_sec,
            level.latency_ms.p50,
            level.latency_ms.p99,
            level.added_latency_ms.p99,
            level.service_cpu_ms_per_exchange,
            level.github_calls_per_exchange
        );
        levels.push(level);
    }

    let soak = if args.soak > 0 {
        Some(soak(args, client, &url, &mint, pid, dir).await?)
    } else {
        None
    };

    Ok(RunReport {
        tokenmint_bin: args.tokenmint_bin.display().to_string(),
        duration_secs: args.duration,
        warmup_secs: args.warmup,
        tokens_per_level: args.tokens,
        clock_ticks_per_second: hz,
        clock_tick_source: TickSource::Getconf,
        cold_github_calls,
        offered_rate: args.rate,
        levels,
        soak,
        child_exit: String::new(),
    })
}

/// The soak: `--soak` seconds of `--soak-clients` closed-loop clients, one
/// RSS sample per window. Memory is flat when the last samples stop rising.
async fn soak(
    args: &Args,
    client: &reqwest::Client,
    url: &str,
    mint: &dyn Fn(usize) -> anyhow::Result<Arc<Vec<String>>>,
    pid: u32,
    dir: &Path,
) -> anyhow::Result<SoakReport> {
    eprintln!(
        "soak: {} clients for {} s, RSS sampled every {} s",
        args.soak_clients, args.soak, args.soak_window
    );
    let mut samples = Vec::new();
    let mut done = 0;
    while done < args.soak {
        let window = args.soak_window.min(args.soak - done);
        let tokens = mint(args.tokens)?;
        let result = load::run(
            client,
            url,
            tokens,
            args.soak_clients,
            Duration::from_secs(window),
            None,
        )
        .await?;
        done += window;
        let sample = SoakSample {
            at_secs: done,
            exchanges_per_sec: report::per(result.ok as f64, result.elapsed.as_secs_f64()),
            non_200: result.non_200_total(),
            transport_errors: result.transport_errors,
            rss_mib: procfs::current_rss(pid)? as f64 / MIB,
            peak_rss_mib: procfs::peak_rss(pid)? as f64 / MIB,
            wal_mib: wal_bytes(dir).map(|b| b as f64 / MIB),
        };
        eprintln!(
            "  {:>4} s: {:.0} exchanges/s, RSS {:.1} MiB (peak {:.1} MiB), SQLite WAL {}",
            sample.at_secs,
            sample.exchanges_per_sec,
            sample.rss_mib,
            sample.peak_rss_mib,
            sample
                .wal_mib
                .map_or("-".to_owned(), |m| format!("{m:.1} MiB"))
        );
        samples.push(sample);
    }
    Ok(SoakReport {
        clients: args.soak_clients,
        window_secs: args.soak_window,
        samples,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// The size of the SQLite audit store's write-ahead log in `dir` (the
/// default store), or `None` when there is none (another store).
fn wal_bytes(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with("-wal"))
        .and_then(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
}

/// CPU ticks used during one level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cpu {
    /// The tokenmint child, all threads.
    pub(crate) svc: CpuTicks,
    /// This whole process: clients, issuer, stand-in.
    pub(crate) own: CpuTicks,
    /// This process's issuer/stand-in thread only.
    pub(crate) standin: CpuTicks,
}
