//! Object lifecycle work that upstream runs as controllers inside kube-controller-manager, run here as tasks of
//! the API server process: the default namespaces and `default` ServiceAccounts at first start, namespace
//! deletion (delete the content, then drop the `kubernetes` finalizer and the namespace), and garbage
//! collection by ownerReferences (background, foreground with `foregroundDeletion`, and orphan). Sweeps read each
//! resource separately and step around an object the store cannot decrypt (logging its key), so one bad Secret
//! never stops them. The tasks act through the same handler functions as clients do; they must never write around
//! validation or CAS.
//!
//! Several API servers on one etcd would each sweep the whole store: CAS keeps that safe but multiplies the work,
//! so the tasks run only on the holder of the etcd election [`ELECTION`] ([`Election::Etcd`]); the others campaign
//! and take over when the holder's lease lapses (a killed server) or it resigns (a stopped one). On SQLite a data
//! dir has one server, which always leads ([`Election::Sole`]). A server never sweeps without leading: losing the
//! lease cancels the pass in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use api::resources::{self, ResourceInfo};
use store::{ListOptions, StoreError};

use crate::app::App;
use crate::codec;
use crate::handlers::{self, DeleteOptions};
use crate::meta;

/// Finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer of an orphaning deletion.
pub const ORPHAN: &str = "orphan";
/// Namespaces created at first start.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Delay before retrying a lifecycle pass that hit an error.
const RETRY: Duration = Duration::from_secs(1);

pub(crate) fn ns_info() -> &'static ResourceInfo {
    resources::lookup("", "v1", "namespaces").expect("namespaces are registered")
}

/// Creates the default namespaces (and their default ServiceAccounts) when absent.
pub async fn bootstrap(app: &App) -> Result<(), api::Status> {
    for ns in DEFAULT_NAMESPACES {
        if handlers::load(app, ns_info(), None, ns).await?.is_none() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match handlers::create_object(app, ns_info(), None, obj, false).await {
                Ok(_) => {}
                Err(s) if s.code == 409 => {}
                Err(s) => return Err(s),
            }
        }
        ensure_default_service_account(app, ns).await;
    }
    Ok(())
}

/// Creates the `default` ServiceAccount of a namespace if it does not exist (upstream's serviceaccounts
/// controller). Failures are logged: the namespace itself is already created.
pub async fn ensure_default_service_account(app: &App, namespace: &str) {
    let Some(info) = resources::lookup("", "v1", "serviceaccounts") else {
        return;
    };
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}});
    // Boxed: namespace creation calls this, and this calls the create path again.
    match Box::pin(handlers::create_object(
        app,
        info,
        Some(namespace),
        sa,
        false,
    ))
    .await
    {
        Ok(_) => {}
        Err(s) if s.code == 409 => {}
        Err(s) => {
            tracing::warn!(namespace, error = %s, "could not create the default service account")
        }
    }
}

/// The etcd election whose holder runs the lifecycle tasks (every server on an etcd campaigns in it, so its
/// candidates are the running servers of that datastore).
pub const ELECTION: &str = "berth-lifecycle";
/// The lease of [`ELECTION`]: a killed holder is replaced after at most this long (client-go's default).
const ELECTION_TTL: Duration = Duration::from_secs(15);

/// Which server of a datastore runs the lifecycle tasks.
#[derive(Debug)]
pub enum Election {
    /// The only server of its datastore (SQLite): it always leads.
    Sole,
    /// One of possibly several servers on an etcd: it runs the tasks while it holds [`ELECTION`].
    Etcd {
        store: store_etcd::EtcdStore,
        /// This server in the election (host name and listen address), for logs and `candidates`.
        identity: String,
    },
}

impl Election {
    /// The election of a server listening on `listen` on etcd `store`, with this machine's host name.
    pub fn etcd(store: store_etcd::EtcdStore, listen: std::net::SocketAddr) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "berth".into());
        Election::Etcd {
            store,
            identity: format!("{host}_{listen}"),
        }
    }
}

/// Runs namespace finalization and garbage collection until shutdown, on etcd only while this server holds
/// [`ELECTION`].
pub async fn run(app: Arc<App>, election: Election) {
    match election {
        Election::Sole => run_tasks(&app).await,
        Election::Etcd { store, identity } => run_elected(&app, &store, &identity).await,
    }
}

