//! Writes core/v1 Events (the kind `kubectl describe` reads) for the control loops, in the form
//! kube-controller-manager writes them: name `<object>.<unix nanos hex>`, `source.component`, first/last
//! timestamps and count 1. kube's own recorder writes events.k8s.io/v1 Events, which berth does not serve, hence
//! this small writer. Recording is best effort: a failure is logged and never fails a reconcile. Never put a
//! secret value in a message.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Normal or Warning, as `Event.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

/// Records Events for one component (`replicaset-controller`, `default-scheduler`, ...).
#[derive(Clone)]
pub(crate) struct Recorder {
    client: kube::Client,
    component: &'static str,
}

impl Recorder {
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        Self { client, component }
    }

    /// Records one Event about `object`.
    pub(crate) async fn record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let now = Timestamp::now();
        let namespace = object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("unknown"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(
                match kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(
                component = self.component,
                reason,
                object = object.name.as_deref().unwrap_or(""),
                error = %e,
                "failed to record event"
            );
        }
    }
}
