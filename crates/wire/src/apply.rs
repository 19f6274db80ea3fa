//! Server-side apply and field ownership as kube-apiserver does them (structured-merge-diff v4
//! behind `k8s.io/apiserver/.../fieldmanager`): the schema facts apply needs for berth's kinds
//! (associative list keys, sets, atomic lists and structs), the field set of an applied
//! configuration, the merge of a configuration into a live object, the comparison of two objects
//! into added/modified/removed field sets, pruning of fields an applier stopped applying, apply
//! conflicts, and the `Update` bookkeeping of every other write. It works on `serde_json::Value`
//! objects whose `metadata.managedFields` the caller has taken out and hands over as
//! [`Managed`]; it must never do HTTP, storage, defaulting or validation.
//!
//! Written by hand: no Rust crate implements structured-merge-diff. The schema is not read from
//! OpenAPI: list keys come from the strategic-merge-patch tables in [`crate::patch`] plus the
//! places where upstream's `x-kubernetes-list-map-keys` differ (container ports are keyed by
//! `containerPort` and `protocol`, topology spread constraints by `topologyKey` and
//! `whenUnsatisfiable`); unknown kinds get the deduced schema (maps granular, lists atomic).

use serde_json::{Map, Value, json};

use crate::managed::{FieldPath, FieldSet, Managed, ManagedEntry, Operation, PathElement};
use crate::patch::{ListStrategy, list_strategy};

/// The manager upstream records for the fields of an object that existed before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Upstream `DefaultMaxUpdateManagers`: more `Update` entries than this are merged, oldest first,
/// into per-version [`ANCIENT_CHANGES`] entries.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager name of the bucket that collects the oldest `Update` entries.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// kubectl's client-side apply annotation, kept in sync by `kubectl` server-side applies.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409 with one cause per conflict).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration (or live object) does not fit the kind's schema, e.g. an associative
    /// list element without its key (upstream answers 500 `failed to create typed ... object`).
    #[error("{path}: {detail}")]
    Schema { path: String, detail: String },
    /// Not a JSON object, or a strategic-merge directive in an apply configuration.
    #[error("{0}")]
    BadConfiguration(String),
}

/// One field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The manager as upstream prints it: `"kubectl-scale" with subresource "scale" using apps/v1`.
    pub manager: String,
    /// Upstream's manager identifier, which orders managers in the message.
    pub identifier: String,
    pub path: FieldPath,
}

/// Upstream `getConflictMessage`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.path
        );
    }
    let mut managers: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| (c.identifier.as_str(), c.manager.as_str()))
        .collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for (id, printed) in managers {
        lines.push(format!("conflicts with {printed}:"));
        for c in conflicts.iter().filter(|c| c.identifier == id) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Which part of the object a write may change, for ignoring the rest (upstream reset fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is ignored when the kind has a status subresource.
    Main { has_status: bool },
    /// The status subresource: only `status` and `metadata` count.
    Status,
    /// Subresources that own exactly what they change (`scale`, `finalize`).
    Whole,
}

/// Who writes and where.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub kind: &'a str,
    /// `apps/v1`, `v1`, ...
    pub api_version: &'a str,
    pub manager: &'a str,
    /// `""` for the main resource, else `status`, `scale`, ...
    pub subresource: &'a str,
    pub scope: Scope,
    /// RFC 3339 UTC, recorded as the entry's `time`.
    pub now: &'a str,
}

/// How a list merges and is owned.
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    /// Replaced and owned as a whole.
    Atomic,
    /// A set of scalars; each value is owned (`v:`).
    Set,
    /// An associative list; each element is owned by its key fields (`k:`), with defaults for
    /// key fields the element may omit.
    Map(Vec<(&'static str, Option<Value>)>),
}

fn pod_spec_rest<'a>(kind: &str, path: &'a [&'a str]) -> Option<&'a [&'a str]> {
    match kind {
        "Pod" => path.strip_prefix(&["spec"][..]),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            path.strip_prefix(&["spec", "template", "spec"][..])
        }
        _ => None,
    }
}

/// The list type at `path` (field names from the root; list elements add no segment).
pub fn list_type(kind: &str, path: &[&str]) -> ListType {
    if let Some(rest) = pod_spec_rest(kind, path) {
        match rest {
            [
                "containers" | "initContainers" | "ephemeralContainers",
                "ports",
            ] => {
                return ListType::Map(vec![
                    ("containerPort", None),
                    ("protocol", Some(json!("TCP"))),
                ]);
            }
            ["topologySpreadConstraints"] => {
                return ListType::Map(vec![("topologyKey", None), ("whenUnsatisfiable", None)]);
            }
            _ => {}
        }
    }
    match list_strategy(kind, path) {
        ListStrategy::Replace => ListType::Atomic,
        ListStrategy::MergePrimitives => ListType::Set,
        ListStrategy::MergeByKey(key) => ListType::Map(vec![(key, None)]),
    }
}

/// Structs upstream marks `+structType=atomic` / `+mapType=atomic` (owned as a whole).
fn map_is_atomic(kind: &str, path: &[&str]) -> bool {
    match path.last() {
        Some(
            &("labelSelector" | "namespaceSelector" | "secretKeyRef" | "configMapKeyRef"
            | "fieldRef" | "resourceFieldRef"),
        ) => return true,
        None => return false,
        _ => {}
    }
    matches!(
        (kind, path),
        (
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet",
            ["spec", "selector"]
        ) | ("Event", ["involvedObject" | "related"])
    )
}

/// Lists whose elements are atomic structs (`LocalObjectReference`, `OwnerReference`).
fn items_are_atomic(path: &[&str]) -> bool {
    matches!(path.last(), Some(&("imagePullSecrets" | "ownerReferences")))
}

/// The fields upstream never tracks (`stripMetaManager`).
fn strip_set() -> &'static FieldSet {
    static STRIP: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(build_strip_set);
    &STRIP
}