/// Campaign, run the tasks while leading, campaign again after losing the lease; resign on shutdown.
async fn run_elected(app: &App, store: &store_etcd::EtcdStore, identity: &str) {
    loop {
        // Stopping while campaigning revokes the lease: the server leaves the election at once.
        let campaign = store
            .elect_until(ELECTION, identity, ELECTION_TTL, app.shutdown.cancelled())
            .await;
        let leadership = match campaign {
            Ok(Some(leadership)) => leadership,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle election failed, retrying");
                tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        tracing::info!(%identity, election = ELECTION, "leading the lifecycle tasks (namespace deletion, garbage collection)");
        tokio::select! {
            _ = run_tasks(app) => {
                // Shutdown: hand over at once rather than after the lease's TTL.
                if let Err(e) = leadership.resign().await {
                    tracing::warn!(error = %e, "could not resign the lifecycle election; another server takes over when the lease expires");
                }
                return;
            }
            _ = leadership.lost() => {
                tracing::warn!(%identity, election = ELECTION, "lost the lifecycle election; stopped the lifecycle tasks, campaigning again");
            }
        }
    }
}

/// The lifecycle tasks, restarted after errors, until shutdown.
async fn run_tasks(app: &App) {
    loop {
        if app.shutdown.is_cancelled() {
            return;
        }
        // A pass against an unreachable datastore can take long: shutdown must not wait for it.
        let result = tokio::select! {
            _ = app.shutdown.cancelled() => return,
            result = run_once(app) => result,
        };
        match result {
            Ok(()) if app.shutdown.is_cancelled() => return,
            Ok(()) => tracing::warn!("lifecycle watch ended, restarting"),
            Err(e) => tracing::warn!(error = %e, "lifecycle controller restarting"),
        }
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn run_once(app: &App) -> Result<(), StoreError> {
    let rev = app.store.current_revision().await?;
    // Start with a full pass (covers deletions that happened while the server was down), then follow changes.
    full_pass(app).await?;
    let mut stream = app.store.watch("/registry/", rev).await?;
    let mut sweep = tokio::time::interval(Duration::from_secs(30));
    sweep.tick().await;
    // Changes of dependents (e.g. one dropping blockOwnerDeletion) may unblock an owner; they are batched into at
    // most one extra pass per second so a burst of controller writes never costs a pass each.
    let mut debounce = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return Ok(()),
            _ = sweep.tick() => { full_pass(app).await?; dirty = false; }
            _ = debounce.tick(), if dirty => { full_pass(app).await?; dirty = false; }
            ev = stream.next() => match ev {
                None => return Ok(()),
                Some(Err(e @ StoreError::Expired { .. })) => return Err(e),
                Some(Err(e)) => tracing::warn!(error = %e, "lifecycle watch event unreadable"),
                Some(Ok(ev)) => {
                    let is_delete = ev.kind == store::EventKind::Deleted;
                    // Most writes neither delete nor carry owners: skip parsing those (stored objects are written
                    // by `codec::to_stored`, which puts every key verbatim in quotes).
                    let mentions = |key: &[u8]| ev.value.windows(key.len()).any(|w| w == key);
                    if !is_delete && !mentions(b"\"deletionTimestamp\"") && !mentions(b"\"ownerReferences\"") {
                        continue;
                    }
                    let Ok(obj) = codec::parse_stored(&ev.value) else { continue };
                    if is_delete || meta::is_deleting(&obj) {
                        react(app, &obj, is_delete).await?;
                    }
                    if !meta::owner_refs(&obj).is_empty() {
                        dirty = true;
                    }
                }
            }
        }
    }
}

async fn react(app: &App, obj: &Value, deleted: bool) -> Result<(), StoreError> {
    let Some(info) = info_of(obj) else {
        return Ok(());
    };
    if info.kind == "Namespace" && !deleted {
        finalize_namespace(app, meta::name(obj)).await?;
    }
    if deleted {
        collect_dependents(app, obj).await?;
    } else {
        process_deleting_owner(app, info, obj).await?;
    }
    Ok(())
}

fn info_of(obj: &Value) -> Option<&'static ResourceInfo> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    resources::by_api_version_kind(api_version, kind)
}

/// Characters that can follow a prefix inside a storage key: DNS names and the `/` separator.
const KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-./";
/// How deep [`all_objects`] narrows a failing prefix before it gives up on the rest of it.
const MAX_NARROWING: usize = 300;

