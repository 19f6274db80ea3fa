//! Watch over HTTP: a chunked stream of `{"type","object"}` JSON lines (one-row Tables when a Table was asked
//! for), started from a resourceVersion (events strictly newer) or, without one, from a synthetic ADDED event per
//! current object. BOOKMARK events (carrying the revision of the last event delivered, or of the start) are sent
//! only with `allowWatchBookmarks=true`; a too-old resourceVersion ends in an ERROR event carrying a 410 `Expired`
//! Status; the stream ends at `timeoutSeconds` or server shutdown.
//! Each watcher reads the store's own watch (the store fans out), so a slow client never blocks a writer; this
//! module must never buffer unboundedly for a slow client: it drops that client instead.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use api::Status;
use api::resources::ResourceInfo;
use store::{EventKind, ListOptions, StoreError};

use crate::app::{App, Call};
use crate::codec::{self, Output, Selectors};
use crate::handlers::{HResult, store_status};
use crate::meta;

/// Upstream's `--min-request-timeout` (watches without timeoutSeconds end after about this long).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Interval of BOOKMARK events when the client allows them (shortened in unit tests so they can observe several).
const BOOKMARK_INTERVAL: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(30)
};
/// Frames buffered per watcher before it counts as unresponsive and is closed.
const WATCHER_BUFFER: usize = 1024;

fn frame(kind: &str, object: &Value) -> Bytes {
    let mut v =
        serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json serializes");
    v.push(b'\n');
    Bytes::from(v)
}

fn event_object(info: &ResourceInfo, obj: Value, rev: u64, out: Output) -> Value {
    match out {
        Output::Table => codec::table(info, vec![obj], rev, None),
        Output::Metadata => wire::table::partial_object_metadata(&obj),
        _ => obj,
    }
}

