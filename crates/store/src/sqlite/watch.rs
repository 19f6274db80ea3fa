//! Watch streams of a SQLite store: replay retained history from the `events` table, then follow
//! the writer's broadcast, with a revision cursor that guarantees order, no gap and no duplicate.
//!
//! The broadcast receiver is subscribed *before* the first history read, so a write committed
//! between the read and the switch to live is seen in one of the two and de-duplicated by the
//! cursor. A receiver that lags (the consumer is slower than the writers and the broadcast buffer
//! overflowed) does not block anyone: it switches back to replaying from the database at its
//! cursor; only if that history was compacted meanwhile does the stream end with
//! [`StoreError::Expired`] so the client re-lists (kube's 410). It must never block the writer.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use super::reader::ReadSide;
use super::writer::EventBatch;
use crate::range::prefix_range;
use crate::{StoreError, WatchEvent, WatchStream};

/// Events read from history per database round trip.
const REPLAY_BATCH: usize = 512;

struct WatchState {
    reads: Arc<ReadSide>,
    prefix: String,
    start: Vec<u8>,
    end: Vec<u8>,
    rx: broadcast::Receiver<EventBatch>,
    /// Every event with a revision at or below this was delivered or did not match.
    cursor: u64,
    replaying: bool,
    buffer: VecDeque<WatchEvent>,
    done: bool,
}

impl WatchState {
    async fn replay_once(&mut self) -> Result<(), StoreError> {
        let (start, end, cursor) = (self.start.clone(), self.end.clone(), self.cursor);
        let (events, seen) = self
            .reads
            .with_conn(move |conn, reads| reads.history(conn, &start, &end, cursor, REPLAY_BATCH))
            .await?;
        let caught_up = events.len() < REPLAY_BATCH;
        self.buffer.extend(events);
        self.cursor = self.cursor.max(seen);
        if caught_up {
            self.replaying = false;
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.replaying {
                if let Err(e) = self.replay_once().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.revision <= self.cursor {
                            continue;
                        }
                        self.cursor = event.revision;
                        if event.key.starts_with(&self.prefix) {
                            self.buffer.push_back(event.clone());
                        }
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        prefix = %self.prefix,
                        skipped,
                        cursor = self.cursor,
                        "watch fell behind the live buffer; replaying from history"
                    );
                    self.replaying = true;
                }
                Err(RecvError::Closed) => self.done = true,
            }
        }
    }
}

/// Start a watch: the first history batch is read before returning, so an expired
/// `from_revision` fails the call itself.
pub(crate) async fn watch(
    reads: Arc<ReadSide>,
    prefix: &str,
    from_revision: u64,
) -> Result<WatchStream, StoreError> {
    let sender = reads.events.upgrade().ok_or(StoreError::Closed)?;
    let rx = sender.subscribe();
    drop(sender);
    let (start, end) = prefix_range(prefix);
    let mut state = WatchState {
        reads,
        prefix: prefix.to_owned(),
        start,
        end,
        rx,
        cursor: from_revision,
        replaying: true,
        buffer: VecDeque::new(),
        done: false,
    };
    state.replay_once().await?;
    Ok(futures::stream::unfold(state, |mut state| async move {
        state.next().await.map(|item| (item, state))
    })
    .boxed())
}