/// Every stored object under `prefix`, parsed. An object the store cannot return (an undecryptable Secret fails
/// the whole list that contains it) is skipped with a warning naming its key: the prefix is narrowed one key
/// character at a time around the failing key, so every other object is still seen and one bad Secret never stops
/// garbage collection or namespace deletion.
async fn all_objects(app: &App, prefix: &str) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    let mut pending = vec![prefix.to_string()];
    while let Some(p) = pending.pop() {
        match app.store.list(&p, ListOptions::default()).await {
            Ok(page) => out.extend(
                page.items
                    .iter()
                    .filter_map(|kv| codec::parse_stored(&kv.value).ok()),
            ),
            Err(StoreError::Decrypt { key, .. }) => {
                if p.len() >= prefix.len() + MAX_NARROWING || !key.starts_with(&p) {
                    tracing::warn!(prefix = %p, %key, "skipping keys under a prefix that keeps failing to decrypt");
                    continue;
                }
                // The prefix may itself be a key: read it alone (it is the failing one when it equals `key`).
                match app.store.get(&p).await {
                    Ok(Some(kv)) => out.extend(codec::parse_stored(&kv.value).ok()),
                    Ok(None) => {}
                    Err(StoreError::Decrypt { key, .. }) => tracing::warn!(
                        %key,
                        "skipping an object the store cannot decrypt; restore the encryption key it was written with"
                    ),
                    Err(e) => return Err(e),
                }
                for c in KEY_CHARS {
                    pending.push(format!("{p}{}", *c as char));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn full_pass(app: &App) -> Result<(), StoreError> {
    tracing::debug!("lifecycle sweep");
    let mut objects = Vec::new();
    for info in resources::all() {
        objects.extend(all_objects(app, &info.storage_prefix()).await?);
    }
    let uids: HashSet<&str> = objects.iter().map(meta::uid).collect();
    for obj in &objects {
        let Some(info) = info_of(obj) else { continue };
        if meta::is_deleting(obj) {
            if info.kind == "Namespace" {
                finalize_namespace(app, meta::name(obj)).await?;
            }
            process_deleting_owner(app, info, obj).await?;
        }
        let refs = meta::owner_refs(obj);
        if !refs.is_empty()
            && refs.iter().all(|(uid, _)| !uids.contains(uid.as_str()))
            && !meta::is_deleting(obj)
        {
            // Every owner is gone: a dangling dependent is collected in the background.
            delete_quietly(app, info, obj, "Background").await;
        }
    }
    Ok(())
}

async fn delete_quietly(app: &App, info: &ResourceInfo, obj: &Value, propagation: &str) {
    let opts = DeleteOptions {
        propagation: Some(propagation.into()),
        ..Default::default()
    };
    let ns = meta::meta_str(obj, "namespace");
    match handlers::delete_object(app, info, ns, meta::name(obj), &opts).await {
        Ok(_) => tracing::info!(
            resource = info.plural,
            namespace = ns.unwrap_or(""),
            name = meta::name(obj),
            propagation,
            "garbage collected"
        ),
        Err(s) if s.code == 404 => {}
        Err(s) => {
            tracing::warn!(resource = info.plural, name = meta::name(obj), error = %s, "garbage collection failed")
        }
    }
}

/// Objects that list `owner_uid` among their owners, in the owner's namespace (or everywhere for a
/// cluster-scoped owner).
async fn dependents_of(app: &App, owner: &Value) -> Result<Vec<Value>, StoreError> {
    let uid = meta::uid(owner);
    if uid.is_empty() {
        return Ok(Vec::new());
    }
    let ns = meta::meta_str(owner, "namespace");
    let mut out = Vec::new();
    for info in resources::all() {
        let prefix = match (info.namespaced, ns) {
            (true, Some(ns)) => info.storage_namespace_prefix(ns),
            (false, Some(_)) => continue,
            _ => info.storage_prefix(),
        };
        for obj in all_objects(app, &prefix).await? {
            if meta::owner_refs(&obj).iter().any(|(u, _)| u == uid) {
                out.push(obj);
            }
        }
    }
    Ok(out)
}

/// After an owner is gone: delete its dependents in the background.
async fn collect_dependents(app: &App, owner: &Value) -> Result<(), StoreError> {
    let uid = meta::uid(owner).to_string();
    for dep in dependents_of(app, owner).await? {
        let Some(info) = info_of(&dep) else { continue };
        let others_alive = meta::owner_refs(&dep).iter().any(|(u, _)| *u != uid);
        if others_alive {
            // Upstream only removes the reference when other owners remain.
            remove_owner_ref(app, info, &dep, &uid).await;
        } else {
            delete_quietly(app, info, &dep, "Background").await;
        }
    }
    Ok(())
}

/// An owner with deletionTimestamp: handle its `orphan` and `foregroundDeletion` finalizers.
async fn process_deleting_owner(
    app: &App,
    info: &ResourceInfo,
    owner: &Value,
) -> Result<(), StoreError> {
    let finalizers = meta::finalizers(owner);
    if finalizers.iter().any(|f| f == ORPHAN) {
        let uid = meta::uid(owner).to_string();
        for dep in dependents_of(app, owner).await? {
            if let Some(dinfo) = info_of(&dep) {
                remove_owner_ref(app, dinfo, &dep, &uid).await;
            }
        }
        remove_finalizer(app, info, owner, ORPHAN).await;
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        let uid = meta::uid(owner).to_string();
        let mut blocking = false;
        for dep in dependents_of(app, owner).await? {
            let Some(dinfo) = info_of(&dep) else { continue };
            let blocks = meta::owner_refs(&dep).iter().any(|(u, b)| *u == uid && *b);
            if blocks {
                blocking = true;
            }
            if !meta::is_deleting(&dep) {
                delete_quietly(app, dinfo, &dep, "Foreground").await;
            }
        }
        if !blocking {
            remove_finalizer(app, info, owner, FOREGROUND).await;
        }
    }
    Ok(())
}

async fn remove_owner_ref(app: &App, info: &ResourceInfo, obj: &Value, owner_uid: &str) {
    let ns = meta::meta_str(obj, "namespace").map(str::to_string);
    let name = meta::name(obj).to_string();
    edit(app, info, ns.as_deref(), &name, |o| {
        if let Some(refs) = o
            .get_mut("metadata")
            .and_then(|m| m.get_mut("ownerReferences"))
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            if refs.is_empty() {
                meta::meta_mut(o).remove("ownerReferences");
            }
        }
    })
    .await;
}

async fn remove_finalizer(app: &App, info: &ResourceInfo, obj: &Value, finalizer: &str) {
    let ns = meta::meta_str(obj, "namespace").map(str::to_string);
    let name = meta::name(obj).to_string();
    edit(app, info, ns.as_deref(), &name, |o| {
        let f: Vec<String> = meta::finalizers(o)
            .into_iter()
            .filter(|x| x != finalizer)
            .collect();
        meta::set_finalizers(o, &f);
    })
    .await;
}

/// Read-modify-write of one object through the update path (CAS, deletion completion), retried on conflict.
async fn edit(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    f: impl Fn(&mut Value),
) {
    for _ in 0..16 {
        let Ok(Some((old, rev))) = handlers::load(app, info, ns, name).await else {
            return;
        };
        let mut new = old.clone();
        f(&mut new);
        if new == old {
            return;
        }
        meta::prepare_update(&mut new, &old);
        match handlers::commit_update(app, info, ns, name, new, rev).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!(resource = info.plural, name, error = %e, "lifecycle update failed");
                return;
            }
        }
    }
}

/// Deletes the content of a terminating namespace; once it is empty, drops the `kubernetes` finalizer and with
/// it the namespace.
async fn finalize_namespace(app: &App, ns: &str) -> Result<(), StoreError> {
    for info in resources::all().iter().filter(|r| r.namespaced) {
        for obj in all_objects(app, &info.storage_namespace_prefix(ns)).await? {
            if !meta::is_deleting(&obj) {
                delete_quietly(app, info, &obj, "Background").await;
            }
        }
    }
    // Re-check (immediate deletions may already have emptied it), also counting objects `all_objects` skipped.
    {
        let mut left = 0;
        for info in resources::all().iter().filter(|r| r.namespaced) {
            let page = app
                .store
                .list(
                    &info.storage_namespace_prefix(ns),
                    ListOptions {
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await;
            left += match page {
                Ok(page) => page.items.len(),
                // An object that cannot be decrypted is still there: the namespace waits for it.
                Err(StoreError::Decrypt { .. }) => 1,
                Err(e) => return Err(e),
            };
        }
        if left > 0 {
            return Ok(());
        }
    }
    edit(app, ns_info(), None, ns, |o| {
        if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("finalizers");
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::app::tests::{TestApp, send, test_app};
    use axum::http::StatusCode;
    use serde_json::{Value, json};
    use std::time::Duration;

    async fn running() -> TestApp {
        let t = test_app().await;
        tokio::spawn(super::run(t.app.clone(), super::Election::Sole));
        t
    }

    async fn post(t: &TestApp, path: &str, obj: Value) -> (StatusCode, Value) {
        let (code, _, body) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            path,
            &[("content-type", "application/json")],
            obj.to_string().into_bytes(),
        )
        .await;
        (code, serde_json::from_slice(&body).unwrap())
    }

    async fn get(t: &TestApp, path: &str) -> (StatusCode, Value) {
        let (code, _, body) = send(&t.app, Some(&t.admin), "GET", path, &[], vec![]).await;
        (code, serde_json::from_slice(&body).unwrap())
    }

    async fn delete(t: &TestApp, path: &str, policy: &str) -> StatusCode {
        let body = json!({"propagationPolicy": policy})
            .to_string()
            .into_bytes();
        send(
            &t.app,
            Some(&t.admin),
            "DELETE",
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .0
    }

    async fn eventually_gone(t: &TestApp, path: &str) {
        for _ in 0..100 {
            if get(t, path).await.0 == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} still exists: {}", get(t, path).await.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_undecryptable_secret_is_skipped_and_garbage_collection_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A Secret written with a key that is then lost: every list containing it fails to decrypt.
            let store = crate::storage::open(dir.path()).unwrap();
            for name in ["a-bad", "z-good"] {
                let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name,
                    "namespace": "default", "uid": format!("uid-{name}")}, "data": {"k": "dg=="}});
                store
                    .create(
                        &format!("/registry/core/secrets/default/{name}"),
                        secret.to_string().into(),
                    )
                    .await
                    .unwrap();
            }
        }
        std::fs::remove_file(dir.path().join("encryption.key")).unwrap();
        let t = crate::app::tests::test_app_in(dir).await;
        // Readable Secrets written after the key change, one owned by a Secret that does not exist.
        let ghost = json!({"metadata": {"name": "m-orphan", "ownerReferences": [{"apiVersion": "v1",
            "kind": "Secret", "name": "gone", "uid": "no-such-uid"}]}, "stringData": {"k": "v"}});
        assert_eq!(
            post(&t, "/api/v1/namespaces/default/secrets", ghost)
                .await
                .0,
            StatusCode::CREATED
        );
        let objects = super::all_objects(&t.app, "/registry/core/secrets/")
            .await
            .unwrap();
        let mut names: Vec<&str> = objects.iter().map(crate::meta::name).collect();
        names.sort();
        // z-good was written under the lost key too; only the orphan (new key) reads.
        assert_eq!(names, ["m-orphan"]);
        tokio::spawn(super::run(t.app.clone(), super::Election::Sole));
        eventually_gone(&t, "/api/v1/namespaces/default/secrets/m-orphan").await;
        // The sweep goes on: a dangling ConfigMap created now is collected too.
        let dangling = json!({"metadata": {"name": "late", "ownerReferences": [{"apiVersion": "v1",
            "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}]}});
        post(&t, "/api/v1/namespaces/default/configmaps", dangling).await;
        eventually_gone(&t, "/api/v1/namespaces/default/configmaps/late").await;
    }

    async fn owner_and_dependent(t: &TestApp, block: bool) -> String {
        let (code, owner) = post(
            t,
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "owner"}}),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
        let dep = json!({"metadata": {"name": "dep", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "owner", "uid": uid, "blockOwnerDeletion": block}]}});
        assert_eq!(
            post(t, "/api/v1/namespaces/default/configmaps", dep)
                .await
                .0,
            StatusCode::CREATED
        );
        uid
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_deletion_collects_dependents_after_the_owner() {
        let t = running().await;
        owner_and_dependent(&t, false).await;
        assert_eq!(
            delete(
                &t,
                "/api/v1/namespaces/default/configmaps/owner",
                "Background"
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            get(&t, "/api/v1/namespaces/default/configmaps/owner")
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        eventually_gone(&t, "/api/v1/namespaces/default/configmaps/dep").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn foreground_deletion_waits_for_blocking_dependents() {
        let t = running().await;
        owner_and_dependent(&t, true).await;
        assert_eq!(
            delete(
                &t,
                "/api/v1/namespaces/default/configmaps/owner",
                "Foreground"
            )
            .await,
            StatusCode::ACCEPTED
        );
        eventually_gone(&t, "/api/v1/namespaces/default/configmaps/dep").await;
        eventually_gone(&t, "/api/v1/namespaces/default/configmaps/owner").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
        let t = running().await;
        owner_and_dependent(&t, false).await;
        delete(&t, "/api/v1/namespaces/default/configmaps/owner", "Orphan").await;
        eventually_gone(&t, "/api/v1/namespaces/default/configmaps/owner").await;
        let (code, dep) = get(&t, "/api/v1/namespaces/default/configmaps/dep").await;
        assert_eq!(code, StatusCode::OK);
        assert!(dep["metadata"].get("ownerReferences").is_none(), "{dep}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
        let t = running().await;
        post(
            &t,
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
        )
        .await;
        assert_eq!(
            delete(&t, "/api/v1/namespaces/default/configmaps/f", "Background").await,
            StatusCode::ACCEPTED
        );
        let (code, obj) = get(&t, "/api/v1/namespaces/default/configmaps/f").await;
        assert_eq!(code, StatusCode::OK);
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        let patch = json!({"metadata": {"finalizers": null}})
            .to_string()
            .into_bytes();
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "PATCH",
            "/api/v1/namespaces/default/configmaps/f",
            &[("content-type", "application/merge-patch+json")],
            patch,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            get(&t, "/api/v1/namespaces/default/configmaps/f").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn namespace_deletion_terminates_then_removes_content_and_namespace() {
        let t = running().await;
        post(
            &t,
            "/api/v1/namespaces",
            json!({"metadata": {"name": "gone"}}),
        )
        .await;
        assert_eq!(
            get(&t, "/api/v1/namespaces/gone/serviceaccounts/default")
                .await
                .0,
            StatusCode::OK
        );
        post(
            &t,
            "/api/v1/namespaces/gone/configmaps",
            json!({"metadata": {"name": "c"}}),
        )
        .await;
        let (_, _, body) = send(
            &t.app,
            Some(&t.admin),
            "DELETE",
            "/api/v1/namespaces/gone",
            &[],
            vec![],
        )
        .await;
        let ns: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        eventually_gone(&t, "/api/v1/namespaces/gone").await;
        assert_eq!(
            get(&t, "/api/v1/namespaces/gone/configmaps/c").await.0,
            StatusCode::NOT_FOUND
        );
        let (code, status) = post(
            &t,
            "/api/v1/namespaces/gone/configmaps",
            json!({"metadata": {"name": "c"}}),
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(status["message"], "namespaces \"gone\" not found");
    }

    #[tokio::test]
    async fn generate_name_gets_a_five_character_suffix() {
        let t = test_app().await;
        let (code, obj) = post(
            &t,
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"generateName": "gen-"}}),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        assert_eq!(obj["metadata"]["generation"], 1);
    }

    #[tokio::test]
    async fn pods_bound_to_a_node_delete_gracefully_and_unbound_pods_at_once() {
        let t = test_app().await;
        let pod = |name: &str, node: Option<&str>| {
            let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "www.3rdregistry.com/janedoe/awesomeapp:v1"}]}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            p
        };
        post(
            &t,
            "/api/v1/namespaces/default/pods",
            pod("bound", Some("node-1")),
        )
        .await;
        post(&t, "/api/v1/namespaces/default/pods", pod("free", None)).await;
        assert_eq!(
            delete(&t, "/api/v1/namespaces/default/pods/free", "Background").await,
            StatusCode::OK
        );
        assert_eq!(
            get(&t, "/api/v1/namespaces/default/pods/free").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            delete(&t, "/api/v1/namespaces/default/pods/bound", "Background").await,
            StatusCode::ACCEPTED
        );
        let (code, obj) = get(&t, "/api/v1/namespaces/default/pods/bound").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        // Its logs are asked of the node, which was never registered here (as upstream: the Node is not found).
        let (code, log) = get(&t, "/api/v1/namespaces/default/pods/bound/log").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(log["message"], "nodes \"node-1\" not found");
    }
}
