//! Watches on etcd: the translation of an etcd watch (with previous values) into
//! `store::WatchStream`, the up-front compaction check that turns a too-old start revision into
//! `StoreError::Expired` (HTTP 410), and transparent resumption: when the member serving the
//! watch dies or the gRPC stream breaks, the stream re-opens the etcd watch from the revision
//! after the last delivered event (on any member), so the consumer sees no gap and no duplicate.
//! It must never skip an event, deliver one twice, or keep going after a compaction overtook it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{EventType, GetOptions, WatchOptions};
use futures::stream;
use store::{EventKind, StoreError, WatchEvent, WatchStream};

use crate::backend::{Inner, MAX_MESSAGE};
use crate::error;

/// Why an etcd watch could not be (re-)established.
enum Establish {
    /// The start revision was compacted away.
    Expired { compacted: u64 },
    /// Anything else; retried when resuming.
    Failed(String),
}

struct State {
    inner: Arc<Inner>,
    prefix: String,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The etcd start revision of the next (re-)established watch: last delivered + 1.
    next: i64,
    stream: Option<etcd_client::WatchStream>,
    pending: VecDeque<Result<WatchEvent, StoreError>>,
    done: bool,
}

/// Opens a watch of `prefix` delivering every change with a revision above `from_revision`.
pub(crate) async fn open(
    inner: Arc<Inner>,
    prefix: &str,
    from_revision: u64,
) -> Result<WatchStream, StoreError> {
    // etcd accepts a watch starting at the compaction revision itself, but the storage contract
    // says history at or below it is gone: a read at `from_revision` answers exactly that.
    if from_revision > 0 {
        let probe = inner.probe_key();
        let checked = inner
            .retry(error::Op::Read, |mut kv| {
                let probe = probe.clone();
                async move {
                    kv.get(
                        probe,
                        Some(
                            GetOptions::new()
                                .with_revision(from_revision as i64)
                                .with_count_only(),
                        ),
                    )
                    .await
                }
            })
            .await;
        match checked {
            Ok(_) => {}
            Err(e) if error::is_future_revision(&e) => {}
            Err(e) if error::is_compacted(&e) => {
                return Err(StoreError::Expired {
                    requested: from_revision,
                    compacted: inner.compacted_revision().await,
                });
            }
            Err(e) => {
                return Err(error::backend(
                    &inner.url,
                    &format!("watch {prefix} from revision {from_revision}"),
                    &e,
                ));
            }
        }
    }
    let (start, end) = inner.range(prefix);
    let mut state = State {
        inner,
        prefix: prefix.to_owned(),
        start,
        end,
        next: from_revision as i64 + 1,
        stream: None,
        pending: VecDeque::new(),
        done: false,
    };
    match state.establish().await {
        Ok(s) => state.stream = Some(s),
        Err(Establish::Expired { compacted }) => {
            return Err(StoreError::Expired {
                requested: from_revision,
                compacted,
            });
        }
        Err(Establish::Failed(reason)) => {
            return Err(StoreError::Unavailable {
                backend: state.inner.url.clone(),
                reason: format!("watch {prefix} from revision {from_revision}: {reason}"),
            });
        }
    }
    Ok(Box::pin(stream::unfold(state, |mut state| async move {
        let item = state.next_item().await?;
        Some((item, state))
    })))
}

