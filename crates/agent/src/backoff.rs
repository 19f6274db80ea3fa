//! kubelet's container restart back-off (client-go `flowcontrol.Backoff` without jitter, as kubelet's
//! `doBackOff` drives it): one entry per pod container, `initial` doubling to `max`, an entry forgotten once
//! the container ran for more than `2 x max` since its last restart (10 minutes with kubelet's 300 s), and Go's
//! duration text for the `back-off 10s restarting failed container=...` message. It only computes; it never
//! starts anything.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::CrashBackoff;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Back-off entries keyed by `<pod uid>_<container>`.
#[derive(Debug)]
pub(crate) struct Backoff {
    cfg: CrashBackoff,
    entries: HashMap<String, Entry>,
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl Backoff {
    pub fn new(cfg: CrashBackoff) -> Self {
        Backoff {
            cfg,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, event: SystemTime, e: &Entry) -> bool {
        since(event, e.last_update) > self.cfg.max * 2
    }

    /// Whether a container that finished at `finished` must still wait at `now` (kubelet's
    /// `IsInBackOffSince(key, finishedAt)`).
    pub fn in_backoff(&self, key: &str, finished: SystemTime, now: SystemTime) -> bool {
        match self.entries.get(key) {
            None => false,
            Some(e) if self.expired(finished, e) => false,
            Some(e) => since(now, finished) < e.backoff,
        }
    }

    /// When the back-off of a container that finished at `finished` ends.
    pub fn ready_at(&self, key: &str, finished: SystemTime) -> Option<SystemTime> {
        self.entries.get(key).map(|e| finished + e.backoff)
    }

    /// The current back-off period (for the waiting message).
    pub fn current(&self, key: &str) -> Duration {
        self.entries
            .get(key)
            .map_or(self.cfg.initial, |e| e.backoff)
    }

    /// Record a restart at `now` of a container that finished at `finished`.
    pub fn next(&mut self, key: &str, finished: SystemTime, now: SystemTime) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(finished, e) => (e.backoff * 2).min(self.cfg.max),
            _ => self.cfg.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Forget every entry of a pod.
    pub fn forget_pod(&mut self, uid: &str) {
        let prefix = format!("{uid}_");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// Go's `time.Duration.String()` for the durations back-offs use: `500ms`, `10s`, `1.5s`, `1m20s`, `5m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let ms = d.as_secs_f64() * 1000.0;
        return format!("{}ms", trim_float(ms));
    }
    let total = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let secs = if frac == 0 {
        s.to_string()
    } else {
        trim_float(s as f64 + f64::from(frac) / 1e9)
    };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubelet() -> Backoff {
        Backoff::new(CrashBackoff::default())
    }

    #[test]
    fn the_first_crash_restarts_at_once_and_later_ones_wait_doubling_periods() {
        let mut b = kubelet();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!b.in_backoff("u_c", t0, t0));
        b.next("u_c", t0, t0);
        let crash2 = t0 + Duration::from_secs(1);
        assert!(b.in_backoff("u_c", crash2, crash2 + Duration::from_secs(9)));
        assert_eq!(go_duration(b.current("u_c")), "10s");
        assert!(!b.in_backoff("u_c", crash2, crash2 + Duration::from_secs(10)));
        let restart2 = crash2 + Duration::from_secs(10);
        b.next("u_c", crash2, restart2);
        assert_eq!(b.current("u_c"), Duration::from_secs(20));
        let mut at = restart2;
        for _ in 0..10 {
            b.next("u_c", at, at);
            at += Duration::from_secs(1);
        }
        assert_eq!(
            b.current("u_c"),
            Duration::from_secs(300),
            "capped at the maximum"
        );
    }

    #[test]
    fn ten_minutes_of_running_resets_the_back_off() {
        let mut b = kubelet();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        b.next("u_c", t0, t0);
        b.next("u_c", t0, t0);
        assert_eq!(b.current("u_c"), Duration::from_secs(20));
        let late = t0 + Duration::from_secs(601);
        assert!(!b.in_backoff("u_c", late, late));
        b.next("u_c", late, late);
        assert_eq!(b.current("u_c"), Duration::from_secs(10));
    }

    #[test]
    fn forgetting_a_pod_drops_only_its_entries() {
        let mut b = kubelet();
        let t = SystemTime::now();
        b.next("a_x", t, t);
        b.next("b_x", t, t);
        b.forget_pod("a");
        assert!(!b.in_backoff("a_x", t, t));
        assert!(b.in_backoff("b_x", t, t));
    }

    #[test]
    fn durations_print_like_go() {
        let s = Duration::from_secs;
        assert_eq!(go_duration(s(10)), "10s");
        assert_eq!(go_duration(s(80)), "1m20s");
        assert_eq!(go_duration(s(300)), "5m0s");
        assert_eq!(go_duration(s(3725)), "1h2m5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
