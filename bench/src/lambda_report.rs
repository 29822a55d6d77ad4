//! The Lambda bench's figures (cold starts, the warm instance, the model of the original's per-invocation work), the pure helpers that derive them, and their Markdown table.

use crate::elf::BinaryFacts;
use crate::procfs::TickSource;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt::Write as _;
use tokenmint::dev::github_standin::RecordedRequest;

/// The credentials TTL of a warm `bootstrap` (`tokenmint::lambda::invoke::CREDENTIALS_TTL`).
pub(crate) const CREDENTIALS_TTL_SECS: f64 = 60.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The whole `--lambda` run.
#[derive(Debug, Serialize)]
pub(crate) struct LambdaReport {
    pub(crate) bootstrap_bin: String,
    pub(crate) binary: BinaryFacts,
    pub(crate) binary_mib: f64,
    pub(crate) stripped: bool,
    pub(crate) clock_ticks_per_second: u64,
    pub(crate) clock_tick_source: TickSource,
    pub(crate) cold: ColdReport,
    pub(crate) warm: WarmReport,
    /// A model of github-token-broker's per-invocation work, measured in the same run.
    pub(crate) original_model: ModelReport,
}

/// One cold start: a new process and its first `null` invocation.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct ColdStart {
    /// Spawn to the response posted.
    pub(crate) spawn_to_response_ms: f64,
    /// Spawn to the first `/next` (the init phase).
    pub(crate) init_ms: f64,
    /// First `/next` to the response posted.
    pub(crate) first_invocation_ms: f64,
    /// The process's CPU time when the response arrived, from its threads'
    /// schedstat (nanosecond resolution; clock ticks are too coarse here).
    pub(crate) cpu_ms: f64,
    /// The same from utime+stime (clock-tick resolution).
    pub(crate) cpu_ticks_ms: f64,
    /// `VmHWM` when the response arrived.
    pub(crate) peak_rss_mib: f64,
    pub(crate) ssm_calls: u64,
    pub(crate) github_calls: u64,
    /// Distinct App JWTs GitHub saw from this process: each is one RSA signature.
    pub(crate) app_jwt_signs: u64,
}

/// Smallest, median, 90th percentile and largest of a sample.
#[derive(Debug, Serialize, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) max: f64,
}

/// Nearest-rank percentiles of `values` (all zero when empty).
pub(crate) fn spread(values: impl IntoIterator<Item = f64>) -> Spread {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return Spread::default();
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let index = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v.get(index).copied().unwrap_or_default()
    };
    Spread {
        min: v.first().copied().unwrap_or_default(),
        p50: rank(0.5),
        p90: rank(0.9),
        max: v.last().copied().unwrap_or_default(),
    }
}

/// All cold starts.
#[derive(Debug, Serialize)]
pub(crate) struct ColdReport {
    pub(crate) count: usize,
    pub(crate) spawn_to_response_ms: Spread,
    pub(crate) init_ms: Spread,
    pub(crate) first_invocation_ms: Spread,
    pub(crate) cpu_ms: Spread,
    pub(crate) peak_rss_mib: Spread,
    pub(crate) ssm_calls: Spread,
    pub(crate) github_calls: Spread,
    pub(crate) app_jwt_signs: Spread,
    pub(crate) starts: Vec<ColdStart>,
}

impl ColdReport {
    pub(crate) fn new(starts: Vec<ColdStart>) -> Self {
        let of = |f: fn(&ColdStart) -> f64| spread(starts.iter().map(f));
        Self {
            count: starts.len(),
            spawn_to_response_ms: of(|s| s.spawn_to_response_ms),
            init_ms: of(|s| s.init_ms),
            first_invocation_ms: of(|s| s.first_invocation_ms),
            cpu_ms: of(|s| s.cpu_ms),
            peak_rss_mib: of(|s| s.peak_rss_mib),
            ssm_calls: of(|s| s.ssm_calls as f64),
            github_calls: of(|s| s.github_calls as f64),
            app_jwt_signs: of(|s| s.app_jwt_signs as f64),
            starts,
        }
    }
}

