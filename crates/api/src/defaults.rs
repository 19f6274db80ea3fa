//! Upstream defaulting (`pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`) for the kinds
//! berth serves, applied to a decoded object before validation and storage, so that `kubectl get -o
//! yaml` shows the same fields a kube-apiserver would fill in.
//!
//! A field counts as unset when it is absent or `null`; a string field also when it is empty (Go's zero
//! value, which protobuf bodies from kubectl carry for every unset string). Defaulting never removes a
//! user's value (except `stringData`, which upstream folds into `data`), never validates, and never sets
//! server-owned metadata (uid, resourceVersion, timestamps): that is the API server's job.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

/// Applies the defaults of `info`'s kind to `obj` in place. Objects that are not JSON objects are left
/// alone (decoding rejects them before this point).
pub fn apply(info: &ResourceInfo, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match (info.group, info.kind) {
        ("", "Pod") => {
            let spec = child_obj(o, "spec");
            default_pod_spec(spec);
            default_pod_only(spec);
        }
        ("", "Secret") => default_secret(o),
        ("", "Namespace") => default_namespace(o),
        ("", "Node") => default_node(o),
        ("apps", "Deployment") => default_deployment(o),
        ("apps", "ReplicaSet") => {
            let spec = child_obj(o, "spec");
            set_if_unset(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "StatefulSet") => default_stateful_set(o),
        _ => {}
    }
}

fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn set_if_unset(m: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(m.get(key)) {
        m.insert(key.to_string(), value);
    }
}

/// The object at `key`, created (or replacing a `null`/non-object) when missing.
fn child_obj<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn each_obj<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `SetDefaults_PodSpec` plus the container, port, probe and volume defaults below it.
fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_if_unset(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_unset(spec, "restartPolicy", json!("Always"));
    if is_unset(spec.get("securityContext")) {
        spec.insert("securityContext".into(), json!({}));
    }
    set_if_unset(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_unset(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_obj(spec, key) {
            default_container(c, host_network);
        }
    }
    for v in each_obj(spec, "volumes") {
        default_volume(v);
    }
}

/// `SetDefaults_Pod`: only for Pods themselves, not for templates.
fn default_pod_only(spec: &mut Map<String, Value>) {
    set_if_unset(spec, "enableServiceLinks", json!(true));
    // If limits are specified but requests are not, requests default to limits (per resource).
    for key in ["initContainers", "containers"] {
        for c in each_obj(spec, key) {
            let Some(limits) = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            let requests = child_obj(child_obj(c, "resources"), "requests");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// `SetDefaults_Container`, `SetDefaults_ContainerPort`, probe, env and lifecycle handler defaults.
fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    if is_unset(c.get("imagePullPolicy")) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        c.insert("imagePullPolicy".into(), json!(default_pull_policy(image)));
    }
    set_if_unset(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_unset(c, "terminationMessagePolicy", json!("File"));
    for p in each_obj(c, "ports") {
        set_if_unset(p, "protocol", json!("TCP"));
        if host_network
            && is_unset(p.get("hostPort"))
            && let Some(cp) = p.get("containerPort").cloned()
        {
            p.insert("hostPort".into(), cp);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_if_unset(p, "timeoutSeconds", json!(1));
            set_if_unset(p, "periodSeconds", json!(10));
            set_if_unset(p, "successThreshold", json!(1));
            set_if_unset(p, "failureThreshold", json!(3));
            default_handler(p);
        }
    }
    if let Some(l) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
    for e in each_obj(c, "env") {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set_if_unset(f, "apiVersion", json!("v1"));
        }
    }
}

/// `SetDefaults_HTTPGetAction`: path `/`, scheme `HTTP`.
fn default_handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_if_unset(g, "path", json!("/"));
        set_if_unset(g, "scheme", json!("HTTP"));
    }
}

/// `SetDefaults_Volume` (a volume without a source is an emptyDir) and the `defaultMode: 420` of secret,
/// configMap, projected and downwardAPI sources.
fn default_volume(v: &mut Map<String, Value>) {
    if v.iter().all(|(k, val)| k == "name" || val.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            set_if_unset(s, "defaultMode", json!(420));
        }
    }
}

/// `imagePullPolicy` for an image reference: `Always` when the tag is `latest` or when there is neither
/// tag nor digest (upstream `parsers.ParseImageName` then assumes `latest`), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = last_segment.rsplit_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