fn build_strip_set() -> FieldSet {
    let mut s = FieldSet::new();
    s.insert(&FieldPath::fields(&["apiVersion"]).0);
    s.insert(&FieldPath::fields(&["kind"]).0);
    s.insert(&FieldPath::fields(&["metadata"]).0);
    for f in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&FieldPath::fields(&["metadata", f]).0);
    }
    s
}

/// Added, modified and removed paths between two objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

struct Walker<'a> {
    kind: &'a str,
    /// Field names from the root (list elements add none), for schema lookups.
    schema_path: Vec<String>,
    /// The field path from the root.
    path: Vec<PathElement>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<'a> Walker<'a> {
    fn new(kind: &'a str) -> Self {
        Walker {
            kind,
            schema_path: Vec::new(),
            path: Vec::new(),
        }
    }

    fn sp(&self) -> Vec<&str> {
        self.schema_path.iter().map(String::as_str).collect()
    }

    fn list_type(&self) -> ListType {
        list_type(self.kind, &self.sp())
    }

    fn map_atomic(&self) -> bool {
        map_is_atomic(self.kind, &self.sp())
    }

    fn items_atomic(&self) -> bool {
        items_are_atomic(&self.sp())
    }

    fn schema_err(&self, detail: String) -> ApplyError {
        ApplyError::Schema {
            path: FieldPath(self.path.clone()).to_string(),
            detail,
        }
    }

    fn enter_field(&mut self, name: &str) {
        self.schema_path.push(name.to_string());
        self.path.push(PathElement::Field(name.to_string()));
    }

    fn leave_field(&mut self) {
        self.schema_path.pop();
        self.path.pop();
    }

    /// The path element of list item `i`. Strict (configurations) fails on a missing key;
    /// lenient (stored objects) falls back to the index.
    fn item_element(
        &self,
        lt: &ListType,
        i: usize,
        item: &Value,
        strict: bool,
    ) -> Result<PathElement, ApplyError> {
        match lt {
            ListType::Atomic => Ok(PathElement::Index(i as i64)),
            ListType::Set => {
                if item.is_object() || item.is_array() {
                    if strict {
                        return Err(self.schema_err(format!(
                            "element {i}: expected a scalar in a set, got {}",
                            type_name(item)
                        )));
                    }
                    return Ok(PathElement::Index(i as i64));
                }
                Ok(PathElement::Value(item.clone()))
            }
            ListType::Map(keys) => {
                let Value::Object(m) = item else {
                    if strict {
                        return Err(self.schema_err(format!(
                            "element {i}: expected an object in an associative list, got {}",
                            type_name(item)
                        )));
                    }
                    return Ok(PathElement::Index(i as i64));
                };
                let mut fields = Vec::with_capacity(keys.len());
                for (k, default) in keys {
                    match (m.get(*k), default) {
                        (Some(v), _) if !v.is_null() => fields.push((k.to_string(), v.clone())),
                        (_, Some(d)) => fields.push((k.to_string(), d.clone())),
                        _ if strict => {
                            return Err(self.schema_err(format!(
                                "element {i}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                            )));
                        }
                        _ => return Ok(PathElement::Index(i as i64)),
                    }
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(fields))
            }
        }
    }

    fn elements(
        &self,
        lt: &ListType,
        list: &[Value],
        strict: bool,
    ) -> Result<Vec<PathElement>, ApplyError> {
        let mut out: Vec<PathElement> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let pe = self.item_element(lt, i, item, strict)?;
            if strict && out.contains(&pe) {
                return Err(self.schema_err(format!("duplicate entries for key {pe}")));
            }
            out.push(pe);
        }
        Ok(out)
    }

    // ---- the field set of a configuration (upstream `ToFieldSet`) ----

    fn set_of_map(&mut self, m: &Map<String, Value>, out: &mut FieldSet) -> Result<(), ApplyError> {
        for (k, v) in m {
            self.enter_field(k);
            let r = self.set_of_value(v, out);
            self.leave_field();
            r?;
        }
        Ok(())
    }

    fn set_of_value(&mut self, v: &Value, out: &mut FieldSet) -> Result<(), ApplyError> {
        match v {
            Value::Object(m) if !m.is_empty() && !self.map_atomic() => self.set_of_map(m, out),
            Value::Array(list) => {
                let lt = self.list_type();
                if lt == ListType::Atomic {
                    out.insert(&self.path);
                    return Ok(());
                }
                let pes = self.elements(&lt, list, true)?;
                let atomic_items = self.items_atomic();
                for (pe, item) in pes.into_iter().zip(list) {
                    self.path.push(pe);
                    out.insert(&self.path);
                    let r = match item {
                        Value::Object(m) if !atomic_items => self.set_of_map(m, out),
                        _ => Ok(()),
                    };
                    self.path.pop();
                    r?;
                }
                Ok(())
            }
            _ => {
                out.insert(&self.path);
                Ok(())
            }
        }
    }

    // ---- merging a configuration into a live object ----

    fn merge(&mut self, live: Option<&Value>, config: &Value) -> Result<Value, ApplyError> {
        match (live, config) {
            (Some(Value::Object(l)), Value::Object(c)) if !self.map_atomic() => {
                let mut out = l.clone();
                for (k, cv) in c {
                    self.enter_field(k);
                    let merged = self.merge(l.get(k), cv);
                    self.leave_field();
                    out.insert(k.clone(), merged?);
                }
                Ok(Value::Object(out))
            }
            (Some(Value::Array(l)), Value::Array(c)) => {
                let lt = self.list_type();
                if lt == ListType::Atomic {
                    return Ok(config.clone());
                }
                self.merge_list(&lt, l, c).map(Value::Array)
            }
            (_, c) => {
                // Validate keys of lists nested in new content the same way.
                if c.is_object() || c.is_array() {
                    self.set_of_value(c, &mut FieldSet::new())?;
                }
                Ok(c.clone())
            }
        }
    }

    /// Merges two associative lists or sets: live-only elements keep their place, configured
    /// elements follow the configuration's order, and shared elements are merged in place
    /// (structured-merge-diff `mergingWalker.visitListItems`).
    fn merge_list(
        &mut self,
        lt: &ListType,
        live: &[Value],
        config: &[Value],
    ) -> Result<Vec<Value>, ApplyError> {
        let lpes = self.elements(lt, live, false)?;
        let rpes = self.elements(lt, config, true)?;
        let in_live = |pe: &PathElement| lpes.iter().position(|p| p == pe);
        let in_config = |pe: &PathElement| rpes.iter().position(|p| p == pe);
        let mut shared: std::collections::VecDeque<&PathElement> =
            rpes.iter().filter(|pe| in_live(pe).is_some()).collect();
        let mut next_shared = shared.pop_front();
        let mut done: Vec<&PathElement> = Vec::new();
        let mut out = Vec::with_capacity(live.len().max(config.len()));
        let (mut li, mut ri) = (0usize, 0usize);
        let atomic_items = self.items_atomic();
        let merge_item =
            |w: &mut Self, pe: &PathElement, l: Option<&Value>, r: Option<&Value>| match (l, r) {
                (_, Some(r)) if atomic_items || matches!(lt, ListType::Set) => Ok(r.clone()),
                (l, Some(r)) => {
                    w.path.push(pe.clone());
                    let m = w.merge(l, r);
                    w.path.pop();
                    m
                }
                (Some(l), None) => Ok(l.clone()),
                (None, None) => unreachable!("an element comes from one side"),
            };
        while li < lpes.len() || ri < rpes.len() {
            if li < lpes.len() && ri < rpes.len() {
                if lpes[li] == rpes[ri] {
                    let pe = &rpes[ri];
                    out.push(merge_item(self, pe, Some(&live[li]), Some(&config[ri]))?);
                    done.push(pe);
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if in_config(&lpes[li]).is_some() && next_shared.is_some_and(|n| *n != lpes[li]) {
                    li += 1;
                    continue;
                }
            }
            if li < lpes.len() {
                let pe = &lpes[li];
                if in_config(pe).is_none() {
                    out.push(merge_item(self, pe, Some(&live[li]), None)?);
                    li += 1;
                    continue;
                }
                if done.contains(&pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rpes.len() {
                let pe = &rpes[ri];
                let l = in_live(pe).map(|i| &live[i]);
                out.push(merge_item(self, pe, l, Some(&config[ri]))?);
                done.push(pe);
                ri += 1;
                if next_shared.is_some_and(|n| n == pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Ok(out)
    }

    // ---- comparing two objects (upstream `TypedValue.Compare`) ----

    fn compare(&mut self, l: Option<&Value>, r: Option<&Value>, c: &mut Comparison) {
        let is_map =
            |v: Option<&Value>| matches!(v, None | Some(Value::Null) | Some(Value::Object(_)));
        let is_list =
            |v: Option<&Value>| matches!(v, None | Some(Value::Null) | Some(Value::Array(_)));
        let any_map = matches!(l, Some(Value::Object(_))) || matches!(r, Some(Value::Object(_)));
        let any_list = matches!(l, Some(Value::Array(_))) || matches!(r, Some(Value::Array(_)));
        if any_map && is_map(l) && is_map(r) && !self.map_atomic() {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = r.and_then(Value::as_object).unwrap_or(&empty);
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                self.enter_field(k);
                self.compare(lm.get(k), rm.get(k), c);
                self.leave_field();
            }
        } else if any_list && is_list(l) && is_list(r) && self.list_type() != ListType::Atomic {
            let lt = self.list_type();
            let empty = Vec::new();
            let ll = l.and_then(Value::as_array).unwrap_or(&empty);
            let rl = r.and_then(Value::as_array).unwrap_or(&empty);
            let lpes = self.elements(&lt, ll, false).unwrap_or_default();
            let rpes = self.elements(&lt, rl, false).unwrap_or_default();
            let atomic_items = self.items_atomic() || lt == ListType::Set;
            let mut seen: Vec<&PathElement> = Vec::new();
            for (pe, side) in lpes
                .iter()
                .map(|p| (p, 0))
                .chain(rpes.iter().map(|p| (p, 1)))
            {
                if side == 1 && lpes.contains(pe) || seen.contains(&pe) {
                    continue;
                }
                seen.push(pe);
                let li = lpes.iter().position(|p| p == pe).map(|i| &ll[i]);
                let ri = rpes.iter().position(|p| p == pe).map(|i| &rl[i]);
                self.path.push(pe.clone());
                if atomic_items {
                    self.leaf(li, ri, c);
                } else {
                    self.compare(li, ri, c);
                }
                self.path.pop();
            }
        } else {
            self.leaf(l, r, c);
            return;
        }
        match (l, r) {
            (None, Some(_)) => c.added.insert(&self.path),
            (Some(_), None) => c.removed.insert(&self.path),
            _ => {}
        }
    }

    fn leaf(&self, l: Option<&Value>, r: Option<&Value>, c: &mut Comparison) {
        match (l, r) {
            (None, Some(_)) => c.added.insert(&self.path),
            (Some(_), None) => c.removed.insert(&self.path),
            (Some(a), Some(b)) if a != b => c.modified.insert(&self.path),
            _ => {}
        }
    }

    // ---- removing owned items (upstream `TypedValue.RemoveItems`) ----

    fn remove(&mut self, v: &mut Value, set: &FieldSet) {
        match v {
            Value::Object(m) if !self.map_atomic() => {
                m.retain(|k, _| !set.has_member(&PathElement::Field(k.clone())));
                for (k, child) in m.iter_mut() {
                    if let Some(sub) = set.child(&PathElement::Field(k.clone())) {
                        self.enter_field(k);
                        self.remove(child, sub);
                        self.leave_field();
                    }
                }
            }
            Value::Array(list) => {
                let lt = self.list_type();
                if lt == ListType::Atomic {
                    return;
                }
                let Ok(pes) = self.elements(&lt, list, false) else {
                    return;
                };
                let atomic_items = self.items_atomic();
                let mut kept = Vec::with_capacity(list.len());
                for (pe, mut item) in pes.into_iter().zip(std::mem::take(list)) {
                    if set.has_member(&pe) {
                        continue;
                    }
                    if !atomic_items && let Some(sub) = set.child(&pe) {
                        self.path.push(pe.clone());
                        self.remove(&mut item, sub);
                        self.path.pop();
                    }
                    kept.push(item);
                }
                *list = kept;
            }
            _ => {}
        }
    }
}

/// Removes `null` map values everywhere (a `null` in an apply configuration owns the field and
/// clears it; the stored object never carries the null).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The field set of an apply configuration (upstream `ToFieldSet`), before metadata stripping.
pub fn field_set(kind: &str, config: &Value) -> Result<FieldSet, ApplyError> {
    let mut out = FieldSet::new();
    Walker::new(kind).set_of_value(config, &mut out)?;
    Ok(out)
}

/// Merges an apply configuration into a live object with the kind's list semantics, without
/// ownership (maps merge, associative lists merge by key, sets union, other lists and atomic
/// structs are replaced; `null` clears a field).
pub fn merge(kind: &str, live: Option<&Value>, config: &Value) -> Result<Value, ApplyError> {
    check_configuration(config)?;
    let mut merged = Walker::new(kind).merge(live, config)?;
    strip_nulls(&mut merged);
    Ok(merged)
}

/// Compares two objects of `kind`.
pub fn compare(kind: &str, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    Walker::new(kind).compare(Some(old), Some(new), &mut c);
    c
}

fn check_configuration(config: &Value) -> Result<(), ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::BadConfiguration(format!(
            "the apply configuration must be an object, got {}",
            type_name(config)
        )));
    }
    if let Some(k) = find_directive(config) {
        return Err(ApplyError::BadConfiguration(format!(
            "apply configuration contains the patch directive {k:?}, which only strategic merge patch accepts; remove it"
        )));
    }
    Ok(())
}

fn find_directive(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            if k.starts_with('$') {
                Some(k.clone())
            } else {
                find_directive(v)
            }
        }),
        Value::Array(a) => a.iter().find_map(find_directive),
        _ => None,
    }
}

fn scope_filter(scope: Scope, set: FieldSet) -> FieldSet {
    match scope {
        Scope::Main { has_status: true } => {
            set.without_prefixes(|pe| !matches!(pe, PathElement::Field(f) if f == "status"))
        }
        Scope::Main { has_status: false } | Scope::Whole => set,
        Scope::Status => set.without_prefixes(
            |pe| matches!(pe, PathElement::Field(f) if f == "status" || f == "metadata"),
        ),
    }
}

/// The object a create starts from: the zero value of the kind's Go type as upstream's field
/// manager sees it, so fields that exist in every object (`spec`, `spec.template`, ...) are
/// not recorded as added nodes.
fn zero_object(kind: &str) -> Value {
    let pod_spec = json!({"containers": null});
    let template = json!({"metadata": {}, "spec": pod_spec});
    match kind {
        "Pod" => json!({"metadata": {}, "spec": pod_spec, "status": {}}),
        "Deployment" => json!({"metadata": {}, "spec": {"selector": null, "template": template,
            "strategy": {}}, "status": {}}),
        "ReplicaSet" => json!({"metadata": {}, "spec": {"selector": null, "template": template},
            "status": {}}),
        "StatefulSet" => json!({"metadata": {}, "spec": {"selector": null, "template": template,
            "updateStrategy": {}}, "status": {}}),
        "Namespace" | "Node" => json!({"metadata": {}, "spec": {}, "status": {}}),
        "Event" => json!({"metadata": {}, "involvedObject": {}, "source": {}}),
        _ => json!({"metadata": {}}),
    }
}

/// Records a non-apply write (create, update, patch, subresource write) by `writer` that turned
/// `old` (`None` for a create) into `new`: the writer's `Update` entry gains every field it
/// added or changed, and every other entry loses the fields that changed or disappeared.
/// Neither object may carry `metadata.managedFields`.
pub fn update(
    writer: &Writer<'_>,
    old: Option<&Value>,
    new: &Value,
    mut managed: Managed,
) -> Managed {
    let zero;
    let old = match old {
        Some(o) => o,
        None => {
            zero = zero_object(writer.kind);
            &zero
        }
    };
    let Comparison {
        added,
        mut modified,
        removed,
    } = compare(writer.kind, old, new);
    modified.merge(added);
    let mut changed = scope_filter(writer.scope, modified);
    changed.subtract(strip_set());
    let removed = scope_filter(writer.scope, removed);
    for e in &mut managed.entries {
        e.fields.subtract(&changed);
        e.fields.subtract(&removed);
    }
    if !changed.is_empty() {
        let mine = ManagedEntry {
            manager: writer.manager.to_string(),
            operation: Operation::Update,
            api_version: writer.api_version.to_string(),
            time: Some(writer.now.to_string()),
            subresource: writer.subresource.to_string(),
            fields: FieldSet::new(),
        };
        match managed.entries.iter_mut().find(|e| e.same_manager(&mine)) {
            Some(e) => {
                e.fields.merge(changed);
                e.time = mine.time;
            }
            None => managed.entries.push(ManagedEntry {
                fields: changed,
                ..mine
            }),
        }
    }
    managed.entries.retain(|e| !e.fields.is_empty());
    cap_update_managers(&mut managed);
    managed
}

/// Upstream `capManagersManager`: while there are more than [`MAX_UPDATE_MANAGERS`] `Update`
/// entries, the oldest (by time, then identifier) are merged into one [`ANCIENT_CHANGES`] entry
/// per apiVersion, which takes the time of the newest entry merged into it.
fn cap_update_managers(managed: &mut Managed) {
    let mut updaters: Vec<(String, String)> = managed
        .entries
        .iter()
        .filter(|e| e.operation == Operation::Update)
        .map(|e| (e.time.clone().unwrap_or_default(), e.identifier()))
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort();
    let mut length = updaters.len();
    let mut first_of_version: Vec<(String, String)> = Vec::new();
    for (_, id) in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(index) = managed.entries.iter().position(|e| e.identifier() == id) else {
            continue;
        };
        let version = managed.entries[index].api_version.clone();
        let bucket = ManagedEntry {
            manager: ANCIENT_CHANGES.into(),
            operation: Operation::Update,
            api_version: version.clone(),
            time: None,
            subresource: String::new(),
            fields: FieldSet::new(),
        };
        let Some((_, first)) = first_of_version.iter().find(|(v, _)| *v == version) else {
            first_of_version.push((version, id));
            continue;
        };
        if !managed.entries.iter().any(|e| e.same_manager(&bucket))
            && let Some(f) = managed
                .entries
                .iter_mut()
                .find(|e| e.identifier() == *first)
        {
            f.manager = ANCIENT_CHANGES.into();
            f.subresource = String::new();
        }
        let merged = managed.entries.remove(index);
        if let Some(b) = managed.entries.iter_mut().find(|e| e.same_manager(&bucket)) {
            b.fields = b.fields.union(&merged.fields);
            b.time = merged.time;
        }
        length -= 1;
    }
}

