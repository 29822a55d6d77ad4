//! Load: N clients each send an exchange, wait for the answer, and send the next (closed loop), or send on a fixed schedule (paced), until a deadline.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run of N clients produced.
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Latency of 200 answers, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// The latency tokenmint adds: the same latency less the time tokenmint
    /// waited on the GitHub stand-in (its `Server-Timing: github;dur=…`),
    /// and, for a paced request whose client sat idle until it was due, less
    /// the load generator's own lateness in sending it (see `late_us`). Only
    /// answers that carried the header are in it.
    pub(crate) added_us: Histogram<u64>,
    /// Paced runs: how late the load generator sent each request that fell
    /// due while its client was idle, in microseconds. tokio's timer has
    /// millisecond ticks and rounds a deadline up to the next one, so this
    /// is 0–1 ms plus any wait for one of the generator's own threads. A
    /// request that fell due while its client still waited for the previous
    /// answer is not in it: that wait is the service's, and is charged.
    pub(crate) late_us: Histogram<u64>,
    /// tokenmint's own view of the same (`Server-Timing` `total` less
    /// `github`): the exchange from verifying the token to the committed
    /// audit row, without the HTTP handling, network and client around it.
    pub(crate) exchange_us: Histogram<u64>,
    /// The audit commit's share (`Server-Timing` `audit`).
    pub(crate) audit_us: Histogram<u64>,
    /// Answers with status 200.
    pub(crate) ok: u64,
    /// Answers with any other status, by status.
    pub(crate) non_200: std::collections::BTreeMap<u16, u64>,
    /// Requests that got no answer (connect error, timeout, body read error).
    pub(crate) transport_errors: u64,
    /// The first of them, with its causes, to tell which it was.
    pub(crate) first_transport_error: Option<String>,
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
        late_us: new_histogram()?,
        exchange_us: new_histogram()?,
        audit_us: new_histogram()?,
        ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        first_transport_error: None,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let part = task.await??;
        total.latency_us.add(&part.latency_us)?;
        total.added_us.add(&part.added_us)?;
        total.late_us.add(&part.late_us)?;
        total.exchange_us.add(&part.exchange_us)?;
        total.audit_us.add(&part.audit_us)?;
        total.ok += part.ok;
        for (status, n) in part.non_200 {
            *total.non_200.entry(status).or_default() += n;
        }
        total.transport_errors += part.transport_errors;
        if total.first_transport_error.is_none() {
            total.first_transport_error = part.first_transport_error;
        }
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
        late_us: new_histogram()?,
        exchange_us: new_histogram()?,
        audit_us: new_histogram()?,
        ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        first_transport_error: None,
        elapsed: Duration::ZERO,
    };
    if tokens.is_empty() {
        return Ok(out);
    }
    let mut index = first % tokens.len();
    // When the previous answer arrived (none yet: the client starts idle).
    let mut answered: Option<Instant> = None;
    while Instant::now() < deadline {
        // `due`: when the request should have been sent, from which its end
        // to end latency counts. `charged_from`: the same, less the load
        // generator's own lateness, from which its added latency counts.
        let (due, charged_from) = match pacing.as_mut() {
            Some(p) => {
                let due = p.next;
                p.next += p.every;
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                if answered.is_none_or(|at| at <= due) {
                    // Idle when it fell due: any lateness is the generator's.
                    out.late_us
                        .saturating_record(micros(sent.saturating_duration_since(due)));
                    (due, sent)
                } else {
                    // Still waiting on the service when it fell due: charged
                    // from `due`, so a stall counts for every request it held up.
                    (due, due)
                }
            }
            None => {
                let now = Instant::now();
                (now, now)
            }
        };
        let token = tokens.get(index).map(String::as_str).unwrap_or_default();
        index = (index + step) % tokens.len();
        let answer = client.post(&url).bearer_auth(token).send().await;
        let mut error = None;
        let (status, timing) = match answer {
            // Read the whole body so the connection goes back to the pool.
            Ok(resp) => {
                let status = resp.status().as_u16();
                let timing = resp
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .map(ServerTiming::parse)
                    .unwrap_or_default();
                match resp.bytes().await {
                    Ok(_) => (Some(status), timing),
                    Err(e) => {
                        error = Some(e);
                        (None, ServerTiming::default())
                    }
                }
            }
            Err(e) => {
                error = Some(e);
                (None, ServerTiming::default())
            }
        };
        let now = Instant::now();
        answered = Some(now);
        let since = |t: Instant| micros(now.saturating_duration_since(t));
        let end_to_end = since(due);
        match status {
            Some(200) => {
                out.ok += 1;
                out.latency_us.saturating_record(end_to_end.max(1));
                if let Some(github) = timing.github {
                    out.added_us
                        .saturating_record(since(charged_from).saturating_sub(github).max(1));
                    if let Some(total) = timing.total {
                        out.exchange_us
                            .saturating_record(total.saturating_sub(github).max(1));
                    }
                }
                if let Some(audit) = timing.audit {
                    out.audit_us.saturating_record(audit.max(1));
                }
            }
            Some(other) => *out.non_200.entry(other).or_default() += 1,
            None => {
                out.transport_errors += 1;
                if let (None, Some(e)) = (&out.first_transport_error, error) {
                    out.first_transport_error = Some(with_causes(&e));
                }
                // Don't spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(out)
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// An error and each of its causes, joined by ": ".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The metrics of a `Server-Timing` value that tokenmint sends, in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ServerTiming {
    github: Option<u64>,
    audit: Option<u64>,
    total: Option<u64>,
}

impl ServerTiming {
    fn parse(value: &str) -> Self {
        let micros = |name: &str| {
            let ms: f64 = value
                .split(',')
                .find_map(|metric| metric.trim().strip_prefix(name)?.strip_prefix(";dur="))?
                .parse()
                .ok()?;
            (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
        };
        Self {
            github: micros("github"),
            audit: micros("audit"),
            total: micros("total"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A loopback HTTP/1.1 server that answers every request 200 and counts them.
    async fn counting_server() -> (String, Arc<AtomicU64>) {
        counting_server_slow_at_first(Duration::ZERO).await
    }

    /// [`counting_server`], holding its first answer back for `first_delay`.
    async fn counting_server_slow_at_first(first_delay: Duration) -> (String, Arc<AtomicU64>) {
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
                            if seen.fetch_add(1, Ordering::Relaxed) == 0 {
                                tokio::time::sleep(first_delay).await;
                            }
                            let reply = b"HTTP/1.1 200 OK\r\nserver-timing: github;dur=0.2, audit;dur=0.1, total;dur=0.5\r\ncontent-length: 2\r\n\r\n{}";
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
    fn server_timing_metrics() {
        let t = ServerTiming::parse("github;dur=0.812, audit;dur=0.3, total;dur=1.5");
        assert_eq!(
            t,
            ServerTiming {
                github: Some(812),
                audit: Some(300),
                total: Some(1500)
            }
        );
        assert_eq!(
            ServerTiming::parse("audit;dur=1, github;dur=2.5").github,
            Some(2500)
        );
        assert_eq!(ServerTiming::parse("audit;dur=1").github, None);
        assert_eq!(ServerTiming::parse("github;dur=-1").github, None);
        assert_eq!(ServerTiming::parse("github;dur=x").github, None);
        // A metric whose name only starts with another's is not it.
        assert_eq!(ServerTiming::parse("githubx;dur=1").github, None);
        assert_eq!(ServerTiming::parse("total;dur=1").total, Some(1000));
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
        // Each answer came long before its client's next send was due, so
        // every send's lateness was the generator's own.
        assert_eq!(paced.late_us.len(), sent);
        // Every answer said it waited 0.2 ms on GitHub: that is taken out.
        assert_eq!(paced.added_us.len(), sent);
        assert!(paced.added_us.max() < paced.latency_us.max());
        // tokenmint's own view: total 0.5 less github 0.2; audit 0.1.
        assert_eq!(paced.exchange_us.len(), sent);
        assert!((299..=301).contains(&paced.exchange_us.max()));
        assert!((99..=101).contains(&paced.audit_us.max()));

        // Closed loop: each client sends as soon as it is answered.
        let flat_out = run(&client, &url, tokens, 4, window, None).await.unwrap();
        assert!(
            flat_out.ok > 60,
            "closed loop only sent {} in {window:?}",
            flat_out.ok
        );
        assert!(flat_out.late_us.is_empty());
    }

    /// No coordinated omission in what tokenmint is charged: requests that
    /// fell due while the service held an answer back count from when they
    /// were due, not from when the client got round to sending them.
    #[tokio::test]
    async fn a_stall_is_charged_to_every_request_it_held_up() {
        let (url, count) = counting_server_slow_at_first(Duration::from_millis(150)).await;
        let client = reqwest::Client::new();
        let tokens = Arc::new(vec!["t".to_owned()]);
        // One client, a request due every 20 ms, for 400 ms. The first answer
        // comes after 150 ms, and holds up the requests due at 20, 40, 60 and
        // 80 ms by 130, 110, 90 and 70 ms: with the first, five over 60 ms.
        let paced = run(
            &client,
            &url,
            tokens,
            1,
            Duration::from_millis(400),
            Some(50.0),
        )
        .await
        .unwrap();
        let sent = count.load(Ordering::Relaxed);
        assert_eq!(paced.ok, sent);
        let held_up = paced.added_us.count_between(60_000, 10_000_000);
        assert!(
            held_up >= 5,
            "only {held_up} of {sent} requests were charged the stall"
        );
        // Those are not the generator's lateness; the ones sent on time are.
        assert!(
            paced.late_us.len() + held_up <= sent && !paced.late_us.is_empty(),
            "{} late of {sent}",
            paced.late_us.len()
        );
    }
}