/// `spec.template.spec` defaults of a workload.
fn default_template(spec: &mut Map<String, Value>) {
    let template = child_obj(spec, "template");
    default_pod_spec(child_obj(template, "spec"));
}

/// `SetDefaults_Deployment` (apps/v1).
fn default_deployment(o: &mut Map<String, Value>) {
    let spec = child_obj(o, "spec");
    set_if_unset(spec, "replicas", json!(1));
    let strategy = child_obj(spec, "strategy");
    set_if_unset(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child_obj(strategy, "rollingUpdate");
        set_if_unset(ru, "maxUnavailable", json!("25%"));
        set_if_unset(ru, "maxSurge", json!("25%"));
    }
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
    set_if_unset(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

/// `SetDefaults_StatefulSet` (apps/v1, MaxUnavailableStatefulSet gate off as in 1.32/1.33).
fn default_stateful_set(o: &mut Map<String, Value>) {
    let spec = child_obj(o, "spec");
    set_if_unset(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child_obj(spec, "updateStrategy");
    if is_unset(strategy.get("type")) {
        strategy.insert("type".into(), json!("RollingUpdate"));
        if is_unset(strategy.get("rollingUpdate")) {
            strategy.insert("rollingUpdate".into(), json!({}));
        }
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && let Some(ru) = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut)
    {
        set_if_unset(ru, "partition", json!(0));
    }
    let policy = child_obj(spec, "persistentVolumeClaimRetentionPolicy");
    set_if_unset(policy, "whenDeleted", json!("Retain"));
    set_if_unset(policy, "whenScaled", json!("Retain"));
    set_if_unset(spec, "replicas", json!(1));
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

/// `SetDefaults_Secret` (type `Opaque`) and the v1 conversion that folds `stringData` into `data`
/// (stringData wins) and drops it.
fn default_secret(o: &mut Map<String, Value>) {
    set_if_unset(o, "type", json!("Opaque"));
    if let Some(Value::Object(string_data)) = o.remove("stringData") {
        let data = child_obj(o, "data");
        for (k, v) in string_data {
            let s = v.as_str().unwrap_or_default();
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
}

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label always mirrors the name) and
/// `SetDefaults_NamespaceStatus` (phase `Active`).
fn default_namespace(o: &mut Map<String, Value>) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        let labels = child_obj(child_obj(o, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    set_if_unset(child_obj(o, "status"), "phase", json!("Active"));
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
fn default_node(o: &mut Map<String, Value>) {
    let Some(status) = o.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if is_unset(status.get("allocatable"))
        && let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind_name;

    fn defaulted(kind: &str, obj: Value) -> Value {
        let mut obj = obj;
        apply(by_kind_name(kind).unwrap(), &mut obj);
        obj
    }

    #[test]
    fn pod_spec_and_container_defaults_match_upstream() {
        let pod = defaulted(
            "Pod",
            json!({"spec":{"containers":[{"name":"app","image":"r.io/app:1.0","ports":[{"containerPort":80}]}]}}),
        );
        assert_eq!(
            pod["spec"],
            json!({"containers":[{"name":"app","image":"r.io/app:1.0","ports":[{"containerPort":80,"protocol":"TCP"}],
                    "imagePullPolicy":"IfNotPresent","terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],
                   "dnsPolicy":"ClusterFirst","restartPolicy":"Always","securityContext":{},"terminationGracePeriodSeconds":30,
                   "schedulerName":"default-scheduler","enableServiceLinks":true})
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("repo/app", "Always"),
            ("repo/app:latest", "Always"),
            ("repo/app:1.0", "IfNotPresent"),
            (
                &format!("repo/app@sha256:{}", "a".repeat(64)),
                "IfNotPresent",
            ),
            (
                &format!("repo/app:latest@sha256:{}", "a".repeat(64)),
                "Always",
            ),
            ("registry:5000/app", "Always"),
            ("registry:5000/app:2", "IfNotPresent"),
            ("busybox", "Always"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn user_values_are_kept_and_empty_strings_count_as_unset() {
        let pod = defaulted(
            "Pod",
            json!({"spec":{"restartPolicy":"Never","dnsPolicy":"","terminationGracePeriodSeconds":0,
            "containers":[{"name":"a","image":"x","imagePullPolicy":"Never"}],"enableServiceLinks":false}}),
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(pod["spec"]["enableServiceLinks"], false);
    }

    #[test]
    fn probes_volumes_env_and_requests_get_defaults() {
        let pod = defaulted(
            "Pod",
            json!({"spec":{"hostNetwork":true,"containers":[{"name":"a","image":"x",
            "livenessProbe":{"httpGet":{"port":8080}},"ports":[{"containerPort":8080}],
            "env":[{"name":"N","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
            "resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}}}],
            "volumes":[{"name":"s","secret":{"secretName":"x"}},{"name":"e"}]}}),
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet":{"port":8080,"path":"/","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3})
        );
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu":"500m","memory":"1Gi"})
        );
        assert_eq!(pod["spec"]["volumes"][0]["secret"]["defaultMode"], 420);
        assert_eq!(pod["spec"]["volumes"][1]["emptyDir"], json!({}));
    }

    #[test]
    fn deployment_defaults_match_upstream() {
        let d = defaulted(
            "Deployment",
            json!({"spec":{"selector":{"matchLabels":{"a":"b"}},"strategy":{},
            "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}),
        );
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        let t = &s["template"]["spec"];
        assert_eq!(t["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(t["restartPolicy"], "Always");
        assert!(
            t.get("enableServiceLinks").is_none(),
            "enableServiceLinks is a Pod default only"
        );
        let r = defaulted(
            "Deployment",
            json!({"spec":{"replicas":0,"strategy":{"type":"Recreate"}}}),
        );
        assert_eq!(r["spec"]["replicas"], 0);
        assert_eq!(r["spec"]["strategy"], json!({"type":"Recreate"}));
    }

    #[test]
    fn statefulset_and_replicaset_defaults_match_upstream() {
        let s = defaulted("StatefulSet", json!({"spec":{}}));
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type":"RollingUpdate","rollingUpdate":{"partition":0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted":"Retain","whenScaled":"Retain"})
        );
        assert_eq!(
            (
                s["spec"]["replicas"].clone(),
                s["spec"]["revisionHistoryLimit"].clone()
            ),
            (json!(1), json!(10))
        );
        let on_delete = defaulted(
            "StatefulSet",
            json!({"spec":{"updateStrategy":{"type":"OnDelete"}}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type":"OnDelete"})
        );
        let explicit = defaulted(
            "StatefulSet",
            json!({"spec":{"updateStrategy":{"type":"RollingUpdate"}}}),
        );
        assert_eq!(
            explicit["spec"]["updateStrategy"],
            json!({"type":"RollingUpdate"}),
            "partition only when rollingUpdate is set"
        );
        let rs = defaulted(
            "ReplicaSet",
            json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x:1"}]}}}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(
            rs["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn secret_type_defaults_and_string_data_folds_into_data() {
        let s = defaulted(
            "Secret",
            json!({"data":{"a":"MQ==","b":"Mg=="},"stringData":{"b":"two","c":"three"}}),
        );
        assert_eq!(
            s,
            json!({"data":{"a":"MQ==","b":"dHdv","c":"dGhyZWU="},"type":"Opaque"})
        );
        let s = defaulted(
            "Secret",
            json!({"type":"kubernetes.io/tls","stringData":{"tls.crt":"x"}}),
        );
        assert_eq!(
            s,
            json!({"type":"kubernetes.io/tls","data":{"tls.crt":"eA=="}})
        );
    }

    #[test]
    fn namespace_gets_name_label_and_active_phase() {
        let ns = defaulted(
            "Namespace",
            json!({"metadata":{"name":"team1","labels":{"kubernetes.io/metadata.name":"spoofed"}}}),
        );
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team1"
        );
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn node_allocatable_defaults_to_capacity() {
        let n = defaulted("Node", json!({"status":{"capacity":{"cpu":"2"}}}));
        assert_eq!(n["status"]["allocatable"], json!({"cpu":"2"}));
    }

    #[test]
    fn kinds_without_defaults_are_untouched() {
        let sa = json!({"metadata":{"name":"default"}});
        assert_eq!(defaulted("ServiceAccount", sa.clone()), sa);
        assert_eq!(defaulted("ConfigMap", json!(null)), json!(null));
    }
}