/// Server-side apply of `config` by `writer` onto `live` (`None`: the object is created).
/// Returns the merged object (not defaulted; nulls cleared) and the new ownership. Fields the
/// writer applied before and no longer applies are removed unless another manager owns them;
/// changing a field another manager owns is a conflict unless `force`, which takes it over.
///
/// For the manager `kubectl`, conflicts on fields whose live value still equals the object's
/// client-side apply annotation are allowed (upstream `lastAppliedManager`), so the first
/// `kubectl apply --server-side` after `kubectl apply` takes over what it applied before.
pub fn apply(
    writer: &Writer<'_>,
    live: Option<&Value>,
    config: &Value,
    managed: Managed,
    force: bool,
) -> Result<(Value, Managed), ApplyError> {
    match apply_once(writer, live, config, managed.clone(), force) {
        Err(ApplyError::Conflicts(conflicts)) if writer.manager == "kubectl" => {
            let Some(allowed) = live.and_then(|l| allowed_by_last_applied(writer, l)) else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let remaining: Vec<Conflict> = conflicts
                .into_iter()
                .filter(|c| !allowed.has(&c.path.0))
                .collect();
            if remaining.is_empty() {
                apply_once(writer, live, config, managed, true)
            } else {
                Err(ApplyError::Conflicts(remaining))
            }
        }
        other => other,
    }
}

