//! Resource handlers: get, list, watch, create, update, patch, delete and deletecollection for every kind of the
//! `api` registry, plus the status, scale, binding and log subresources. They apply upstream metadata semantics
//! ([`crate::meta`]), defaulting and validation (`api`), and write through the `store` trait with compare-and-swap
//! on the revision that becomes `resourceVersion`. Every write records field ownership in `metadata.managedFields`
//! through `wire::apply` (server-side apply with conflicts, `Update` entries for other writes). They must never log
//! or echo a Secret's data, and never bypass validation on a write path.

use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use api::Status;
use api::resources::{self, ResourceInfo};
use store::{ListOptions, StoreError};
use wire::apply::{ApplyError, Scope, Writer};
use wire::managed::Managed;

use crate::app::{App, Call, json_response, status_response};
use crate::codec::{self, FieldValidation};
use crate::meta;
use crate::routes::ResourcePath;

/// How many times a generateName create retries on a name collision (upstream retries on AlreadyExists).
const GENERATE_NAME_ATTEMPTS: usize = 8;
/// How many times a patch or server-side update re-reads after losing a compare-and-swap race.
const CAS_ATTEMPTS: usize = 16;

pub type HResult = Result<Response, Status>;

/// Maps a store error on one object to its upstream Status.
pub fn store_status(info: &ResourceInfo, name: &str, err: StoreError) -> Status {
    match err {
        StoreError::NotFound { .. } => Status::not_found(info, name),
        StoreError::AlreadyExists { .. } => Status::already_exists(info, name),
        StoreError::Conflict { .. } => Status::conflict_modified(info, name),
        StoreError::Expired {
            requested,
            compacted,
        } => Status::expired(requested, compacted + 1),
        StoreError::InvalidContinue { reason } => Status::bad_request(format!(
            "the provided continue parameter is not valid: {reason}"
        )),
        StoreError::FutureRevision { requested, current } => Status::timeout(&format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        other => {
            // Store errors never carry values (see store::StoreError), so logging them is safe.
            tracing::error!(error = %other, resource = info.plural, name, "storage error");
            if let StoreError::Unavailable { .. } = &other {
                // Names the datastore and what failed (etcd endpoints; never a value).
                Status::relayed(503, other.to_string())
            } else if other.http_status_hint() == 503 {
                Status::too_many_requests("the storage backend is unavailable; retry shortly", 1)
            } else {
                Status::internal(&other.to_string())
            }
        }
    }
}

fn verb_of(method: &Method, rp: &ResourcePath, call: &Call) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => {
            if rp.name.is_some() {
                "get"
            } else if call.flag("watch") {
                "watch"
            } else {
                "list"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if rp.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => "unknown",
    }
}

/// Entry point for every `/api/v1/...` and `/apis/<g>/<v>/...` resource request.
pub async fn resource(app: &App, call: Call, rp: ResourcePath) -> Response {
    match resource_inner(app, call, rp).await {
        Ok(r) => r,
        Err(status) => status_response(&status),
    }
}

async fn resource_inner(app: &App, call: Call, rp: ResourcePath) -> HResult {
    let Some(info) = resources::lookup(&rp.group, &rp.version, &rp.resource) else {
        return Err(Status::not_found_path());
    };
    let verb = verb_of(&call.method, &rp, &call);
    if verb == "unknown" {
        return Err(Status::method_not_allowed(
            info,
            rp.subresource.as_deref(),
            call.method.as_str(),
        ));
    }
    if !call.role.may_write() && !matches!(verb, "get" | "list" | "watch") {
        let reason = Status::forbidden_reason(
            call.role.user(),
            verb,
            info,
            rp.subresource.as_deref(),
            rp.namespace.as_deref(),
        );
        return Err(Status::forbidden(
            info,
            rp.name.as_deref().unwrap_or(""),
            &reason,
        ));
    }
    if info.namespaced && rp.name.is_some() && rp.namespace.is_none() {
        return Err(Status::not_found_path());
    }
    if !info.namespaced && rp.namespace.is_some() {
        return Err(Status::not_found_path());
    }
    let ns = rp.namespace.as_deref();
    match (rp.name.as_deref(), rp.subresource.as_deref()) {
        (None, None) => match verb {
            "list" => list(app, &call, info, ns).await,
            "watch" => crate::watch::watch(app, &call, info, ns).await,
            "create" => create(app, &call, info, ns).await,
            "deletecollection" => delete_collection(app, &call, info, ns).await,
            _ => Err(Status::method_not_allowed(info, None, call.method.as_str())),
        },
        (Some(name), None) => match verb {
            "get" => get(app, &call, info, ns, name).await,
            "update" => update(app, &call, info, ns, name, Part::Main).await,
            "patch" => patch(app, &call, info, ns, name, Part::Main).await,
            "delete" => delete(app, &call, info, ns, name).await,
            _ => Err(Status::method_not_allowed(info, None, call.method.as_str())),
        },
        (Some(name), Some(sub)) => {
            let Some(subres) = info.subresource(sub) else {
                return Err(Status::not_found_path());
            };
            if !subres.verbs.contains(&verb) {
                return Err(Status::method_not_allowed(
                    info,
                    Some(sub),
                    call.method.as_str(),
                ));
            }
            match (sub, verb) {
                ("status", "get") => get(app, &call, info, ns, name).await,
                ("status", "update") => update(app, &call, info, ns, name, Part::Status).await,
                ("status", "patch") => patch(app, &call, info, ns, name, Part::Status).await,
                ("finalize", "update") => update(app, &call, info, ns, name, Part::Finalize).await,
                ("scale", "get") => crate::scale::get(app, info, ns, name).await,
                ("scale", "update") => crate::scale::update(app, &call, info, ns, name).await,
                ("scale", "patch") => crate::scale::patch(app, &call, info, ns, name).await,
                ("log", "get") => crate::podlog::get(app, &call, info, ns, name).await,
                ("binding", "create") => crate::binding::create(app, &call, info, ns, name).await,
                _ => Err(Status::method_not_allowed(
                    info,
                    Some(sub),
                    call.method.as_str(),
                )),
            }
        }
        (None, Some(_)) => Err(Status::not_found_path()),
    }
}

/// Reads one object with its resourceVersion set; `None` when absent.
pub async fn load(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<(Value, u64)>, Status> {
    let key = info.storage_key(ns, name);
    let Some(kv) = app
        .store
        .get(&key)
        .await
        .map_err(|e| store_status(info, name, e))?
    else {
        return Ok(None);
    };
    let mut obj = codec::parse_stored(&kv.value)
        .map_err(|e| Status::internal(&format!("stored object {key}: {e}")))?;
    meta::set_resource_version(&mut obj, kv.mod_revision);
    Ok(Some((obj, kv.mod_revision)))
}

async fn require(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(Value, u64), Status> {
    load(app, info, ns, name)
        .await?
        .ok_or_else(|| Status::not_found(info, name))
}

/// Fails with `namespaces "x" not found` unless the namespace exists; `Forbidden` while it terminates.
async fn require_namespace(
    app: &App,
    info: &ResourceInfo,
    ns: &str,
    for_create: bool,
) -> Result<(), Status> {
    if app.namespaces.lookup(ns) == crate::nscache::Known::Active {
        return Ok(());
    }
    let ns_info = resources::lookup("", "v1", "namespaces").expect("namespaces are registered");
    match load(app, ns_info, None, ns).await? {
        None => Err(Status::namespace_not_found(ns)),
        Some((obj, _)) if for_create && meta::is_deleting(&obj) => Err(Status::forbidden(
            info,
            "",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

async fn get(app: &App, call: &Call, info: &ResourceInfo, ns: Option<&str>, name: &str) -> HResult {
    let (obj, rev) = require(app, info, ns, name).await?;
    let out = codec::output(call)?;
    Ok(codec::respond_object(StatusCode::OK, info, obj, rev, &out))
}

async fn list(app: &App, call: &Call, info: &ResourceInfo, ns: Option<&str>) -> HResult {
    let out = codec::output(call)?;
    let selectors = codec::Selectors::parse(call, info)?;
    let prefix = match ns {
        Some(ns) => info.storage_namespace_prefix(ns),
        None => info.storage_prefix(),
    };
    let limit = call
        .param("limit")
        .and_then(|l| l.parse::<u64>().ok())
        .filter(|l| *l > 0);
    let mut continue_token = call
        .param("continue")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let mut items = Vec::new();
    let mut revision;
    loop {
        let want = limit.map(|l| l - items.len() as u64);
        let page = app
            .store
            .list(
                &prefix,
                ListOptions {
                    limit: want,
                    continue_token: continue_token.clone(),
                    revision: None,
                },
            )
            .await
            .map_err(|e| store_status(info, "", e))?;
        revision = page.revision;
        for kv in page.items {
            let mut obj = codec::parse_stored(&kv.value)
                .map_err(|e| Status::internal(&format!("stored object {}: {e}", kv.key)))?;
            if selectors.matches(&obj) {
                meta::set_resource_version(&mut obj, kv.mod_revision);
                items.push(obj);
            }
        }
        continue_token = page.continue_token;
        let full = limit.is_some_and(|l| items.len() as u64 >= l);
        if continue_token.is_none() || full || limit.is_none() {
            break;
        }
    }
    Ok(codec::respond_list(
        info,
        items,
        revision,
        continue_token,
        &out,
    ))
}

/// The object a create/update request carries, checked against the endpoint it was sent to.
fn decode_for(
    call: &Call,
    info: &ResourceInfo,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let validation = FieldValidation::from_call(call)?;
    let obj = codec::decode_body(call, info, validation, warnings)?;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != info.api_version)
        || (!kind.is_empty() && kind != info.kind)
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} does not match {}",
            info.api_version, info.kind
        )));
    }
    Ok(obj)
}

fn check_namespace(obj: &mut Value, info: &ResourceInfo, ns: Option<&str>) -> Result<(), Status> {
    let body_ns = meta::meta_str(obj, "namespace").map(str::to_string);
    if info.namespaced {
        let ns = ns.unwrap_or_default();
        if let Some(b) = body_ns
            && b != ns
        {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta::meta_mut(obj).insert("namespace".into(), json!(ns));
    } else {
        meta::meta_mut(obj).remove("namespace");
    }
    Ok(())
}

fn invalid(info: &ResourceInfo, obj: &Value, e: &api::Invalid) -> Status {
    Status::invalid(info, meta::name(obj), e)
}

/// Upstream `PrepareForCreate` for status: clients cannot set status on create of kinds with a status
/// subresource, except that a Pod starts `Pending`.
fn reset_status_for_create(info: &ResourceInfo, obj: &mut Value) {
    if info.subresource("status").is_none() {
        return;
    }
    let qos = codec::qos_class(obj);
    let o = obj.as_object_mut().expect("object");
    match (info.group, info.kind) {
        ("", "Pod") => {
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        ("", "Namespace") => {
            o.insert("status".into(), json!({"phase": "Active"}));
        }
        _ => {
            o.insert("status".into(), json!({}));
        }
    }
}

fn dry_run(call: &Call) -> Result<bool, Status> {
    match call.param("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(Status::bad_request(format!(
            "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
        ))),
    }
}

