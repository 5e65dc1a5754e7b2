//! The Raft log and vote, kept in a [`KvEngine`].
//!
//! Durability: `append` reports the entries written (the callback) and
//! `save_vote` returns only after the engine's flush has reached disk —
//! sled on its own flushes only every 500 ms.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::engine::{KvEngine, KvTree, Pair};
use crate::{NodeId, TypeConfig};

const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged";
const COMMITTED: &[u8] = b"committed";

/// The log (entries by index) and its metadata (vote, last purged id).
#[derive(Clone)]
pub struct LogStore<E: KvEngine> {
    logs: E::Tree,
    meta: E::Tree,
    /// Bytes of entries appended since this process started (shared by
    /// clones); the node compares it against its log budget.
    appended: Arc<AtomicU64>,
}

impl<E: KvEngine> LogStore<E> {
    pub fn new(engine: &E) -> Result<LogStore<E>, StorageError<NodeId>> {
        let open = |name| {
            engine
                .open_tree(name)
                .map_err(|e| StorageError::from(StorageIOError::read_logs(&e)))
        };
        Ok(LogStore {
            logs: open("raft_log")?,
            meta: open("raft_meta")?,
            appended: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The running count of bytes appended to the log.
    pub fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended.clone()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageIOError<NodeId>> {
        match self.meta.get(key).map_err(|e| StorageIOError::read(&e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageIOError::read(&e)),
        }
    }
}

/// Log keys: the index, big-endian so byte order is index order.
fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl<E: KvEngine> RaftLogReader<TypeConfig> for LogStore<E> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.checked_add(1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        let rows: Vec<Pair> = match end {
            Some(end) if end <= start => Ok(Vec::new()),
            Some(end) => self.logs.range(&key(start), &key(end)),
            // past every 8-byte key
            None => self.logs.range(&key(start), &[0xff; 9]),
        }
        .map_err(|e| StorageIOError::read_logs(&e))?;
        rows.iter()
            .map(|(_, v)| {
                serde_json::from_slice::<Entry<TypeConfig>>(v)
                    .map_err(|e| StorageError::from(StorageIOError::read_logs(&e)))
            })
            .collect()
    }
}

impl<E: KvEngine> RaftLogStorage<TypeConfig> for LogStore<E> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let last = match self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(&e))?
        {
            Some((_, v)) => {
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.meta
            .insert(VOTE, bytes)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.meta
            .flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta(VOTE)?)
    }

    /// Kept so a restarted node re-applies what was committed before it
    /// stopped, and answers DNS from that state even before it hears from a
    /// leader. Not flushed on its own: a lagging value only means less is
    /// re-applied at start-up, and the next append's flush carries it.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(COMMITTED, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            self.appended
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.logs
                .insert(&key(entry.log_id.index), bytes)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        // only what is on disk may be reported as written
        let flushed = self.logs.flush().await;
        match flushed {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                callback.log_io_completed(Err(io));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.logs
            .remove_range(&key(log_id.index), &[0xff; 9])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.logs
            .flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // record the purge point first: entries at or before it are ignored
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        self.meta
            .insert(LAST_PURGED, bytes)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.meta
            .flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.logs
            .remove_range(&key(0), &key(log_id.index.saturating_add(1)))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
