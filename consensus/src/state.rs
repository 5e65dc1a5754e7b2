//! The replicated state, the commands that change it, and the openraft
//! state machine that applies them and snapshots them to files.
//!
//! Applying is a pure function of the state and the command
//! ([`ReplicatedState::apply`]), so every node that applies the same log
//! holds the same state. Each command that changes the state bumps its
//! version; a command that cannot apply (an unknown endpoint) changes
//! nothing and says why.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use meridian_config::zone::AdminState;
use meridian_config::ZoneSpec;
use meridian_probes::{HealthState, Report};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::resources::{
    self, AuditEntry, Change, Op, Refusal, RefusalKind, Resource, StoredToken, Target,
};
use crate::{NodeId, TypeConfig};

/// A change to the replicated state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Replace the whole spec (validated before it is proposed).
    ReplaceSpec(Box<ZoneSpec>),
    /// Set the spec only if the cluster has none yet (version 0): how
    /// `serve --seed` fills an empty cluster without ever overwriting one.
    SeedSpec(Box<ZoneSpec>),
    SetWeight {
        pool: String,
        endpoint: String,
        weight: u16,
    },
    SetAdminState {
        pool: String,
        endpoint: String,
        state: AdminState,
    },
    /// A probe agent's batch, stamped with the leader's clock (ms since
    /// the Unix epoch).
    Observe { at_ms: u64, report: Report },
    /// A piece, in order, of the JSON of a spec too large for one log
    /// entry (openraft gives every append one heartbeat interval, so one
    /// large entry would never replicate). Only the leader makes these.
    SpecPart { id: u64, seq: u32, text: String },
    /// The end of a spec sent in parts: it applies as `ReplaceSpec`, or as
    /// `SeedSpec` with `seed`, or, with `change`, as that change with the
    /// assembled spec as its resource (`/v1/apply`).
    SpecEnd {
        id: u64,
        parts: u32,
        seed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<Box<Change>>,
    },
    /// A change to one resource through the REST API: checked against its
    /// precondition and every rule, audited.
    Api(Box<Change>),
    /// The whole state from a backup (`meridian cluster restore`), onto a
    /// cluster without a spec, or any with `force`.
    Restore { backup: Box<Backup>, force: bool },
    /// The end of a backup sent in parts (as [`Command::SpecPart`]s):
    /// restores it as [`Command::Restore`] does.
    RestoreEnd { id: u64, parts: u32, force: bool },
    /// A new secret for DNS server cookies, made by the leader (RFC 9018:
    /// every node must make and check the same cookies); the current one
    /// becomes the previous, still accepted.
    RotateCookieSecret { at_ms: u64, secret: [u8; 16] },
}

/// What a backup file holds: the whole replicated state at a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    /// [`BACKUP_FORMAT`].
    pub format: String,
    pub version: u64,
    pub revision: u64,
    /// When it was taken (the node's clock, ms since the Unix epoch).
    pub taken_at_ms: u64,
    pub state: ReplicatedState,
}

/// The format a backup declares, checked when it is restored.
pub const BACKUP_FORMAT: &str = "meridian-backup/1";

impl Backup {
    pub fn of(state: &ReplicatedState, taken_at_ms: u64) -> Backup {
        let mut state = state.clone();
        // a spec half received belongs to no one after a restore
        state.pending_specs.clear();
        Backup {
            format: BACKUP_FORMAT.to_string(),
            version: state.version,
            revision: state.revision,
            taken_at_ms,
            state,
        }
    }

    /// What a backup must be to be restored: counters far from their
    /// limits (each restore and change adds to them) and an audit log no
    /// longer than one is kept.
    pub fn check(&self) -> Result<(), String> {
        const LIMIT: u64 = 1 << 62;
        let s = &self.state;
        for (field, v) in [
            ("version", self.version),
            ("revision", self.revision),
            ("state.version", s.version),
            ("state.revision", s.revision),
            ("state.audit_seq", s.audit_seq),
        ] {
            if v >= LIMIT {
                return Err(format!("{field} {v} is out of range (at most {LIMIT})"));
            }
        }
        if s.audit.len() > crate::resources::AUDIT_KEEP {
            return Err(format!(
                "{} audit entries; a state keeps at most {}",
                s.audit.len(),
                crate::resources::AUDIT_KEEP
            ));
        }
        Ok(())
    }

