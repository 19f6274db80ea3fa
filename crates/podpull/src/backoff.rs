//! The image pull back-off of kubelet (client-go `flowcontrol.Backoff` as kubelet configures it): per key
//! (`<pod uid>_<image with default tag>`), the first failure waits `initial` (10 s), each further failure doubles
//! it up to `max` (300 s), no jitter; an entry untouched for more than `2 * max` is forgotten. It also keeps the
//! last failure's waiting reason and message per key, for the ImagePullBackOff message (kubernetes PR #127918).
//! Time comes from an injected [`Clock`] so tests never sleep. It must never decide anything about pulls beyond
//! "is this key still backing off".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (for tests of back-off timing).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// A clock standing at an arbitrary instant.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Debug)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
    /// The waiting reason and message of the failure that set this entry.
    last_failure: Option<(String, String)>,
}

/// Per-key exponential back-off.
#[derive(Debug)]
pub struct BackOff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl BackOff {
    /// Back-off starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> BackOff {
        BackOff {
            initial,
            max: max.max(initial),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn expired(&self, now: Instant, last_update: Instant) -> bool {
        now.saturating_duration_since(last_update) > self.max * 2
    }

    /// Records a failure of `key` at `now` with its waiting reason and message: the next delay is `initial`
    /// for a new (or expired) key, else double the previous one, capped at `max`.
    pub fn next(&self, key: &str, now: Instant, reason: &str, message: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let backoff = match entries.get(key) {
            Some(e) if !self.expired(now, e.last_update) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
                last_failure: Some((reason.to_string(), message.to_string())),
            },
        );
    }

    /// client-go `IsInBackOffSinceUpdate`: true while less than the current delay has passed since the last
    /// failure (and the entry has not expired). Returns the failure that started the wait.
    pub fn in_back_off(&self, key: &str, now: Instant) -> Option<Option<(String, String)>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        if self.expired(now, e.last_update) {
            return None;
        }
        (now.saturating_duration_since(e.last_update) < e.backoff).then(|| e.last_failure.clone())
    }

    /// The current delay of `key`, if it has one (for status and tests).
    pub fn delay(&self, key: &str) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).map(|e| e.backoff)
    }

    /// Forgets the previous failure of `key` after a success, so a later back-off never shows a stale error
    /// (the delay itself is kept, as client-go does, until it expires).
    pub fn succeeded(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(key) {
            e.last_failure = None;
        }
    }

    /// client-go `GC`: drops entries untouched for more than `2 * max`.
    pub fn gc(&self, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| now.saturating_duration_since(e.last_update) <= self.max * 2);
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_from_ten_seconds_to_the_five_minute_cap() {
        let clock = ManualClock::new();
        let b = BackOff::new(10 * S, 300 * S);
        let mut seen = Vec::new();
        for _ in 0..8 {
            b.next("uid_img", clock.now(), "ErrImagePull", "x");
            let d = b.delay("uid_img").unwrap();
            seen.push(d.as_secs());
            clock.advance(d);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn in_back_off_until_the_delay_has_passed_with_the_previous_failure() {
        let clock = ManualClock::new();
        let b = BackOff::new(10 * S, 300 * S);
        assert!(b.in_back_off("k", clock.now()).is_none(), "unknown key");
        b.next("k", clock.now(), "ErrImagePull", "denied");
        clock.advance(9 * S);
        assert_eq!(
            b.in_back_off("k", clock.now()),
            Some(Some(("ErrImagePull".into(), "denied".into())))
        );
        clock.advance(S);
        assert!(b.in_back_off("k", clock.now()).is_none(), "10 s passed");
    }

    #[test]
    fn keys_back_off_independently() {
        let clock = ManualClock::new();
        let b = BackOff::new(10 * S, 300 * S);
        b.next("pod-a_img", clock.now(), "ErrImagePull", "x");
        b.next("pod-a_img", clock.now(), "ErrImagePull", "x");
        b.next("pod-b_img", clock.now(), "ErrImagePull", "x");
        assert_eq!(b.delay("pod-a_img"), Some(20 * S));
        assert_eq!(b.delay("pod-b_img"), Some(10 * S));
    }

    #[test]
    fn an_entry_older_than_twice_the_max_restarts_at_the_initial_delay_and_is_collected() {
        let clock = ManualClock::new();
        let b = BackOff::new(10 * S, 300 * S);
        for _ in 0..4 {
            b.next("k", clock.now(), "ErrImagePull", "x");
        }
        assert_eq!(b.delay("k"), Some(80 * S));
        clock.advance(600 * S);
        b.gc(clock.now());
        assert_eq!(b.len(), 1, "exactly 2*max is not yet expired");
        clock.advance(S);
        assert!(b.in_back_off("k", clock.now()).is_none());
        b.next("k", clock.now(), "ErrImagePull", "x");
        assert_eq!(b.delay("k"), Some(10 * S), "expired entries start over");
        clock.advance(601 * S);
        b.gc(clock.now());
        assert!(b.is_empty());
    }

    #[test]
    fn success_forgets_the_previous_failure_text() {
        let clock = ManualClock::new();
        let b = BackOff::new(10 * S, 300 * S);
        b.next("k", clock.now(), "ErrImagePull", "old");
        b.succeeded("k");
        assert_eq!(b.in_back_off("k", clock.now()), Some(None));
    }
}
