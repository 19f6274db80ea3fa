//! Pod status as kubelet computes it (`generateAPIPodStatus`, `getPhase`, `status.GeneratePodReadyCondition`
//! ...), from what the agent knows about each container: the phase, the conditions PodScheduled,
//! PodReadyToStartContainers, Initialized, ContainersReady and Ready, and one `containerStatuses` entry per
//! spec container with `state`, `lastState`, `restartCount`, `image`, `imageID` and `containerID`. It only
//! computes: writing is the pod worker's job.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds-precision RFC 3339 in UTC, as `metav1.Time` serialises.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// One run of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    pub id: String,
    pub running: bool,
    pub started: Option<OffsetDateTime>,
    pub finished: Option<OffsetDateTime>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

impl Instance {
    pub fn container_id(&self) -> String {
        format!("runc://{}", self.id)
    }

    fn terminated(&self) -> Value {
        let code = self.exit_code.unwrap_or(255);
        let mut t = json!({
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "containerID": self.container_id(),
        });
        if let Some(s) = self.started {
            t["startedAt"] = json!(rfc3339(s));
        }
        if let Some(f) = self.finished.or(self.started) {
            t["finishedAt"] = json!(rfc3339(f));
        }
        if self.exit_code.is_none()
            && let Some(e) = &self.error
        {
            t["message"] = json!(e);
        }
        if code > 128 && code < 128 + 65 {
            t["signal"] = json!(code - 128);
        }
        t
    }
}

/// What the agent knows about one spec container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerView {
    pub name: String,
    /// The image as the runtime reports it (normalised reference), else the spec's image.
    pub image: String,
    pub image_id: String,
    /// The newest instance.
    pub current: Option<Instance>,
    /// The instance before it (for `lastState`).
    pub previous: Option<Instance>,
    /// Set while the container is not running and waits (pulling, back-off, create error).
    pub waiting: Option<(String, String)>,
    pub restart_count: u32,
}

impl ContainerView {
    fn is_running(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.running)
    }

    /// kubelet's container status entry.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.is_running(),
            "started": self.is_running(),
            "restartCount": self.restart_count,
        });
        let (state, last) = match (&self.current, &self.waiting) {
            (Some(c), _) if c.running => {
                s["containerID"] = json!(c.container_id());
                let mut running = json!({});
                if let Some(t) = c.started {
                    running["startedAt"] = json!(rfc3339(t));
                }
                (
                    json!({"running": running}),
                    self.previous.as_ref().map(Instance::terminated),
                )
            }
            // Waiting to restart: the dead instance moves to lastState.
            (Some(c), Some((reason, message))) => {
                s["containerID"] = json!(c.container_id());
                (waiting(reason, message), Some(c.terminated()))
            }
            (Some(c), None) => {
                s["containerID"] = json!(c.container_id());
                (
                    json!({"terminated": c.terminated()}),
                    self.previous.as_ref().map(Instance::terminated),
                )
            }
            (None, Some((reason, message))) => (waiting(reason, message), None),
            (None, None) => (waiting("ContainerCreating", ""), None),
        };
        s["state"] = state;
        s["lastState"] = match last {
            Some(t) => json!({"terminated": t}),
            None => json!({}),
        };
        s
    }
}

fn waiting(reason: &str, message: &str) -> Value {
    let mut w = json!({"reason": reason});
    if !message.is_empty() {
        w["message"] = json!(message);
    }
    json!({"waiting": w})
}

/// Inputs of the pod status.
#[derive(Debug, Clone)]
pub(crate) struct PodView<'a> {
    pub restart_policy: &'a str,
    pub containers: &'a [ContainerView],
    pub sandbox_ready: bool,
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
    pub start_time: &'a str,
    /// The status currently on the object (for PodScheduled and transition times).
    pub previous: Option<&'a Value>,
}

