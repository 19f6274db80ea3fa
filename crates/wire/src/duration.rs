//! Kubernetes' `HumanDuration` (apimachinery `pkg/util/duration`), the AGE format of every
//! server-side Table. It owns only the formatting; it must never read a clock (callers pass
//! the elapsed time, so output is reproducible).

use chrono::{DateTime, Utc};

/// Formats an elapsed time like kube's `duration.HumanDuration`: `0s`…`119s`, `2m5s` below
/// 10 minutes, `15m` below 3 hours, `3h4m` below 8 hours, `20h` below 2 days, `3d4h` below
/// 8 days, `30d` below 2 years, `2y10d` below 8 years, then `9y`. Times more than a second in
/// the future (clock skew) print `<invalid>`; within a second they print `0s`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    // Go converts with int(d.Seconds()), which truncates toward zero.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: the HumanDuration from an RFC 3339 timestamp to `now`;
/// `<unknown>` when the timestamp is absent or unparsable.
pub fn since(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration(now.signed_duration_since(t.with_timezone(&Utc))),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn human_duration_matches_upstream_table() {
        // (elapsed, expected), ported from apimachinery duration_test.go TestHumanDuration
        let s = TimeDelta::seconds;
        let m = TimeDelta::minutes;
        let h = TimeDelta::hours;
        let cases = [
            (s(1), "1s"),
            (s(70), "70s"),
            (s(190), "3m10s"),
            (m(70), "70m"),
            (h(47), "47h"),
            (h(49), "2d1h"),
            (h(8 * 24 + 2), "8d"),
            (h(367 * 24), "367d"),
            (h(365 * 2 * 24 + 25), "2y1d"),
            (h(365 * 8 * 24 + 2), "8y"),
            (s(0), "0s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(125), "2m5s"),
            (m(10), "10m"),
            (m(179), "179m"),
            (m(180), "3h"),
            (m(184), "3h4m"),
            (h(8), "8h"),
            (h(48), "2d"),
            (h(24 * 365 * 2), "2y"),
            (h(24 * 365 * 9), "9y"),
            (TimeDelta::milliseconds(-1500), "0s"),
            (s(-2), "<invalid>"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn since_handles_missing_and_bad_timestamps() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(since(Some("2024-05-01T11:57:58Z"), now), "2m2s");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("yesterday"), now), "<unknown>");
    }
}
