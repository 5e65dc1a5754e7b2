//! The journal: Meridian's own durable storage engine behind the
//! [`KvEngine`] seam, for the Raft log and vote.
//!
//! Why not sled alone: sled 0.34 "flushes" with `sync_file_range`, which
//! flushes neither the disk's write cache nor file metadata, writes large
//! values to blob files that it never syncs at all
//! (`pagecache/blob_io.rs`, `write_blob`), and, given a damaged file,
//! recovers to an earlier state without a word. A Raft node that forgets
//! what it acknowledged can lose committed writes.
//!
//! # Format
//!
//! One file, `journal`: a 4 KiB header with two slots, then records.
//!
//! - A record is `len: u32, crc32: u32, body` where the body is
//!   `op: u8, tree: u8, key_len: u16, key, value`: op 1 inserts the value,
//!   op 2 removes the keys in `key..value`.
//! - A header slot is `magic, seq: u64, durable_len: u64, crc32`. The
//!   slots are written in turn, so a torn header write leaves the other.
//!
//! # Durability
//!
//! `flush` appends the pending records, `fdatasync`s, then writes the
//! next header slot with the new durable length and `fdatasync`s again.
//! Only then is anything acknowledged. At open, every record up to the
//! durable length must be whole and match its checksum, and the file must
//! be at least that long; anything else is [`EngineError`] corruption and
//! the node refuses to start. Bytes past the durable length were never
//! acknowledged (a crash between the two syncs) and are dropped.
//!
//! The trees live in memory (the Raft log is bounded by snapshots and the
//! log byte budget); the file is rewritten without dead records when it
//! grows past twice the live data.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::engine::{EngineError, KvEngine, KvTree, Pair};

const MAGIC: &[u8; 8] = b"MRDJRNL1";
const HEADER: u64 = 4096;
const SLOT: usize = 8 + 8 + 8 + 4;
const INSERT: u8 = 1;
const REMOVE_RANGE: u8 = 2;
/// The largest record: far above any log entry the routes accept.
const MAX_RECORD: u32 = 256 << 20;

/// A journal-backed engine; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: File,
    /// An exclusive lock on `journal.lock`, held while the engine lives:
    /// one process per store.
    _lock: nix::fcntl::Flock<File>,
    /// Tree names, by their number in records.
    names: Vec<String>,
    trees: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Records not yet written.
    pending: Vec<u8>,
    /// Bytes of records in the file that are known durable.
    durable_len: u64,
    seq: u64,
    /// Bytes the live entries take, for compaction.
    live: u64,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("{}: {what}", path.display()))
}

fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Io(format!("{}: {e}", path.display()))
}

fn slot(seq: u64, durable_len: u64) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&seq.to_le_bytes());
    s[16..24].copy_from_slice(&durable_len.to_le_bytes());
    let crc = crc32fast::hash(&s[..24]);
    s[24..].copy_from_slice(&crc.to_le_bytes());
    s
}

