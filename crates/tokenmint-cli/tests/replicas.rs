//! Several real `tokenmint serve` processes sharing one PostgreSQL store: hash chains (shared and per replica), single-use jti races across replicas, and `kill -9` of one replica under load.
//!
//! Runs only when `TOKENMINT_TEST_DATABASE_URL` is set (CI always sets it),
//! like the audit store's PostgreSQL tests. Each test gets a fresh schema,
//! selected through the URL's `options=-csearch_path=...`, so reruns and
//! parallel runs never share rows. The OIDC issuer and the GitHub API
//! stand-in run in the test process (`tokenmint::dev`); the replicas are the
//! real binary, each on its own loopback port with its own config file.
//!
//! Every client response is matched to its audit row through the
//! `x-request-id` header, which is also the row's `request_id`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenmint::dev::github_standin::{GithubStandIn, StandInConfig};
use tokenmint::dev::issuer::{DevIssuer, IssuerConfig};
use tokenmint::keys::RsaSigningKey;

const AUD: &str = "tokenmint";
const BROKER: &str = "widgets-read";

/// The tests share two cores with everything else: run one at a time so
/// each load run measures its own replicas, not its neighbours'.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh PostgreSQL schema for one test.
struct TestDb {
    /// URL the replicas and the checks use: the base URL plus the schema as `search_path`.
    url: String,
    /// Connection to the base database, to drop the schema afterwards.
    admin: sqlx::PgPool,
    schema: String,
}

impl TestDb {
    async fn create() -> Option<TestDb> {
        let Ok(base) = std::env::var("TOKENMINT_TEST_DATABASE_URL") else {
            eprintln!("skipping multi-replica PostgreSQL test: set TOKENMINT_TEST_DATABASE_URL=postgres://... to run it");
            return None;
        };
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap();
        let schema = format!("tm_replicas_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-csearch_path%3D{schema}"),
            admin,
            schema,
        })
    }

    /// Every audit row, in chain order.
    async fn rows(&self) -> Vec<Row> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap();
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT chain_id, seq, record FROM audit_log ORDER BY chain_id, seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|(chain, seq, record)| {
                let r: Value = serde_json::from_str(&record).unwrap();
                Row {
                    chain,
                    seq,
                    request_id: r["request_id"].as_str().unwrap().to_owned(),
                    status: u16::try_from(r["status"].as_u64().unwrap()).unwrap(),
                    reason: r["reason"].as_str().unwrap_or_default().to_owned(),
                    jti: r["claims"]["jti"].as_str().map(str::to_owned),
                    token_sha256: r["grant"]["token_sha256"].as_str().map(str::to_owned),
                }
            })
            .collect()
    }

    async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// One audit row, as the checks need it.
#[derive(Debug)]
struct Row {
    chain: String,
    seq: i64,
    request_id: String,
    status: u16,
    reason: String,
    jti: Option<String>,
    token_sha256: Option<String>,
}

/// One answer a client fully received.
#[derive(Debug, Clone)]
struct Answer {
    /// Index of the client that sent it.
    client: usize,
    /// Index of the replica that answered.
    replica: usize,
    /// When the answer was complete.
    at: Instant,
    status: u16,
    request_id: String,
    body: Value,
}