/// Latency percentiles, in milliseconds: the HTTP bench's.
pub(crate) use crate::report::Percentiles as Latency;

/// One instance's sequential warm invocations.
#[derive(Debug, Serialize)]
pub(crate) struct WarmReport {
    pub(crate) invocations: u64,
    pub(crate) elapsed_secs: f64,
    /// Queued to response posted.
    pub(crate) latency_ms: Latency,
    /// utime+stime from /proc/<pid>/stat over the run, per invocation.
    pub(crate) cpu_ms_per_invocation: f64,
    pub(crate) user_ms_per_invocation: f64,
    pub(crate) system_ms_per_invocation: f64,
    /// The same from the process's threads' schedstat (a cross-check at nanosecond resolution).
    pub(crate) schedstat_cpu_ms_per_invocation: f64,
    /// `VmHWM` after the last invocation (peak since the process started).
    pub(crate) peak_rss_mib: f64,
    pub(crate) ssm_calls: u64,
    pub(crate) github_calls: u64,
    pub(crate) app_jwt_signs: u64,
    pub(crate) ssm_calls_per_invocation: f64,
    pub(crate) github_calls_per_invocation: f64,
    pub(crate) app_jwt_signs_per_invocation: f64,
    /// From the instance's first (cold) response, which read SSM, to the last warm one.
    pub(crate) secs_since_credentials_read: f64,
    pub(crate) credentials_ttl_secs: f64,
    /// Whether the run outlived the credentials TTL (so SSM refreshes are expected).
    pub(crate) crossed_credentials_ttl: bool,
    /// The instance's own first invocation, before the warm ones.
    pub(crate) first_invocation: ColdStart,
}

/// One step of the model of the original's per-invocation work.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct ModelStep {
    pub(crate) what: String,
    pub(crate) reps: u64,
    /// Upstream calls per step, as counted by the proxy or the stand-in (0 for local work).
    pub(crate) calls_per_step: f64,
    /// Wall time per step.
    pub(crate) latency_ms: Latency,
    /// The model thread's CPU time per step (`/proc/thread-self/schedstat`).
    pub(crate) cpu_ms_per_step: f64,
}

/// The model: what github-token-broker does on every invocation.
#[derive(Debug, Serialize)]
pub(crate) struct ModelReport {
    pub(crate) ssm_get_parameters: ModelStep,
    pub(crate) rsa_sign: ModelStep,
    pub(crate) github_lookup_and_mint: ModelStep,
    /// Not in the sum: the original also parses the PEM it read on every invocation.
    pub(crate) pem_parse: ModelStep,
    /// SSM + sign + GitHub, p50 latencies added.
    pub(crate) sum_latency_p50_ms: f64,
    /// SSM + sign + GitHub CPU.
    pub(crate) sum_cpu_ms: f64,
}

impl ModelReport {
    pub(crate) fn new(
        ssm_get_parameters: ModelStep,
        rsa_sign: ModelStep,
        github_lookup_and_mint: ModelStep,
        pem_parse: ModelStep,
    ) -> Self {
        let steps = [&ssm_get_parameters, &rsa_sign, &github_lookup_and_mint];
        Self {
            sum_latency_p50_ms: steps.iter().map(|s| s.latency_ms.p50).sum(),
            sum_cpu_ms: steps.iter().map(|s| s.cpu_ms_per_step).sum(),
            ssm_get_parameters,
            rsa_sign,
            github_lookup_and_mint,
            pem_parse,
        }
    }
}

/// The App JWTs (bearer credentials shaped like a JWT) among `window`'s
/// requests that are not in `known`. The function signs each App JWT it
/// sends, so each new one is one RSA signature. A lower bound: RS256 is
/// deterministic, so two signatures over identical claims (same second)
/// would look like one.
pub(crate) fn new_app_jwts(window: &[RecordedRequest], known: &HashSet<String>) -> HashSet<String> {
    window
        .iter()
        .filter_map(|r| r.bearer.as_ref())
        .filter(|b| b.split('.').count() == 3 && !known.contains(*b))
        .cloned()
        .collect()
}