fn read_slot(s: &[u8]) -> Option<(u64, u64)> {
    if &s[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(s[24..28].try_into().ok()?);
    if crc32fast::hash(&s[..24]) != crc {
        return None;
    }
    Some((
        u64::from_le_bytes(s[8..16].try_into().ok()?),
        u64::from_le_bytes(s[16..24].try_into().ok()?),
    ))
}

fn record(op: u8, tree: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let key_len = u16::try_from(key.len()).expect("keys are short");
    let mut body = Vec::with_capacity(4 + key.len() + value.len());
    body.push(op);
    body.push(tree);
    body.extend_from_slice(&key_len.to_le_bytes());
    body.extend_from_slice(key);
    body.extend_from_slice(value);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).expect("bounded").to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

impl Journal {
    /// Opens (or creates) the journal in directory `dir`, checking every
    /// acknowledged record.
    pub fn open(dir: &Path) -> Result<Journal, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join("journal.lock");
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                EngineError::Locked(format!(
                    "{}: {e}: another meridian process is using this data_dir",
                    lock_path.display()
                ))
            })?;
        let path = dir.join("journal");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        let mut inner = Inner {
            path: path.clone(),
            file,
            _lock: lock,
            names: Vec::new(),
            trees: Vec::new(),
            pending: Vec::new(),
            durable_len: 0,
            seq: 0,
            live: 0,
        };
        if len == 0 {
            inner.write_header(0)?;
            sync_dir(dir)?;
        } else {
            inner.replay(len)?;
        }
        Ok(Journal {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl Inner {
    fn write_header(&mut self, durable_len: u64) -> Result<(), EngineError> {
        let seq = self.seq + 1;
        let offset = if seq.is_multiple_of(2) {
            0
        } else {
            SLOT as u64
        };
        let path = self.path.clone();
        let len = self.file.metadata().map_err(|e| io(&path, e))?.len();
        if len < HEADER {
            self.file.set_len(HEADER).map_err(|e| io(&path, e))?;
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.write_all(&slot(seq, durable_len)))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(&path, e))?;
        self.seq = seq;
        self.durable_len = durable_len;
        Ok(())
    }

    fn replay(&mut self, len: u64) -> Result<(), EngineError> {
        let path = self.path.clone();
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_end(&mut bytes))
            .map_err(|e| io(&path, e))?;
        if bytes.len() < HEADER as usize {
            return Err(corrupt(&path, "shorter than its header"));
        }
        let slots = [read_slot(&bytes[..SLOT]), read_slot(&bytes[SLOT..2 * SLOT])];
        let Some((seq, durable)) = slots.into_iter().flatten().max_by_key(|(seq, _)| *seq) else {
            return Err(corrupt(&path, "neither header slot is intact"));
        };
        self.seq = seq;
        let end = HEADER
            .checked_add(durable)
            .ok_or_else(|| corrupt(&path, "impossible durable length"))?;
        if (bytes.len() as u64) < end {
            return Err(corrupt(
                &path,
                format!(
                    "{} bytes of acknowledged records, but the file holds only {}: it was truncated",
                    durable,
                    bytes.len() as u64 - HEADER
                ),
            ));
        }
        let mut at = HEADER as usize;
        let end = end as usize;
        while at < end {
            let offset = at;
            let header = bytes
                .get(at..at + 8)
                .filter(|_| at + 8 <= end)
                .ok_or_else(|| corrupt(&path, format!("a record at byte {offset} is cut short")))?;
            let body_len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            let body_end = at + 8 + body_len as usize;
            if body_len > MAX_RECORD || body_end > end || body_len < 4 {
                return Err(corrupt(
                    &path,
                    format!("the record at byte {offset} has an impossible length"),
                ));
            }
            let body = &bytes[at + 8..body_end];
            if crc32fast::hash(body) != crc {
                return Err(corrupt(
                    &path,
                    format!("the record at byte {offset} does not match its checksum"),
                ));
            }
            self.apply(body)
                .map_err(|m| corrupt(&path, format!("the record at byte {offset}: {m}")))?;
            at = body_end;
        }
        self.durable_len = durable;
        // what follows was never acknowledged: drop it
        if (bytes.len() as u64) > HEADER + durable {
            self.file
                .set_len(HEADER + durable)
                .map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    /// Applies one checked record body to the trees.
    fn apply(&mut self, body: &[u8]) -> Result<(), String> {
        let (op, tree) = (body[0], usize::from(body[1]));
        let key_len = usize::from(u16::from_le_bytes([body[2], body[3]]));
        let key = body
            .get(4..4 + key_len)
            .ok_or("a key longer than its record")?
            .to_vec();
        let value = body[4 + key_len..].to_vec();
        if op == 0 {
            // a tree's name: key is the name, its number the tree byte
            let name = String::from_utf8(key).map_err(|_| "a tree name that is not UTF-8")?;
            if tree != self.names.len() {
                return Err("tree numbers out of order".into());
            }
            self.names.push(name);
            self.trees.push(BTreeMap::new());
            return Ok(());
        }
        let t = self.trees.get_mut(tree).ok_or("an unknown tree")?;
        match op {
            INSERT => {
                self.live += (key.len() + value.len()) as u64;
                if let Some(old) = t.insert(key, value) {
                    self.live -= old.len() as u64;
                }
            }
            REMOVE_RANGE => {
                let doomed: Vec<Vec<u8>> = t.range(key..value).map(|(k, _)| k.clone()).collect();
                for k in doomed {
                    if let Some(v) = t.remove(&k) {
                        self.live -= (k.len() + v.len()) as u64;
                    }
                }
            }
            _ => return Err(format!("unknown operation {op}")),
        }
        Ok(())
    }

    fn log(&mut self, op: u8, tree: u8, key: &[u8], value: &[u8]) {
        let r = record(op, tree, key, value);
        self.apply(&r[8..])
            .expect("a record this process made applies");
        self.pending.extend_from_slice(&r);
    }

    fn tree(&mut self, name: &str) -> u8 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return u8::try_from(i).expect("few trees");
        }
        let i = u8::try_from(self.names.len()).expect("few trees");
        self.log(0, i, name.as_bytes(), &[]);
        i
    }

    /// Writes what is pending and makes it durable (see the module docs).
    fn flush(&mut self) -> Result<(), EngineError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let start = HEADER + self.durable_len;
        let pending = std::mem::take(&mut self.pending);
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.write_all(&pending))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(&path, e))?;
        self.write_header(self.durable_len + pending.len() as u64)?;
        if self.durable_len > 2 * self.live + (1 << 20) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with the live entries only: a new file, synced,
    /// renamed over the old one.
    fn compact(&mut self) -> Result<(), EngineError> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let tmp = dir.join("journal.compacting");
        let mut body = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            let t = u8::try_from(i).expect("few trees");
            body.extend_from_slice(&record(0, t, name.as_bytes(), &[]));
            for (k, v) in &self.trees[i] {
                body.extend_from_slice(&record(INSERT, t, k, v));
            }
        }
        let mut header = vec![0u8; HEADER as usize];
        let seq = self.seq + 1;
        let offset = if seq.is_multiple_of(2) { 0 } else { SLOT };
        header[offset..offset + SLOT].copy_from_slice(&slot(seq, body.len() as u64));
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&header)
            .and_then(|()| f.write_all(&body))
            .and_then(|()| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        sync_dir(&dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        self.seq = seq;
        self.durable_len = body.len() as u64;
        Ok(())
    }
}