    /// Reads a backup file's text, checking its format.
    pub fn parse(text: &str) -> Result<Backup, String> {
        let b: Backup =
            serde_json::from_str(text).map_err(|e| format!("not a Meridian backup: {e}"))?;
        if b.format != BACKUP_FORMAT {
            return Err(format!(
                "a backup of format {:?}; this version reads {BACKUP_FORMAT:?}",
                b.format
            ));
        }
        Ok(b)
    }
}

/// The secrets DNS server cookies are made with (RFC 7873, 9018). They
/// stay inside the cluster: no API reads them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CookieSecrets {
    pub current: Option<[u8; 16]>,
    pub previous: Option<[u8; 16]>,
    /// When `current` was made (leader's clock, ms since the Unix epoch).
    pub rotated_at_ms: u64,
}

impl CookieSecrets {
    pub fn is_empty(&self) -> bool {
        self.current.is_none()
    }
}

/// The most text a spec sent in parts may have: the API's body limit.
pub const MAX_SPEC_TEXT: usize = meridian_config::node::MAX_SPEC_BYTES;

/// Specs being received in parts, at most: a newer one drops the oldest
/// (a leader that died half-way leaves one behind).
const MAX_PENDING_SPECS: usize = 4;

/// What applying a command did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    /// Applied; the state is now at this version.
    Applied { version: u64 },
    /// Not applied; the state is unchanged.
    Rejected { reason: String },
    /// An API change not applied, with the status it maps to; the state is
    /// unchanged.
    Refused(Refusal),
    /// A log entry with no command (leader blank, membership).
    Nothing,
}

/// Everything Meridian replicates.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicatedState {
    /// Bumped by every command that changes what DNS answers: spec changes
    /// and endpoints entering or leaving service. SOA serials follow it.
    pub version: u64,
    /// Bumped by every applied command, probe reports included (they move
    /// measured RTTs even when no verdict changes).
    #[serde(default)]
    pub revision: u64,
    pub spec: ZoneSpec,
    /// Probe votes and verdicts.
    #[serde(default)]
    pub health: HealthState,
    /// Specs arriving in parts: id → (parts so far, text so far).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pending_specs: std::collections::BTreeMap<u64, (u32, String)>,
    /// Tokens created through the API, by id: hashes only.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tokens: std::collections::BTreeMap<String, StoredToken>,
    /// The last [`AUDIT_KEEP`](crate::resources::AUDIT_KEEP) changes made
    /// through the API.
    #[serde(default)]
    /// Entries are shared, so the copy of the state each change publishes
    /// costs a pointer per entry, not the entry.
    pub audit: std::collections::VecDeque<std::sync::Arc<AuditEntry>>,
    /// The number of the last audit entry ever recorded.
    #[serde(default)]
    pub audit_seq: u64,
    /// DNS cookie secrets.
    #[serde(default, skip_serializing_if = "CookieSecrets::is_empty")]
    pub cookies: CookieSecrets,
}