/// Serves `?watch=true` on a collection.
pub async fn watch(
    app: &App,
    call: &Call,
    info: &'static ResourceInfo,
    ns: Option<&str>,
) -> HResult {
    let out = codec::output(call)?;
    let out = if out == Output::Yaml {
        Output::Json
    } else {
        out
    };
    let selectors = Selectors::parse(call, info)?;
    let bookmarks = call.flag("allowWatchBookmarks");
    let timeout = match call.param("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| Status::bad_request(format!("timeoutSeconds: invalid value {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let prefix = match ns {
        Some(ns) => info.storage_namespace_prefix(ns),
        None => info.storage_prefix(),
    };
    let requested = match call.param("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            Status::bad_request(format!(
                "resourceVersion: Invalid value: \"{rv}\": must be a non-negative integer"
            ))
        })?),
    };
    let mut initial = Vec::new();
    let mut matched: HashSet<String> = HashSet::new();
    let from = match requested {
        Some(rv) => rv,
        None => {
            let page = app
                .store
                .list(&prefix, ListOptions::default())
                .await
                .map_err(|e| store_status(info, "", e))?;
            for kv in page.items {
                let mut obj = codec::parse_stored(&kv.value)
                    .map_err(|e| Status::internal(&format!("stored object {}: {e}", kv.key)))?;
                if selectors.matches(&obj) {
                    meta::set_resource_version(&mut obj, kv.mod_revision);
                    matched.insert(kv.key.clone());
                    initial.push(frame(
                        "ADDED",
                        &event_object(info, obj, kv.mod_revision, out),
                    ));
                }
            }
            page.revision
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(WATCHER_BUFFER);
    let stream = match app.store.watch(&prefix, from).await {
        Ok(s) => Some(s),
        Err(StoreError::Expired {
            requested,
            compacted,
        }) => {
            let status = Status::expired(requested, compacted + 1);
            let _ = tx.try_send(frame("ERROR", &status.to_value()));
            None
        }
        Err(e) => return Err(store_status(info, "", e)),
    };
    for f in initial {
        if tx.try_send(f).is_err() {
            return Err(Status::too_many_requests(
                "too many objects to start this watch; use a resourceVersion",
                1,
            ));
        }
    }
    if let Some(stream) = stream {
        let shutdown = app.shutdown.clone();
        tokio::spawn(pump(
            stream,
            tx,
            info,
            out,
            selectors,
            matched,
            requested.is_none(),
            bookmarks,
            timeout,
            from,
            shutdown,
        ));
    }
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    // Watch events are `meta.k8s.io` WatchEvent JSON whatever the object rendering; upstream labels the stream
    // with the rendering's media type.
    let ct = match out {
        Output::Table => codec::TABLE,
        Output::Metadata => codec::METADATA,
        _ => codec::JSON,
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    mut stream: store::WatchStream,
    tx: mpsc::Sender<Bytes>,
    info: &'static ResourceInfo,
    out: Output,
    selectors: Selectors,
    mut matched: HashSet<String>,
    know_initial: bool,
    bookmarks: bool,
    timeout: Duration,
    mut last_rev: u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        let frame_out = tokio::select! {
            _ = &mut deadline => break,
            _ = shutdown.cancelled() => break,
            _ = tx.closed() => break,
            _ = ticker.tick(), if bookmarks => {
                let obj = json!({"kind": info.kind, "apiVersion": info.api_version,
                    "metadata": {"resourceVersion": last_rev.to_string()}});
                Some(frame("BOOKMARK", &obj))
            }
            ev = stream.next() => match ev {
                None => break,
                Some(Err(StoreError::Expired { requested, compacted })) => {
                    Some(frame("ERROR", &Status::expired(requested, compacted + 1).to_value()))
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, resource = info.plural, "watch event could not be read");
                    Some(frame("ERROR", &Status::internal(&e.to_string()).to_value()))
                }
                Some(Ok(ev)) => {
                    last_rev = ev.revision;
                    let Ok(mut obj) = codec::parse_stored(&ev.value) else {
                        tracing::warn!(key = %ev.key, "skipping an unreadable stored object in a watch");
                        continue;
                    };
                    meta::set_resource_version(&mut obj, ev.revision);
                    let now = selectors.matches(&obj);
                    let before = matched.contains(&ev.key);
                    let kind = match (ev.kind, before, now) {
                        (EventKind::Deleted, true, _) => { matched.remove(&ev.key); Some("DELETED") }
                        (EventKind::Deleted, false, m) => (m && !know_initial).then_some("DELETED"),
                        (_, false, true) => {
                            matched.insert(ev.key.clone());
                            Some(if ev.kind == EventKind::Modified && !know_initial { "MODIFIED" } else { "ADDED" })
                        }
                        (_, true, true) => Some("MODIFIED"),
                        (_, true, false) => { matched.remove(&ev.key); Some("DELETED") }
                        (_, false, false) => None,
                    };
                    kind.map(|k| frame(k, &event_object(info, obj, ev.revision, out)))
                }
            }
        };
        let Some(f) = frame_out else { continue };
        let is_error = f.starts_with(b"{\"type\":\"ERROR\"");
        match tx.try_send(f) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    resource = info.plural,
                    "forcing watcher close due to unresponsiveness"
                );
                break;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
        if is_error {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::app::tests::{send, test_app};
    use serde_json::Value;

    fn frames(body: &[u8]) -> Vec<Value> {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    async fn create(t: &crate::app::tests::TestApp, name: &str) -> String {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
        let (_, _, resp) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await;
        let obj: Value = serde_json::from_slice(&resp).unwrap();
        obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bookmarks_come_only_when_asked_and_carry_the_latest_delivered_resource_version() {
        let t = test_app().await;
        let first = create(&t, "c0").await;
        let path = |extra: &str| {
            format!(
                "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion={first}{extra}"
            )
        };
        let app = t.app.clone();
        let admin = t.admin.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(450)).await;
            let body =
                br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c1"}}"#.to_vec();
            let (_, _, resp) = send(
                &app,
                Some(&admin),
                "POST",
                "/api/v1/namespaces/default/configmaps",
                &[("content-type", "application/json")],
                body,
            )
            .await;
            let obj: Value = serde_json::from_slice(&resp).unwrap();
            obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string()
        });
        let (_, _, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            &path("&allowWatchBookmarks=true"),
            &[],
            vec![],
        )
        .await;
        let second = later.await.unwrap();
        let events = frames(&body);
        let mut seen_added = false;
        let mut before = 0;
        let mut after = 0;
        for e in &events {
            match e["type"].as_str().unwrap() {
                "ADDED" => {
                    assert_eq!(e["object"]["metadata"]["name"], "c1");
                    seen_added = true;
                }
                "BOOKMARK" => {
                    assert_eq!(e["object"]["kind"], "ConfigMap");
                    assert_eq!(e["object"]["apiVersion"], "v1");
                    let rv = e["object"]["metadata"]["resourceVersion"].as_str().unwrap();
                    if seen_added {
                        assert_eq!(rv, second);
                        after += 1;
                    } else {
                        assert_eq!(rv, first);
                        before += 1;
                    }
                }
                other => panic!("unexpected {other} event: {e}"),
            }
        }
        assert!(seen_added && before >= 1 && after >= 1, "{events:?}");

        let (_, _, body) = send(&t.app, Some(&t.admin), "GET", &path(""), &[], vec![]).await;
        let events = frames(&body);
        assert!(
            events.iter().all(|e| e["type"] != "BOOKMARK"),
            "bookmarks without allowWatchBookmarks: {events:?}"
        );
    }
}
