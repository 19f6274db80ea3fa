//! Retry policy: bounded attempts, jittered exponential back-off, `Retry-After` parsing.
//!
//! Owns the numbers that decide how long a pull waits before asking again. It never sleeps itself
//! (callers do, so tests can reason about durations) and never allows an unbounded wait: a
//! `Retry-After` beyond [`RetryPolicy::max_retry_after`] is reported to the caller, which fails fast.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// Bounded retries for one request.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts per request (containerd: 5).
    pub max_attempts: u32,
    /// First back-off delay.
    pub base_delay: Duration,
    /// Largest back-off delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; longer waits fail fast with a rate-limit error.
    pub max_retry_after: Duration,
    /// Resume attempts without progress for a broken blob body (containerd: 3).
    pub max_resume_without_progress: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            max_resume_without_progress: 3,
        }
    }
}

impl RetryPolicy {
    /// Back-off before attempt `attempt + 1` (attempt counts from 1): base * 2^(attempt-1), capped,
    /// with up to 25 % random jitter subtracted so concurrent pulls spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let d = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let jitter = random_fraction() * 0.25;
        d.mul_f64(1.0 - jitter)
    }
}

fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date_future_and_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for v in ["", "soon", "-5", "1.5", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(v, now), None, "{v}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_down_only() {
        let p = RetryPolicy::default();
        for attempt in 1..=10 {
            let nominal = p
                .base_delay
                .saturating_mul(1 << (attempt - 1))
                .min(p.max_delay);
            let d = p.backoff(attempt);
            assert!(
                d <= nominal && d >= nominal.mul_f64(0.75),
                "{attempt}: {d:?}"
            );
        }
        assert!(p.backoff(30) <= p.max_delay);
    }
}
