//! Reading a process's CPU time and peak memory from Linux `/proc`, with the parsing kept pure so it can be tested.

use anyhow::{anyhow, Context as _};
use std::time::Duration;

/// CPU time a process (all its threads) has used, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CpuTicks {
    /// Time in user mode (`utime`, field 14 of `/proc/<pid>/stat`).
    pub(crate) user: u64,
    /// Time in kernel mode (`stime`, field 15).
    pub(crate) system: u64,
}

impl CpuTicks {
    /// User plus system ticks.
    pub(crate) fn total(self) -> u64 {
        self.user.saturating_add(self.system)
    }

    /// Ticks used since `earlier`.
    pub(crate) fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Parses `utime` and `stime` out of the text of `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat`.
///
/// Field 2, `comm`, is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> anyhow::Result<CpuTicks> {
    let close = text
        .rfind(')')
        .ok_or_else(|| anyhow!("no `)` closing the comm field"))?;
    let rest = text.get(close + 1..).unwrap_or_default();
    // After the comm field: state is field 3, so utime (14) is index 11 and stime (15) index 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(index)
            .ok_or_else(|| anyhow!("too few fields for {name}"))?
            .parse::<u64>()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(CpuTicks {
        user: field(11, "utime")?,
        system: field(12, "stime")?,
    })
}

/// Parses a `kB` line such as `VmHWM:    12345 kB` out of `/proc/<pid>/status`; returns bytes.
pub(crate) fn parse_status_kib(text: &str, key: &str) -> anyhow::Result<u64> {
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != key {
            continue;
        }
        let mut parts = value.split_whitespace();
        let number = parts
            .next()
            .ok_or_else(|| anyhow!("{key} has no value"))?
            .parse::<u64>()
            .with_context(|| format!("{key} is not a number"))?;
        return match parts.next() {
            Some("kB") => Ok(number.saturating_mul(1024)),
            other => Err(anyhow!("{key}: unexpected unit {other:?}")),
        };
    }
    Err(anyhow!("no {key} line"))
}

/// CPU ticks used so far by process `pid` (all threads, living and exited).
pub(crate) fn process_cpu(pid: u32) -> anyhow::Result<CpuTicks> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_stat(&text).with_context(|| format!("parse {path}"))
}

/// CPU ticks used so far by this process.
pub(crate) fn self_cpu() -> anyhow::Result<CpuTicks> {
    process_cpu(std::process::id())
}

/// CPU ticks used so far by this process's threads whose name (`comm`) is `name`.
pub(crate) fn self_threads_cpu(name: &str) -> anyhow::Result<CpuTicks> {
    let mut sum = CpuTicks::default();
    let mut found = false;
    for entry in std::fs::read_dir("/proc/self/task").context("read /proc/self/task")? {
        let dir = entry.context("read /proc/self/task")?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let ticks = parse_stat(&stat).with_context(|| format!("parse {}", dir.display()))?;
        sum.user += ticks.user;
        sum.system += ticks.system;
        found = true;
    }
    if found {
        Ok(sum)
    } else {
        Err(anyhow!("no thread named {name:?} in this process"))
    }
}

/// Peak resident set size (`VmHWM`) of process `pid`, in bytes.
pub(crate) fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_status_kib(&text, "VmHWM").with_context(|| format!("parse {path}"))
}

/// Current resident set size (`VmRSS`) of process `pid`, in bytes.
pub(crate) fn current_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_status_kib(&text, "VmRSS").with_context(|| format!("parse {path}"))
}

/// Parses the first field of `/proc/.../schedstat`: nanoseconds spent on a CPU.
pub(crate) fn parse_schedstat(text: &str) -> anyhow::Result<u64> {
    text.split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("empty schedstat"))?
        .parse::<u64>()
        .context("schedstat run time is not a number")
}

/// Nanoseconds the calling thread has spent on a CPU (user and system), from
/// `/proc/thread-self/schedstat`: finer than clock ticks, for short loops.
///
/// The kernel brings a running thread's figure up to date only when the
/// scheduler looks at it, so the thread sleeps for a microsecond first.
pub(crate) fn this_thread_cpu_ns() -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_micros(1));
    let path = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    parse_schedstat(&text).with_context(|| format!("parse {path}"))
}