impl ReplicatedState {
    /// Applies `cmd`: deterministic, no I/O.
    pub fn apply(&mut self, cmd: &Command) -> Response {
        match cmd {
            Command::SpecPart { id, seq, text } => return self.spec_part(*id, *seq, text),
            Command::SpecEnd {
                id,
                parts,
                seed,
                change,
            } => return self.spec_end(*id, *parts, *seed, change.as_deref()),
            Command::Api(change) => return self.apply_change(change),
            Command::Restore { backup, force } => return self.restore(backup, *force),
            Command::RestoreEnd { id, parts, force } => {
                return self.restore_end(*id, *parts, *force)
            }
            // changes no answer: the revision moves, the version does not
            Command::RotateCookieSecret { at_ms, secret } => {
                self.cookies = CookieSecrets {
                    current: Some(*secret),
                    previous: self.cookies.current,
                    rotated_at_ms: *at_ms,
                };
                self.revision += 1;
                return Response::Applied {
                    version: self.version,
                };
            }
            _ => {}
        }
        if let Command::Observe { at_ms, report } = cmd {
            self.revision += 1;
            if self.health.apply_report(&self.spec, *at_ms, report) {
                self.version += 1;
            }
            return Response::Applied {
                version: self.version,
            };
        }
        let result = match cmd {
            Command::ReplaceSpec(spec) => {
                self.spec = (**spec).clone();
                Ok(())
            }
            Command::SeedSpec(_) if self.version > 0 => Err(format!(
                "the cluster already has a spec (version {})",
                self.version
            )),
            Command::SeedSpec(spec) => {
                self.spec = (**spec).clone();
                Ok(())
            }
            Command::SetWeight {
                pool,
                endpoint,
                weight,
            } => self
                .endpoint_mut(pool, endpoint)
                .map(|e| e.weight = *weight),
            Command::SetAdminState {
                pool,
                endpoint,
                state,
            } => self.endpoint_mut(pool, endpoint).map(|e| e.state = *state),
            Command::Observe { .. }
            | Command::SpecPart { .. }
            | Command::SpecEnd { .. }
            | Command::RotateCookieSecret { .. }
            | Command::Restore { .. }
            | Command::RestoreEnd { .. }
            | Command::Api(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                self.health.evaluate(&self.spec);
                self.version += 1;
                self.revision += 1;
                Response::Applied {
                    version: self.version,
                }
            }
            Err(reason) => Response::Rejected { reason },
        }
    }

    /// Adds a part to a spec being received. Changes nothing DNS sees, so
    /// neither the version nor the revision moves.
    fn spec_part(&mut self, id: u64, seq: u32, text: &str) -> Response {
        if !self.pending_specs.contains_key(&id) {
            if seq != 0 {
                return Response::Rejected {
                    reason: format!("spec {id}: part {seq} without its start"),
                };
            }
            while self.pending_specs.len() >= MAX_PENDING_SPECS {
                self.pending_specs.pop_first();
            }
        }
        let entry = self.pending_specs.entry(id).or_default();
        if entry.0 != seq || entry.1.len() + text.len() > MAX_SPEC_TEXT {
            let reason = format!("spec {id}: part {seq} out of order or too large");
            self.pending_specs.remove(&id);
            return Response::Rejected { reason };
        }
        entry.0 += 1;
        entry.1.push_str(text);
        Response::Nothing
    }

