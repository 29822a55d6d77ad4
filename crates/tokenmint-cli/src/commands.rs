//! Subcommands: argument shapes and the glue from each to the library. No decisions live here.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokenmint::audit::{AuditLog, AuditOptions, Decision, ListFilter, PruneOutcome};
use tokenmint::client::{self, IdTokenSource, OutputTarget};
use tokenmint::clock::{Clock as _, SystemClock};
use tokenmint::config::Config;
use tokenmint::dev::{DevStack, DevStackOptions};
use tokenmint::exchange::Service;
use tokenmint::lint::Severity;
use tokenmint::oidc::Verifier;

/// Exchange CI OIDC tokens for short-lived, deploy-time-scoped credentials.
#[derive(Debug, Parser)]
#[command(name = "tokenmint", version, about)]
pub(crate) struct Cli {
    /// Log format for server commands.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ConfigArg),
    /// Validate a config file without serving.
    CheckConfig(ConfigArg),
    /// Run a complete local stack: a dev OIDC issuer, a GitHub API stand-in, and tokenmint.
    Dev(DevArgs),
    /// CI side: get this job's OIDC token, exchange it at a broker, and hand over the token.
    Exchange(ExchangeArgs),
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Explain and lint trust policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Show every verification check and claim condition for one broker and one token or claim set.
    /// Exit 0 if allowed, 1 if denied, 2 on usage or config errors.
    Explain(ExplainArgs),
    /// Find risky trust policies in a tokenmint config or an AWS IAM trust policy.
    /// Exit 1 if any finding is at or above --fail-on, 0 otherwise, 2 on usage or config errors.
    Lint(LintArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["token", "claims"])))]
struct ExplainArgs {
    /// The config file.
    #[arg(long, short, default_value = "tokenmint.toml")]
    config: PathBuf,
    /// The broker to explain.
    #[arg(long)]
    broker: String,
    /// The OIDC token (a compact JWT), or `@FILE` to read it from a file, or `-` for stdin.
    #[arg(long)]
    token: Option<String>,
    /// A JSON object of claims instead of a token (implies claims-only: no signature).
    #[arg(long, value_name = "FILE.json")]
    claims: Option<PathBuf>,
    /// Do not check the signature (and fetch no keys): evaluate the claims only.
    #[arg(long)]
    no_verify: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("document").required(true).args(["config", "iam_policy"])))]
struct LintArgs {
    /// A tokenmint config: its [[broker]] entries are linted (no App key is needed).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// An AWS IAM trust-policy JSON document.
    #[arg(long, value_name = "FILE.json")]
    iam_policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LintFormat::Text)]
    format: LintFormat,
    /// Exit 1 when any finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = FailOn::High)]
    fail_on: FailOn,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LintFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FailOn {
    Info,
    Low,
    Medium,
    High,
    /// Never fail on findings (exit 0 unless the input is unreadable).
    Never,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, default_value = "tokenmint.toml")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// tokenmint's address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where to write the generated config, App key and audit database.
    #[arg(long, default_value = ".tokenmint-dev")]
    dir: PathBuf,
    /// Override a claim in every token the local issuer mints, e.g.
    /// `--claim ref=refs/heads/dev` or `--claim environment=prod`; `--claim NAME=` removes it.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
    claims: Vec<(String, String)>,
}