/// The fields of the client-side apply annotation whose values the live object still has.
fn allowed_by_last_applied(writer: &Writer<'_>, live: &Value) -> Option<FieldSet> {
    let text = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(writer.api_version) {
        return None;
    }
    let set = field_set(writer.kind, &last).ok()?;
    let c = compare(writer.kind, &last, live);
    Some(
        set.difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed),
    )
}

fn apply_once(
    writer: &Writer<'_>,
    live: Option<&Value>,
    config: &Value,
    mut managed: Managed,
    force: bool,
) -> Result<(Value, Managed), ApplyError> {
    check_configuration(config)?;
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    if let Some(live) = live
        && managed.entries.is_empty()
    {
        // upstream skipNonAppliedManager: fields that predate tracking belong to a placeholder
        let before = Writer {
            manager: BEFORE_FIRST_APPLY,
            subresource: "",
            scope: Scope::Whole,
            ..*writer
        };
        managed = update(&before, None, live, managed);
    }
    let config_set = scope_filter(writer.scope, field_set(writer.kind, config)?);
    let mut merged = Walker::new(writer.kind).merge(Some(live_obj), config)?;
    let me = ManagedEntry {
        manager: writer.manager.to_string(),
        operation: Operation::Apply,
        api_version: writer.api_version.to_string(),
        time: Some(writer.now.to_string()),
        subresource: writer.subresource.to_string(),
        fields: config_set.clone(),
    };
    let previous = managed
        .entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| managed.entries.remove(i));
    if let Some(prev) = &previous
        && !prev.fields.is_empty()
    {
        let mut owned = config_set.clone();
        for e in &managed.entries {
            owned = owned.union(&e.fields);
        }
        let prune = prev
            .fields
            .with_parent_fields()
            .difference(&owned.with_parent_fields());
        if !prune.is_empty() {
            Walker::new(writer.kind).remove(&mut merged, &prune);
        }
    }
    let Comparison {
        added,
        mut modified,
        removed,
    } = compare(writer.kind, live_obj, &merged);
    modified.merge(added);
    let changed = scope_filter(writer.scope, modified);
    let removed = scope_filter(writer.scope, removed);
    let mut conflicts = Vec::new();
    for e in &managed.entries {
        for path in e.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                identifier: e.identifier(),
                path,
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for e in &mut managed.entries {
        e.fields.subtract(&changed);
        e.fields.subtract(&removed);
    }
    managed.entries.push(ManagedEntry {
        fields: config_set.difference(strip_set()),
        ..me
    });
    managed.entries.retain(|e| !e.fields.is_empty());
    strip_nulls(&mut merged);
    sync_last_applied(writer.manager, config, &mut merged);
    Ok((merged, managed))
}

