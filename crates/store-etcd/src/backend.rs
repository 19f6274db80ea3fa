//! [`EtcdStore`]: the `store::Storage` trait on etcd v3. It owns the mapping of storage keys to
//! etcd keys (`key_prefix + key`), of etcd's revision to the store revision (they are the same
//! number: etcd's cluster-wide revision is the global counter that becomes resourceVersion),
//! compare-and-swap through etcd transactions, snapshot pagination by reading every page at the
//! first page's revision, compaction, and retrying requests on another member when that is
//! safe. It must never interpret stored values and never retry a write whose outcome is unknown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use store::{Deleted, KeyValue, ListOptions, ListResult, StoreError, WatchStream};

use crate::error::{self, Op};
use crate::{EtcdConfig, EtcdError};

/// Largest gRPC message accepted from etcd (a big list page); etcd itself caps requests.
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// The etcd backend. Cheap to clone; all clones share one gRPC connection pool.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) config: EtcdConfig,
    /// `etcd://a:1,b:2`, for error messages.
    pub(crate) url: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.inner.url)
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the cluster and waits (up to `config.dial_timeout`) until a member answers a
    /// linearizable read, so that a wrong address fails at startup with the endpoints named.
    pub async fn connect(config: EtcdConfig) -> Result<Self, EtcdError> {
        let url = config.display_url();
        let options = config.connect_options()?;
        let unreachable = |reason: String| EtcdError::Unreachable {
            url: url.clone(),
            timeout_secs: config.dial_timeout.as_secs().max(1),
            hint: error::unreachable_hint(config.tls.is_some()),
            reason,
        };
        let client = Client::connect(config.client_urls(), Some(options))
            .await
            .map_err(|e| unreachable(error::describe(&e)))?;
        let store = EtcdStore {
            inner: Arc::new(Inner {
                client,
                config: config.clone(),
                url: url.clone(),
            }),
        };
        let deadline = Instant::now() + config.dial_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            // Per attempt: a member without quorum holds a linearizable read until it has one.
            let attempt = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(2));
            let probe = tokio::time::timeout(
                attempt,
                store.inner.kv().get(
                    store.inner.probe_key(),
                    Some(GetOptions::new().with_count_only()),
                ),
            )
            .await;
            let reason = match probe {
                Ok(Ok(_)) => return Ok(store),
                Ok(Err(e)) => error::describe(&e),
                Err(_) => "timed out".to_owned(),
            };
            if Instant::now() + backoff >= deadline {
                return Err(unreachable(reason));
            }
            tracing::debug!(url = %url, %reason, "etcd not answering yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// The underlying etcd client (shares this store's connections), for leader election.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }
}