fn parse_claim(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

#[derive(Debug, Args)]
struct ExchangeArgs {
    /// tokenmint's base URL.
    #[arg(long)]
    url: url::Url,
    /// The broker to use.
    #[arg(long)]
    broker: String,
    /// Audience to request for the OIDC token.
    #[arg(long, default_value = "tokenmint")]
    audience: String,
    /// Read the OIDC token from this file instead of GitHub Actions' token service.
    #[arg(long)]
    id_token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit 1 and name the row on any tampering.
    Verify(ConfigArg),
    /// Show audit rows, newest last.
    List(ListArgs),
    /// Delete rows recorded before a time, keeping each chain verifiable
    /// (refuses if the log does not verify).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Delete rows recorded before this RFC 3339 time, e.g. 2026-01-01T00:00:00Z.
    #[arg(long)]
    before: String,
    /// Count what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this broker.
    #[arg(long)]
    broker: Option<String>,
    /// Only this decision.
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    /// Only rows at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u32>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    Allow,
    Deny,
    Error,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENMINT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; never in files, pipes or CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        // One JSON object per line, span fields (request_id, broker) flattened in.
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(tokenmint::logging::FlatJson)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(cli.log_format);
            let config = Arc::new(Config::load(&args.config)?);
            let listen = config.server.listen;
            let service = Arc::new(Service::start(config, Arc::new(SystemClock)).await?);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("bind {listen}; change [server] listen"))?;
            // Startup lines come before "tokenmint serving": after it, every
            // line belongs to a request (and carries its request_id).
            if service.sts().is_some() {
                tracing::info!(
                    roles = service.config().sts.roles.len(),
                    "AWS STS-compatible endpoint on POST / (AssumeRoleWithWebIdentity, GetCallerIdentity)"
                );
            }
            tracing::info!(addr = %listen, "tokenmint serving");
            tokenmint::http::serve(
                listener,
                tokenmint::http::router(service),
                shutdown_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let config = Config::load(&args.config)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}: OK ({} issuer(s), {} broker(s))",
                args.config.display(),
                config.issuers.len(),
                config.brokers.len()
            )?;
            for b in config.brokers.values() {
                let perms: Vec<String> = b
                    .permissions
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                writeln!(
                    out,
                    "  broker {} -> {} [{}]",
                    b.name,
                    b.full_repository(),
                    perms.join(", ")
                )?;
            }
            for r in config.sts.roles.values() {
                writeln!(
                    out,
                    "  role {} (trust policy {}, max session {} s)",
                    r.arn.as_str(),
                    r.file.display(),
                    r.max_session_duration.as_secs()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            init_logging(cli.log_format);
            let stack = DevStack::start(DevStackOptions {
                listen: args.listen,
                dir: args.dir,
                claims: args.claims,
            })
            .await?;
            let mut out = std::io::stdout().lock();
            write!(out, "{}", stack.banner())?;
            out.flush()?;
            drop(out);
            stack.serve(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exchange(args) => exchange(args).await,
        Command::Audit(AuditCommand::Verify(args)) => {
            let config = Config::load(&args.config)?;
            // Read-only: a missing store is an error, never a fresh empty log.
            let options = AuditOptions {
                allow_prune: config.audit.allow_prune,
                ..AuditOptions::default()
            };
            let log = AuditLog::open_read_only_with(&config.audit.database, options).await?;
            let report = log.verify().await?;
            let mut out = std::io::stdout().lock();
            if report.chains.is_empty() {
                writeln!(out, "audit store holds no rows")?;
            }
            for chain in &report.chains {
                write!(
                    out,
                    "chain {}: {} row(s), head #{} {}",
                    chain.chain_id, chain.rows, chain.head_seq, chain.head_hash
                )?;
                if chain.pruned_through > 0 {
                    write!(out, ", pruned through #{}", chain.pruned_through)?;
                }
                writeln!(out)?;
            }
            if report.problems.is_empty() {
                writeln!(out, "audit log OK")?;
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &report.problems {
                    writeln!(out, "TAMPERED: {p}")?;
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Audit(AuditCommand::List(args)) => list(args).await,
        Command::Audit(AuditCommand::Prune(args)) => prune(args).await,
        Command::Policy(PolicyCommand::Explain(args)) => explain(args).await,
        Command::Policy(PolicyCommand::Lint(args)) => lint(args),
    }
}

async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let now = SystemClock.now();
    let explanation = match (&args.token, &args.claims) {
        (Some(token), None) => {
            let token = read_token(token)?;
            let verifier = if args.no_verify {
                None
            } else {
                Some(Verifier::new(&config.issuers).context("start the token verifier")?)
            };
            tokenmint::explain::explain_token(&config, &args.broker, &token, verifier.as_ref(), now)
                .await?
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read claims file {}", file.display()))?;
            let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| format!("{}: must be a JSON object of claims", file.display()))?;
            tokenmint::explain::explain_claims(&config, &args.broker, &claims, now)?
        }
        _ => anyhow::bail!("pass exactly one of --token and --claims"),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", explanation.to_json())?;
    } else {
        write!(out, "{explanation}")?;
    }
    Ok(if explanation.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--token` value: the JWT itself, `@FILE`, or `-` for stdin.
fn read_token(arg: &str) -> anyhow::Result<String> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .context("read the token from stdin")?;
        s
    } else if let Some(file) = arg.strip_prefix('@') {
        std::fs::read_to_string(file).with_context(|| format!("read the token from {file}"))?
    } else {
        arg.to_owned()
    };
    Ok(text.trim().to_owned())
}

fn lint(args: LintArgs) -> anyhow::Result<ExitCode> {
    let report = match (&args.config, &args.iam_policy) {
        (Some(path), None) => tokenmint::lint::lint_config_file(path)?,
        (None, Some(path)) => tokenmint::lint::lint_iam_file(path)?,
        _ => anyhow::bail!("pass exactly one of --config and --iam-policy"),
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        LintFormat::Text => write!(out, "{report}")?,
        LintFormat::Json => writeln!(out, "{}", report.to_json())?,
        LintFormat::Sarif => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&tokenmint::lint::to_sarif(&report))?
        )?,
    }
    let threshold = match args.fail_on {
        FailOn::Info => Some(Severity::Info),
        FailOn::Low => Some(Severity::Low),
        FailOn::Medium => Some(Severity::Medium),
        FailOn::High => Some(Severity::High),
        FailOn::Never => None,
    };
    Ok(match threshold {
        Some(t) if report.fails(t) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

async fn exchange(args: ExchangeArgs) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let source = match (args.id_token_file, env("ACTIONS_ID_TOKEN_REQUEST_URL"), env("ACTIONS_ID_TOKEN_REQUEST_TOKEN")) {
        (Some(file), _, _) => IdTokenSource::File(file),
        (None, Some(request_url), Some(token)) => IdTokenSource::Actions {
            request_url,
            request_token: token.into(),
        },
        _ => anyhow::bail!(
            "no OIDC token source: in GitHub Actions grant `permissions: id-token: write` (which sets ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN), or pass --id-token-file"
        ),
    };
    let id_token = client::fetch_id_token(&source, &args.audience).await?;
    let response = match client::call_broker(&args.url, &args.broker, &id_token).await {
        Ok(r) => r,
        Err(e @ client::ClientError::Refused { .. }) => {
            eprintln!("tokenmint: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let github_output = env("GITHUB_OUTPUT").map(PathBuf::from);
    let target = OutputTarget {
        github_actions: env("GITHUB_ACTIONS").as_deref() == Some("true"),
        github_output: github_output.as_deref(),
    };
    client::emit(&response, &target, &mut std::io::stdout().lock())?;
    eprintln!(
        "tokenmint: got a token for {} from broker {} (expires {}, request {})",
        response.repositories.join(", "),
        response.broker,
        response.expires_at,
        response.request_id
    );
    Ok(ExitCode::SUCCESS)
}

async fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let before =
        time::OffsetDateTime::parse(&args.before, &time::format_description::well_known::Rfc3339)
            .context("--before must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")?;
    if !config.audit.allow_prune {
        anyhow::bail!(
            "pruning is off for this audit store; set [audit] allow_prune = true in {} (audit verify then accepts prune anchors; see Retention in the README)",
            args.config.config.display()
        );
    }
    let now = SystemClock.now();
    if before > now {
        anyhow::bail!(
            "--before {} is in the future; give a past time",
            args.before
        );
    }
    let outcome = AuditLog::prune(&config.audit.database, before, now, args.dry_run).await?;
    let mut out = std::io::stdout().lock();
    let chains = match outcome {
        PruneOutcome::Refused(report) => {
            for p in &report.problems {
                writeln!(out, "TAMPERED: {p}")?;
            }
            writeln!(
                out,
                "nothing pruned: the audit log does not verify, and pruning would delete the evidence"
            )?;
            return Ok(ExitCode::from(1));
        }
        PruneOutcome::Pruned(chains) => chains,
    };
    if chains.is_empty() {
        writeln!(out, "audit store holds no rows")?;
    }
    for c in &chains {
        if args.dry_run {
            writeln!(
                out,
                "chain {}: would prune {} row(s) recorded before {}",
                c.chain_id, c.rows, args.before
            )?;
        } else if c.pruned_through == 0 {
            writeln!(out, "chain {}: nothing to prune", c.chain_id)?;
        } else {
            writeln!(
                out,
                "chain {}: pruned {} row(s); it now starts after #{}, anchor {}",
                c.chain_id, c.rows, c.pruned_through, c.anchor_hash
            )?;
        }
    }
    if !args.dry_run && chains.iter().any(|c| c.rows > 0) {
        writeln!(
            out,
            "record each anchor with the chain heads you keep outside the database"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let since = args
        .since
        .as_deref()
        .map(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339))
        .transpose()
        .context("--since must be an RFC 3339 time, e.g. 2026-11-23T00:00:00Z")?;
    let log = AuditLog::open_read_only(&config.audit.database).await?;
    let rows = log
        .list(&ListFilter {
            broker: args.broker,
            decision: args.decision.map(|d| match d {
                DecisionArg::Allow => Decision::Allow,
                DecisionArg::Deny => Decision::Deny,
                DecisionArg::Error => Decision::Error,
            }),
            since,
            limit: args.limit,
        })
        .await?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        if args.json {
            let mut value = serde_json::to_value(&row.record)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("chain_id".into(), row.chain_id.clone().into());
                obj.insert("seq".into(), row.seq.into());
                obj.insert("hash".into(), row.hash.clone().into());
            }
            writeln!(out, "{value}")?;
        } else {
            let r = &row.record;
            let time = r
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            writeln!(
                out,
                "{}#{} {} {:<5} {} {} sub={} {}",
                row.chain_id,
                row.seq,
                time,
                format!("{:?}", r.decision).to_lowercase(),
                r.status,
                r.broker,
                r.subject.as_deref().unwrap_or("-"),
                r.reason
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