    /// Applies an API change: its precondition, then the change on a copy
    /// that must pass every rule. A change that leaves the resource as it
    /// was applies without a new version or an audit entry, so a repeated
    /// `PUT` is idempotent.
    fn apply_change(&mut self, c: &Change) -> Response {
        if c.precondition != resources::Precondition::None {
            let current = resources::read(&self.spec, &self.tokens, &c.target);
            if let Err(r) = resources::check_precondition(current.as_ref(), &c.precondition) {
                return Response::Refused(r);
            }
        }
        let before = self.version;
        if let Target::Token { .. } = c.target {
            let mut tokens = self.tokens.clone();
            if let Err(r) = resources::apply_to_tokens(&mut tokens, &c.target, &c.op, c.at_ms) {
                return Response::Refused(r);
            }
            if tokens == self.tokens {
                return Response::Applied { version: before };
            }
            self.tokens = tokens;
            self.revision += 1;
        } else if let Op::PatchEndpoint { .. } = c.op {
            // a patch sets only fields no rule constrains beyond their type
            // (weight, priority, admin state): in place, without a copy
            match resources::patch_endpoint(&mut self.spec, &c.target, &c.op) {
                Err(r) => return Response::Refused(r),
                Ok(false) => return Response::Applied { version: before },
                Ok(true) => {}
            }
            self.health.evaluate(&self.spec);
            self.version += 1;
            self.revision += 1;
        } else {
            let mut spec = self.spec.clone();
            if let Err(r) = resources::apply_to_spec(&mut spec, &c.target, &c.op) {
                return Response::Refused(r);
            }
            if spec == self.spec {
                return Response::Applied { version: before };
            }
            if let Err(v) = meridian_config::zone::rules::check(&spec) {
                let kind = match c.op {
                    Op::Delete => RefusalKind::Conflict,
                    _ => RefusalKind::Invalid,
                };
                return Response::Refused(resources::refusal_of(kind, v));
            }
            self.spec = spec;
            self.health.evaluate(&self.spec);
            self.version += 1;
            self.revision += 1;
        }
        let entry = AuditEntry {
            seq: 0,
            at_ms: c.at_ms,
            actor: c.audit.actor.clone(),
            token: c.audit.token.clone(),
            action: c.audit.action.clone(),
            via: c.audit.via.clone(),
            target: c.target.to_string(),
            before,
            after: self.version,
        };
        resources::record(&mut self.audit, &mut self.audit_seq, entry);
        Response::Applied {
            version: self.version,
        }
    }

    /// Applies a spec whose parts have all arrived.
    fn spec_end(&mut self, id: u64, parts: u32, seed: bool, change: Option<&Change>) -> Response {
        let text = match self.take_parts("spec", id, parts) {
            Ok(text) => text,
            Err(refused) => return refused,
        };
        match serde_json::from_str::<ZoneSpec>(&text) {
            Ok(spec) if change.is_some() => {
                let mut c = change.cloned().expect("checked");
                c.op = Op::Put(Resource::Spec(Box::new(spec)));
                self.apply_change(&c)
            }
            Ok(spec) if seed => self.apply(&Command::SeedSpec(Box::new(spec))),
            Ok(spec) => self.apply(&Command::ReplaceSpec(Box::new(spec))),
            Err(e) => Response::Rejected {
                reason: format!("spec {id}: {e}"),
            },
        }
    }

    /// Becomes the backup's state, its version moved past both the
    /// backup's and the current one (the SOA serial only goes forward).
    /// Refused onto a cluster that has a spec, unless `force`.
    fn restore(&mut self, backup: &Backup, force: bool) -> Response {
        if backup.format != BACKUP_FORMAT {
            return Response::Rejected {
                reason: format!("a backup of format {:?}", backup.format),
            };
        }
        if self.version > 0 && !force {
            return Response::Rejected {
                reason: format!(
                    "the cluster has a state already (version {}): restore onto an empty cluster, or force",
                    self.version
                ),
            };
        }
        if let Err(reason) = backup.check() {
            return Response::Rejected { reason };
        }
        let mut state = backup.state.clone();
        state.version = self.version.max(backup.version).saturating_add(1);
        state.revision = self.revision.max(backup.revision).saturating_add(1);
        state.pending_specs = std::mem::take(&mut self.pending_specs);
        // the cluster's clock never goes back
        state.health.now_ms = state.health.now_ms.max(self.health.now_ms);
        // onto a cluster that has API tokens of its own, they stay (what it
        // revoked stays revoked); onto a rebuilt one, the backup's come back
        if !self.tokens.is_empty() {
            state.tokens = std::mem::take(&mut self.tokens);
        }
        // an audit log goes on: no sequence number is used twice
        if !self.audit.is_empty() {
            state.audit = std::mem::take(&mut self.audit);
        }
        state.audit_seq = self.audit_seq.max(state.audit_seq);
        state.health.evaluate(&state.spec);
        *self = state;
        Response::Applied {
            version: self.version,
        }
    }