/// Upstream `lastAppliedUpdater`: a server-side apply by the manager `kubectl` rewrites an existing
/// client-side apply annotation to the applied configuration (without the annotation), encoded as Go's
/// `json.Encoder` does (sorted keys, HTML-escaped, trailing newline), so a later `kubectl apply` without
/// `--server-side` diffs against what was really applied.
fn sync_last_applied(manager: &str, config: &Value, merged: &mut Value) {
    let has = merged
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if manager != "kubectl" || !has {
        return;
    }
    let mut applied = config.clone();
    if let Some(a) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    let text = go_json(&sorted(&applied)) + "\n";
    merged["metadata"]["annotations"][LAST_APPLIED] = Value::String(text);
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// JSON text as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn writer<'a>(kind: &'a str, manager: &'a str) -> Writer<'a> {
        Writer {
            kind,
            api_version: if kind == "Pod" { "v1" } else { "apps/v1" },
            manager,
            subresource: "",
            scope: Scope::Main { has_status: true },
            now: NOW,
        }
    }

    fn deployment(replicas: i64, containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": containers}}}})
    }

    fn fields(m: &Managed, manager: &str) -> Value {
        m.entries
            .iter()
            .find(|e| e.manager == manager)
            .map(|e| e.fields.to_fields_v1())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn apply_field_set_uses_keys_sets_and_atomic_structs_like_upstream() {
        let cfg = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x/y"]},
            "spec": {"containers": [{"name": "app", "image": "i", "args": ["-v"],
                "ports": [{"containerPort": 80}],
                "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "resources": {}}],
                "imagePullSecrets": [{"name": "regcred"}]}});
        let set = field_set("Pod", &cfg).unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:finalizers": {"v:\"x/y\"": {}}, "f:labels": {"f:a": {}}, "f:name": {}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:args": {},
                        "f:env": {"k:{\"name\":\"E\"}": {".": {}, "f:name": {},
                            "f:valueFrom": {"f:secretKeyRef": {}}}},
                        "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {},
                            "f:containerPort": {}}},
                        "f:resources": {}}},
                    "f:imagePullSecrets": {"k:{\"name\":\"regcred\"}": {}}}})
        );
    }

    #[test]
    fn apply_config_missing_a_list_key_fails_with_upstream_text() {
        let cfg = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"image": "i"}]}});
        let e = field_set("Pod", &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            ".spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(
            field_set("Pod", &dup)
                .unwrap_err()
                .to_string()
                .contains("duplicate entries for key [name=\"a\"]")
        );
    }

    #[test]
    fn create_records_update_entry_with_upstream_shape() {
        let d = deployment(
            1,
            json!([{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
        );
        let m = update(
            &writer("Deployment", "kubectl-create"),
            None,
            &d,
            Managed::default(),
        );
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.entries[0].operation, Operation::Update);
        assert_eq!(m.entries[0].time.as_deref(), Some(NOW));
        assert_eq!(
            fields(&m, "kubectl-create"),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {},
                                "f:containerPort": {}, "f:protocol": {}}}}}}}}})
        );
    }

    #[test]
    fn reapply_without_a_field_removes_it_when_nobody_else_owns_it() {
        let w = writer("Deployment", "kubectl");
        let c1 = deployment(
            3,
            json!([{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
        );
        let (live, m) = apply(&w, None, &c1, Managed::default(), false).unwrap();
        let c2 = deployment(
            3,
            json!([{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]}]),
        );
        let (live2, m2) = apply(&w, Some(&live), &c2, m, false).unwrap();
        let env = &live2["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "A", "value": "1"}]));
        assert!(!fields(&m2, "kubectl").to_string().contains("\\\"B\\\""));
        // dropping replicas removes it (defaulting later restores 1)
        let mut c3 = c2.clone();
        c3["spec"].as_object_mut().unwrap().remove("replicas");
        let (live3, _) = apply(&w, Some(&live2), &c3, m2, false).unwrap();
        assert!(live3["spec"].get("replicas").is_none());
    }

    #[test]
    fn dropped_field_stays_when_another_manager_owns_it() {
        let w = writer("Deployment", "kubectl");
        let c1 = deployment(3, json!([{"name": "app", "image": "a:1"}]));
        let (live, m) = apply(&w, None, &c1, Managed::default(), false).unwrap();
        // another applier applies the same replicas value: shared ownership, no conflict
        let other = writer("Deployment", "ci");
        let shared = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let (live, m) = apply(&other, Some(&live), &shared, m, false).unwrap();
        let mut c2 = c1.clone();
        c2["spec"].as_object_mut().unwrap().remove("replicas");
        let (live2, _) = apply(&w, Some(&live), &c2, m, false).unwrap();
        assert_eq!(live2["spec"]["replicas"], 3);
    }

    #[test]
    fn conflicting_apply_reports_upstream_message_and_force_takes_ownership() {
        let w = writer("Deployment", "kubectl");
        let c1 = deployment(3, json!([{"name": "app", "image": "a:1"}]));
        let (live, m) = apply(&w, None, &c1, Managed::default(), false).unwrap();
        let other = writer("Deployment", "ci");
        let mut c2 = c1.clone();
        c2["spec"]["replicas"] = json!(5);
        c2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
        let err = apply(&other, Some(&live), &c2, m.clone(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
        );
        let one = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 5}});
        assert_eq!(
            apply(&other, Some(&live), &one, m.clone(), false)
                .unwrap_err()
                .to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let (live2, m2) = apply(&other, Some(&live), &one, m, true).unwrap();
        assert_eq!(live2["spec"]["replicas"], 5);
        assert!(fields(&m2, "ci").to_string().contains("f:replicas"));
        assert!(!fields(&m2, "kubectl").to_string().contains("f:replicas"));
    }

    #[test]
    fn update_takes_changed_fields_from_appliers_and_then_conflicts() {
        let w = writer("Deployment", "kubectl");
        let c1 = deployment(3, json!([{"name": "app", "image": "a:1"}]));
        let (live, m) = apply(&w, None, &c1, Managed::default(), false).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        let scaler = Writer {
            subresource: "scale",
            scope: Scope::Whole,
            ..writer("Deployment", "kubectl")
        };
        let m = update(&scaler, Some(&live), &scaled, m);
        assert_eq!(
            m.entries
                .iter()
                .find(|e| e.subresource == "scale")
                .unwrap()
                .fields
                .to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        let err = apply(&w, Some(&scaled), &c1, m, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn unchanged_update_records_nothing_and_status_is_ignored_on_main() {
        let d = deployment(1, json!([{"name": "a", "image": "i"}]));
        let m = update(&writer("Deployment", "x"), Some(&d), &d, Managed::default());
        assert!(m.entries.is_empty());
        let mut with_status = d.clone();
        with_status["status"] = json!({"replicas": 1});
        let m = update(
            &writer("Deployment", "x"),
            Some(&d),
            &with_status,
            Managed::default(),
        );
        assert!(m.entries.is_empty());
        let status_writer = Writer {
            subresource: "status",
            scope: Scope::Status,
            ..writer("Deployment", "ctrl")
        };
        let m = update(&status_writer, Some(&d), &with_status, Managed::default());
        assert_eq!(
            m.entries[0].fields.to_fields_v1(),
            json!({"f:status": {".": {}, "f:replicas": {}}})
        );
    }

    #[test]
    fn merge_orders_lists_like_structured_merge_diff() {
        // live [a, b, c], config [c, d, a]: live-only b stays in place, config order for the rest
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let cfg = json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d"}, {"name": "a"}]}});
        let m = merge("Pod", Some(&live), &cfg).unwrap();
        let names: Vec<&str> = m["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "c", "d", "a"]);
        assert_eq!(m["spec"]["containers"][1]["image"], "x");
        // atomic lists are replaced, nulls clear
        let live =
            json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"], "image": "i"}]}});
        let cfg = json!({"spec": {"containers": [{"name": "a", "args": ["3"], "image": null}]}});
        let m = merge("Pod", Some(&live), &cfg).unwrap();
        assert_eq!(
            m["spec"]["containers"][0],
            json!({"name": "a", "args": ["3"]})
        );
    }

    #[test]
    fn first_apply_on_untracked_object_keeps_existing_fields_under_placeholder() {
        let live = deployment(2, json!([{"name": "app", "image": "a:1"}]));
        let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}});
        let (merged, m) = apply(
            &writer("Deployment", "kubectl"),
            Some(&live),
            &cfg,
            Managed::default(),
            false,
        )
        .unwrap();
        assert_eq!(merged["spec"]["replicas"], 2);
        assert!(m.entries.iter().any(|e| e.manager == BEFORE_FIRST_APPLY));
        let mut changed = cfg.clone();
        changed["spec"]["replicas"] = json!(4);
        let err = apply(
            &writer("Deployment", "kubectl"),
            Some(&live),
            &changed,
            Managed::default(),
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"before-first-apply\" using apps/v1: .spec.replicas")
        );
    }

    #[test]
    fn kubectl_apply_keeps_an_existing_last_applied_annotation_in_sync() {
        let mut live = deployment(1, json!([{"name": "app", "image": "a:1"}]));
        live["metadata"]["annotations"] = json!({LAST_APPLIED: "{\"old\":true}\n"});
        let cfg = json!({"kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "web", "annotations": {"note": "a&b"}}, "spec": {"replicas": 2}});
        let (merged, _) = apply(
            &writer("Deployment", "kubectl"),
            Some(&live),
            &cfg,
            Managed::default(),
            true,
        )
        .unwrap();
        assert_eq!(
            merged["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{\"note\":\"a\\u0026b\"},\"name\":\"web\"},\"spec\":{\"replicas\":2}}\n"
        );
        let (other, _) = apply(
            &writer("Deployment", "helm"),
            Some(&live),
            &cfg,
            Managed::default(),
            true,
        )
        .unwrap();
        assert_eq!(
            other["metadata"]["annotations"][LAST_APPLIED],
            "{\"old\":true}\n"
        );
    }

    #[test]
    fn kubectl_takes_over_client_side_applied_fields_without_conflicts() {
        // created by `kubectl apply` (client-side): an Update entry owns everything and the
        // annotation holds what was applied
        let mut live = deployment(2, json!([{"name": "app", "image": "a:1"}]));
        let mut applied = live.clone();
        applied["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        live["metadata"]["annotations"] = json!({LAST_APPLIED: format!("{}\n", applied)});
        let csa = Writer {
            scope: Scope::Main { has_status: true },
            ..writer("Deployment", "kubectl-client-side-apply")
        };
        let m = update(&csa, None, &live, Managed::default());
        let mut v2 = applied.clone();
        v2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
        let (merged, m2) = apply(
            &writer("Deployment", "kubectl"),
            Some(&live),
            &v2,
            m.clone(),
            false,
        )
        .unwrap();
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        assert!(fields(&m2, "kubectl").to_string().contains("f:image"));
        assert!(
            !fields(&m2, "kubectl-client-side-apply")
                .to_string()
                .contains("f:image")
        );
        // another manager gets no such pass, and neither do fields changed since the annotation
        assert!(
            apply(
                &writer("Deployment", "ci"),
                Some(&live),
                &v2,
                m.clone(),
                false
            )
            .is_err()
        );
        let mut drifted = live.clone();
        drifted["spec"]["replicas"] = json!(5);
        let mut v3 = v2.clone();
        v3["spec"]["replicas"] = json!(6);
        let err = apply(
            &writer("Deployment", "kubectl"),
            Some(&drifted),
            &v3,
            m,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn update_entries_beyond_ten_merge_into_ancient_changes() {
        let mut d = deployment(1, json!([{"name": "app", "image": "a:0"}]));
        let mut m = Managed::default();
        for i in 0..12 {
            let mut next = d.clone();
            next["metadata"]["labels"][format!("l{i}")] = json!("x");
            let name = format!("m{i:02}");
            let now = format!("2026-01-01T00:00:{i:02}Z");
            let w = Writer {
                now: &now,
                ..writer("Deployment", &name)
            };
            m = update(&w, Some(&d), &next, m);
            d = next;
        }
        assert_eq!(m.entries.len(), MAX_UPDATE_MANAGERS);
        let bucket = m
            .entries
            .iter()
            .find(|e| e.manager == ANCIENT_CHANGES)
            .unwrap();
        // m00, m01 and m02 went into the bucket, which carries the newest of their times
        assert_eq!(bucket.time.as_deref(), Some("2026-01-01T00:00:02Z"));
        for l in ["l0", "l1", "l2"] {
            assert!(
                bucket
                    .fields
                    .has(&FieldPath::fields(&["metadata", "labels", l]).0)
            );
        }
        assert!(
            !m.entries
                .iter()
                .any(|e| ["m00", "m01", "m02"].contains(&e.manager.as_str()))
        );
    }

    #[test]
    fn apply_rejects_patch_directives() {
        let cfg = json!({"spec": {"$patch": "replace"}});
        assert!(matches!(
            apply(&writer("Pod", "k"), None, &cfg, Managed::default(), false),
            Err(ApplyError::BadConfiguration(_))
        ));
    }
}