/// Nanoseconds process `pid`'s live threads have spent on a CPU, summed from
/// `/proc/<pid>/task/*/schedstat`. Exact for a process that is blocked (a
/// `bootstrap` waiting in `/next`); threads that already exited are missing.
pub(crate) fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut sum = 0u64;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        let path = entry
            .with_context(|| format!("read {dir}"))?
            .path()
            .join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the thread ended meanwhile
        };
        sum = sum.saturating_add(
            parse_schedstat(&text).with_context(|| format!("parse {}", path.display()))?,
        );
    }
    Ok(sum)
}

/// Where the clock-tick length came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TickSource {
    /// `getconf CLK_TCK` answered.
    Getconf,
    /// It did not; 100 Hz (Linux's `USER_HZ` on every mainstream architecture) was assumed.
    Assumed,
}

/// Clock ticks per second for `/proc/*/stat` times. Asks `getconf CLK_TCK`
/// (the workspace forbids `unsafe`, so no direct `sysconf` call); falls back
/// to 100 and says so.
pub(crate) fn clock_ticks_per_second() -> (u64, TickSource) {
    let answer = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&hz| hz > 0);
    match answer {
        Some(hz) => (hz, TickSource::Getconf),
        None => (100, TickSource::Assumed),
    }
}

/// Converts ticks to a duration at `hz` ticks per second.
pub(crate) fn ticks_to_duration(ticks: u64, hz: u64) -> Duration {
    if hz == 0 {
        return Duration::ZERO;
    }
    let secs = ticks / hz;
    let rem = ticks % hz;
    Duration::from_secs(secs) + Duration::from_nanos(rem.saturating_mul(1_000_000_000) / hz)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const STAT: &str = "4242 (tokenmint) S 1 4242 4242 0 -1 4194560 2961 0 0 0 731 152 0 0 20 0 6 0 123456 1234567 890 18446744073709551615 1 1 0 0 0 0 0 4096 17920 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn stat_reads_utime_and_stime() {
        let ticks = parse_stat(STAT).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                user: 731,
                system: 152
            }
        );
        assert_eq!(ticks.total(), 883);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let text = STAT.replace("(tokenmint)", "(tokio-rt (worker) 1)");
        assert_eq!(parse_stat(&text).unwrap().user, 731);
    }

    #[test]
    fn stat_rejects_truncated_and_garbage() {
        assert!(parse_stat("4242 (x) S 1 2 3").is_err());
        assert!(parse_stat("no parens here").is_err());
        let text = STAT.replace(" 731 ", " x ");
        assert!(parse_stat(&text).is_err());
    }

    #[test]
    fn since_saturates() {
        let a = CpuTicks { user: 5, system: 7 };
        let b = CpuTicks { user: 8, system: 6 };
        assert_eq!(b.since(a), CpuTicks { user: 3, system: 0 });
    }

    #[test]
    fn status_reads_kib_lines() {
        let text =
            "Name:\ttokenmint\nVmPeak:\t  200000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t   10000 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM").unwrap(), 12345 * 1024);
        assert_eq!(parse_status_kib(text, "VmRSS").unwrap(), 10000 * 1024);
        assert!(parse_status_kib(text, "VmSwap").is_err());
        assert!(parse_status_kib("VmHWM:\t12 MB\n", "VmHWM").is_err());
    }

    #[test]
    fn ticks_convert() {
        assert_eq!(ticks_to_duration(150, 100), Duration::from_millis(1500));
        assert_eq!(ticks_to_duration(1, 250), Duration::from_millis(4));
        assert_eq!(ticks_to_duration(5, 0), Duration::ZERO);
    }

    #[test]
    fn schedstat_reads_run_time() {
        assert_eq!(parse_schedstat("135762 1158504 2\n").unwrap(), 135762);
        assert!(parse_schedstat("").is_err());
        assert!(parse_schedstat("x 1 2").is_err());
        let before = this_thread_cpu_ns().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(this_thread_cpu_ns().unwrap() > before);
        assert!(process_cpu_ns(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        process_cpu(pid).unwrap();
        assert!(peak_rss(pid).unwrap() > 0);
    }
}
