//! Turning raw counts into per-level figures, and printing them as a Markdown table or JSON.

use crate::load::LoadResult;
use crate::procfs::{ticks_to_duration, TickSource};
use crate::Cpu;
use serde::Serialize;
use std::fmt::Write as _;

/// The whole run.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) tokenmint_bin: String,
    pub(crate) duration_secs: u64,
    pub(crate) warmup_secs: u64,
    pub(crate) tokens_per_level: usize,
    pub(crate) clock_ticks_per_second: u64,
    pub(crate) clock_tick_source: TickSource,
    /// GitHub stand-in calls made by the very first exchange (cold caches).
    pub(crate) cold_github_calls: usize,
    /// `--rate`: requests per second the paced clients offered together;
    /// `None` for closed-loop clients.
    pub(crate) offered_rate: Option<f64>,
    pub(crate) levels: Vec<LevelReport>,
    /// The soak, when `--soak` asked for one.
    pub(crate) soak: Option<SoakReport>,
    /// How the tokenmint child ended.
    pub(crate) child_exit: String,
}

/// A soak run: RSS over time under steady load.
#[derive(Debug, Serialize)]
pub(crate) struct SoakReport {
    pub(crate) clients: usize,
    pub(crate) window_secs: u64,
    pub(crate) samples: Vec<SoakSample>,
}

