//! The storage engine seam: the few ordered key-value operations the Raft
//! log needs, behind Meridian's own traits, with one adapter per engine.
//!
//! Two engines: [`crate::journal::Journal`], Meridian's own, durable and
//! checksummed, which new stores use; and [`Sled`], the engine the design
//! first named, kept for stores it already holds. sled 0.34 is not durable
//! (see the journal's docs for the evidence), so a node on a sled store
//! says so at every start. Nothing outside this module and the journal
//! names either.

use std::future::Future;

/// Why the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store's files are damaged: what was acknowledged cannot be
    /// vouched for.
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    /// Reading or writing failed.
    #[error("storage I/O: {0}")]
    Io(String),
    /// Another process holds the store.
    #[error("the store is in use: {0}")]
    Locked(String),
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A storage engine holding named trees.
pub trait KvEngine: Clone + Send + Sync + 'static {
    type Tree: KvTree;
    fn open_tree(&self, name: &str) -> Result<Self::Tree, EngineError>;
}

/// One ordered map of byte keys to byte values.
pub trait KvTree: Clone + Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError>;
    /// Removes the keys in `from..to`.
    fn remove_range(&self, from: &[u8], to: &[u8]) -> Result<(), EngineError>;
    /// The entries in `from..to`, in key order.
    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, EngineError>;
    /// The entry with the greatest key.
    fn last(&self) -> Result<Option<Pair>, EngineError>;
    /// Resolves once everything written so far is on disk.
    fn flush(&self) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The sled adapter.
#[derive(Clone)]
pub struct Sled {
    db: sled::Db,
}

impl Sled {
    /// Opens (or creates) a sled database in `path`. One per process.
    pub fn open(path: &std::path::Path) -> Result<Sled, EngineError> {
        sled::open(path).map(|db| Sled { db }).map_err(|e| {
            let message = format!("cannot open {}: {e}", path.display());
            match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    EngineError::Locked(message)
                }
                sled::Error::Io(_) => EngineError::Io(message),
                _ => EngineError::Corrupt(message),
            }
        })
    }
}

fn err(e: sled::Error) -> EngineError {
    match e {
        sled::Error::Io(_) => EngineError::Io(e.to_string()),
        _ => EngineError::Corrupt(e.to_string()),
    }
}

/// A sled tree.
#[derive(Clone)]
pub struct SledTree(sled::Tree);

impl KvEngine for Sled {
    type Tree = SledTree;

    fn open_tree(&self, name: &str) -> Result<SledTree, EngineError> {
        self.db.open_tree(name).map(SledTree).map_err(err)
    }
}

impl KvTree for SledTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.0.get(key).map(|v| v.map(|v| v.to_vec())).map_err(err)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.0.insert(key, value).map(|_| ()).map_err(err)
    }

    fn remove_range(&self, from: &[u8], to: &[u8]) -> Result<(), EngineError> {
        let mut batch = sled::Batch::default();
        for kv in self.0.range(from..to) {
            let (k, _) = kv.map_err(err)?;
            batch.remove(k);
        }
        self.0.apply_batch(batch).map_err(err)
    }

    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, EngineError> {
        self.0
            .range(from..to)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err))
            .collect()
    }

    fn last(&self) -> Result<Option<Pair>, EngineError> {
        self.0
            .last()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(err)
    }

    fn flush(&self) -> impl Future<Output = Result<(), EngineError>> + Send {
        let tree = self.0.clone();
        async move { tree.flush_async().await.map(|_| ()).map_err(err) }
    }
}
