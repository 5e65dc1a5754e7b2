//! The Raft log and vote, kept in a [`KvEngine`].
//!
//! Durability: `append` reports the entries written (the callback) and
//! `save_vote` returns only after the engine's flush has reached disk.
//!
//! Integrity: every entry and the vote are sealed with a CRC-32 of their
//! JSON (`0xC5, crc, json`), whatever the engine; [`LogStore::verify`]
//! reads the whole store at start — each seal, each entry under its own
//! index, no gap — so a damaged store is refused rather than served.
//! (Values written before seals existed are plain JSON and still read.)

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
    /// Set when a leader asked this node to drop entries it had already
    /// committed: the cluster's states have split (see [`LogStore::truncate`]).
    diverged: Arc<std::sync::Mutex<Option<String>>>,
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
            diverged: Arc::default(),
        })
    }

    /// Why this node's log has split from its leader's, once it has.
    pub fn diverged(&self) -> Arc<std::sync::Mutex<Option<String>>> {
        self.diverged.clone()
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
            Some(bytes) => {
                let json = unseal(&bytes).map_err(|m| {
                    StorageIOError::read(&Damaged(format!("{}: {m}", String::from_utf8_lossy(key))))
                })?;
                serde_json::from_slice(json)
                    .map(Some)
                    .map_err(|e| StorageIOError::read(&e))
            }
        }
    }

    /// Reads the whole store and says what is wrong with it, if anything:
    /// a seal that does not match, an entry that does not decode or sits
    /// under another index, a gap, a vote that does not read.
    pub fn verify(&self) -> Result<(), String> {
        let vote: Result<Option<Vote<NodeId>>, _> = self.get_meta(VOTE);
        vote.map_err(|e| format!("the saved vote: {e}"))?;
        let purged: Option<LogId<NodeId>> = self
            .get_meta(LAST_PURGED)
            .map_err(|e| format!("the purge point: {e}"))?;
        let rows = self
            .logs
            .range(&key(0), &[0xff; 9])
            .map_err(|e| e.to_string())?;
        let mut expect = purged.map(|p| p.index + 1);
        for (k, v) in &rows {
            let index = <[u8; 8]>::try_from(&k[..])
                .map(u64::from_be_bytes)
                .map_err(|_| "a log key that is not an index".to_string())?;
            if purged.is_some_and(|p| index <= p.index) {
                // purged; its removal may not have reached the disk
                continue;
            }
            let json = unseal(v).map_err(|m| format!("log entry {index}: {m}"))?;
            let entry: Entry<TypeConfig> = serde_json::from_slice(json)
                .map_err(|e| format!("log entry {index} does not decode: {e}"))?;
            if entry.log_id.index != index {
                return Err(format!(
                    "log entry {index} holds entry {} instead",
                    entry.log_id.index
                ));
            }
            match expect {
                Some(want) if index != want => {
                    return Err(format!("the log jumps from entry {} to {index}", want - 1));
                }
                _ => expect = Some(index + 1),
            }
        }
        Ok(())
    }
}

/// A store that failed its checks.
#[derive(Debug)]
struct Damaged(String);

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "damaged: {}", self.0)
    }
}

impl std::error::Error for Damaged {}

/// The first byte of a sealed value.
const SEAL: u8 = 0xC5;

fn seal(json: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 5);
    out.push(SEAL);
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// The JSON inside a sealed value, if the seal matches; plain JSON (a
/// value from before seals) as it is.
fn unseal(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.first() {
        Some(&SEAL) if bytes.len() >= 5 => {
            let crc = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
            if crc32fast::hash(&bytes[5..]) == crc {
                Ok(&bytes[5..])
            } else {
                Err("does not match its checksum".into())
            }
        }
        Some(b'{' | b'n' | b'[') => Ok(bytes),
        _ => Err("is not a sealed value".into()),
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
                let json = unseal(v)
                    .map_err(|m| StorageIOError::read_logs(&Damaged(format!("log entry: {m}"))))?;
                serde_json::from_slice::<Entry<TypeConfig>>(json)
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
                let json = unseal(&v).map_err(|m| {
                    StorageIOError::read_logs(&Damaged(format!("the last log entry {m}")))
                })?;
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(json).map_err(|e| StorageIOError::read_logs(&e))?;
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
        let bytes = seal(serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?);
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
        let bytes = seal(serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?);
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
            let bytes =
                seal(serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?);
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

    /// Drops the entries from `log_id` on, which a new leader does not
    /// have. Never a committed one: a leader holds every committed entry,
    /// so a leader without one means the cluster has split (a majority
    /// lost what it acknowledged). Refusing stops this node's Raft (DNS
    /// keeps answering its state) and `status` reports the split, rather
    /// than have the node quietly forget acknowledged writes.
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let committed: Option<LogId<NodeId>> =
            self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten();
        if let Some(c) = committed.filter(|c| c.index >= log_id.index) {
            let why = format!(
                "the leader has no entry {} of term {}, which this node committed (it committed up to {}): the cluster has split",
                log_id.index, log_id.leader_id.term, c.index
            );
            tracing::error!("{why}; refusing to drop committed entries");
            *self.diverged.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
            return Err(StorageIOError::write_logs(&Damaged(why)).into());
        }
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
        let bytes = seal(serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?);
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