impl Inner {
    pub(crate) fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// The etcd key of a storage key.
    pub(crate) fn etcd_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.config.key_prefix.len() + key.len());
        k.extend_from_slice(self.config.key_prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// A key that is never written (contains `\0`), for requests that only want a header.
    pub(crate) fn probe_key(&self) -> Vec<u8> {
        let mut k = self.etcd_key("");
        k.push(0);
        k
    }

    /// The etcd range `[start, end)` of every storage key starting with `prefix`.
    pub(crate) fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.etcd_key(prefix);
        match start.last() {
            // Every key (etcd: key "\0", range_end "\0" means all keys >= "\0").
            None => (vec![0], vec![0]),
            Some(_) => {
                // Keys are UTF-8 (never 0xFF), so incrementing the last byte cannot overflow.
                let mut end = start.clone();
                let last = end.len() - 1;
                end[last] += 1;
                (start, end)
            }
        }
    }

    /// The storage key of an etcd key, or `None` for a key outside the prefix.
    pub(crate) fn user_key(&self, etcd_key: &[u8]) -> Option<String> {
        let rest = etcd_key.strip_prefix(self.config.key_prefix.as_bytes())?;
        String::from_utf8(rest.to_vec()).ok()
    }

    pub(crate) fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = self.user_key(kv.key()).ok_or_else(|| {
            error::protocol(
                &self.url,
                "range",
                format!(
                    "key {:?} is outside the prefix {:?} or not UTF-8",
                    String::from_utf8_lossy(kv.key()),
                    self.config.key_prefix
                ),
            )
        })?;
        Ok(KeyValue {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision() as u64,
            mod_revision: kv.mod_revision() as u64,
        })
    }

    /// Runs `call` with retries on other members while that is safe for `op`, within the
    /// request timeout.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        op: Op,
        mut call: F,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.config.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(25);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(left, call(self.kv())).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(etcd_client::Error::GRpcStatus(
                        tonic::Status::deadline_exceeded(format!(
                            "no answer within {}s",
                            timeout.as_secs_f32()
                        )),
                    ));
                }
            };
            match result {
                Err(e) if error::is_retryable(&e, op) && Instant::now() + backoff < deadline => {
                    tracing::debug!(url = %self.url, error = %error::describe(&e), "retrying etcd request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn current_revision(&self) -> Result<u64, StoreError> {
        let probe = self.probe_key();
        let resp = self
            .retry(Op::Read, |mut kv| {
                let probe = probe.clone();
                async move {
                    kv.get(probe, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await
            .map_err(|e| error::backend(&self.url, "read the current revision", &e))?;
        header_revision(&self.url, "range", resp.header())
    }

    /// The revision etcd compacted to, learned from a watch that starts before it (etcd has no
    /// other API for it in v3.4). Only called after etcd said a revision was compacted.
    pub(crate) async fn compacted_revision(&self) -> u64 {
        let probe = async {
            let mut watch = self
                .client
                .watch_client()
                .watch(
                    self.probe_key(),
                    Some(etcd_client::WatchOptions::new().with_start_revision(1)),
                )
                .await
                .ok()?;
            while let Ok(Some(resp)) = watch.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision() as u64);
                }
                if resp.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(3), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    async fn expired(&self, requested: u64) -> StoreError {
        StoreError::Expired {
            requested,
            compacted: self.compacted_revision().await,
        }
    }

    async fn future(&self, requested: u64) -> StoreError {
        match self.current_revision().await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(e) => e,
        }
    }

    /// Runs a write transaction. `Ok(None)` means etcd did not say whether it applied the
    /// write (see [`error::is_ambiguous`]); the caller reads the key to find out. That answer is
    /// only given before `deadline`; later an unknown outcome is an error.
    async fn txn(
        &self,
        what: &str,
        txn: Txn,
        deadline: Instant,
    ) -> Result<Option<TxnResponse>, StoreError> {
        let result = self
            .retry(Op::Write, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await;
        match result {
            Ok(resp) => Ok(Some(resp)),
            Err(e) if error::is_ambiguous(&e) && Instant::now() < deadline => {
                tracing::warn!(url = %self.url, %what, error = %error::describe(&e), "etcd write outcome unknown; reading the key to resolve it");
                Ok(None)
            }
            Err(e) => Err(error::backend(&self.url, what, &e)),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        validate_key(key)?;
        let etcd_key = self.etcd_key(key);
        let mut resp = self
            .retry(Op::Read, |mut kv| {
                let etcd_key = etcd_key.clone();
                async move { kv.get(etcd_key, None).await }
            })
            .await
            .map_err(|e| error::backend(&self.url, &format!("get {key}"), &e))?;
        resp.take_kvs()
            .first()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    /// After a delete of `key` at `expected` with an unknown outcome found the key gone: the
    /// deletion (with its previous value) is the key's first change after `expected`.
    async fn find_delete(&self, key: &str, expected: u64) -> Result<Deleted, StoreError> {
        let what = format!("delete {key}");
        let lookup = async {
            let mut watch = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .watch(
                    self.etcd_key(key),
                    Some(
                        etcd_client::WatchOptions::new()
                            .with_start_revision(expected as i64 + 1)
                            .with_prev_key(),
                    ),
                )
                .await
                .map_err(|e| error::backend(&self.url, &what, &e))?;
            loop {
                let resp = watch
                    .message()
                    .await
                    .map_err(|e| error::backend(&self.url, &what, &e))?
                    .ok_or_else(|| error::protocol(&self.url, &what, "the watch closed".into()))?;
                if resp.compact_revision() > 0 {
                    return Err(error::protocol(
                        &self.url,
                        &what,
                        "the delete's outcome is unknown and its history was compacted".into(),
                    ));
                }
                let Some(event) = resp.events().first() else {
                    continue;
                };
                return match (event.event_type(), event.prev_kv(), event.kv()) {
                    (etcd_client::EventType::Delete, Some(prev), Some(kv)) => Ok(Deleted {
                        item: self.key_value(prev)?,
                        revision: kv.mod_revision() as u64,
                    }),
                    // Someone else changed the key first, so this delete's compare failed.
                    _ => Err(StoreError::NotFound {
                        key: key.to_owned(),
                    }),
                };
            }
        };
        match tokio::time::timeout(self.config.request_timeout, lookup).await {
            Ok(result) => result,
            Err(_) => Err(error::protocol(
                &self.url,
                &what,
                "the delete's outcome is unknown and its event did not arrive in time".into(),
            )),
        }
    }

    /// Delete `key` if its mod revision is `expected`, resolving unknown outcomes.
    async fn delete_at(&self, key: &str, expected: u64) -> Result<Deleted, StoreError> {
        let what = format!("delete {key}");
        let deadline = Instant::now() + self.config.request_timeout;
        let k = self.etcd_key(key);
        loop {
            let txn = Txn::new()
                .when([
                    Compare::create_revision(k.clone(), CompareOp::Greater, 0),
                    Compare::mod_revision(k.clone(), CompareOp::Equal, expected as i64),
                ])
                .and_then([TxnOp::delete(
                    k.clone(),
                    Some(DeleteOptions::new().with_prev_key()),
                )])
                .or_else([TxnOp::get(k.clone(), None)]);
            let current = match self.txn(&what, txn, deadline).await? {
                Some(resp) if resp.succeeded() => {
                    let revision = header_revision(&self.url, "txn", resp.header())?;
                    let prev = resp.op_responses().into_iter().find_map(|r| match r {
                        TxnOpResponse::Delete(mut d) => d.take_prev_kvs().into_iter().next(),
                        _ => None,
                    });
                    let Some(prev) = prev else {
                        return Err(error::protocol(
                            &self.url,
                            &what,
                            "the delete returned no previous value".into(),
                        ));
                    };
                    return Ok(Deleted {
                        item: self.key_value(&prev)?,
                        revision,
                    });
                }
                Some(resp) => else_kvs(&resp)
                    .first()
                    .map(|kv| self.key_value(kv))
                    .transpose()?,
                None => match self.get(key).await? {
                    // Gone: either this delete was applied or another one was.
                    None => return self.find_delete(key, expected).await,
                    Some(kv) if kv.mod_revision == expected => continue,
                    other => other,
                },
            };
            return Err(match current {
                None => StoreError::NotFound {
                    key: key.to_owned(),
                },
                Some(kv) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: kv.mod_revision,
                },
            });
        }
    }
}

fn header_revision(
    url: &str,
    what: &str,
    header: Option<&etcd_client::ResponseHeader>,
) -> Result<u64, StoreError> {
    match header {
        Some(h) if h.revision() > 0 => Ok(h.revision() as u64),
        _ => Err(error::protocol(
            url,
            what,
            "response has no revision header".into(),
        )),
    }
}

/// The key-values of the `or_else` read of a failed transaction.
fn else_kvs(resp: &TxnResponse) -> Vec<etcd_client::KeyValue> {
    resp.op_responses()
        .into_iter()
        .find_map(|r| match r {
            TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
            _ => None,
        })
        .unwrap_or_default()
}

fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument(
            "storage key is empty; keys look like /registry/<group>/<resource>/...".into(),
        ));
    }
    if key.contains('\0') {
        return Err(StoreError::InvalidArgument(format!(
            "storage key {:?} contains a NUL byte, which etcd keys of berth never hold",
            key.replace('\0', "\\0")
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl store::Storage for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let inner = &self.inner;
        let (default_start, end) = inner.range(prefix);
        let (revision, start) = match &opts.continue_token {
            Some(t) => {
                let (rev, start) = store::decode_continue(prefix, t)?;
                (rev, inner.etcd_key(&start))
            }
            None => (opts.revision.unwrap_or(0), default_start),
        };
        let mut options = GetOptions::new()
            .with_range(end)
            .with_revision(revision as i64);
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            options = options.with_limit(limit.min(i64::MAX as u64) as i64);
        }
        let result = inner
            .retry(Op::Read, |mut kv| {
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) if error::is_compacted(&e) => return Err(inner.expired(revision).await),
            Err(e) if error::is_future_revision(&e) => return Err(inner.future(revision).await),
            Err(e) => return Err(error::backend(&inner.url, &format!("list {prefix}"), &e)),
        };
        let snapshot = match revision {
            0 => header_revision(&inner.url, "range", resp.header())?,
            r => r,
        };
        let more = resp.more();
        let items = resp
            .take_kvs()
            .iter()
            .map(|kv| inner.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let continue_token = match (more, items.last()) {
            (true, Some(last)) => Some(store::encode_continue(prefix, &last.key, snapshot)),
            _ => None,
        };
        Ok(ListResult {
            items,
            revision: snapshot,
            continue_token,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        validate_key(key)?;
        let inner = &self.inner;
        let what = format!("create {key}");
        let deadline = Instant::now() + inner.config.request_timeout;
        let k = inner.etcd_key(key);
        // Set once a previous attempt may have been applied: finding our own value then means
        // it was (values of API objects carry a uid and timestamps, so they do not repeat).
        let mut unsure = false;
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(k.clone(), value.to_vec(), None)])
                .or_else([TxnOp::get(k.clone(), None)]);
            let existing = match inner.txn(&what, txn, deadline).await? {
                Some(resp) if resp.succeeded() => {
                    return header_revision(&inner.url, "txn", resp.header());
                }
                Some(resp) => else_kvs(&resp)
                    .first()
                    .map(|kv| inner.key_value(kv))
                    .transpose()?,
                None => {
                    unsure = true;
                    inner.get(key).await?
                }
            };
            match existing {
                // Deleted between the compare and the read, or never written: try again.
                None => continue,
                Some(kv)
                    if unsure && kv.value == value && kv.create_revision == kv.mod_revision =>
                {
                    return Ok(kv.mod_revision);
                }
                Some(kv) => {
                    return Err(StoreError::AlreadyExists {
                        key: key.to_owned(),
                        revision: kv.mod_revision,
                    });
                }
            }
        }
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: u64,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        let inner = &self.inner;
        let what = format!("update {key}");
        let deadline = Instant::now() + inner.config.request_timeout;
        let k = inner.etcd_key(key);
        let mut unsure = false;
        loop {
            let txn = Txn::new()
                .when([
                    Compare::create_revision(k.clone(), CompareOp::Greater, 0),
                    Compare::mod_revision(
                        k.clone(),
                        CompareOp::Equal,
                        expected_mod_revision as i64,
                    ),
                ])
                .and_then([TxnOp::put(k.clone(), value.to_vec(), None)])
                .or_else([TxnOp::get(k.clone(), None)]);
            let current = match inner.txn(&what, txn, deadline).await? {
                Some(resp) if resp.succeeded() => {
                    return header_revision(&inner.url, "txn", resp.header());
                }
                Some(resp) => else_kvs(&resp)
                    .first()
                    .map(|kv| inner.key_value(kv))
                    .transpose()?,
                None => {
                    unsure = true;
                    match inner.get(key).await? {
                        Some(kv) if kv.mod_revision == expected_mod_revision => continue,
                        other => other,
                    }
                }
            };
            return match current {
                None => Err(StoreError::NotFound {
                    key: key.to_owned(),
                }),
                Some(kv)
                    if unsure && kv.value == value && kv.mod_revision > expected_mod_revision =>
                {
                    Ok(kv.mod_revision)
                }
                Some(kv) => Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expected_mod_revision,
                    current: kv.mod_revision,
                }),
            };
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<Deleted, StoreError> {
        validate_key(key)?;
        if let Some(expected) = expected_mod_revision {
            return self.inner.delete_at(key, expected).await;
        }
        // Unconditional: delete the revision just read, so that an unknown outcome can be
        // resolved, and retry when another writer got in between.
        loop {
            let Some(current) = self.inner.get(key).await? else {
                return Err(StoreError::NotFound {
                    key: key.to_owned(),
                });
            };
            match self.inner.delete_at(key, current.mod_revision).await {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError> {
        crate::watch::open(Arc::clone(&self.inner), prefix, from_revision).await
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let result = inner
            .retry(Op::Write, |mut kv| async move {
                kv.compact(
                    revision as i64,
                    Some(CompactionOptions::new().with_physical()),
                )
                .await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already compacted at or beyond `revision`: the history is gone as asked.
            Err(e) if error::is_compacted(&e) => Ok(()),
            Err(e) if error::is_future_revision(&e) => Err(inner.future(revision).await),
            Err(e) => Err(error::backend(
                &inner.url,
                &format!("compact to revision {revision}"),
                &e,
            )),
        }
    }
}

/// A wrong endpoint must fail with the endpoints named; exercised against a closed port.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_to_closed_port_names_the_endpoints() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut config = EtcdConfig::from_url(&format!("etcd://127.0.0.1:{port}")).unwrap();
        config.dial_timeout = Duration::from_millis(600);
        let err = EtcdStore::connect(config).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("etcd://127.0.0.1:{port}"))
                && err.contains("no etcd member answered")
                && err.contains("check that etcd is running"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn prefix_range_stays_inside_the_key_prefix() {
        // No connection is made by building the client lazily; only the key mapping is used.
        let config = EtcdConfig::from_url("etcd://127.0.0.1:1")
            .unwrap()
            .with_key_prefix("/tenant-a");
        let client = Client::connect(config.client_urls(), None).await.unwrap();
        let inner = Inner {
            client,
            url: config.display_url(),
            config,
        };
        assert_eq!(inner.etcd_key("/registry/x"), b"/tenant-a/registry/x");
        let (start, end) = inner.range("/registry/core/pods/default/");
        assert_eq!(start, b"/tenant-a/registry/core/pods/default/");
        assert_eq!(end, b"/tenant-a/registry/core/pods/default0");
        let (start, end) = inner.range("");
        assert_eq!(
            (start.as_slice(), end.as_slice()),
            (&b"/tenant-a"[..], &b"/tenant-b"[..])
        );
        assert_eq!(
            inner.user_key(b"/tenant-a/registry/x").as_deref(),
            Some("/registry/x")
        );
        assert_eq!(inner.user_key(b"/tenant-b/registry/x"), None);
    }
}