    /// The text whose `parts` parts arrived under `id` (a `what`: a spec
    /// or a backup), taken out of the pending ones; refused when any is
    /// missing.
    fn take_parts(&mut self, what: &str, id: u64, parts: u32) -> Result<String, Response> {
        let Some((seen, text)) = self.pending_specs.remove(&id) else {
            return Err(Response::Rejected {
                reason: format!("{what} {id}: no parts"),
            });
        };
        if seen != parts {
            return Err(Response::Rejected {
                reason: format!("{what} {id}: {seen} of {parts} parts arrived"),
            });
        }
        Ok(text)
    }

    fn restore_end(&mut self, id: u64, parts: u32, force: bool) -> Response {
        let text = match self.take_parts("backup", id, parts) {
            Ok(text) => text,
            Err(refused) => return refused,
        };
        match Backup::parse(&text) {
            Ok(b) => self.restore(&b, force),
            Err(e) => Response::Rejected {
                reason: format!("backup {id}: {e}"),
            },
        }
    }

    fn endpoint_mut(
        &mut self,
        pool: &str,
        endpoint: &str,
    ) -> Result<&mut meridian_config::zone::Endpoint, String> {
        let p = self
            .spec
            .pools
            .get_mut(pool)
            .ok_or_else(|| format!("no pool named {pool:?}"))?;
        p.endpoints
            .iter_mut()
            .find(|e| e.id == endpoint)
            .ok_or_else(|| format!("pool {pool:?} has no endpoint {endpoint:?}"))
    }
}

/// Whether applying `cmd` handles the whole spec (a copy, every rule):
/// tens of milliseconds for a spec of megabytes.
fn heavy(cmd: &Command) -> bool {
    match cmd {
        Command::ReplaceSpec(_)
        | Command::SeedSpec(_)
        | Command::SpecEnd { .. }
        | Command::Restore { .. }
        | Command::RestoreEnd { .. } => true,
        Command::Api(c) => {
            !matches!(c.op, Op::PatchEndpoint { .. }) && !matches!(c.target, Target::Token { .. })
        }
        _ => false,
    }
}

/// Runs `f`; when `heavy` and on a multi-threaded runtime, tells the
/// runtime first, so that the tasks queued on this thread (Raft's
/// heartbeats among them) move to another instead of waiting.
fn off_the_runtime<T>(heavy: bool, f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if heavy && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Whether snapshot bytes decode to a state machine's content: checked
/// before a received snapshot is installed.
pub fn check_snapshot_data(data: &[u8]) -> Result<(), String> {
    off_the_runtime(true, || serde_json::from_slice::<Applied>(data))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Receives each new state: where the DNS server's snapshots will be built.
pub type Publisher = std::sync::Arc<dyn Fn(&ReplicatedState) + Send + Sync>;

/// A snapshot as stored in its file.
///
/// On disk: [`SNAPSHOT_MAGIC`], the meta's length (`u32`, little endian),
/// the meta as JSON, then the data as it is. Earlier releases wrote the
/// whole struct as JSON (the data an array of numbers: four times its size,
/// and seconds to parse at 10 MB); such a file is still read.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The serialized [`Applied`] state.
    data: Vec<u8>,
}

/// The first bytes of a snapshot file (see [`SnapshotFile`]).
const SNAPSHOT_MAGIC: &[u8; 8] = b"MRDNSNP1";

impl SnapshotFile {
    fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let meta = serde_json::to_vec(&self.meta)?;
        let len = u32::try_from(meta.len()).map_err(serde::ser::Error::custom)?;
        let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 4 + meta.len() + self.data.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    fn decode(mut bytes: Vec<u8>) -> Result<SnapshotFile, String> {
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else {
            // a file of an earlier release
            return serde_json::from_slice(&bytes).map_err(|e| e.to_string());
        };
        let len = rest
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("cut short before the meta's length")?;
        let start = SNAPSHOT_MAGIC.len() + 4;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= bytes.len())
            .ok_or("cut short inside the meta")?;
        let meta = serde_json::from_slice(&bytes[start..end]).map_err(|e| e.to_string())?;
        bytes.drain(..end);
        Ok(SnapshotFile { meta, data: bytes })
    }
}

