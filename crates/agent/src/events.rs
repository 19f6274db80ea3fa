//! Kubernetes Events about Pods, written as core/v1 Events the way kubelet's recorder writes them: source
//! `kubelet` on this node, `involvedObject` with the container's `fieldPath`, a name `<pod>.<unix nanos hex>`,
//! and repeats of the same (object, type, reason, message) folded into one Event whose `count` and
//! `lastTimestamp` move (client-go's correlator). Writes happen on one background task in the order they were
//! recorded, so callers never block on the API server. It must never record a credential: messages come from
//! code that already redacts them.

use std::collections::HashMap;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Involved {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.containers{name}` for container events.
    pub field_path: Option<String>,
}

#[derive(Debug)]
struct Request {
    object: Involved,
    kind: Kind,
    reason: String,
    message: String,
}

/// Cheap handle to the Event writer.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    tx: mpsc::UnboundedSender<Request>,
}

impl EventSink {
    /// Queue an Event (dropped with a debug log once the writer stopped).
    pub fn record(&self, object: &Involved, kind: Kind, reason: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(pod = %object.name, reason, %message, "event");
        let _ = self.tx.send(Request {
            object: object.clone(),
            kind,
            reason: reason.to_string(),
            message,
        });
    }
}

/// Most distinct Events remembered for aggregation (client-go keeps an LRU of 4096).
const CACHE_MAX: usize = 4096;

/// Start the writer; it runs until `shutdown`.
pub(crate) fn spawn(
    client: kube::Client,
    node: String,
    shutdown: CancellationToken,
) -> (EventSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(writer(client, node, rx, shutdown));
    (EventSink { tx }, task)
}

type Key = (Involved, Kind, String, String);

async fn writer(
    client: kube::Client,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Request>,
    shutdown: CancellationToken,
) {
    let mut seen: HashMap<Key, (String, u64)> = HashMap::new();
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            _ = shutdown.cancelled() => return,
        };
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), &req.object.namespace);
        let now = crate::status::now_rfc3339();
        let key: Key = (
            req.object.clone(),
            req.kind,
            req.reason.clone(),
            req.message.clone(),
        );
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": now});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(event = %name, error = %e, "updating the event failed; writing a new one");
                    seen.remove(&key);
                }
            }
        }
        let name = format!("{}.{:x}", req.object.name, unix_nanos());
        let body = event_body(&name, &node, &req, &now);
        let event: k8s_openapi::api::core::v1::Event = match serde_json::from_value(body) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an event");
                continue;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() >= CACHE_MAX {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => {
                tracing::warn!(pod = %req.object.name, reason = %req.reason, error = %e, "cannot write the event")
            }
        }
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn event_body(name: &str, node: &str, req: &Request, now: &str) -> Value {
    let mut involved = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": req.object.namespace,
        "name": req.object.name,
        "uid": req.object.uid,
    });
    if let Some(fp) = &req.object.field_path {
        involved["fieldPath"] = json!(fp);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": req.object.namespace},
        "involvedObject": involved,
        "reason": req.reason,
        "message": req.message,
        "type": req.kind.as_str(),
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_container_and_the_node_like_kubelet() {
        let req = Request {
            object: Involved {
                namespace: "ns".into(),
                name: "web".into(),
                uid: "u1".into(),
                field_path: Some("spec.containers{app}".into()),
            },
            kind: Kind::Warning,
            reason: "BackOff".into(),
            message: "Back-off restarting failed container app in pod web_ns(u1)".into(),
        };
        let v = event_body("web.1", "node-a", &req, "2026-01-01T00:00:00Z");
        assert_eq!(v["involvedObject"]["fieldPath"], "spec.containers{app}");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(
            v["source"],
            json!({"component": "kubelet", "host": "node-a"})
        );
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["count"], 1);
        let parsed: k8s_openapi::api::core::v1::Event = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.reason.as_deref(), Some("BackOff"));
    }
}
