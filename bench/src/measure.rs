//! Timing of one tool run for the benchmarks: wall time from spawn to exit, the process's own peak
//! RSS from `wait4` (its `ru_maxrss`, not its children's), and optionally when marker text first or
//! last appeared on its standard output (to split a run into phases without changing the tool); plus
//! the median/min/max summaries and the machine's load average for the record. It only measures
//! processes it spawned and reaps each of them before returning.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

/// One finished run of a tool.
pub struct Run {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size of the process itself, in KiB.
    pub max_rss_kib: i64,
    /// CPU time (user + system) of the process itself.
    pub cpu: Duration,
    /// For each requested [`Mark`], when its text was seen on standard output (from spawn).
    pub marks: Vec<Option<Duration>>,
}

/// Text to look for in a tool's standard output, line by line.
pub struct Mark {
    /// The substring to find in a line.
    pub needle: &'static str,
    /// Record the last matching line rather than the first.
    pub last: bool,
}

/// Flushes every dirty page of the machine to disk (`sync(2)`) before a timed run, outside any timing, so
/// that no run pays for writing back an earlier run's files (berth's `syncfs` per layer would otherwise wait
/// for the previous tool's gigabyte). The scripts also give each run a fresh journaled ext4 filesystem (see
/// `bench/scratch-fs.sh`); every tool gets the same treatment.
pub fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Runs `cmd` to completion (standard output discarded) and measures it.
pub fn measure(cmd: &mut Command) -> anyhow::Result<Run> {
    cmd.stdout(Stdio::null());
    run(cmd, &[])
}

/// Runs `cmd` to completion, reading its standard output for `marks`, and measures it.
pub fn measure_marked(cmd: &mut Command, marks: &[Mark]) -> anyhow::Result<Run> {
    cmd.stdout(Stdio::piped());
    run(cmd, marks)
}

fn run(cmd: &mut Command, marks: &[Mark]) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let reader = child.stdout.take().map(|out| {
        let needles: Vec<(&'static str, bool)> = marks.iter().map(|m| (m.needle, m.last)).collect();
        std::thread::spawn(move || {
            let mut seen = vec![None; needles.len()];
            let mut out = BufReader::new(out);
            let mut line = Vec::new();
            while matches!(out.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let at = start.elapsed();
                let text = String::from_utf8_lossy(&line);
                for (i, (needle, last)) in needles.iter().enumerate() {
                    if text.contains(needle) && (*last || seen[i].is_none()) {
                        seen[i] = Some(at);
                    }
                }
                line.clear();
            }
            seen
        })
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child spawned above, which is reaped
    // here and nowhere else (the `Child` is forgotten so it never waits on a reused pid).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    std::mem::forget(child);
    if r < 0 {
        bail!("wait4 on {cmd:?}: {}", std::io::Error::last_os_error());
    }
    let marks = match reader {
        Some(h) => h.join().unwrap_or_else(|_| vec![None; marks.len()]),
        None => Vec::new(),
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{cmd:?} failed with wait status {status}");
    }
    Ok(Run {
        wall,
        max_rss_kib: usage.ru_maxrss,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        marks,
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Median (upper median for an even count) and minimum of some durations.
pub fn median_min(samples: &[Duration]) -> (Duration, Duration) {
    let mut v = samples.to_vec();
    v.sort();
    match v.first() {
        Some(&min) => (v[v.len() / 2], min),
        None => (Duration::ZERO, Duration::ZERO),
    }
}

/// Wall-time median and minimum and the largest peak RSS of some runs.
pub struct Stats {
    /// Median wall time.
    pub median: Duration,
    /// Fastest wall time.
    pub min: Duration,
    /// Largest peak RSS over the runs, KiB.
    pub max_rss_kib: i64,
}

impl Stats {
    /// Summarises `runs`.
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Stats {
        let runs: Vec<&Run> = runs.into_iter().collect();
        let walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
        let (median, min) = median_min(&walls);
        Stats {
            median,
            min,
            max_rss_kib: runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0),
        }
    }
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_the_middle_sample_and_min_the_smallest() {
        let s = |v: &[u64]| {
            v.iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            median_min(&s(&[30, 10, 20])),
            (Duration::from_millis(20), Duration::from_millis(10))
        );
        assert_eq!(
            median_min(&s(&[40, 10])),
            (Duration::from_millis(40), Duration::from_millis(10))
        );
    }

    #[test]
    fn marks_record_first_and_last_matching_lines_and_failures_are_errors() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo a-1; sleep 0.2; echo a-2; echo b"]);
        let run = measure_marked(
            &mut cmd,
            &[
                Mark {
                    needle: "a-",
                    last: false,
                },
                Mark {
                    needle: "a-",
                    last: true,
                },
                Mark {
                    needle: "zzz",
                    last: false,
                },
            ],
        )
        .unwrap();
        let (first, last) = (run.marks[0].unwrap(), run.marks[1].unwrap());
        assert!(
            last >= first + Duration::from_millis(150),
            "{first:?} {last:?}"
        );
        assert!(run.marks[2].is_none());
        assert!(run.wall >= last && run.max_rss_kib > 0);
        assert!(measure(Command::new("sh").args(["-c", "exit 3"])).is_err());
    }
}
