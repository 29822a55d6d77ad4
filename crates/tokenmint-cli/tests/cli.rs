//! Tests of the real `tokenmint` binary: `dev`, `exchange`, `audit`, `check-config`, `@actions/core` and octo-sts/action compatibility, and that no secret reaches any output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokenmint"))
}

/// A running `tokenmint dev`, with what it printed so far.
struct Dev {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    request_url: String,
    request_token: String,
    stdout: String,
    stderr: mpsc::Receiver<String>,
    /// The rest of stdout, line by line.
    lines: mpsc::Receiver<String>,
}

impl Dev {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = bin()
            .args(["dev", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .args(extra)
            .env("TOKENMINT_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain stderr in the background so the child never blocks on it.
        let mut err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        let (line_tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if line_tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut stdout = String::new();
        let quoted = |l: &str| l.split('\'').nth(1).unwrap_or_default().to_owned();
        let (mut url, mut request_url, mut request_token) =
            (String::new(), String::new(), String::new());
        while url.is_empty() {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("tokenmint dev printed no exchange command; stdout so far:\n{stdout}")
                });
            stdout.push_str(&line);
            stdout.push('\n');
            let t = line.trim();
            if t.starts_with("export ACTIONS_ID_TOKEN_REQUEST_URL=") {
                request_url = quoted(t);
            } else if t.starts_with("export ACTIONS_ID_TOKEN_REQUEST_TOKEN=") {
                request_token = quoted(t);
            } else if let Some(rest) = t.strip_prefix("tokenmint exchange --url ") {
                url = rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        assert!(
            stdout.contains("LOCAL DEV STACK"),
            "the stack must label itself:\n{stdout}"
        );
        assert!(stdout.contains("NOT GitHub"), "{stdout}");
        Self {
            child,
            dir,
            url,
            request_url,
            request_token,
            stdout,
            stderr,
            lines,
        }
    }

    /// The next banner line (trimmed) that starts with `prefix`.
    fn line_starting(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| {
                    panic!(
                        "tokenmint dev printed no line starting {prefix:?}; stdout so far:\n{}",
                        self.stdout
                    )
                });
            self.stdout.push_str(&line);
            self.stdout.push('\n');
            if line.trim().starts_with(prefix) {
                return line.trim().to_owned();
            }
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("tokenmint.toml")
    }

    fn exchange(&self, broker: &str, extra_env: &[(&str, &Path)]) -> Output {
        let mut cmd = bin();
        cmd.args([
            "exchange",
            "--url",
            &self.url,
            "--broker",
            broker,
            "--audience",
            "tokenmint",
        ])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &self.request_url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &self.request_token)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn audit(&self, args: &[&str]) -> Output {
        bin()
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// Runs one SQL statement on the stack's SQLite audit store, as an attacker would.
    fn sql(&self, statement: &str) {
        let db = format!(
            "sqlite://{}",
            self.dir.path().join("tokenmint-audit.db").display()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        });
    }

    /// Stops the stack with SIGTERM and returns what it printed: (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "tokenmint dev did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut rest = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut rest);
        }
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (format!("{}{rest}", self.stdout), stderr)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that no secret appears in `output`.
fn assert_no_secrets(output: &str, tokens: &[String], pem: &str) {
    for t in tokens {
        assert!(
            !output.contains(t.as_str()),
            "an installation token leaked into output"
        );
    }
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !output.contains(line),
            "the App private key leaked into output"
        );
    }
    assert!(
        !output.contains("PRIVATE KEY"),
        "PEM material leaked into output"
    );
    // Every JWT (App JWT, OIDC token) starts with a base64url JSON header.
    assert!(!output.contains("eyJ"), "a JWT leaked into output");
}