fn calls(spread: Spread) -> String {
    if spread.min == spread.max {
        format!("{}", spread.max)
    } else {
        format!("{}–{}", spread.min, spread.max)
    }
}

/// The Markdown tables and their notes.
pub(crate) fn markdown(r: &LambdaReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`bootstrap`: `{}`, {} bytes ({:.1} MiB), {}.\n",
        r.bootstrap_bin,
        r.binary.bytes,
        r.binary_mib,
        r.binary.describe()
    );

    let c = &r.cold;
    let _ = writeln!(
        s,
        "Cold starts: each spawns a new `bootstrap` with one `null` invocation queued; \
         time from spawn to the response posted to the Runtime API. Latencies in ms.\n"
    );
    let _ = writeln!(
        s,
        "| cold starts | p50 | p90 | max | init p50 (spawn → first /next) | first invocation p50 | CPU ms to first response p50 (schedstat) | peak RSS MiB max | SSM calls | GitHub calls | App JWT signs |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} |\n",
        c.count,
        c.spawn_to_response_ms.p50,
        c.spawn_to_response_ms.p90,
        c.spawn_to_response_ms.max,
        c.init_ms.p50,
        c.first_invocation_ms.p50,
        c.cpu_ms.p50,
        c.peak_rss_mib.max,
        calls(c.ssm_calls),
        calls(c.github_calls),
        calls(c.app_jwt_signs),
    );

    let w = &r.warm;
    let _ = writeln!(
        s,
        "Warm instance: {} sequential `null` invocations after its first (one at a time, as Lambda \
         runs them); latency is queued → response posted. Latencies in ms.\n",
        w.invocations
    );
    let _ = writeln!(
        s,
        "| invocations | p50 | p90 | p99 | p99.9 | max | CPU ms/invocation (user+sys) | peak RSS MiB | SSM calls/invocation | GitHub calls/invocation | App JWT signs/invocation |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let l = w.latency_ms;
    let _ = writeln!(
        s,
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} ({:.3}+{:.3}) | {:.1} | {:.3} | {:.3} | {:.3} |\n",
        w.invocations,
        l.p50,
        l.p90,
        l.p99,
        l.p99_9,
        l.max,
        w.cpu_ms_per_invocation,
        w.user_ms_per_invocation,
        w.system_ms_per_invocation,
        w.peak_rss_mib,
        w.ssm_calls_per_invocation,
        w.github_calls_per_invocation,
        w.app_jwt_signs_per_invocation,
    );
    if w.crossed_credentials_ttl {
        let _ = writeln!(
            s,
            "The warm run reached {:.1} s after the instance read SSM, past the {:.0} s credentials TTL: \
             it refreshed them with {} SSM call(s) ({} App JWT re-sign(s)).\n",
            w.secs_since_credentials_read, w.credentials_ttl_secs, w.ssm_calls, w.app_jwt_signs
        );
    } else {
        let _ = writeln!(
            s,
            "The warm run ended {:.1} s after the instance read SSM, inside the {:.0} s credentials TTL, \
             so no SSM refresh was due ({} SSM calls seen). A run past {:.0} s shows one refresh per minute.\n",
            w.secs_since_credentials_read,
            w.credentials_ttl_secs,
            w.ssm_calls,
            w.credentials_ttl_secs
        );
    }

    let m = &r.original_model;
    let _ = writeln!(
        s,
        "Model of github-token-broker's per-invocation work (SSM read, App JWT sign and two GitHub \
         calls on every invocation), measured in this run with tokenmint's own SSM client and signer \
         and a keep-alive HTTP client against the same moto and stand-in. It is a model of the \
         original's design, not the Go binary.\n"
    );
    let _ = writeln!(
        s,
        "| model step | reps | upstream calls/step | p50 ms | p99 ms | CPU ms/step |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for step in [
        &m.ssm_get_parameters,
        &m.rsa_sign,
        &m.github_lookup_and_mint,
    ] {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            step.what,
            step.reps,
            step.calls_per_step,
            step.latency_ms.p50,
            step.latency_ms.p99,
            step.cpu_ms_per_step
        );
    }
    let _ = writeln!(
        s,
        "| **sum** | | | {:.3} | | {:.3} |",
        m.sum_latency_p50_ms, m.sum_cpu_ms
    );
    let p = &m.pem_parse;
    let _ = writeln!(
        s,
        "| not in the sum: {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
        p.what, p.reps, p.calls_per_step, p.latency_ms.p50, p.latency_ms.p99, p.cpu_ms_per_step
    );

    let _ = writeln!(
        s,
        "| per invocation | tokenmint `bootstrap`, warm (measured) | model of the original (sum of steps) |"
    );
    let _ = writeln!(s, "|---|---:|---:|");
    let _ = writeln!(
        s,
        "| latency p50 ms | {:.3} | {:.3} |",
        w.latency_ms.p50, m.sum_latency_p50_ms
    );
    let _ = writeln!(
        s,
        "| CPU ms | {:.3} | {:.3} |",
        w.cpu_ms_per_invocation, m.sum_cpu_ms
    );
    let _ = writeln!(
        s,
        "| SSM GetParameters calls | {:.3} | {:.3} |",
        w.ssm_calls_per_invocation, m.ssm_get_parameters.calls_per_step
    );
    let _ = writeln!(
        s,
        "| GitHub calls | {:.3} | {:.3} |",
        w.github_calls_per_invocation, m.github_lookup_and_mint.calls_per_step
    );
    let _ = writeln!(
        s,
        "| App JWT signs | {:.3} | 1 |\n",
        w.app_jwt_signs_per_invocation
    );

    let tick = match r.clock_tick_source {
        TickSource::Getconf => "from `getconf CLK_TCK`",
        TickSource::Assumed => "ASSUMED (getconf failed)",
    };
    let _ = writeln!(
        s,
        "Notes: `bootstrap` CPU per warm invocation is the process's utime+stime from /proc/<pid>/stat \
         at {} ticks/s ({tick}) (its threads' schedstat gives {:.3} ms); a cold start's CPU is its \
         threads' schedstat run time, read once it waits in `/next` again; the model's CPU is its client thread's run time from /proc/thread-self/schedstat (moto, the \
         proxy and the stand-in run elsewhere). The `bootstrap` latency includes the Runtime API's \
         `/next` and `/response` hops on loopback; the model's does not. SSM is moto (Python) behind \
         the bench's counting proxy on loopback and GitHub is tokenmint's stand-in, so absolute \
         latencies are not AWS's or GitHub's. App JWT signs are counted as distinct App JWTs the \
         stand-in saw.",
        r.clock_ticks_per_second, w.schedstat_cpu_ms_per_invocation
    );
    s
}