/// The state machine's content, as snapshotted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: ReplicatedState,
}

/// The openraft state machine: the state in memory, snapshots as files in
/// `dir` (the latest is `current.snapshot`). After a restart the state
/// comes from the snapshot, and openraft replays the log after it.
#[derive(Clone)]
pub struct StateMachine {
    applied: Applied,
    dir: PathBuf,
    /// Called with the new state after each applied batch: the seam the
    /// DNS server's snapshots will be published through.
    on_change: Option<Publisher>,
    /// The last applied index and the version it left, updated together
    /// after every applied batch: so a reader sees a matching pair.
    applied_at: AppliedAt,
    /// Held while the snapshot file is written, with the last log id the
    /// file holds: a snapshot built in openraft's background task and one
    /// installed from the leader may be written at once, and the older
    /// must never replace the newer.
    written: std::sync::Arc<std::sync::Mutex<Option<LogId<NodeId>>>>,
}

/// See [`StateMachine::applied_at`].
pub type AppliedAt = std::sync::Arc<std::sync::Mutex<(Option<u64>, u64)>>;

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.applied.last_applied)
            .field("version", &self.applied.state.version)
            .field("dir", &self.dir)
            .finish()
    }
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`, restoring the
    /// latest snapshot.
    pub fn open(dir: &Path) -> Result<StateMachine, StorageError<NodeId>> {
        std::fs::create_dir_all(dir).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let mut sm = StateMachine {
            applied: Applied::default(),
            dir: dir.to_path_buf(),
            on_change: None,
            applied_at: Default::default(),
            written: Default::default(),
        };
        if let Some(file) = sm.read_snapshot_file()? {
            *sm.written.lock().unwrap_or_else(|p| p.into_inner()) = file.meta.last_log_id;
            sm.applied = serde_json::from_slice(&file.data)
                .map_err(|e| StorageIOError::read_snapshot(Some(file.meta.signature()), &e))?;
            sm.mark_applied();
        }
        Ok(sm)
    }

    /// The last applied index and the version it left, always a pair.
    pub fn applied_at(&self) -> AppliedAt {
        self.applied_at.clone()
    }

    fn mark_applied(&self) {
        *self.applied_at.lock().unwrap_or_else(|p| p.into_inner()) = (
            self.applied.last_applied.map(|l| l.index),
            self.applied.state.version,
        );
    }

    /// Calls `f` with the state after every change.
    pub fn on_change(&mut self, f: impl Fn(&ReplicatedState) + Send + Sync + 'static) {
        self.on_change = Some(std::sync::Arc::new(f));
    }

    pub fn state(&self) -> &ReplicatedState {
        &self.applied.state
    }

    fn path(&self) -> PathBuf {
        self.dir.join("current.snapshot")
    }

    fn read_snapshot_file(&self) -> Result<Option<SnapshotFile>, StorageError<NodeId>> {
        let read = || match std::fs::read(self.path()) {
            Ok(bytes) => SnapshotFile::decode(bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        off_the_runtime(true, read).map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }

    /// Writes the snapshot file atomically: a temporary file, synced, then
    /// renamed over the current one. A file already holding a later log id
    /// is kept (one writer at a time).
    fn write_snapshot_file(&self, file: &SnapshotFile) -> Result<(), StorageError<NodeId>> {
        let sig = Some(file.meta.signature());
        let bytes = file
            .encode()
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let tmp = self.dir.join("current.snapshot.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if *written > file.meta.last_log_id {
                return Ok(());
            }
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path())?;
            std::fs::File::open(&self.dir)?.sync_all()?;
            *written = file.meta.last_log_id;
            Ok(())
        };
        off_the_runtime(true, write).map_err(|e| StorageIOError::write_snapshot(sig, &e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = off_the_runtime(true, || serde_json::to_vec(&self.applied))
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let last = self.applied.last_applied;
        let snapshot_id = match last {
            Some(l) => format!(
                "{}-{}-v{}",
                l.leader_id, l.index, self.applied.state.version
            ),
            None => format!("empty-v{}", self.applied.state.version),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id,
        };
        self.write_snapshot_file(&SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        let mut out = Vec::new();
        let before = self.applied.state.revision;
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Response::Nothing,
                EntryPayload::Normal(cmd) => {
                    let state = &mut self.applied.state;
                    off_the_runtime(heavy(&cmd), || state.apply(&cmd))
                }
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Nothing
                }
            });
        }
        self.mark_applied();
        if self.applied.state.revision != before {
            if let Some(f) = &self.on_change {
                // publishing builds the DNS snapshot: O(spec)
                let state = &self.applied.state;
                off_the_runtime(true, || f(state));
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let applied: Applied = off_the_runtime(true, || serde_json::from_slice(&data))
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.write_snapshot_file(&SnapshotFile {
            meta: meta.clone(),
            data,
        })?;
        self.applied = applied;
        self.mark_applied();
        if let Some(f) = &self.on_change {
            // publishing builds the DNS snapshot: O(spec)
            let state = &self.applied.state;
            off_the_runtime(true, || f(state));
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.read_snapshot_file()?.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.data)),
        }))
    }
}

#[cfg(test)]
mod snapshot_file_tests {
    use super::*;

    fn file(version: u64) -> SnapshotFile {
        let mut applied = Applied::default();
        applied.state.version = version;
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: format!("empty-v{version}"),
            },
            data: serde_json::to_vec(&applied).unwrap(),
        }
    }

    #[test]
    fn a_file_decodes_to_what_was_encoded() {
        let f = file(7);
        let back = SnapshotFile::decode(f.encode().unwrap()).unwrap();
        assert_eq!(back.meta, f.meta);
        assert_eq!(back.data, f.data);
    }

    #[test]
    fn a_file_of_an_earlier_release_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::to_vec(&file(4)).unwrap();
        std::fs::write(dir.path().join("current.snapshot"), old).unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.state().version, 4);
    }

    #[test]
    fn a_cut_or_damaged_file_is_an_error() {
        let whole = file(3).encode().unwrap();
        for cut in [
            SNAPSHOT_MAGIC.len() + 2,
            SNAPSHOT_MAGIC.len() + 10,
            whole.len() - 1,
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("current.snapshot"), &whole[..cut]).unwrap();
            assert!(StateMachine::open(dir.path()).is_err(), "cut at {cut}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut bad = whole.clone();
        let last = bad.len() - 2;
        bad[last] = b'#';
        std::fs::write(dir.path().join("current.snapshot"), bad).unwrap();
        assert!(StateMachine::open(dir.path()).is_err(), "damaged data");
    }
}

#[cfg(test)]
mod snapshot_writer_tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn at(index: u64) -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("at-{index}"),
            },
            data: serde_json::to_vec(&Applied::default()).unwrap(),
        }
    }

    /// A snapshot built from an older state, finishing after a newer one
    /// was installed, leaves the newer file in place.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        sm.write_snapshot_file(&at(9)).unwrap();
        sm.clone().write_snapshot_file(&at(4)).unwrap();
        let kept = sm.read_snapshot_file().unwrap().unwrap();
        assert_eq!(kept.meta.snapshot_id, "at-9");
        sm.write_snapshot_file(&at(12)).unwrap();
        // and after a restart, the bar is the file's
        let again = StateMachine::open(dir.path()).unwrap();
        again.write_snapshot_file(&at(10)).unwrap();
        let kept = again.read_snapshot_file().unwrap().unwrap();
        assert_eq!(kept.meta.snapshot_id, "at-12");
    }
}