/// The in-process issuer and GitHub stand-in, and the files every replica's config points at.
struct Stack {
    issuer: DevIssuer,
    _github: GithubStandIn,
    github_url: String,
    dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Stack {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let issuer = DevIssuer::spawn(bind().await.unwrap(), IssuerConfig::new("request-token"))
            .await
            .unwrap();
        let (app_key, app_pem) = RsaSigningKey::generate_pem().unwrap();
        let github = GithubStandIn::spawn(
            bind().await.unwrap(),
            StandInConfig {
                app_id: "1".into(),
                app_public_key: app_key.public_jwk(),
                installations: vec![("acme/widgets".into(), 4242, 56789)],
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.pem"), &app_pem).unwrap();
        Stack {
            issuer,
            github_url: github.url().to_string(),
            _github: github,
            dir,
        }
    }

    /// A token the broker allows (the issuer's default claims: a push to main).
    fn allowed_token(&self) -> String {
        self.issuer.mint(AUD, Value::Null).unwrap()
    }

    /// A valid token the broker's policy refuses (403 `access_denied`).
    fn denied_token(&self) -> String {
        self.issuer
            .mint(
                AUD,
                json!({"ref": "refs/heads/dev", "sub": "repo:acme/app:ref:refs/heads/dev"}),
            )
            .unwrap()
    }

    /// Writes `NAME.toml` for one replica and returns its path and listen address.
    fn config(
        &self,
        name: &str,
        db: &TestDb,
        chain: Option<&str>,
        single_use: bool,
    ) -> (PathBuf, SocketAddr) {
        let listen = free_loopback_port();
        let chain = chain.map_or(String::new(), |c| format!("chain = \"{c}\""));
        let text = format!(
            r#"
[server]
listen = "{listen}"

[audit]
database = "{db}"
{chain}

[github]
api_url = "{github}"
app_id = "1"
private_key_file = "app.pem"

# Every test token has the same sub and broker: lift the rate limits.
[limits]
per_broker = {{ rate_per_second = 1000000, burst = 1000000 }}
per_subject = {{ rate_per_second = 1000000, burst = 1000000 }}

[[issuer]]
name = "dev"
url = "{issuer}"
audiences = ["{AUD}"]
single_use = {single_use}

[[broker]]
name = "{BROKER}"
issuer = "dev"
repository = "acme/widgets"
permissions = {{ contents = "read" }}
[broker.claims]
repository_id = "123456789"
ref = "refs/heads/main"
"#,
            db = db.url,
            github = self.github_url,
            issuer = self.issuer.issuer_url(),
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        (path, listen)
    }

    /// Starts a `tokenmint serve` replica named `name` and waits until it is ready.
    async fn replica(
        &self,
        name: &str,
        db: &TestDb,
        chain: Option<&str>,
        single_use: bool,
    ) -> Replica {
        let (config, listen) = self.config(name, db, chain, single_use);
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tokenmint"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("TOKENMINT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut replica = Replica {
            child,
            base: format!("http://{listen}"),
            config,
            log_path,
        };
        replica.wait_ready().await;
        replica
    }
}

/// A free loopback port (bound, read, released: a tiny race with other programs is accepted).
fn free_loopback_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// A running `tokenmint serve`; killed when dropped.
struct Replica {
    child: Child,
    base: String,
    config: PathBuf,
    log_path: PathBuf,
}

impl Replica {
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "tokenmint serve exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok(resp) = client.get(format!("{}/readyz", self.base)).send().await {
                if resp.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tokenmint serve was not ready within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("{}/v1/brokers/{BROKER}/token", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no destructors, no flush, no graceful shutdown.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One exchange; `None` if no complete answer arrived (connection refused or cut).
async fn exchange(
    client: &reqwest::Client,
    (sender, replica): (usize, usize),
    url: &str,
    token: &str,
) -> Option<Answer> {
    let resp = client.post(url).bearer_auth(token).send().await.ok()?;
    let status = resp.status().as_u16();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .expect("every answer carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = resp.bytes().await.ok()?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some(Answer {
        client: sender,
        replica,
        at: Instant::now(),
        status,
        request_id,
        body,
    })
}

/// `tokenmint audit verify` with `config`: asserts exit 0 and returns stdout.
fn audit_verify(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmint"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "audit verify failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit log OK"), "{stdout}");
    stdout
}

/// Runs `clients` clients until `stop` is set. Client `i` sends to replica
/// `i % urls.len()`, every third request with the policy-denied token; when
/// its replica stops answering it moves to the next one, as a load balancer
/// would. Returns every answer received.
fn hammer(
    urls: Arc<Vec<String>>,
    clients: usize,
    allowed: &str,
    denied: &str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    let client = reqwest::Client::new();
    (0..clients)
        .map(|i| {
            let (client, urls, stop) = (client.clone(), urls.clone(), stop.clone());
            let (allowed, denied) = (allowed.to_owned(), denied.to_owned());
            tokio::spawn(async move {
                let mut replica = i % urls.len();
                let mut answers = Vec::new();
                let mut failures = 0;
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let token = if n % 3 == 2 { &denied } else { &allowed };
                    match exchange(&client, (i, replica), &urls[replica], token).await {
                        Some(a) => answers.push(a),
                        None => {
                            failures += 1;
                            assert!(failures < 100, "no replica answers");
                            replica = (replica + 1) % urls.len();
                        }
                    }
                }
                answers
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Vec<Answer>>>) -> Vec<Answer> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// Every answer is a 200 with a token or a 403 `access_denied`. A failure
/// quotes the replicas' warnings and errors.
fn assert_allowed_or_denied(answers: &[Answer], replicas: &[&Replica]) {
    for a in answers {
        let fine = match a.status {
            200 => a.body["token"].is_string(),
            403 => a.body["error"] == "access_denied",
            _ => false,
        };
        if !fine {
            let failed = answers
                .iter()
                .filter(|x| ![200, 403].contains(&x.status))
                .count();
            let logs: Vec<String> = replicas
                .iter()
                .flat_map(|r| {
                    r.log()
                        .lines()
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .take(10)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "unexpected answer under load ({failed} of {}): {a:?}\nreplica warnings and errors:\n{}",
                answers.len(),
                logs.join("\n")
            );
        }
    }
}

/// Every received answer has exactly one audit row, with its status (and,
/// for a 200, the SHA-256 of the very token the client got). Returns the
/// rows of answered requests by request id.
fn assert_one_row_per_answer<'r>(answers: &[Answer], rows: &'r [Row]) -> HashMap<&'r str, &'r Row> {
    let mut by_id: HashMap<&str, &Row> = HashMap::new();
    for r in rows {
        assert!(
            by_id.insert(r.request_id.as_str(), r).is_none(),
            "request {} has two audit rows",
            r.request_id
        );
    }
    for a in answers {
        let row = by_id
            .get(a.request_id.as_str())
            .unwrap_or_else(|| panic!("an answered request has no audit row: {a:?}"));
        assert_eq!(row.status, a.status, "{a:?} {row:?}");
        if a.status == 200 {
            let token = a.body["token"].as_str().unwrap();
            assert_eq!(
                row.token_sha256.as_deref(),
                Some(hex::encode(Sha256::digest(token.as_bytes())).as_str()),
                "the allow row names the token the client received"
            );
        }
    }
    by_id
}

/// `chain`'s rows are numbered 1, 2, 3, ... (no fork, no gap).
fn assert_gapless(rows: &[Row], chain: &str) {
    let seqs = rows.iter().filter(|r| r.chain == chain).map(|r| r.seq);
    for (want, seq) in (1..).zip(seqs) {
        assert_eq!(seq, want, "chain {chain} forks or has a gap at #{want}");
    }
}

/// How many lines of `replica`'s log report a lost append race on a shared chain.
fn retries(replica: &Replica) -> usize {
    replica
        .log()
        .matches("another writer extended the audit chain")
        .count()
}

/// Two replicas, one chain (`main`), 8 clients for ~2.5 s: the chain stays
/// verifiable and holds exactly one row per answer, from both replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_chain_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let stack = Stack::start().await;
    let a = stack.replica("a", &db, None, false).await;
    let b = stack.replica("b", &db, None, false).await;
    let urls = Arc::new(vec![a.url(), b.url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = hammer(
        urls,
        8,
        &stack.allowed_token(),
        &stack.denied_token(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = collect(handles).await;
    assert_allowed_or_denied(&answers, &[&a, &b]);
    for replica in 0..2 {
        for status in [200, 403] {
            assert!(
                answers
                    .iter()
                    .any(|x| x.replica == replica && x.status == status),
                "replica {replica} answered no {status}"
            );
        }
    }

    let rows = db.rows().await;
    assert_eq!(
        rows.len(),
        answers.len(),
        "exactly one audit row per answer"
    );
    assert_one_row_per_answer(&answers, &rows);
    assert!(rows.iter().all(|r| r.chain == "main"));
    let stdout = audit_verify(&a.config);
    assert!(
        stdout.contains(&format!("chain main: {} row(s)", rows.len())),
        "{stdout}"
    );
    assert_gapless(&rows, "main");
    assert_eq!(
        (retries(&a), retries(&b)),
        (0, 0),
        "PostgreSQL appends to a shared chain take turns under its lock: no lost races"
    );
    drop((a, b));
    db.drop_schema().await;
}

/// Two replicas with their own chains (`replica-a`, `replica-b`): both
/// chains verify, each holds exactly its replica's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_their_own_chains_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let stack = Stack::start().await;
    let a = stack.replica("a", &db, Some("replica-a"), false).await;
    let b = stack.replica("b", &db, Some("replica-b"), false).await;
    let urls = Arc::new(vec![a.url(), b.url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = hammer(
        urls,
        8,
        &stack.allowed_token(),
        &stack.denied_token(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = collect(handles).await;
    assert_allowed_or_denied(&answers, &[&a, &b]);

    let rows = db.rows().await;
    assert_eq!(
        rows.len(),
        answers.len(),
        "exactly one audit row per answer"
    );
    let by_id = assert_one_row_per_answer(&answers, &rows);
    for a in &answers {
        let want = ["replica-a", "replica-b"][a.replica];
        assert_eq!(by_id[a.request_id.as_str()].chain, want, "{a:?}");
    }
    let mut counts = HashMap::new();
    for r in &rows {
        *counts.entry(r.chain.as_str()).or_insert(0usize) += 1;
    }
    for chain in ["replica-a", "replica-b"] {
        let n = counts.get(chain).copied().unwrap_or(0);
        assert!(n > 0, "chain {chain} is empty");
        assert_gapless(&rows, chain);
    }
    // Either replica's config reads the whole store: both chains, both OK.
    for config in [&a.config, &b.config] {
        let stdout = audit_verify(config);
        for chain in ["replica-a", "replica-b"] {
            assert!(
                stdout.contains(&format!("chain {chain}: {} row(s)", counts[chain])),
                "{stdout}"
            );
        }
    }
    assert_eq!(retries(&a) + retries(&b), 0, "separate chains never race");
    drop((a, b));
    db.drop_schema().await;
}

/// A single-use issuer: one token sent 12 times to each of two replicas at
/// once has exactly one winner; every loser is a 401 `invalid_token`
/// audited as `replayed jti`. Five rounds, each with a fresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_across_replicas_have_one_winner() {
    const PER_REPLICA: usize = 12;
    const ROUNDS: usize = 5;
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let stack = Stack::start().await;
    let a = stack.replica("a", &db, Some("replica-a"), true).await;
    let b = stack.replica("b", &db, Some("replica-b"), true).await;
    let urls = [a.url(), b.url()];
    let client = reqwest::Client::new();
    // Warm up: each replica fetches the issuer's keys and connects to the
    // store, so the rounds race on the claim, not on start-up.
    let mut answers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let w = exchange(&client, (i, i), url, &stack.allowed_token())
            .await
            .unwrap();
        assert_eq!(w.status, 200, "{w:?}");
        answers.push(w);
    }
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let token = stack.allowed_token();
        let start = Arc::new(tokio::sync::Barrier::new(2 * PER_REPLICA));
        let handles: Vec<_> = (0..2 * PER_REPLICA)
            .map(|i| {
                let (client, start, token) = (client.clone(), start.clone(), token.clone());
                let url = urls[i % 2].clone();
                tokio::spawn(async move {
                    start.wait().await;
                    exchange(&client, (i, i % 2), &url, &token).await.unwrap()
                })
            })
            .collect();
        let mut round_answers = Vec::new();
        for h in handles {
            round_answers.push(h.await.unwrap());
        }
        let winners = round_answers.iter().filter(|x| x.status == 200).count();
        assert_eq!(winners, 1, "round {round}: {round_answers:?}");
        for x in round_answers.iter().filter(|x| x.status != 200) {
            assert_eq!(x.status, 401, "{x:?}");
            assert_eq!(x.body["error"], "invalid_token", "{x:?}");
            assert!(x.body.get("token").is_none());
        }
        let replicas: HashSet<usize> = round_answers.iter().map(|x| x.replica).collect();
        assert_eq!(replicas.len(), 2, "both replicas took part");
        rounds.push(round_answers.clone());
        answers.extend(round_answers);
    }

    let rows = db.rows().await;
    assert_eq!(
        rows.len(),
        answers.len(),
        "exactly one audit row per answer"
    );
    let by_id = assert_one_row_per_answer(&answers, &rows);
    let mut jtis = HashSet::new();
    for round in &rounds {
        // One token per round: every row of the round names its jti, and
        // only the winner's row is not a replay.
        let round_jtis: HashSet<&str> = round
            .iter()
            .map(|x| by_id[x.request_id.as_str()].jti.as_deref().unwrap())
            .collect();
        assert_eq!(round_jtis.len(), 1, "{round_jtis:?}");
        assert!(jtis.insert(round_jtis.into_iter().next().unwrap()));
        for x in round {
            let row = by_id[x.request_id.as_str()];
            assert_eq!(
                row.reason.contains("replayed jti"),
                x.status != 200,
                "{row:?}"
            );
        }
    }
    let losers = rows.iter().filter(|r| r.reason.contains("replayed jti"));
    assert_eq!(losers.count(), ROUNDS * (2 * PER_REPLICA - 1));
    audit_verify(&a.config);
    drop((a, b));
    db.drop_schema().await;
}

/// Two replicas on one chain under load; replica a gets `kill -9` halfway.
/// Replica b keeps serving (its clients and a's, which move over), every
/// answer any client received has its audit row, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_replica_mid_load_keeps_the_other_serving_and_the_chain_whole() {
    const CLIENTS: usize = 8;
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let stack = Stack::start().await;
    let mut a = stack.replica("a", &db, None, false).await;
    let b = stack.replica("b", &db, None, false).await;
    let urls = Arc::new(vec![a.url(), b.url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = hammer(
        urls,
        CLIENTS,
        &stack.allowed_token(),
        &stack.denied_token(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.kill_9();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = collect(handles).await;
    assert_allowed_or_denied(&answers, &[&a, &b]);
    assert!(
        answers.iter().any(|x| x.replica == 0),
        "replica a served before it was killed"
    );
    // After the kill b served every client, a's former clients included.
    for client in 0..CLIENTS {
        let after = answers
            .iter()
            .filter(|x| x.client == client && x.at > killed_at)
            .count();
        assert!(after > 0, "client {client} got no answer after the kill");
    }

    let rows = db.rows().await;
    assert_one_row_per_answer(&answers, &rows);
    // Rows nobody received an answer for: at most one per client (its
    // request in flight on a when it was killed).
    let answered: HashSet<&str> = answers.iter().map(|x| x.request_id.as_str()).collect();
    let unanswered = rows
        .iter()
        .filter(|r| !answered.contains(r.request_id.as_str()))
        .count();
    assert!(
        unanswered <= CLIENTS,
        "{unanswered} rows were never answered"
    );
    let stdout = audit_verify(&b.config);
    assert!(
        stdout.contains(&format!("chain main: {} row(s)", rows.len())),
        "{stdout}"
    );
    // And b still answers now.
    let client = reqwest::Client::new();
    let last = exchange(&client, (0, 1), &b.url(), &stack.allowed_token())
        .await
        .unwrap();
    assert_eq!(last.status, 200, "{last:?}");
    drop((a, b));
    db.drop_schema().await;
}