/// One tree of a [`Journal`].
#[derive(Clone)]
pub struct JournalTree {
    journal: Journal,
    tree: u8,
}

impl KvEngine for Journal {
    type Tree = JournalTree;

    fn open_tree(&self, name: &str) -> Result<JournalTree, EngineError> {
        let tree = self.lock().tree(name);
        Ok(JournalTree {
            journal: self.clone(),
            tree,
        })
    }
}

impl KvTree for JournalTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let j = self.journal.lock();
        Ok(j.trees[usize::from(self.tree)].get(key).cloned())
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.journal.lock().log(INSERT, self.tree, key, &value);
        Ok(())
    }

    fn remove_range(&self, from: &[u8], to: &[u8]) -> Result<(), EngineError> {
        self.journal.lock().log(REMOVE_RANGE, self.tree, from, to);
        Ok(())
    }

    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, EngineError> {
        let j = self.journal.lock();
        Ok(j.trees[usize::from(self.tree)]
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self) -> Result<Option<Pair>, EngineError> {
        let j = self.journal.lock();
        Ok(j.trees[usize::from(self.tree)]
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn flush(&self) -> impl Future<Output = Result<(), EngineError>> + Send {
        let journal = self.journal.clone();
        async move {
            // the syncs block: off the async threads
            tokio::task::spawn_blocking(move || journal.lock().flush())
                .await
                .map_err(|e| EngineError::Io(format!("the flush task failed: {e}")))?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(t: &JournalTree) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(t.flush())
            .unwrap();
    }

    #[test]
    fn what_was_flushed_survives_and_what_was_not_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            let log = j.open_tree("log").unwrap();
            let meta = j.open_tree("meta").unwrap();
            for i in 0u64..100 {
                log.insert(&i.to_be_bytes(), vec![i as u8; 100]).unwrap();
            }
            meta.insert(b"vote", b"v1".to_vec()).unwrap();
            log.remove_range(&0u64.to_be_bytes(), &10u64.to_be_bytes())
                .unwrap();
            flushed(&log);
            // written, never flushed: as if the process died here
            log.insert(&100u64.to_be_bytes(), vec![1]).unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        let log = j.open_tree("log").unwrap();
        let meta = j.open_tree("meta").unwrap();
        assert_eq!(meta.get(b"vote").unwrap(), Some(b"v1".to_vec()));
        let all = log.range(&0u64.to_be_bytes(), &[0xff; 9]).unwrap();
        assert_eq!(all.len(), 90);
        assert_eq!(all[0].0, 10u64.to_be_bytes());
        assert_eq!(log.last().unwrap().unwrap().0, 99u64.to_be_bytes());
    }

    #[test]
    fn damage_to_acknowledged_records_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            let log = j.open_tree("log").unwrap();
            for i in 0u64..50 {
                log.insert(&i.to_be_bytes(), vec![7; 200]).unwrap();
            }
            flushed(&log);
        }
        let path = dir.path().join("journal");
        let clean = std::fs::read(&path).unwrap();
        // a byte flipped in the middle
        let mut bytes = clean.clone();
        bytes[HEADER as usize + 3000] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("does not match its checksum") || err.contains("impossible length"),
            "{err}"
        );
        // cut short
        std::fs::write(&path, &clean[..clean.len() - 100]).unwrap();
        let err = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        // both header slots overwritten
        let mut bytes = clean.clone();
        bytes[..2 * SLOT].fill(0xAA);
        std::fs::write(&path, &bytes).unwrap();
        let err = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("neither header slot"), "{err}");
        // intact again: opens
        std::fs::write(&path, &clean).unwrap();
        assert!(Journal::open(dir.path()).is_ok());
    }

    #[test]
    fn compaction_keeps_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            let log = j.open_tree("log").unwrap();
            for round in 0u64..30 {
                for i in 0u64..20 {
                    log.insert(&i.to_be_bytes(), vec![round as u8; 10_000])
                        .unwrap();
                }
                flushed(&log);
            }
        }
        let size = std::fs::metadata(dir.path().join("journal")).unwrap().len();
        assert!(
            size < 2 * 20 * 10_100 + (1 << 20) + HEADER,
            "compacted: {size}"
        );
        let j = Journal::open(dir.path()).unwrap();
        let log = j.open_tree("log").unwrap();
        assert_eq!(
            log.get(&5u64.to_be_bytes()).unwrap(),
            Some(vec![29; 10_000])
        );
    }
}
