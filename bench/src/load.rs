//! Closed-loop load: N clients each send an exchange, wait for the answer, and send the next, until a deadline.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run of N clients produced.
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Latency of 200 answers, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Answers with status 200.
    pub(crate) ok: u64,
    /// Answers with any other status, by status.
    pub(crate) non_200: std::collections::BTreeMap<u16, u64>,
    /// Requests that got no answer (connect error, timeout, body read error).
    pub(crate) transport_errors: u64,
    /// From start until the last client finished its last request.
    pub(crate) elapsed: Duration,
}

impl LoadResult {
    /// Every non-200 answer.
    pub(crate) fn non_200_total(&self) -> u64 {
        self.non_200.values().sum()
    }
}

/// A fresh latency histogram: 1 µs to 10 min, 3 significant figures.
pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// Runs `clients` closed-loop clients for `duration` against `url`, cycling
/// through `tokens` (client `c` starts at token `c` and steps by `clients`).
pub(crate) async fn run(
    client: &reqwest::Client,
    url: &str,
    tokens: Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        let tokens = Arc::clone(&tokens);
        tasks.push(tokio::spawn(async move {
            one_client(client, url, tokens, c, clients, deadline).await
        }));
    }
    let mut total = LoadResult {
        latency_us: new_histogram()?,
        ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let part = task.await??;
        total.latency_us.add(&part.latency_us)?;
        total.ok += part.ok;
        for (status, n) in part.non_200 {
            *total.non_200.entry(status).or_default() += n;
        }
        total.transport_errors += part.transport_errors;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

async fn one_client(
    client: reqwest::Client,
    url: String,
    tokens: Arc<Vec<String>>,
    first: usize,
    step: usize,
    deadline: Instant,
) -> anyhow::Result<LoadResult> {
    let mut out = LoadResult {
        latency_us: new_histogram()?,
        ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        elapsed: Duration::ZERO,
    };
    if tokens.is_empty() {
        return Ok(out);
    }
    let mut index = first % tokens.len();
    while Instant::now() < deadline {
        let token = tokens.get(index).map(String::as_str).unwrap_or_default();
        index = (index + step) % tokens.len();
        let sent = Instant::now();
        let answer = client.post(&url).bearer_auth(token).send().await;
        let status = match answer {
            // Read the whole body so the connection goes back to the pool.
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(_) => Some(status),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        match status {
            Some(200) => {
                out.ok += 1;
                out.latency_us.saturating_record(micros.max(1));
            }
            Some(other) => *out.non_200.entry(other).or_default() += 1,
            None => {
                out.transport_errors += 1;
                // Don't spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(out)
}