#[test]
fn dev_stack_exchange_audit_and_no_secret_in_output() {
    let dev = Dev::start();
    let pem = std::fs::read_to_string(dev.dir.path().join("github-app.pem")).unwrap();
    let mut tokens = Vec::new();
    let mut everything = String::new();

    // Plain mode: the token alone on stdout.
    let out = dev.exchange("widgets-read", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(text(&out.stdout), format!("{token}\n"));
    everything += &text(&out.stderr);
    tokens.push(token);

    // GitHub Actions mode: masked, handed over through GITHUB_OUTPUT only.
    let output_file = dev.dir.path().join("github_output");
    std::fs::write(&output_file, "").unwrap();
    let out = dev.exchange(
        "widgets-read",
        &[
            ("GITHUB_ACTIONS", Path::new("true")),
            ("GITHUB_OUTPUT", &output_file),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&output_file).unwrap();
    let token = written
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .unwrap()
        .to_owned();
    assert_eq!(text(&out.stdout), format!("::add-mask::{token}\n"));
    assert!(written.contains("expires_at="));
    everything += &text(&out.stderr);
    tokens.push(token);

    // A refusal: exit 1, the reason on stderr, nothing on stdout.
    let out = dev.exchange("no-such-broker", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("access_denied"),
        "{}",
        text(&out.stderr)
    );
    everything += &text(&out.stderr);

    // The audit log: three rows, hashes of the tokens, verifiable.
    let out = dev.audit(&["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let rows: Vec<serde_json::Value> = listing
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{listing}");
    let hashes: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["grant"]["token_sha256"].as_str())
        .collect();
    for t in &tokens {
        assert!(hashes.contains(&hex::encode(Sha256::digest(t.as_bytes())).as_str()));
    }
    let out = dev.audit(&["list", "--decision", "deny"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("unknown broker"),
        "{}",
        text(&out.stdout)
    );
    let out = dev.audit(&["verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("audit log OK"));
    everything += &listing;

    let request_token = dev.request_token.clone();
    let (banner, logs) = dev.stop();
    assert!(
        logs.contains("exchange refused"),
        "debug logs should be captured:\n{logs}"
    );
    // The banner prints the request token on purpose (for pasting); logs never do.
    assert!(
        !logs.contains(&request_token),
        "the ID-token request token leaked into the logs"
    );
    everything += &banner;
    everything += &logs;
    assert_no_secrets(&everything, &tokens, &pem);
}

#[test]
fn audit_verify_names_a_tampered_row() {
    let dev = Dev::start();
    for _ in 0..3 {
        assert!(dev.exchange("widgets-read", &[]).status.success());
    }
    dev.sql("UPDATE audit_log SET record = replace(record, '\"allow\"', '\"deny\"') WHERE seq = 2");
    let out = dev.audit(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("main#2"),
        "{}",
        text(&out.stdout)
    );

    // Deleting a row is caught too.
    dev.sql("DELETE FROM audit_log WHERE seq = 2");
    let out = dev.audit(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    dev.stop();
}

/// `audit prune` on a store `tokenmint dev` is writing: a dry run, the prune,
/// an exchange after it, `verify` on what is left, and a refusal once the
/// log no longer verifies.
#[test]
fn audit_prune_keeps_the_log_verifiable_while_the_service_writes() {
    let dev = Dev::start();
    for _ in 0..4 {
        assert!(dev.exchange("widgets-read", &[]).status.success());
    }
    // A cutoff after all four rows, in whole seconds.
    std::thread::sleep(Duration::from_millis(1100));
    let rfc3339 = |unix: i64| {
        time::OffsetDateTime::from_unix_timestamp(unix)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let before = rfc3339(unix_now());

    // Off unless the config allows it.
    let out = dev.audit(&["prune", "--before", &before]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("set [audit] allow_prune = true"),
        "{}",
        text(&out.stderr)
    );
    let config = std::fs::read_to_string(dev.config()).unwrap();
    std::fs::write(
        dev.config(),
        config.replacen("[audit]\n", "[audit]\nallow_prune = true\n", 1),
    )
    .unwrap();

    // A usage error (2), not a refusal (1).
    let out = dev.audit(&["prune", "--before", &rfc3339(unix_now() + 3600)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is in the future"),
        "{}",
        text(&out.stderr)
    );

    let out = dev.audit(&["prune", "--before", &before, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("chain main: would prune 3 row(s)"),
        "{}",
        text(&out.stdout)
    );

    // The last row stays: the running writer continues from it.
    let out = dev.audit(&["prune", "--before", &before]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("chain main: pruned 3 row(s); it now starts after #3, anchor "),
        "{}",
        text(&out.stdout)
    );
    assert!(dev.exchange("widgets-read", &[]).status.success());
    let out = dev.audit(&["verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("chain main: 2 row(s), head #5 ")
            && text(&out.stdout).contains(", pruned through #3"),
        "{}",
        text(&out.stdout)
    );

    // Without its anchor the log no longer verifies, and prune refuses.
    dev.sql("DELETE FROM audit_anchor");
    let out = dev.audit(&["prune", "--before", &before]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("TAMPERED: rows main#1..main#3 are missing")
            && text(&out.stdout).contains("nothing pruned"),
        "{}",
        text(&out.stdout)
    );
    dev.stop();
}

#[test]
fn audit_verify_reports_a_deleted_store_and_does_not_recreate_it() {
    let mut dev = Dev::start();
    assert!(dev.exchange("widgets-read", &[]).status.success());
    let db = dev.dir.path().join("tokenmint-audit.db");
    assert!(db.exists());
    // End the dev run (keeping its directory), so nothing else touches the store.
    let _ = Command::new("kill")
        .args(["-TERM", &dev.child.id().to_string()])
        .status();
    dev.child.wait().unwrap();
    // The easiest tampering: delete the whole store.
    for name in [
        "tokenmint-audit.db",
        "tokenmint-audit.db-wal",
        "tokenmint-audit.db-shm",
    ] {
        let _ = std::fs::remove_file(dev.dir.path().join(name));
    }
    for args in [&["verify"][..], &["list"][..]] {
        let out = dev.audit(args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "audit {args:?} on a deleted store must fail:\n{}{stderr}",
            text(&out.stdout)
        );
        assert!(
            stderr.contains("does not exist") && stderr.contains("[audit] database"),
            "{stderr}"
        );
        assert!(stderr.contains("tokenmint-audit.db"), "{stderr}");
        assert!(!text(&out.stdout).contains("audit log OK"));
        assert!(!db.exists(), "audit {args:?} recreated the audit store");
    }
}

/// `tests/actions-core` with its pinned `@actions/core` installed (`npm ci` once).
fn actions_core_package() -> PathBuf {
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/actions-core");
    // Tests run on several threads of this one process; one installs, the others wait.
    static NPM_CI: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let lock = NPM_CI.lock().unwrap_or_else(|e| e.into_inner());
    if !pkg.join("node_modules/@actions/core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&pkg)
            .status()
            .expect("npm is needed for the @actions/core compatibility test (CI installs it)");
        assert!(status.success(), "npm ci failed in {}", pkg.display());
    }
    drop(lock);
    pkg
}

#[test]
fn actions_core_get_id_token_works_unchanged() {
    let pkg = actions_core_package();
    let dev = Dev::start();
    let id_token_file = dev.dir.path().join("id-token");
    let out = Command::new("node")
        .arg(pkg.join("get-id-token.mjs"))
        .arg("tokenmint")
        .arg(&id_token_file)
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &dev.request_url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &dev.request_token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getIDToken failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = bin()
        .args([
            "exchange",
            "--url",
            &dev.url,
            "--broker",
            "widgets-read",
            "--id-token-file",
        ])
        .arg(&id_token_file)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ghs_"));

    // A wrong request token is refused by the issuer, and getIDToken reports it.
    let out = Command::new("node")
        .arg(pkg.join("get-id-token.mjs"))
        .arg("tokenmint")
        .arg(&id_token_file)
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &dev.request_url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    dev.stop();
}

/// Runs one step of octo-sts/action (`main` or `post`, replayed by
/// `tests/actions-core/octo-sts-action.mjs`) as the runner would.
fn octo_sts_step(pkg: &Path, step: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(pkg.join("octo-sts-action.mjs")).arg(step);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `GET /installation/repositories` on the GitHub stand-in with `token`:
/// whether the token still works, as GitHub would answer it.
fn token_repositories(github: &str, token: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("{github}/installation/repositories"))
            .bearer_auth(token)
            .header("user-agent", "tokenmint-cli-test")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
        (status, body)
    })
}

#[test]
fn octo_sts_action_request_sequence_works_against_tokenmint_dev() {
    let pkg = actions_core_package();
    let dev = Dev::start();
    let domain = dev.url.trim_start_matches("http://").to_owned();
    let github = dev
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("GitHub API stand-in"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the banner names the GitHub API stand-in")
        .to_owned();
    let output_file = dev.dir.path().join("github_output");
    let state_file = dev.dir.path().join("github_state");
    std::fs::write(&output_file, "").unwrap();
    std::fs::write(&state_file, "").unwrap();
    let main_env = |scope: &'static str| {
        [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", dev.request_url.clone()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", dev.request_token.clone()),
            ("INPUT_SCOPE", scope.to_owned()),
            ("INPUT_IDENTITY", "widgets-read".to_owned()),
            ("INPUT_DOMAIN", domain.clone()),
            ("OCTO_STS_SCHEME", "http".to_owned()),
            ("GITHUB_OUTPUT", output_file.display().to_string()),
            ("GITHUB_STATE", state_file.display().to_string()),
        ]
    };

    // Main step: getIDToken(audience = domain), then GET /sts/exchange.
    let env = main_env("acme/widgets");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = octo_sts_step(&pkg, "main", &env);
    assert!(
        out.status.success(),
        "octo-sts main step failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let token_from = |file: &Path| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("token="))
            .map(str::to_owned)
            .unwrap()
    };
    let token = token_from(&output_file);
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(token_from(&state_file), token);
    assert!(text(&out.stdout).contains(&format!("::add-mask::{token}")));

    // The token works, for exactly the broker's repository.
    let (status, body) = token_repositories(&github, &token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repositories"][0]["full_name"], "acme/widgets");
    assert_eq!(body["total_count"], 1);

    // Post step: DELETE /installation/token with only Authorization.
    let out = octo_sts_step(
        &pkg,
        "post",
        &[("STATE_token", token.as_str()), ("GITHUB_API_URL", &github)],
    );
    assert!(
        text(&out.stdout).contains("revoked: 204"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The stand-in saw the revocation: the token no longer works.
    let (status, _) = token_repositories(&github, &token);
    assert_eq!(status, 401);
    let out = octo_sts_step(
        &pkg,
        "post",
        &[("STATE_token", token.as_str()), ("GITHUB_API_URL", &github)],
    );
    assert!(
        text(&out.stdout).contains("::error::401"),
        "{}",
        text(&out.stdout)
    );

    // A scope that is not the broker's repository fails the step with the
    // same refusal as an unknown broker.
    let env = main_env("acme/gadgets");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = octo_sts_step(&pkg, "main", &env);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout)
            .contains("::error::exchange answered 403: not authorized to use this broker"),
        "{}",
        text(&out.stdout)
    );

    // The audit log has the grant (by hash) and the precise refusal.
    let out = dev.audit(&["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", text(&out.stdout));
    assert_eq!(
        rows.iter()
            .find_map(|r| r["grant"]["token_sha256"].as_str())
            .unwrap(),
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    assert!(
        text(&out.stdout).contains(r#"octo-sts scope \"acme/gadgets\" is not broker"#),
        "{}",
        text(&out.stdout)
    );
    let pem = std::fs::read_to_string(dev.dir.path().join("github-app.pem")).unwrap();
    let (_, logs) = dev.stop();
    assert_no_secrets(&logs, &[token], &pem);
}

/// `tokenmint check-config --config PATH`.
fn check_config(path: &Path) -> Output {
    bin()
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_good_and_names_problems() {
    let dev = Dev::start();
    let out = check_config(&dev.config());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("broker widgets-read -> acme/widgets"),
        "{}",
        text(&out.stdout)
    );
    // The dev config's preset role is listed.
    assert!(
        text(&out.stdout)
            .contains("role arn:aws:iam::123456789012:role/tokenmint-dev (trust policy "),
        "{}",
        text(&out.stdout)
    );

    // [[role]] entries turn on the STS endpoint and are listed.
    let good = std::fs::read_to_string(dev.config()).unwrap();
    let issuer_url = good
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let provider = issuer_url.trim_start_matches("http://");
    std::fs::write(
        dev.dir.path().join("role-trust.json"),
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRoleWithWebIdentity",
               "Principal":{{"Federated":"arn:aws:iam::123456789012:oidc-provider/{provider}"}},
               "Condition":{{"StringEquals":{{"{provider}:aud":"tokenmint"}}}}}}]}}"#
        ),
    )
    .unwrap();
    let with_role = dev.dir.path().join("with-role.toml");
    std::fs::write(
        &with_role,
        format!("{good}\n[[role]]\narn = \"arn:aws:iam::123456789012:role/ci/deployer\"\ntrust_policy_file = \"role-trust.json\"\nmax_session_duration = 7200\n"),
    )
    .unwrap();
    let out = check_config(&with_role);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("role arn:aws:iam::123456789012:role/ci/deployer (trust policy ")
            && text(&out.stdout).contains("max session 7200 s)"),
        "{}",
        text(&out.stdout)
    );

    let bad = dev.dir.path().join("bad.toml");
    let good = std::fs::read_to_string(dev.config()).unwrap();
    std::fs::write(
        &bad,
        good.replace("issues = \"write\"", "issues = \"admin\""),
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml")
            && err.contains("[[broker]] \"widgets-read\"")
            && err.contains("issues"),
        "{err}"
    );
    dev.stop();
}

#[test]
fn exchange_without_a_token_source_explains_what_to_do() {
    let out = bin()
        .args(["exchange", "--url", "http://127.0.0.1:1", "--broker", "b"])
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("id-token: write"),
        "{}",
        text(&out.stderr)
    );
    // Plain http to a non-loopback host is refused before anything is sent.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t");
    std::fs::write(&f, "a.b.c").unwrap();
    let out = bin()
        .args([
            "exchange",
            "--url",
            "http://tokenmint.example.com",
            "--broker",
            "b",
            "--id-token-file",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("non-loopback"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dev_claim_overrides_reach_the_policy() {
    // The example broker requires ref to match refs/heads/(main|release/.*).
    let dev = Dev::start_with(&["--claim", "ref=refs/heads/dev"]);
    let out = dev.exchange("widgets-read", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The dev config explains denials, so the failing condition is named.
    assert!(
        text(&out.stderr).contains("claim ref \"refs/heads/dev\""),
        "{}",
        text(&out.stderr)
    );
    dev.stop();
    let dev = Dev::start_with(&["--claim", "ref=refs/heads/release/1.2"]);
    assert!(dev.exchange("widgets-read", &[]).status.success());
    dev.stop();
}

/// An OIDC token from the dev stack's issuer for `audience`.
fn dev_id_token(rt: &tokio::runtime::Runtime, dev: &Dev, audience: &str) -> String {
    rt.block_on(async {
        let body = reqwest::Client::new()
            .get(format!("{}&audience={audience}", dev.request_url))
            .bearer_auth(&dev.request_token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// `AssumeRoleWithWebIdentity` as the AWS SDKs send it: an unsigned form POST.
fn assume_role(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    role: &str,
    token: &str,
) -> (u16, String) {
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{endpoint}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("Action", "AssumeRoleWithWebIdentity")
                    .append_pair("Version", "2011-06-15")
                    .append_pair("RoleArn", role)
                    .append_pair("RoleSessionName", "dev")
                    .append_pair("WebIdentityToken", token)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

#[test]
fn dev_stack_serves_sts_for_its_preset_role_and_lints_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut dev = Dev::start();
    // The banner names the role and prints a working AWS CLI command.
    let fetch = dev.line_starting("ID_TOKEN=");
    assert!(fetch.contains("audience=tokenmint"), "{fetch}");
    let aws = dev.line_starting("aws sts assume-role-with-web-identity ");
    let arg = |name: &str| {
        aws.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in {aws}"))
            .to_owned()
    };
    assert_eq!(arg("--endpoint-url"), dev.url);
    let role = arg("--role-arn");
    assert_eq!(role, "arn:aws:iam::123456789012:role/tokenmint-dev");
    assert!(
        dev.stdout
            .contains("example STS role        arn:aws:iam::123456789012:role/tokenmint-dev"),
        "{}",
        dev.stdout
    );

    let token = dev_id_token(&rt, &dev, "tokenmint");
    let (status, body) = assume_role(&rt, &dev.url, &role, &token);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<AssumeRoleWithWebIdentityResponse"),
        "{body}"
    );
    assert!(body.contains("<AccessKeyId>ASIA"), "{body}");
    assert!(
        body.contains("<Arn>arn:aws:sts::123456789012:assumed-role/tokenmint-dev/dev</Arn>"),
        "{body}"
    );
    assert!(
        body.contains(
            "<SubjectFromWebIdentityToken>repo:acme/app:ref:refs/heads/main</SubjectFromWebIdentityToken>"
        ),
        "{body}"
    );
    // The role's trust policy checks the audience: another one is refused.
    let other = dev_id_token(&rt, &dev, "sts.amazonaws.com");
    let (status, body) = assume_role(&rt, &dev.url, &role, &other);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>InvalidIdentityToken</Code>"), "{body}");

    // `policy lint` reads the preset role's trust policy too.
    let out = lint(&["--config", dev.config().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "tokenmint-dev-trust.json:12: medium TM003 role \"{role}\" trust_policy_file Statement[0]"
        )),
        "{stdout}"
    );
    dev.stop();

    // And its sub: a job on another branch is denied, as AWS would deny it.
    let dev = Dev::start_with(&["--claim", "ref=refs/heads/dev"]);
    let token = dev_id_token(&rt, &dev, "tokenmint");
    let (status, body) = assume_role(&rt, &dev.url, &role, &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    dev.stop();
}

/// A config with only `[[role]]`s (the STS-compatible endpoint) needs no
/// GitHub App: no `[github]`, no key, no broker. It serves STS, and refuses
/// every broker name as unknown.
#[test]
fn an_sts_only_config_serves_sts_without_a_github_app() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dev = Dev::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The dev stack's config without its [github] section and its broker.
    let mut skipping = false;
    let mut config = String::new();
    for line in std::fs::read_to_string(dev.config()).unwrap().lines() {
        if line.starts_with('[') {
            skipping = matches!(line, "[github]" | "[[broker]]" | "[broker.claims]");
        }
        if skipping {
            continue;
        }
        if line.starts_with("listen = ") {
            config.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
        } else if line.starts_with("database = ") {
            config.push_str("database = \"sqlite://sts-only-audit.db\"\n");
        } else {
            config.push_str(line);
            config.push('\n');
        }
    }
    assert!(
        !config.contains("[github]")
            && !config.contains("[[broker]]")
            && config.contains("[[role]]"),
        "{config}"
    );
    let config_path = dev.dir.path().join("sts-only.toml");
    std::fs::write(&config_path, &config).unwrap();

    let out = check_config(&config_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OK (1 issuer(s), 0 broker(s))"),
        "{}",
        text(&out.stdout)
    );

    let mut serve = bin()
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ready = || {
        rt.block_on(async {
            reqwest::get(format!("{url}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
    };
    while !ready() {
        assert!(
            serve.try_wait().unwrap().is_none(),
            "tokenmint serve exited with an STS-only config"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "tokenmint serve did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let token = dev_id_token(&rt, &dev, "tokenmint");
    let (status, body) = assume_role(
        &rt,
        &url,
        "arn:aws:iam::123456789012:role/tokenmint-dev",
        &token,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<AccessKeyId>ASIA"), "{body}");

    let (status, body) = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/brokers/widgets-read/token"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"access_denied\""), "{body}");

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    assert!(serve.wait().unwrap().success());
    dev.stop();
}

// ------------------------------------------------------------ policy explain

/// A directory with an App key and a config whose issuer is unreachable
/// (port 1), with brokers `main` (read) and `prod` (write, environment prod).
fn policy_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (_, pem) = tokenmint::keys::RsaSigningKey::generate_pem().unwrap();
    std::fs::write(dir.path().join("app.pem"), pem).unwrap();
    let config = dir.path().join("tokenmint.toml");
    std::fs::write(
        &config,
        r#"[github]
app_id = "1"
private_key_file = "app.pem"

[[issuer]]
name = "gh"
url = "http://127.0.0.1:1"
audiences = ["tokenmint"]

[[broker]]
name = "main"
issuer = "gh"
repository = "acme/app"
permissions = { contents = "read" }
[broker.claims]
repository_id = "1"
repository_owner_id = "2"
sub = "repo:acme/app:ref:refs/heads/main"
runner_environment = "github-hosted"

[[broker]]
name = "prod"
issuer = "gh"
repository = "acme/app"
permissions = { contents = "write" }
[broker.claims]
repository_id = "1"
environment = "prod"
"#,
    )
    .unwrap();
    (dir, config)
}

fn unix_now() -> i64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs() as i64
}

fn claims(now: i64, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "iss": "http://127.0.0.1:1", "sub": "repo:acme/app:ref:refs/heads/main", "aud": "tokenmint",
        "iat": now, "nbf": now, "exp": now + 300,
        "repository_id": "1", "repository_owner_id": "2", "runner_environment": "github-hosted"
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn explain(config: &Path, args: &[&str]) -> Output {
    bin()
        .args(["policy", "explain", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn policy_explain_exit_codes_and_output() {
    let (dir, config) = policy_config();
    let now = unix_now();

    // A claims file that satisfies `main`: allowed, and says it is claims-only.
    let file = dir.path().join("claims.json");
    std::fs::write(&file, claims(now, serde_json::json!({})).to_string()).unwrap();
    let out = explain(
        &config,
        &["--broker", "main", "--claims", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("claims only"), "{stdout}");
    assert!(
        stdout.contains("pass sub = \"repo:acme/app:ref:refs/heads/main\""),
        "{stdout}"
    );

    // A token for the wrong environment, --no-verify: denied, failing condition shown.
    let key = tokenmint::keys::RsaSigningKey::generate().unwrap();
    let token = key
        .sign_jwt(
            &claims(now, serde_json::json!({"environment": "dev"})),
            true,
        )
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let at_file = format!("@{}", token_file.display());
    let out = explain(
        &config,
        &["--broker", "prod", "--token", &at_file, "--no-verify"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(r#"FAIL environment = "dev"; expected one of ["prod"]"#),
        "{stdout}"
    );
    assert!(stdout.contains("skip signature"), "{stdout}");
    assert!(
        !stdout.contains("eyJ"),
        "the token is never echoed: {stdout}"
    );

    // --json.
    let out = explain(
        &config,
        &[
            "--broker",
            "prod",
            "--token",
            &token,
            "--no-verify",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["mode"], "claims-only");
    let env = json["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["claim"] == "environment")
        .unwrap();
    assert_eq!(env["actual"], "dev");
    assert_eq!(env["passed"], false);

    // Verified: an expired token fails the time check; the unreachable
    // issuer's keys fail the signature. Denied, not an error.
    let expired = key
        .sign_jwt(
            &claims(
                now,
                serde_json::json!({"iat": now - 1000, "nbf": now - 1000, "exp": now - 700}),
            ),
            true,
        )
        .unwrap();
    let out = explain(&config, &["--broker", "main", "--token", &expired]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL time: token expired"), "{stdout}");
    assert!(stdout.contains("FAIL signature"), "{stdout}");
    assert!(stdout.contains("result: DENIED"), "{stdout}");

    // Usage and config errors exit 2.
    let out = explain(
        &config,
        &["--broker", "nope", "--claims", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown broker"),
        "{}",
        text(&out.stderr)
    );
    let out = explain(&config, &["--broker", "main"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--token or --claims is required"
    );
    let out = explain(
        &config,
        &["--broker", "main", "--token", "x", "--claims", "y"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = explain(
        &dir.path().join("missing.toml"),
        &["--broker", "main", "--token", "x"],
    );
    assert_eq!(out.status.code(), Some(2));
}

// --------------------------------------------------------------- policy lint

fn lint(args: &[&str]) -> Output {
    bin().args(["policy", "lint"]).args(args).output().unwrap()
}

#[test]
fn policy_lint_exit_codes_formats_and_sarif() {
    let (dir, config) = policy_config();
    let config = config.to_str().unwrap();

    // `prod` binds an environment (info), pins no runner (info), allows any event (low): nothing high.
    let out = lint(&["--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("TM005"), "{stdout}");
    assert!(stdout.contains("TM011"), "{stdout}");
    let out = lint(&["--config", config, "--fail-on", "low"]);
    assert_eq!(out.status.code(), Some(1));
    let out = lint(&["--config", config, "--format", "json", "--fail-on", "info"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["findings"].as_array().unwrap().len() >= 2);

    // A wildcard across owners is high: the default threshold fails; `never` does not.
    let risky = dir.path().join("risky.toml");
    std::fs::write(
        &risky,
        r#"[[broker]]
name = "open"
issuer = "gh"
repository = "acme/app"
permissions = { contents = "write" }
[broker.claims]
sub = { like = "repo:acme*" }
"#,
    )
    .unwrap();
    let out = lint(&["--config", risky.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("high TM001"),
        "{}",
        text(&out.stdout)
    );
    let out = lint(&["--config", risky.to_str().unwrap(), "--fail-on", "never"]);
    assert_eq!(out.status.code(), Some(0));

    // SARIF: what code scanning needs, with the path as given and the claim's line.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmint"))
        .current_dir(dir.path())
        .args([
            "policy",
            "lint",
            "--config",
            "risky.toml",
            "--format",
            "sarif",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["$schema"].is_string());
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "tokenmint");
    assert!(run["tool"]["driver"]["informationUri"].is_string());
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().all(|r| r["id"].is_string()
        && r["shortDescription"]["text"].is_string()
        && r["fullDescription"]["text"].is_string()
        && r["help"]["text"].is_string()
        && r["defaultConfiguration"]["level"].is_string()
        && r["properties"]["security-severity"].is_string()));
    let tm001 = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "TM001")
        .unwrap();
    assert_eq!(tm001["level"], "error");
    assert!(tm001["message"]["text"].is_string());
    let loc = &tm001["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "risky.toml");
    assert_eq!(loc["region"]["startLine"], 7);

    // IAM trust policy.
    let iam = dir.path().join("trust.json");
    std::fs::write(
        &iam,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"},
  "Action": "sts:AssumeRoleWithWebIdentity",
  "Condition": {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/*"}}}]}"#,
    )
    .unwrap();
    let out = lint(&["--iam-policy", iam.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "missing aud is high");
    assert!(text(&out.stdout).contains("TM101"), "{}", text(&out.stdout));

    // Usage and input errors exit 2.
    assert_eq!(lint(&[]).status.code(), Some(2));
    assert_eq!(
        lint(&["--config", config, "--iam-policy", "x.json"])
            .status
            .code(),
        Some(2)
    );
    let out = lint(&[
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(&iam, "not json").unwrap();
    assert_eq!(
        lint(&["--iam-policy", iam.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn kill_9_mid_load_loses_no_audit_row_for_a_delivered_token() {
    let dev = Dev::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let received = rt.block_on(async {
        let client = reqwest::Client::new();
        // One OIDC token from the local issuer, reused by every client (the
        // dev issuer is not single-use).
        let sep = if dev.request_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let body = client
            .get(format!("{}{sep}audience=tokenmint", dev.request_url))
            .bearer_auth(&dev.request_token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let id_token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = format!("{}/v1/brokers/widgets-read/token", dev.url);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (client, url, id_token, stop) =
                (client.clone(), url.clone(), id_token.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut tokens = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(resp) = client.post(&url).bearer_auth(&id_token).send().await else {
                        break;
                    };
                    if resp.status() != 200 {
                        break;
                    }
                    // Only a fully received answer counts as a delivered token.
                    let Ok(bytes) = resp.bytes().await else { break };
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    tokens.push(v["token"].as_str().unwrap().to_owned());
                }
                tokens
            }));
        }
        // Let the load run, then return with the clients still sending.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (clients, stop)
    });
    let (clients, stop) = received;
    // SIGKILL while the clients are still sending.
    let mut dev = dev;
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let tokens: Vec<String> = rt.block_on(async {
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.unwrap());
        }
        all
    });
    assert!(tokens.len() > 20, "the load ran ({} tokens)", tokens.len());
    let out = dev.audit(&["list", "--json", "--limit", "10000", "--decision", "allow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let audited: std::collections::HashSet<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["grant"]["token_sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for t in &tokens {
        assert!(
            audited.contains(&hex::encode(Sha256::digest(t.as_bytes()))),
            "a delivered token has no audit row"
        );
    }
    let out = dev.audit(&["verify"]);
    assert!(
        out.status.success(),
        "the chain survives kill -9: {}",
        text(&out.stdout)
    );
}

// ------------------------------------------------------------------ logging

/// `tokenmint --log-format json serve`, against the dev stack's issuer and
/// GitHub stand-in, with denials NOT explained to callers: every stderr line
/// is a JSON object, every line written while handling a request carries its
/// `request_id`, and a denial is logged exactly once, with the precise reason
/// the caller does not see.
#[test]
fn json_logs_carry_request_id_on_every_request_line_and_log_a_denial_once() {
    let dev = Dev::start();
    let pem = std::fs::read_to_string(dev.dir.path().join("github-app.pem")).unwrap();
    // The dev stack's config, served by `tokenmint serve` on another port,
    // with its own audit store, generic denials and a broker no token passes.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config: String = std::fs::read_to_string(dev.config())
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{port}\"\n")
            } else if l.starts_with("explain_denials = ") {
                "explain_denials = false\n".to_owned()
            } else if l.starts_with("database = ") {
                "database = \"sqlite://serve-audit.db\"\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        + r#"
[[broker]]
name = "widgets-never"
issuer = "dev-actions"
repository = "acme/widgets"
permissions = { contents = "read" }
[broker.claims]
ref = "refs/heads/never"
"#;
    let config_path = dev.dir.path().join("serve.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut serve = bin()
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config_path)
        .env("TOKENMINT_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = serve.stderr.take().unwrap();
    let (tx, stderr) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "tokenmint serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}");
    let exchange = |broker: &str| {
        bin()
            .args([
                "exchange",
                "--url",
                &url,
                "--broker",
                broker,
                "--audience",
                "tokenmint",
            ])
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &dev.request_url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &dev.request_token)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_OUTPUT")
            .output()
            .unwrap()
    };
    let request_id = |stderr: &str| {
        let uuid = first_uuid(stderr);
        assert!(uuid.is_some(), "no request id in: {stderr}");
        uuid.unwrap()
    };

    let allowed = exchange("widgets-read");
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    let token = text(&allowed.stdout).trim().to_owned();
    let allowed_id = request_id(&text(&allowed.stderr));

    let denied = exchange("widgets-never");
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied.stderr));
    let denied_stderr = text(&denied.stderr);
    assert!(denied_stderr.contains("access_denied"), "{denied_stderr}");
    // The caller gets the generic message, not the reason.
    assert!(
        !denied_stderr.contains("refs/heads/never"),
        "{denied_stderr}"
    );
    let denied_id = request_id(&denied_stderr);

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while serve.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "tokenmint serve did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = stderr.recv_timeout(Duration::from_secs(10)).unwrap();
    dev.stop();

    // Every line is one JSON object.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let message = |l: &serde_json::Value| l["message"].as_str().unwrap_or_default().to_owned();
    // Between "serving" and "shutting down" the process only handles the two
    // requests. Every line there has a request_id, except the audit
    // writer's store queries (it commits batches of many requests' rows).
    let start = lines
        .iter()
        .position(|l| message(l) == "tokenmint serving")
        .expect("a start line");
    let end = lines
        .iter()
        .position(|l| message(l).starts_with("shutting down"))
        .expect("a shutdown line");
    let handling = &lines[start + 1..end];
    assert!(handling.len() > 5, "{logs}");
    let mut seen_ids = std::collections::BTreeSet::new();
    for line in handling {
        if line["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("sqlx"))
        {
            continue;
        }
        let id = line["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a request-handling line without request_id: {line}"));
        seen_ids.insert(id.to_owned());
    }
    assert_eq!(
        seen_ids,
        [allowed_id.clone(), denied_id.clone()]
            .into_iter()
            .collect(),
        "{logs}"
    );
    // The HTTP layer's own line (outside the exchange) has it too.
    let handled: Vec<&serde_json::Value> = handling
        .iter()
        .filter(|l| message(l) == "request handled")
        .collect();
    assert_eq!(handled.len(), 2, "{logs}");
    assert_eq!(handled[1]["request_id"], denied_id.as_str());
    assert_eq!(handled[1]["status"], 403);

    // The denial: one line, with the precise reason and its request id.
    let refusals: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| message(l) == "exchange refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{logs}");
    let refusal = refusals[0];
    assert_eq!(refusal["request_id"], denied_id.as_str());
    assert_eq!(refusal["broker"], "widgets-never");
    assert_eq!(refusal["code"], "access_denied");
    assert_eq!(refusal["status"], 403);
    let reason = refusal["reason"].as_str().unwrap();
    assert!(
        reason.contains("ref") && reason.contains("refs/heads/never"),
        "{reason}"
    );
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("refs/heads/never"))
            .count(),
        1,
        "the denial reason is logged once:\n{logs}"
    );
    assert_no_secrets(&logs, &[token], &pem);
}

/// The first UUID (the request id tokenmint prints) in `s`.
fn first_uuid(s: &str) -> Option<String> {
    let is_uuid = |w: &str| {
        w.len() == 36
            && w.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    s.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| is_uuid(w))
        .map(str::to_owned)
}
