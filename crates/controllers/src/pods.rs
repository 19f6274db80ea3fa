//! Pod facts the workload controllers share: active, ready, available (Ready for minReadySeconds), and
//! upstream's order for choosing which pods a ReplicaSet deletes first (`controller.ActivePodsWithRanks`).
//! Pure functions over `Pod`; never writes anything.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub(crate) fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream's `IsPodActive`: not Succeeded, not Failed, not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && !is_terminating(pod)
}

/// The time the Ready condition became True, when it is True.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: Ready, and Ready for at least `min_ready_seconds`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
    }
}

/// How long until a Ready pod becomes available, when it is Ready but not yet available.
pub(crate) fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = ready_since(pod)??;
    let at = since + SignedDuration::from_secs(i64::from(min_ready_seconds));
    if at < now {
        return None;
    }
    let left = at.duration_since(now);
    Some(std::time::Duration::from_millis(
        left.as_millis().max(0) as u64 + 100,
    ))
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// `a` before `b` when `a` should be deleted first (upstream's `ActivePodsWithRanks.Less`, without the
/// pod-deletion-cost annotation and with the linear, not logarithmic, time comparisons):
/// unassigned < assigned; Pending < Unknown < Running; not ready < ready; more colocated pods of the same owner
/// first (`rank`); ready more recently < ready longer; more restarts < fewer; newer < older.
pub(crate) fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa.cmp(&pb);
    }
    let (ra, rb) = (is_ready(a), is_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    if ra && rb {
        let ta = ready_since(a).flatten();
        let tb = ready_since(b).flatten();
        if ta != tb {
            return later_or_zero_first(ta, tb);
        }
    }
    let (ca, cb) = (max_restarts(a), max_restarts(b));
    if ca != cb {
        return cb.cmp(&ca);
    }
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if ta != tb {
        return later_or_zero_first(ta, tb);
    }
    Ordering::Equal
}

/// Upstream's `afterOrZero`: an empty time first, then the later time first.
fn later_or_zero_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<&str>, created: &str) -> Pod {
        let mut conditions = vec![];
        if let Some(at) = ready_at {
            conditions.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": at}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .unwrap()
    }

    fn order(pods: &[Pod], ranks: &[usize]) -> Vec<String> {
        let mut idx: Vec<usize> = (0..pods.len()).collect();
        idx.sort_by(|&i, &j| deletion_order(&pods[i], ranks[i], &pods[j], ranks[j]));
        idx.iter()
            .map(|&i| pods[i].metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn unscheduled_then_pending_then_not_ready_are_deleted_first() {
        let pods = vec![
            pod(
                "ready",
                "n1",
                "Running",
                Some("2026-01-01T00:00:00Z"),
                "2026-01-01T00:00:00Z",
            ),
            pod("unready", "n1", "Running", None, "2026-01-01T00:00:00Z"),
            pod("pending", "n1", "Pending", None, "2026-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", None, "2026-01-01T00:00:00Z"),
            pod("unknown", "n1", "Unknown", None, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(
            order(&pods, &[1; 5]),
            ["unscheduled", "pending", "unknown", "unready", "ready"]
        );
    }

    #[test]
    fn among_equals_newest_is_deleted_first_and_recently_ready_before_long_ready() {
        let pods = vec![
            pod("old", "n1", "Running", None, "2026-01-01T00:00:00Z"),
            pod("new", "n1", "Running", None, "2026-01-01T00:05:00Z"),
            pod("mid", "n1", "Running", None, "2026-01-01T00:02:00Z"),
        ];
        assert_eq!(order(&pods, &[1; 3]), ["new", "mid", "old"]);
        let ready = vec![
            pod(
                "long",
                "n1",
                "Running",
                Some("2026-01-01T00:00:00Z"),
                "2026-01-01T00:09:00Z",
            ),
            pod(
                "recent",
                "n1",
                "Running",
                Some("2026-01-01T00:08:00Z"),
                "2026-01-01T00:00:00Z",
            ),
        ];
        assert_eq!(order(&ready, &[1; 2]), ["recent", "long"]);
    }

    #[test]
    fn pods_doubled_up_on_a_node_are_deleted_before_lone_ones() {
        let pods = vec![
            pod("alone", "n1", "Running", None, "2026-01-01T00:05:00Z"),
            pod("crowded", "n2", "Running", None, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(order(&pods, &[1, 3]), ["crowded", "alone"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod(
            "p",
            "n1",
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(is_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2026-01-01T00:00:05Z")));
        assert!(is_available(&p, 10, at("2026-01-01T00:00:11Z")));
        let unready = pod("u", "n1", "Running", None, "2026-01-01T00:00:00Z");
        assert!(!is_available(&unready, 0, at("2026-01-01T00:00:11Z")));
    }
}
