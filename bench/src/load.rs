//! Load: N clients each send an exchange, wait for the answer, and send the next (closed loop), or send on a fixed schedule (paced), until a deadline.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run of N clients produced.
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Latency of 200 answers, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// The same latency less the time tokenmint waited on the GitHub
    /// stand-in (its `Server-Timing: github;dur=…`): the latency tokenmint
    /// adds, with the stand-in's own cost taken out. Only answers that
    /// carried the header are in it.
    pub(crate) added_us: Histogram<u64>,
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

/// Runs `clients` clients for `duration` against `url`, cycling through
/// `tokens` (client `c` starts at token `c` and steps by `clients`).
///
/// Without `rate` each client is closed-loop: it sends the next request as
/// soon as the last is answered, so the service runs flat out and latency is
/// mostly queueing. With `rate` (total requests per second) each client sends
/// on a fixed schedule, `clients / rate` seconds apart, staggered so the
/// clients do not fire together; latency is then measured from the
/// *scheduled* send time, so a stalled service is charged for the requests
/// it delayed (no coordinated omission).
pub(crate) async fn run(
    client: &reqwest::Client,
    url: &str,
    tokens: Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = start + duration;
    let interval = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(clients as f64 / r));
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        let tokens = Arc::clone(&tokens);
        let pacing = interval.map(|every| Pacing {
            next: start + every.mul_f64(c as f64 / clients as f64),
            every,
        });
        tasks.push(tokio::spawn(async move {
            one_client(client, url, tokens, c, clients, deadline, pacing).await
        }));
    }
    let mut total = LoadResult {
        latency_us: new_histogram()?,
        added_us: new_histogram()?,
        ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let part = task.await??;
        total.latency_us.add(&part.latency_us)?;
        total.added_us.add(&part.added_us)?;
        total.ok += part.ok;
        for (status, n) in part.non_200 {
            *total.non_200.entry(status).or_default() += n;
        }
        total.transport_errors += part.transport_errors;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// A paced client's schedule.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// When the next request is due.
    next: Instant,
    /// Time between this client's requests.
    every: Duration,
}

async fn one_client(
    client: reqwest::Client,
    url: String,
    tokens: Arc<Vec<String>>,
    first: usize,
    step: usize,
    deadline: Instant,
    mut pacing: Option<Pacing>,
) -> anyhow::Result<LoadResult> {
    let mut out = LoadResult {
        latency_us: new_histogram()?,
        added_us: new_histogram()?,
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
        let sent = match pacing.as_mut() {
            Some(p) => {
                let due = p.next;
                p.next += p.every;
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let token = tokens.get(index).map(String::as_str).unwrap_or_default();
        index = (index + step) % tokens.len();
        let answer = client.post(&url).bearer_auth(token).send().await;
        let (status, github_us) = match answer {
            // Read the whole body so the connection goes back to the pool.
            Ok(resp) => {
                let status = resp.status().as_u16();
                let github_us = resp
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .and_then(github_micros);
                match resp.bytes().await {
                    Ok(_) => (Some(status), github_us),
                    Err(_) => (None, None),
                }
            }
            Err(_) => (None, None),
        };
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        match status {
            Some(200) => {
                out.ok += 1;
                out.latency_us.saturating_record(micros.max(1));
                if let Some(github) = github_us {
                    out.added_us
                        .saturating_record(micros.saturating_sub(github).max(1));
                }
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

/// The `github` metric of a `Server-Timing` value, in microseconds.
fn github_micros(server_timing: &str) -> Option<u64> {
    let ms: f64 = server_timing
        .split(',')
        .find_map(|metric| metric.trim().strip_prefix("github;dur="))?
        .parse()
        .ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A loopback HTTP/1.1 server that answers every request 200 and counts them.
    async fn counting_server() -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let count = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        // Bodyless requests: each ends at a blank line.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            seen.fetch_add(1, Ordering::Relaxed);
                            let reply = b"HTTP/1.1 200 OK\r\nserver-timing: github;dur=0.2\r\ncontent-length: 2\r\n\r\n{}";
                            if conn.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, count)
    }

    #[test]
    fn server_timing_github_share() {
        assert_eq!(github_micros("github;dur=0.812, audit;dur=0.3"), Some(812));
        assert_eq!(github_micros("audit;dur=1, github;dur=2.5"), Some(2500));
        assert_eq!(github_micros("audit;dur=1"), None);
        assert_eq!(github_micros("github;dur=-1"), None);
        assert_eq!(github_micros("github;dur=x"), None);
    }

    #[tokio::test]
    async fn paced_clients_send_on_schedule_and_closed_loop_ones_do_not_wait() {
        let (url, count) = counting_server().await;
        let client = reqwest::Client::new();
        let tokens = Arc::new(vec!["t".to_owned()]);
        let window = Duration::from_millis(600);

        // 4 clients offering 50 requests/s for 0.6 s: at most 30 sends are
        // scheduled before the deadline, whatever the machine's speed.
        let paced = run(&client, &url, Arc::clone(&tokens), 4, window, Some(50.0))
            .await
            .unwrap();
        let sent = count.swap(0, Ordering::Relaxed);
        assert_eq!(paced.ok, sent);
        assert!((5..=30).contains(&sent), "paced run sent {sent}");
        assert_eq!(paced.latency_us.len(), sent);
        // Every answer said it waited 0.2 ms on GitHub: that is taken out.
        assert_eq!(paced.added_us.len(), sent);
        assert!(paced.added_us.max() < paced.latency_us.max());

        // Closed loop: each client sends as soon as it is answered.
        let flat_out = run(&client, &url, tokens, 4, window, None).await.unwrap();
        assert!(
            flat_out.ok > 60,
            "closed loop only sent {} in {window:?}",
            flat_out.ok
        );
    }
}