/// kubelet's `getPhase` for a pod without init containers.
pub(crate) fn phase(restart_policy: &str, containers: &[ContainerView]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        let status = c.to_status();
        let state = &status["state"];
        if state.get("running").is_some() {
            running += 1;
        } else if let Some(t) = state.get("terminated") {
            stopped += 1;
            if t["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if status["lastState"].get("terminated").is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    previous: Option<&Value>,
    kind: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let status_text = if status { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .filter(|c| c["status"] == status_text)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut c = Map::new();
    c.insert("type".into(), json!(kind));
    c.insert("status".into(), json!(status_text));
    c.insert("lastProbeTime".into(), Value::Null);
    c.insert("lastTransitionTime".into(), since);
    if let Some(r) = reason {
        c.insert("reason".into(), json!(r));
    }
    if let Some(m) = message {
        c.insert("message".into(), json!(m));
    }
    Value::Object(c)
}

/// The full status kubelet would write.
pub(crate) fn pod_status(v: &PodView<'_>) -> Value {
    let now = now_rfc3339();
    let phase = phase(v.restart_policy, v.containers);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = v
        .containers
        .iter()
        .filter(|c| !c.is_running())
        .map(|c| c.name.as_str())
        .collect();
    let ready = unready.is_empty() && !terminal;
    let (reason, message) = if ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let scheduled = v
        .previous
        .and_then(|p| p.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or_else(|| condition(None, "PodScheduled", true, None, None, &now));
    let conditions = vec![
        condition(
            v.previous,
            "PodReadyToStartContainers",
            v.sandbox_ready && !terminal,
            None,
            None,
            &now,
        ),
        condition(v.previous, "Initialized", true, None, None, &now),
        condition(v.previous, "Ready", ready, reason, message.clone(), &now),
        condition(v.previous, "ContainersReady", ready, reason, message, &now),
        scheduled,
    ];
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": v.host_ip,
        "hostIPs": [{"ip": v.host_ip}],
        "startTime": v.start_time,
        "containerStatuses": v.containers.iter().map(ContainerView::to_status).collect::<Vec<_>>(),
        "qosClass": v.previous.and_then(|p| p.get("qosClass")).cloned().unwrap_or(json!("BestEffort")),
    });
    if let Some(ip) = v.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

/// Whether `next` changes what the pod *is* against the status last written: its phase or the status of one
/// of its conditions (Ready, ContainersReady, ...). The pod worker writes such a transition at once instead of
/// folding it into the next interval, so "Running" is never held back by the write that said "Pending".
pub(crate) fn is_transition(last: Option<&Value>, next: &Value) -> bool {
    let Some(last) = last else { return true };
    let conditions = |s: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = s["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            c["type"].as_str().unwrap_or_default().to_string(),
                            c["status"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    last["phase"] != next["phase"] || conditions(last) != conditions(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_and_condition_changes_are_transitions_other_changes_are_not() {
        let pending = view("app");
        let mut up = view("app");
        up.current = Some(running("abc"));
        let status = |c: &ContainerView, restarts: u32| {
            let mut c = c.clone();
            c.restart_count = restarts;
            pod_status(&PodView {
                restart_policy: "Always",
                containers: &[c],
                sandbox_ready: true,
                host_ip: "127.0.0.1",
                pod_ip: None,
                start_time: "2026-01-01T00:00:00Z",
                previous: None,
            })
        };
        let (p, r) = (status(&pending, 0), status(&up, 0));
        assert!(
            is_transition(None, &p),
            "the first status is always written"
        );
        assert!(is_transition(Some(&p), &r), "Pending -> Running");
        assert!(!is_transition(Some(&r), &r));
        // A restart count that moved while the pod stays Running and Ready folds into the next interval.
        assert!(!is_transition(Some(&r), &status(&up, 1)));
        // Same phase, a condition flips (the container died, the pod stays Running under Always).
        let mut died = view("app");
        died.current = Some(exited("abc", 1));
        let d = status(&died, 0);
        assert_eq!(d["phase"], "Running");
        assert!(is_transition(Some(&r), &d));
    }

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    fn exited(id: &str, code: i32) -> Instance {
        Instance {
            id: id.into(),
            running: false,
            started: Some(t(0)),
            finished: Some(t(5)),
            exit_code: Some(code),
            error: None,
        }
    }

    fn running(id: &str) -> Instance {
        Instance {
            id: id.into(),
            running: true,
            started: Some(t(10)),
            finished: None,
            exit_code: None,
            error: None,
        }
    }

    fn view(name: &str) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "reg:5000/app:v1".into(),
            image_id: "reg:5000/app@sha256:ab".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_container_is_container_creating_and_the_pod_pending() {
        let c = view("app");
        let s = c.to_status();
        assert_eq!(
            s["state"],
            json!({"waiting": {"reason": "ContainerCreating"}})
        );
        assert_eq!(s["ready"], false);
        assert_eq!(phase("Always", &[c]), "Pending");
    }

    #[test]
    fn a_running_container_reports_its_id_and_the_pod_is_ready() {
        let mut c = view("app");
        c.current = Some(running("abc"));
        let s = c.to_status();
        assert_eq!(s["containerID"], "runc://abc");
        assert_eq!(s["state"]["running"]["startedAt"], rfc3339(t(10)));
        assert_eq!(s["lastState"], json!({}));
        let containers = [c];
        let st = pod_status(&PodView {
            restart_policy: "Always",
            containers: &containers,
            sandbox_ready: true,
            host_ip: "127.0.0.1",
            pod_ip: None,
            start_time: "2026-01-01T00:00:00Z",
            previous: None,
        });
        assert_eq!(st["phase"], "Running");
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert!(st.get("podIP").is_none());
    }

    #[test]
    fn never_with_a_failed_exit_is_failed_with_reason_error() {
        let mut c = view("app");
        c.current = Some(exited("abc", 3));
        let s = c.to_status();
        assert_eq!(s["state"]["terminated"]["exitCode"], 3);
        assert_eq!(s["state"]["terminated"]["reason"], "Error");
        assert_eq!(phase("Never", &[c.clone()]), "Failed");
        assert_eq!(phase("OnFailure", &[c.clone()]), "Running");
        assert_eq!(phase("Always", &[c]), "Running");
        let mut ok = view("ok");
        ok.current = Some(exited("def", 0));
        assert_eq!(ok.to_status()["state"]["terminated"]["reason"], "Completed");
        assert_eq!(phase("Never", &[ok.clone()]), "Succeeded");
        assert_eq!(phase("OnFailure", &[ok]), "Succeeded");
    }

    #[test]
    fn crash_loop_waiting_keeps_the_dead_instance_as_last_state() {
        let mut c = view("app");
        c.current = Some(exited("abc", 1));
        c.restart_count = 2;
        c.waiting = Some((
            "CrashLoopBackOff".into(),
            "back-off 20s restarting failed container=app pod=web_ns(u)".into(),
        ));
        let s = c.to_status();
        assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(s["lastState"]["terminated"]["containerID"], "runc://abc");
        assert_eq!(s["restartCount"], 2);
        assert_eq!(phase("Always", &[c]), "Running");
    }

    #[test]
    fn unready_containers_are_named_and_transition_times_survive_unchanged_conditions() {
        let mut a = view("a");
        a.current = Some(running("1"));
        let b = view("b");
        let containers = [a, b];
        let first = pod_status(&PodView {
            restart_policy: "Always",
            containers: &containers,
            sandbox_ready: true,
            host_ip: "127.0.0.1",
            pod_ip: None,
            start_time: "2026-01-01T00:00:00Z",
            previous: None,
        });
        let ready = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "ContainersReady")
                .unwrap()
                .clone()
        };
        assert_eq!(
            ready(&first)["message"],
            "containers with unready status: [b]"
        );
        let mut prev = first.clone();
        for c in prev["conditions"].as_array_mut().unwrap() {
            c["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        }
        let second = pod_status(&PodView {
            restart_policy: "Always",
            containers: &containers,
            sandbox_ready: true,
            host_ip: "127.0.0.1",
            pod_ip: None,
            start_time: "2026-01-01T00:00:00Z",
            previous: Some(&prev),
        });
        assert_eq!(ready(&second)["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }
}