/// MiB from bytes.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn request(path: &str, bearer: Option<&str>) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path: path.into(),
            body: None,
            bearer: bearer.map(str::to_owned),
        }
    }

    #[test]
    fn spread_is_nearest_rank() {
        let s = spread((1..=10).map(f64::from));
        assert_eq!(
            s,
            Spread {
                min: 1.0,
                p50: 5.0,
                p90: 9.0,
                max: 10.0
            }
        );
        assert_eq!(spread([7.0]).p90, 7.0);
        assert_eq!(spread(std::iter::empty()), Spread::default());
    }

    #[test]
    fn app_jwts_are_new_distinct_jwt_bearers() {
        let window = [
            request("/repos/acme/widgets/installation", Some("a.b.c")),
            request("/app/installations/4242/access_tokens", Some("a.b.c")),
            request("/app/installations/4242/access_tokens", Some("d.e.f")),
            request("/installation/token", Some("ghs_notajwt")),
            request("/app/installations/4242/access_tokens", None),
        ];
        assert_eq!(new_app_jwts(&window, &HashSet::new()).len(), 2);
        let known: HashSet<String> = ["a.b.c".to_owned()].into();
        assert_eq!(
            new_app_jwts(&window, &known),
            ["d.e.f".to_owned()].into_iter().collect()
        );
    }

    fn step(what: &str, calls: f64, p50: f64, cpu: f64) -> ModelStep {
        ModelStep {
            what: what.into(),
            reps: 10,
            calls_per_step: calls,
            latency_ms: Latency {
                p50,
                ..Latency::default()
            },
            cpu_ms_per_step: cpu,
        }
    }

    fn cold(ssm: u64) -> ColdStart {
        ColdStart {
            spawn_to_response_ms: 40.0,
            init_ms: 10.0,
            first_invocation_ms: 30.0,
            cpu_ms: 20.0,
            cpu_ticks_ms: 20.0,
            peak_rss_mib: 9.0,
            ssm_calls: ssm,
            github_calls: 2,
            app_jwt_signs: 1,
        }
    }

    fn report(warm_secs: f64) -> LambdaReport {
        LambdaReport {
            bootstrap_bin: "target/release/bootstrap".into(),
            binary: BinaryFacts {
                bytes: 8 * 1024 * 1024,
                has_symtab: false,
                has_debug_info: false,
            },
            binary_mib: 8.0,
            stripped: true,
            clock_ticks_per_second: 100,
            clock_tick_source: TickSource::Getconf,
            cold: ColdReport::new(vec![cold(1), cold(1), cold(2)]),
            warm: WarmReport {
                invocations: 2000,
                elapsed_secs: warm_secs,
                latency_ms: Latency {
                    p50: 0.5,
                    ..Latency::default()
                },
                cpu_ms_per_invocation: 0.25,
                user_ms_per_invocation: 0.2,
                system_ms_per_invocation: 0.05,
                schedstat_cpu_ms_per_invocation: 0.26,
                peak_rss_mib: 12.0,
                ssm_calls: 0,
                github_calls: 2000,
                app_jwt_signs: 0,
                ssm_calls_per_invocation: 0.0,
                github_calls_per_invocation: 1.0,
                app_jwt_signs_per_invocation: 0.0,
                secs_since_credentials_read: warm_secs,
                credentials_ttl_secs: CREDENTIALS_TTL_SECS,
                crossed_credentials_ttl: warm_secs >= CREDENTIALS_TTL_SECS,
                first_invocation: cold(1),
            },
            original_model: ModelReport::new(
                step("SSM GetParameters", 1.0, 3.0, 0.2),
                step("RSA sign", 0.0, 1.0, 1.0),
                step("GitHub lookup + mint", 2.0, 0.5, 0.3),
                step("parse PEM", 0.0, 0.1, 0.1),
            ),
        }
    }

    #[test]
    fn model_sums_three_steps_not_the_pem_parse() {
        let m = report(5.0).original_model;
        assert!((m.sum_latency_p50_ms - 4.5).abs() < 1e-9);
        assert!((m.sum_cpu_ms - 1.5).abs() < 1e-9);
    }

    #[test]
    fn markdown_has_the_tables_and_the_ttl_note() {
        let text = markdown(&report(5.0));
        assert!(text.contains("8388608 bytes (8.0 MiB), stripped"), "{text}");
        assert!(
            text.contains(
                "| 3 | 40.00 | 40.00 | 40.00 | 10.00 | 30.00 | 20.00 | 9.0 | 1–2 | 2 | 1 |"
            ),
            "{text}"
        );
        assert!(text.contains("| 2000 | 0.50 |"), "{text}");
        assert!(text.contains("inside the 60 s credentials TTL"), "{text}");
        assert!(text.contains("| **sum** | | | 4.500 | | 1.500 |"), "{text}");
        assert!(text.contains("| CPU ms | 0.250 | 1.500 |"), "{text}");
        assert!(text.contains("not the Go binary"), "{text}");
        let text = markdown(&report(75.0));
        assert!(text.contains("past the 60 s credentials TTL"), "{text}");
    }
}