impl State {
    /// Opens the etcd watch at `self.next` and waits for etcd to confirm it.
    async fn establish(&self) -> Result<etcd_client::WatchStream, Establish> {
        let options = WatchOptions::new()
            .with_range(self.end.clone())
            .with_start_revision(self.next)
            .with_prev_key();
        let connect = async {
            let mut client = self
                .inner
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE);
            let mut watch = client
                .watch(self.start.clone(), Some(options))
                .await
                .map_err(|e| Establish::Failed(error::describe(&e)))?;
            match watch.message().await {
                Ok(Some(resp)) if resp.compact_revision() > 0 => Err(Establish::Expired {
                    compacted: resp.compact_revision() as u64,
                }),
                Ok(Some(resp)) if resp.canceled() => Err(Establish::Failed(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                ))),
                Ok(Some(resp)) if resp.created() => Ok(watch),
                Ok(Some(_)) => Err(Establish::Failed(
                    "etcd answered the watch request without confirming it".into(),
                )),
                Ok(None) => Err(Establish::Failed("the watch stream closed".into())),
                Err(e) => Err(Establish::Failed(error::describe(&e))),
            }
        };
        match tokio::time::timeout(self.inner.config.request_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(Establish::Failed(format!(
                "no answer within {}s",
                self.inner.config.request_timeout.as_secs_f32()
            ))),
        }
    }

    /// The next item of the storage stream, or `None` once it is finished.
    async fn next_item(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Some(item) = self.pending.pop_front() {
                if matches!(item, Err(StoreError::Expired { .. })) {
                    self.pending.clear();
                    self.done = true;
                }
                return Some(item);
            }
            if self.done {
                return None;
            }
            let Some(watch) = self.stream.as_mut() else {
                match self.establish().await {
                    Ok(s) => {
                        tracing::info!(url = %self.inner.url, prefix = %self.prefix, revision = self.next, "etcd watch resumed");
                        self.stream = Some(s);
                        backoff = Duration::from_millis(100);
                    }
                    Err(Establish::Expired { compacted }) => self.expire(compacted),
                    Err(Establish::Failed(reason)) => {
                        tracing::warn!(url = %self.inner.url, prefix = %self.prefix, revision = self.next, %reason, "etcd watch cannot resume yet; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
                continue;
            };
            match watch.message().await {
                Ok(Some(resp)) => {
                    if resp.compact_revision() > 0 {
                        self.expire(resp.compact_revision() as u64);
                        continue;
                    }
                    for event in resp.events() {
                        self.push(event);
                    }
                    if resp.canceled() {
                        tracing::warn!(url = %self.inner.url, prefix = %self.prefix, reason = %resp.cancel_reason(), "etcd cancelled the watch; resuming");
                        self.stream = None;
                    }
                }
                Ok(None) => {
                    tracing::warn!(url = %self.inner.url, prefix = %self.prefix, "etcd watch stream closed; resuming");
                    self.stream = None;
                }
                Err(e) => {
                    tracing::warn!(url = %self.inner.url, prefix = %self.prefix, error = %error::describe(&e), "etcd watch stream failed; resuming");
                    self.stream = None;
                }
            }
        }
    }

    fn expire(&mut self, compacted: u64) {
        self.stream = None;
        self.pending.push_back(Err(StoreError::Expired {
            requested: (self.next - 1).max(0) as u64,
            compacted,
        }));
    }

    fn push(&mut self, event: &etcd_client::Event) {
        let Some(kv) = event.kv() else { return };
        let revision = kv.mod_revision();
        // A resumed watch starts after the last delivered revision.
        self.next = revision + 1;
        let Some(key) = self.inner.user_key(kv.key()) else {
            return;
        };
        let item = match event.event_type() {
            EventType::Put => Ok(WatchEvent {
                kind: if kv.create_revision() == kv.mod_revision() {
                    EventKind::Added
                } else {
                    EventKind::Modified
                },
                key,
                value: Bytes::copy_from_slice(kv.value()),
                revision: revision as u64,
            }),
            EventType::Delete => match event.prev_kv() {
                Some(prev) => Ok(WatchEvent {
                    kind: EventKind::Deleted,
                    key,
                    value: Bytes::copy_from_slice(prev.value()),
                    revision: revision as u64,
                }),
                // etcd drops the previous value when its revision was compacted: the consumer
                // cannot be told what was deleted and must re-list.
                None => Err(StoreError::Expired {
                    requested: (revision - 1) as u64,
                    compacted: (revision - 1) as u64,
                }),
            },
        };
        self.pending.push_back(item);
    }
}