async fn create(app: &App, call: &Call, info: &ResourceInfo, ns: Option<&str>) -> HResult {
    let mut warnings = Vec::new();
    validate_write_options(call, "CreateOptions", None)?;
    let obj = decode_for(call, info, &mut warnings)?;
    let out = codec::output(call)?;
    let ownership = Ownership::Update(field_manager(call));
    let (obj, rev) = create_object_as(app, info, ns, obj, dry_run(call)?, &ownership).await?;
    let mut resp = codec::respond_object(StatusCode::CREATED, info, obj, rev, &out);
    codec::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// Defaults, validates and stores a new object the server makes itself (no field ownership is recorded).
pub async fn create_object(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    obj: Value,
    dry_run: bool,
) -> Result<(Value, u64), Status> {
    create_object_as(app, info, ns, obj, dry_run, &Ownership::Untracked).await
}

/// Defaults, validates and stores a new object with its `metadata.managedFields` (shared by POST and
/// server-side apply of an absent object).
pub async fn create_object_as(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    ownership: &Ownership,
) -> Result<(Value, u64), Status> {
    let obj = &mut obj;
    check_namespace(obj, info, ns)?;
    if info.namespaced {
        require_namespace(app, info, ns.unwrap_or_default(), true).await?;
    }
    meta::prepare_create(obj, info.api_version, info.kind);
    reset_status_for_create(info, obj);
    if info.kind == "Namespace" {
        codec::namespace_defaults(obj);
    }
    api::defaults::apply(info, obj);
    match ownership {
        Ownership::Untracked => {}
        Ownership::Update(manager) => {
            // Upstream records the create before `PrepareForCreate` sets a Namespace's `spec.finalizers`.
            let without_finalizers;
            let tracked: &Value = if info.kind == "Namespace" {
                let mut o = obj.clone();
                if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
                without_finalizers = o;
                &without_finalizers
            } else {
                obj
            };
            let now = meta::now_rfc3339();
            let managed = wire::apply::update(
                &writer(info, manager, "", &now),
                None,
                tracked,
                Managed::default(),
            );
            put_managed(obj, &managed);
        }
        Ownership::Applied(managed) => put_managed(obj, managed),
    }
    let generate = meta::meta_str(obj, "name")
        .is_none()
        .then(|| meta::meta_str(obj, "generateName").map(str::to_string))
        .flatten();
    let attempts = if generate.is_some() {
        GENERATE_NAME_ATTEMPTS
    } else {
        1
    };
    for attempt in 0..attempts {
        if let Some(base) = &generate {
            meta::meta_mut(obj).insert("name".into(), json!(meta::generate_name(base)));
        }
        api::validate_create(info, obj).map_err(|e| invalid(info, obj, &e))?;
        let name = meta::name(obj).to_string();
        if dry_run {
            return Ok((std::mem::take(obj), 0));
        }
        let key = info.storage_key(ns, &name);
        // `prepare_create` removed `resourceVersion` and `selfLink`: the object is stored as it is.
        match app.store.create(&key, codec::to_stored(obj)).await {
            Ok(rev) => {
                meta::set_resource_version(obj, rev);
                tracing::info!(resource = info.plural, namespace = ns.unwrap_or(""), %name, rev, "created");
                if info.kind == "Namespace" {
                    crate::lifecycle::ensure_default_service_account(app, &name).await;
                }
                return Ok((std::mem::take(obj), rev));
            }
            Err(StoreError::AlreadyExists { .. })
                if generate.is_some() && attempt + 1 < attempts =>
            {
                continue;
            }
            Err(e) => return Err(store_status(info, &name, e)),
        }
    }
    // Every iteration returns on its last attempt; this is reached only if `attempts` were 0.
    Err(Status::internal("create made no attempt"))
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: status changes are ignored for kinds with a status subresource.
    Main,
    /// The status subresource: only status changes are taken.
    Status,
    /// `namespaces/<n>/finalize`: only `spec.finalizers` changes are taken.
    Finalize,
}

impl Part {
    /// The subresource name recorded in `managedFields` entries.
    pub fn subresource(self) -> &'static str {
        match self {
            Part::Main => "",
            Part::Status => "status",
            Part::Finalize => "finalize",
        }
    }
}