/// One soak window.
#[derive(Debug, Serialize)]
pub(crate) struct SoakSample {
    /// Seconds of soak load so far.
    pub(crate) at_secs: u64,
    pub(crate) exchanges_per_sec: f64,
    pub(crate) non_200: u64,
    pub(crate) transport_errors: u64,
    /// tokenmint's `VmRSS` at the end of the window.
    pub(crate) rss_mib: f64,
    /// tokenmint's `VmHWM` at the end of the window.
    pub(crate) peak_rss_mib: f64,
    /// The size of the SQLite audit store's WAL file at the end of the
    /// window (`None` for another store): it must stay flat too.
    pub(crate) wal_mib: Option<f64>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds; all 0 when it is empty.
    pub(crate) fn from_us(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// One concurrency level.
#[derive(Debug, Serialize)]
pub(crate) struct LevelReport {
    pub(crate) clients: usize,
    pub(crate) elapsed_secs: f64,
    pub(crate) ok: u64,
    pub(crate) non_200: u64,
    pub(crate) non_200_by_status: std::collections::BTreeMap<u16, u64>,
    pub(crate) transport_errors: u64,
    /// The first transport error, with its causes.
    pub(crate) first_transport_error: Option<String>,
    pub(crate) exchanges_per_sec: f64,
    pub(crate) latency_ms: Percentiles,
    /// Latency less the time tokenmint waited on the GitHub stand-in (from
    /// its `Server-Timing` header) and, paced, less the load generator's own
    /// lateness in sending: what tokenmint itself adds.
    pub(crate) added_latency_ms: Percentiles,
    /// Paced runs: the load generator's own lateness in sending a request
    /// that fell due while its client was idle (`None` in closed loop).
    pub(crate) generator_late_ms: Option<Percentiles>,
    /// tokenmint's exchange time less its GitHub wait (`Server-Timing`
    /// `total` less `github`): the added latency without the HTTP handling,
    /// network and client around the exchange.
    pub(crate) exchange_less_github_ms: Percentiles,
    /// The audit commit's share (`Server-Timing` `audit`).
    pub(crate) audit_commit_ms: Percentiles,
    /// tokenmint's user+system CPU over the level, per successful exchange.
    pub(crate) service_cpu_ms_per_exchange: f64,
    pub(crate) service_user_ms_per_exchange: f64,
    pub(crate) service_system_ms_per_exchange: f64,
    /// tokenmint's CPU over wall time: cores busy on average.
    pub(crate) service_cores: f64,
    /// tokenmint's `VmHWM` after the level (peak since start).
    pub(crate) service_peak_rss_mib: f64,
    pub(crate) github_calls: usize,
    pub(crate) github_calls_per_exchange: f64,
    /// This process (clients + issuer + stand-in), per exchange.
    pub(crate) bench_cpu_ms_per_exchange: f64,
    /// This process's issuer/stand-in thread alone, per exchange.
    pub(crate) standin_cpu_ms_per_exchange: f64,
}

/// `part / whole`, or 0 when `whole` is 0.
pub(crate) fn per(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

fn ms(ticks: u64, hz: u64) -> f64 {
    ticks_to_duration(ticks, hz).as_secs_f64() * 1000.0
}

impl LevelReport {
    pub(crate) fn new(
        clients: usize,
        result: &LoadResult,
        cpu: Cpu,
        hz: u64,
        github_calls: usize,
        peak_rss_bytes: u64,
    ) -> Self {
        let ok = result.ok as f64;
        let elapsed = result.elapsed.as_secs_f64();
        Self {
            clients,
            elapsed_secs: elapsed,
            ok: result.ok,
            non_200: result.non_200_total(),
            non_200_by_status: result.non_200.clone(),
            transport_errors: result.transport_errors,
            first_transport_error: result.first_transport_error.clone(),
            exchanges_per_sec: per(ok, elapsed),
            latency_ms: Percentiles::from_us(&result.latency_us),
            added_latency_ms: Percentiles::from_us(&result.added_us),
            generator_late_ms: (!result.late_us.is_empty())
                .then(|| Percentiles::from_us(&result.late_us)),
            exchange_less_github_ms: Percentiles::from_us(&result.exchange_us),
            audit_commit_ms: Percentiles::from_us(&result.audit_us),
            service_cpu_ms_per_exchange: per(ms(cpu.svc.total(), hz), ok),
            service_user_ms_per_exchange: per(ms(cpu.svc.user, hz), ok),
            service_system_ms_per_exchange: per(ms(cpu.svc.system, hz), ok),
            service_cores: per(ms(cpu.svc.total(), hz) / 1000.0, elapsed),
            service_peak_rss_mib: peak_rss_bytes as f64 / (1024.0 * 1024.0),
            github_calls,
            github_calls_per_exchange: per(github_calls as f64, ok),
            bench_cpu_ms_per_exchange: per(ms(cpu.own.total(), hz), ok),
            standin_cpu_ms_per_exchange: per(ms(cpu.standin.total(), hz), ok),
        }
    }
}

/// The Markdown table and its notes.
pub(crate) fn markdown(report: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| clients | exchanges/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | added p50 / p99 / p99.9 ms | non-200 | service CPU ms/exchange (user+sys) | service cores | service peak RSS MiB | GitHub calls/exchange | bench CPU ms/exchange | of which issuer+stand-in |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for l in &report.levels {
        let p = l.latency_ms;
        let a = l.added_latency_ms;
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {} | {:.3} ({:.3}+{:.3}) | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} |",
            l.clients,
            l.exchanges_per_sec,
            p.p50,
            p.p90,
            p.p99,
            p.p99_9,
            p.max,
            a.p50,
            a.p99,
            a.p99_9,
            l.non_200 + l.transport_errors,
            l.service_cpu_ms_per_exchange,
            l.service_user_ms_per_exchange,
            l.service_system_ms_per_exchange,
            l.service_cores,
            l.service_peak_rss_mib,
            l.github_calls_per_exchange,
            l.bench_cpu_ms_per_exchange,
            l.standin_cpu_ms_per_exchange,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| clients | added p50 / p99 / p99.9 ms | of which in the exchange (`total` less `github`) | of which the audit commit (`audit`) | not in it: the load generator's lateness in sending |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for l in &report.levels {
        let three = |p: Percentiles| format!("{:.2} / {:.2} / {:.2}", p.p50, p.p99, p.p99_9);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            l.clients,
            three(l.added_latency_ms),
            three(l.exchange_less_github_ms),
            three(l.audit_commit_ms),
            l.generator_late_ms.map_or_else(|| "-".to_owned(), three),
        );
    }
    let _ = writeln!(s);
    let tick = match report.clock_tick_source {
        TickSource::Getconf => "from `getconf CLK_TCK`",
        TickSource::Assumed => "ASSUMED (getconf failed)",
    };
    let _ = writeln!(
        s,
        "Latency is end to end at the client. \"added\" is the same latency less the time tokenmint waited on the GitHub stand-in, from each answer's `Server-Timing: github;dur=…`: the stand-in's own cost taken out. Paced, it is also less the load generator's own lateness in sending a request that fell due while its client was idle (tokio's timer rounds up to whole milliseconds); a request that fell due while its client still waited for an answer counts from when it was due. The second table splits it by the rest of `Server-Timing`: the exchange itself (verify, policy, audit commit; `total` less `github`) and its audit commit; what \"added\" has beyond the exchange was spent in HTTP handling, on loopback and in the client, including waits for a CPU.\n"
    );
    if let Some(rate) = report.offered_rate {
        let _ = writeln!(
            s,
            "Paced clients: {rate:.0} requests/s offered in total at every level; end to end latency counts from each request's scheduled send time.\n"
        );
    }
    let _ = writeln!(
        s,
        "{} s per level after {} s warm-up; {} pre-minted OIDC tokens per level, reused round-robin. \
         CPU from /proc/<pid>/stat utime+stime at {} ticks/s ({tick}). \
         First (cold-cache) exchange made {} GitHub calls. tokenmint {}.",
        report.duration_secs,
        report.warmup_secs,
        report.tokens_per_level,
        report.clock_ticks_per_second,
        report.cold_github_calls,
        report.child_exit,
    );
    for l in &report.levels {
        if l.non_200 > 0 || l.transport_errors > 0 {
            let _ = writeln!(
                s,
                "- {} clients: non-200 answers {:?}, transport errors {}{}",
                l.clients,
                l.non_200_by_status,
                l.transport_errors,
                l.first_transport_error
                    .as_deref()
                    .map(|e| format!(" (the first: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(soak) = &report.soak {
        let _ = writeln!(
            s,
            "\nSoak: {} clients, RSS sampled every {} s.\n\n| after s | exchanges/s | non-200 + errors | RSS MiB | peak RSS MiB | SQLite WAL MiB |\n|---:|---:|---:|---:|---:|---:|",
            soak.clients, soak.window_secs
        );
        for x in &soak.samples {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {:.1} | {:.1} | {} |",
                x.at_secs,
                x.exchanges_per_sec,
                x.non_200 + x.transport_errors,
                x.rss_mib,
                x.peak_rss_mib,
                x.wal_mib.map_or("-".to_owned(), |m| format!("{m:.1}"))
            );
        }
        if let (Some(first), Some(last)) = (soak.samples.first(), soak.samples.last()) {
            let _ = writeln!(
                s,
                "\nRSS change from the first to the last sample: {:+.1} MiB.",
                last.rss_mib - first.rss_mib
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::procfs::CpuTicks;
    use std::time::Duration;

    #[test]
    fn level_figures() {
        let mut latency_us = crate::load::new_histogram().unwrap();
        for v in 1..=1000u64 {
            latency_us.record(v * 10).unwrap();
        }
        let mut added_us = crate::load::new_histogram().unwrap();
        for v in 1..=1000u64 {
            added_us.record(v * 4).unwrap();
        }
        let mut exchange_us = crate::load::new_histogram().unwrap();
        let mut audit_us = crate::load::new_histogram().unwrap();
        for v in 1..=1000u64 {
            exchange_us.record(v * 2).unwrap();
            audit_us.record(v).unwrap();
        }
        let result = LoadResult {
            latency_us,
            added_us,
            late_us: crate::load::new_histogram().unwrap(),
            exchange_us,
            audit_us,
            ok: 1000,
            non_200: [(503, 2)].into_iter().collect(),
            transport_errors: 1,
            first_transport_error: Some("connection closed before message completed".to_owned()),
            elapsed: Duration::from_secs(2),
        };
        let cpu = Cpu {
            svc: CpuTicks {
                user: 30,
                system: 10,
            },
            own: CpuTicks {
                user: 20,
                system: 0,
            },
            standin: CpuTicks { user: 5, system: 0 },
        };
        let l = LevelReport::new(4, &result, cpu, 100, 1000, 64 * 1024 * 1024);
        assert_eq!(l.exchanges_per_sec, 500.0);
        assert!((l.service_cpu_ms_per_exchange - 0.4).abs() < 1e-9);
        assert!((l.service_user_ms_per_exchange - 0.3).abs() < 1e-9);
        assert!((l.service_cores - 0.2).abs() < 1e-9);
        assert_eq!(l.github_calls_per_exchange, 1.0);
        assert_eq!(l.service_peak_rss_mib, 64.0);
        assert_eq!(l.non_200, 2);
        assert!((l.latency_ms.p50 - 5.0).abs() < 0.01);
        assert!((l.latency_ms.max - 10.0).abs() < 0.01);
        assert!(
            (l.added_latency_ms.p99 - 3.96).abs() < 0.01,
            "{:?}",
            l.added_latency_ms
        );
        let table = markdown(&RunReport {
            tokenmint_bin: "x".into(),
            duration_secs: 2,
            warmup_secs: 0,
            tokens_per_level: 1,
            clock_ticks_per_second: 100,
            clock_tick_source: TickSource::Getconf,
            cold_github_calls: 2,
            offered_rate: None,
            levels: vec![l],
            soak: None,
            child_exit: "stopped".into(),
        });
        assert!(table.contains("| 4 | 500 |"), "{table}");
        assert!(table.contains("| 2.00 / 3.96 / 4.00 |"), "{table}");
        assert!(
            table.contains(
                "| 4 | 2.00 / 3.96 / 4.00 | 1.00 / 1.98 / 2.00 | 0.50 / 0.99 / 1.00 | - |"
            ),
            "{table}"
        );
        assert!(table.contains("503"), "{table}");
        assert!(
            table.contains(
                "transport errors 1 (the first: connection closed before message completed)"
            ),
            "{table}"
        );
    }

    #[test]
    fn soak_table_lists_samples_and_rss_change() {
        let sample = |at_secs, rss_mib| SoakSample {
            at_secs,
            exchanges_per_sec: 1000.0,
            non_200: 0,
            transport_errors: 0,
            rss_mib,
            peak_rss_mib: 40.0,
            wal_mib: (at_secs == 60).then_some(12.25),
        };
        let table = markdown(&RunReport {
            tokenmint_bin: "x".into(),
            duration_secs: 2,
            warmup_secs: 0,
            tokens_per_level: 1,
            clock_ticks_per_second: 100,
            clock_tick_source: TickSource::Getconf,
            cold_github_calls: 2,
            offered_rate: None,
            levels: vec![],
            soak: Some(SoakReport {
                clients: 64,
                window_secs: 60,
                samples: vec![sample(60, 30.0), sample(120, 31.5)],
            }),
            child_exit: "stopped".into(),
        });
        assert!(
            table.contains("| 120 | 1000 | 0 | 31.5 | 40.0 | - |"),
            "{table}"
        );
        assert!(
            table.contains("| 60 | 1000 | 0 | 30.0 | 40.0 | 12.2 |"),
            "{table}"
        );
        assert!(table.contains("+1.5 MiB"), "{table}");
    }

    #[test]
    fn per_handles_zero() {
        assert_eq!(per(1.0, 0.0), 0.0);
    }
}