/// Merges the request's `new` with the stored `old` according to `part`, applies metadata semantics, defaults
/// and validation. Returns the object to store.
pub fn prepare_write(
    info: &ResourceInfo,
    part: Part,
    mut new: Value,
    old: &Value,
) -> Result<Value, Status> {
    let has_status = info.subresource("status").is_some();
    match part {
        Part::Main => {
            if has_status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
        Part::Status => {
            let status = new.get("status").cloned();
            let meta_labels = new.get("metadata").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            // Metadata (labels, annotations, finalizers...) may be changed through status too, as upstream.
            if let Some(m) = meta_labels {
                new["metadata"] = m;
            }
        }
        Part::Finalize => {
            let finalizers = new.get("spec").and_then(|s| s.get("finalizers")).cloned();
            new = old.clone();
            match finalizers {
                Some(f) => new["spec"]["finalizers"] = f,
                None => {
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
        }
    }
    let o = new
        .as_object_mut()
        .ok_or_else(|| Status::bad_request("the object must be a JSON object"))?;
    o.insert("apiVersion".into(), json!(info.api_version));
    o.insert("kind".into(), json!(info.kind));
    meta::prepare_update(&mut new, old);
    api::defaults::apply(info, &mut new);
    let result = match part {
        Part::Main | Part::Finalize => api::validate_update(info, &new, old),
        Part::Status => api::validation::validate_status_update(info, &new, old),
    };
    result.map_err(|e| invalid(info, &new, &e))?;
    Ok(new)
}

/// Writes `new` over the stored revision `expected`; completes a deletion when the last finalizer went away.
pub async fn commit_update(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    mut new: Value,
    expected: u64,
) -> Result<(Value, u64, bool), StoreError> {
    let key = info.storage_key(ns, name);
    if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !namespace_waits(info, &new)
    {
        let deleted = app.store.delete(&key, Some(expected)).await?;
        meta::set_resource_version(&mut new, deleted.revision);
        tracing::info!(
            resource = info.plural,
            namespace = ns.unwrap_or(""),
            name,
            "deleted after its last finalizer"
        );
        return Ok((new, deleted.revision, true));
    }
    let mut stored = new.clone();
    meta::strip_for_storage(&mut stored);
    let rev = app
        .store
        .update(&key, expected, codec::to_stored(&stored))
        .await?;
    meta::set_resource_version(&mut new, rev);
    Ok((new, rev, false))
}

/// Namespaces also wait for their `spec.finalizers` (`kubernetes`), which the namespace controller removes.
fn namespace_waits(info: &ResourceInfo, obj: &Value) -> bool {
    info.kind == "Namespace"
        && obj
            .get("spec")
            .and_then(|s| s.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

fn body_resource_version(obj: &Value) -> Option<u64> {
    meta::meta_str(obj, "resourceVersion").map(|rv| rv.parse::<u64>().unwrap_or(u64::MAX))
}

async fn update(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
) -> HResult {
    let mut warnings = Vec::new();
    validate_write_options(call, "UpdateOptions", None)?;
    let mut obj = decode_for(call, info, &mut warnings)?;
    let out = codec::output(call)?;
    let manager = field_manager(call);
    let requested_managed = obj.pointer("/metadata/managedFields").cloned();
    let body_name = meta::meta_str(&obj, "name").unwrap_or("").to_string();
    if body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    check_namespace(&mut obj, info, ns)?;
    let requested_rv = body_resource_version(&obj);
    let dry = dry_run(call)?;
    for _ in 0..CAS_ATTEMPTS {
        let (old, rev) = require(app, info, ns, name).await?;
        if let Some(rv) = requested_rv
            && rv != rev
        {
            return Err(Status::conflict_modified(info, name));
        }
        let mut new = prepare_write(info, part, obj.clone(), &old)?;
        record_update(
            info,
            part.subresource(),
            &manager,
            &old,
            &mut new,
            requested_managed.as_ref(),
        );
        if dry {
            return Ok(codec::respond_object(StatusCode::OK, info, new, rev, &out));
        }
        match commit_update(app, info, ns, name, new, rev).await {
            Ok((new, rev, _)) => {
                let mut resp = codec::respond_object(StatusCode::OK, info, new, rev, &out);
                codec::add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            Err(StoreError::Conflict { .. }) if requested_rv.is_none() => continue,
            Err(e) => return Err(store_status(info, name, e)),
        }
    }
    Err(Status::conflict_modified(info, name))
}

async fn patch(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
) -> HResult {
    let out = codec::output(call)?;
    let kind = codec::PatchKind::from_call(call, info)?;
    let is_apply = kind == codec::PatchKind::Apply;
    validate_write_options(call, "PatchOptions", Some(is_apply))?;
    let validation = FieldValidation::from_call(call)?;
    let dry = dry_run(call)?;
    let manager = field_manager(call);
    let force = call.flag("force");
    let mut warnings = Vec::new();
    let config = if is_apply {
        Some(apply_config(call, info, validation, &mut warnings)?)
    } else {
        None
    };
    for _ in 0..CAS_ATTEMPTS {
        let Some((old, rev)) = load(app, info, ns, name).await? else {
            if let Some(config) = &config
                && part == Part::Main
            {
                let body_name = meta::meta_str(config, "name").unwrap_or("").to_string();
                if body_name != name {
                    return Err(Status::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                let now = meta::now_rfc3339();
                let (obj, managed) = wire::apply::apply(
                    &writer(info, &manager, "", &now),
                    None,
                    config,
                    Managed::default(),
                    force,
                )
                .map_err(|e| apply_status(info, ns, name, e))?;
                let ownership = Ownership::Applied(managed);
                let (obj, rev) = create_object_as(app, info, ns, obj, dry, &ownership).await?;
                let mut resp = codec::respond_object(StatusCode::CREATED, info, obj, rev, &out);
                codec::add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            return Err(Status::not_found(info, name));
        };
        let (patched, applied) = match &config {
            Some(config) => {
                let mut live = old.clone();
                let stored = decode_managed(take_managed(&mut live).as_ref(), info, name);
                let now = meta::now_rfc3339();
                let (merged, managed) = wire::apply::apply(
                    &writer(info, &manager, part.subresource(), &now),
                    Some(&live),
                    config,
                    stored,
                    force,
                )
                .map_err(|e| apply_status(info, ns, name, e))?;
                (merged, Some(managed))
            }
            None => {
                warnings.clear();
                let patched =
                    codec::apply_patch(call, info, kind, validation, &old, &mut warnings)?;
                (patched, None)
            }
        };
        if let Some(rv) = body_resource_version(&patched)
            && rv != rev
            && meta::meta_str(&patched, "resourceVersion")
                != meta::meta_str(&old, "resourceVersion")
        {
            return Err(Status::conflict_modified(info, name));
        }
        let requested_managed = patched.pointer("/metadata/managedFields").cloned();
        let mut patched = patched;
        check_namespace(&mut patched, info, ns)?;
        if meta::name(&patched) != name {
            return Err(Status::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&patched)
            )));
        }
        let mut new = prepare_write(info, part, patched, &old)?;
        match applied {
            Some(managed) => finish_managed(info, name, &old, &mut new, managed),
            None => record_update(
                info,
                part.subresource(),
                &manager,
                &old,
                &mut new,
                requested_managed.as_ref(),
            ),
        }
        if dry {
            return Ok(codec::respond_object(StatusCode::OK, info, new, rev, &out));
        }
        match commit_update(app, info, ns, name, new, rev).await {
            Ok((new, rev, _)) => {
                let mut resp = codec::respond_object(StatusCode::OK, info, new, rev, &out);
                codec::add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_status(info, name, e)),
        }
    }
    Err(Status::conflict_modified(info, name))
}

// ---- field ownership: metadata.managedFields (upstream k8s.io/apiserver fieldmanager) ----

/// Upstream `FieldManagerMaxLength`.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// How a create records field ownership.
pub enum Ownership {
    /// Objects the server makes itself (default ServiceAccounts, ...): nothing is recorded.
    Untracked,
    /// An `Update` entry for this manager owning every field of the new object.
    Update(String),
    /// Entries computed by server-side apply.
    Applied(Managed),
}

/// Upstream `prefixFromUserAgent`: the User-Agent up to its first `/`, printable characters only, at
/// most 128 bytes (`kubectl/v1.32.5 (linux/amd64) ...` gives `kubectl`).
fn prefix_from_user_agent(user_agent: &str) -> String {
    let mut out = String::new();
    for c in user_agent.split('/').next().unwrap_or("").chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// The manager a write is recorded for: the `fieldManager` query parameter, else the User-Agent prefix.
pub fn field_manager(call: &Call) -> String {
    match call.param("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => prefix_from_user_agent(call.header(header::USER_AGENT)),
    }
}

/// Upstream `ValidatePatchOptions` / `ValidateFieldManager` on the write options: 422
/// `PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch`.
/// `apply` is `Some(is_apply)` for PATCH and `None` for create and update.
fn validate_write_options(
    call: &Call,
    options_kind: &str,
    apply: Option<bool>,
) -> Result<(), Status> {
    use api::validation::{FieldError, Path};
    let manager = call.param("fieldManager").unwrap_or("");
    let field = Path::new("fieldManager");
    let mut errors = Vec::new();
    match apply {
        Some(false) if call.param("force").is_some() => errors.push(FieldError::forbidden(
            &Path::new("force"),
            "may not be specified for non-apply patch",
        )),
        Some(true) if manager.is_empty() => {
            errors.push(FieldError::required(&field, "is required for apply patch"))
        }
        _ => {}
    }
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errors.push(FieldError::too_long(&field, FIELD_MANAGER_MAX_LENGTH));
    }
    for (i, c) in manager.chars().enumerate() {
        if c.is_control() {
            errors.push(FieldError::invalid_str(
                &field,
                manager,
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid_kind(
            "meta.k8s.io",
            options_kind,
            "",
            &api::Invalid::from(errors),
        ))
    }
}

/// The applied configuration of a server-side apply, checked like upstream: apiVersion and kind of the
/// endpoint, fields per `fieldValidation`, and no `managedFields` (the server owns them).
fn apply_config(
    call: &Call,
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let config = codec::apply_create_body(call, info, validation, warnings)?;
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(Status::bad_request("metadata.managedFields must be nil"));
    }
    Ok(config)
}

fn writer<'a>(
    info: &'a ResourceInfo,
    manager: &'a str,
    subresource: &'a str,
    now: &'a str,
) -> Writer<'a> {
    let scope = match subresource {
        "" => Scope::Main {
            has_status: info.subresource("status").is_some(),
        },
        "status" => Scope::Status,
        _ => Scope::Whole,
    };
    Writer {
        kind: info.kind,
        api_version: info.api_version,
        manager,
        subresource,
        scope,
        now,
    }
}

/// Maps an apply failure to upstream's answer: 409 Conflict with one `FieldManagerConflict` cause per field,
/// 400 for a malformed configuration, and for a configuration that does not fit the schema the 500 without a
/// reason that kube-apiserver sends (`Error from server: failed to create typed patch object (...)`).
fn apply_status(info: &ResourceInfo, ns: Option<&str>, name: &str, err: ApplyError) -> Status {
    match &err {
        ApplyError::Conflicts(conflicts) => Status {
            code: 409,
            status: "Failure",
            reason: "Conflict",
            message: err.to_string(),
            details: Some(Box::new(api::status::Details {
                causes: conflicts
                    .iter()
                    .map(|c| api::status::Cause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with {}", c.manager),
                        field: c.path.to_string(),
                    })
                    .collect(),
                ..Default::default()
            })),
        },
        ApplyError::Schema { .. } => {
            let gvk = if info.group.is_empty() {
                format!("/{}, Kind={}", info.api_version, info.kind)
            } else {
                format!("{}, Kind={}", info.api_version, info.kind)
            };
            Status {
                code: 500,
                status: "Failure",
                reason: "",
                message: format!(
                    "failed to create typed patch object ({}/{name}; {gvk}): {err}",
                    ns.unwrap_or("")
                ),
                details: None,
            }
        }
        ApplyError::BadConfiguration(m) => Status::bad_request(m.clone()),
    }
}

fn take_managed(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
}

fn put_managed(obj: &mut Value, managed: &Managed) {
    let encoded = managed.encode();
    let m = meta::meta_mut(obj);
    if encoded.as_array().is_some_and(Vec::is_empty) {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), encoded);
    }
}

/// Decodes stored `managedFields`; undecodable entries are dropped like upstream (`emptyManagedFieldsOnErr`).
fn decode_managed(v: Option<&Value>, info: &ResourceInfo, name: &str) -> Managed {
    Managed::decode(v).unwrap_or_else(|e| {
        tracing::warn!(resource = info.plural, name, error = %e, "dropping undecodable managedFields");
        Managed::default()
    })
}

fn without_resource_version(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

/// Stores `managed` in `new`; when neither the object nor the ownership changed, the old entries are kept
/// verbatim, timestamps included (upstream `IgnoreManagedFieldsTimestampsTransformer`).
fn finish_managed(info: &ResourceInfo, name: &str, old: &Value, new: &mut Value, managed: Managed) {
    let old_entries = old.pointer("/metadata/managedFields");
    let stored = decode_managed(old_entries, info, name);
    take_managed(new);
    if let Some(entries) = old_entries
        && managed.equal_ignoring_times(&stored)
        && without_resource_version(old) == without_resource_version(new)
    {
        let entries = entries.clone();
        meta::meta_mut(new).insert("managedFields".into(), entries);
        return;
    }
    put_managed(new, &managed);
}

/// Records a non-apply write of `manager` that turned `old` into `new` (upstream `FieldManager.Update`): the
/// manager's `Update` entry takes every field it added or changed from the other managers. The entries start
/// from the request's `managedFields` when it sends valid ones (an empty list or `[{}]` resets them), else
/// from the stored ones; subresource writes always start from the stored ones.
pub fn record_update(
    info: &ResourceInfo,
    subresource: &str,
    manager: &str,
    old: &Value,
    new: &mut Value,
    requested: Option<&Value>,
) {
    let mut old_clean = old.clone();
    let stored = decode_managed(take_managed(&mut old_clean).as_ref(), info, meta::name(old));
    let base = if !subresource.is_empty() {
        stored
    } else if Managed::is_reset(requested) {
        Managed::default()
    } else {
        match Managed::decode(requested) {
            Ok(m) if !m.entries.is_empty() => m,
            _ => stored,
        }
    };
    take_managed(new);
    let now = meta::now_rfc3339();
    let managed = wire::apply::update(
        &writer(info, manager, subresource, &now),
        Some(&old_clean),
        new,
        base,
    );
    finish_managed(info, meta::name(old), old, new, managed);
}

/// Parsed `DeleteOptions` (query parameters and/or body).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    fn from_call(call: &Call) -> Result<Self, Status> {
        let mut o = DeleteOptions {
            dry_run: dry_run(call)?,
            ..Default::default()
        };
        if !call.body.is_empty() {
            let body: Value = serde_json::from_slice(&call.body)
                .or_else(|_| serde_yaml::from_slice(&call.body))
                .map_err(|e| Status::bad_request(format!("failed to decode DeleteOptions: {e}")))?;
            o.propagation = body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            o.grace_period = body.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.precondition_uid = body
                .get("preconditions")
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(str::to_string);
            o.precondition_rv = body
                .get("preconditions")
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && o.propagation.is_none()
            {
                o.propagation = Some("Orphan".into());
            }
            if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
                o.dry_run |= d.iter().any(|v| v.as_str() == Some("All"));
            }
        }
        if let Some(p) = call.param("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if let Some(g) = call.param("gracePeriodSeconds") {
            o.grace_period = Some(g.parse().map_err(|_| {
                Status::bad_request(format!(
                    "gracePeriodSeconds: invalid value {g:?}: must be an integer"
                ))
            })?);
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(Status::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        Ok(o)
    }
}

async fn delete(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> HResult {
    let opts = DeleteOptions::from_call(call)?;
    let out = codec::output(call)?;
    let (code, obj, rev) = delete_object(app, info, ns, name, &opts).await?;
    match obj {
        Some(obj) => Ok(codec::respond_object(code, info, obj, rev, &out)),
        None => {
            let status = Status::success(info, name);
            Ok(json_response(
                StatusCode::OK,
                &status.to_value(),
                "application/json",
            ))
        }
    }
}

/// Deletes one object following upstream rules. Returns the HTTP code and the object when the deletion is
/// pending (finalizers, graceful pod deletion: 202/200 with the object), or `None` when it is gone.
pub async fn delete_object(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Option<Value>, u64), Status> {
    for _ in 0..CAS_ATTEMPTS {
        let (old, rev) = require(app, info, ns, name).await?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&old)
        {
            return Err(Status::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != &rev.to_string()
        {
            return Err(Status::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
        let mut new = old.clone();
        let mut finalizers = meta::finalizers(&old);
        match opts.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == crate::lifecycle::FOREGROUND) => {
                finalizers.push(crate::lifecycle::FOREGROUND.into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == crate::lifecycle::ORPHAN) => {
                finalizers.push(crate::lifecycle::ORPHAN.into())
            }
            _ => {}
        }
        let graceful_pod = info.kind == "Pod"
            && info.group.is_empty()
            && old
                .get("spec")
                .and_then(|s| s.get("nodeName"))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && old
                .get("status")
                .and_then(|s| s.get("phase"))
                .and_then(Value::as_str)
                .is_none_or(|p| p != "Succeeded" && p != "Failed");
        let grace = if graceful_pod {
            opts.grace_period.unwrap_or_else(|| {
                old.get("spec")
                    .and_then(|s| s.get("terminationGracePeriodSeconds"))
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            })
        } else {
            0
        };
        let pending = !finalizers.is_empty()
            || namespace_waits(info, &old)
            || grace > 0
            || info.kind == "Namespace";
        if !pending {
            if opts.dry_run {
                return Ok((StatusCode::OK, None, rev));
            }
            let key = info.storage_key(ns, name);
            match app.store.delete(&key, Some(rev)).await {
                Ok(d) => {
                    tracing::info!(
                        resource = info.plural,
                        namespace = ns.unwrap_or(""),
                        name,
                        "deleted"
                    );
                    return Ok((StatusCode::OK, None, d.revision));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_status(info, name, e)),
            }
        }
        if meta::is_deleting(&old) && meta::finalizers(&old) == finalizers {
            // Already terminating: deleting again changes nothing (upstream shortens a grace period; not needed).
            return Ok((StatusCode::ACCEPTED, Some(old), rev));
        }
        meta::set_finalizers(&mut new, &finalizers);
        let m = meta::meta_mut(&mut new);
        if !m.contains_key("deletionTimestamp") {
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            m.insert(
                "deletionTimestamp".into(),
                json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        if info.kind == "Namespace" {
            new["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok((StatusCode::ACCEPTED, Some(new), rev));
        }
        let key = info.storage_key(ns, name);
        let mut stored = new.clone();
        meta::strip_for_storage(&mut stored);
        match app.store.update(&key, rev, codec::to_stored(&stored)).await {
            Ok(new_rev) => {
                meta::set_resource_version(&mut new, new_rev);
                tracing::info!(
                    resource = info.plural,
                    namespace = ns.unwrap_or(""),
                    name,
                    "deletion pending"
                );
                return Ok((StatusCode::ACCEPTED, Some(new), new_rev));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_status(info, name, e)),
        }
    }
    Err(Status::conflict_modified(info, name))
}

async fn delete_collection(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
) -> HResult {
    let opts = DeleteOptions::from_call(call)?;
    let selectors = codec::Selectors::parse(call, info)?;
    let prefix = match ns {
        Some(ns) => info.storage_namespace_prefix(ns),
        None => info.storage_prefix(),
    };
    let page = app
        .store
        .list(&prefix, ListOptions::default())
        .await
        .map_err(|e| store_status(info, "", e))?;
    let mut deleted = Vec::new();
    for kv in page.items {
        let obj = codec::parse_stored(&kv.value)
            .map_err(|e| Status::internal(&format!("stored object {}: {e}", kv.key)))?;
        if !selectors.matches(&obj) {
            continue;
        }
        let name = meta::name(&obj).to_string();
        let obj_ns = meta::meta_str(&obj, "namespace").map(str::to_string);
        match delete_object(app, info, obj_ns.as_deref(), &name, &opts).await {
            Ok(_) => {
                let mut o = obj;
                meta::set_resource_version(&mut o, kv.mod_revision);
                deleted.push(o);
            }
            Err(s) if s.code == 404 => {}
            Err(s) => return Err(s),
        }
    }
    let out = codec::output(call)?;
    let revision = app
        .store
        .current_revision()
        .await
        .map_err(|e| store_status(info, "", e))?;
    Ok(codec::respond_list(info, deleted, revision, None, &out))
}
