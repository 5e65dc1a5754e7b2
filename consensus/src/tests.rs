use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

use crate::engine::{KvEngine, Sled};
use crate::journal::Journal;
use crate::log_store::LogStore;
use crate::state::StateMachine;
use crate::{NodeId, TypeConfig};

/// Builds the store over the engine `open` makes in a fresh directory.
struct Builder<E>(fn(&std::path::Path) -> E);

impl<E: KvEngine> StoreBuilder<TypeConfig, LogStore<E>, StateMachine, TempDir> for Builder<E> {
    async fn build(&self) -> Result<(TempDir, LogStore<E>, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().expect("temp dir");
        let engine = (self.0)(&dir.path().join("raft"));
        let log = LogStore::new(&engine)?;
        let sm = StateMachine::open(&dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

/// openraft's own conformance suite against the sled-backed store.
#[test]
fn openraft_storage_suite_passes_on_sled() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder(|p| Sled::open(p).expect("sled")))?;
    Ok(())
}

/// The same suite against the journal, the engine new stores use.
#[test]
fn openraft_storage_suite_passes_on_the_journal() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder(|p| Journal::open(p).expect("journal")))?;
    Ok(())
}

mod state_machine {
    use std::collections::BTreeMap;

    use meridian_config::zone::{AdminState, Endpoint, EndpointAddress, Pool};
    use meridian_config::ZoneSpec;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    use crate::state::StateMachine;
    use crate::{Command, Response};

    fn spec() -> ZoneSpec {
        let ep = Endpoint {
            id: "eu-1".into(),
            address: EndpointAddress::Ip("192.0.2.1".parse().unwrap()),
            region: "eu-west".into(),
            lat: None,
            lon: None,
            weight: 1,
            cost: 0.0,
            priority: 1,
            state: AdminState::Enabled,
            bias: 0,
            rtt_ms: BTreeMap::new(),
            check_address: None,
            redirect_url: None,
            proxy_url: None,
        };
        let mut pools = BTreeMap::new();
        pools.insert(
            "web".to_string(),
            Pool {
                name: "web".into(),
                endpoints: vec![ep],
                check: None,
            },
        );
        ZoneSpec {
            zones: vec![],
            pools,
            regions: vec![],
        }
    }

    fn entry(index: u64, cmd: Command) -> Entry<crate::TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    #[test]
    fn a_cookie_secret_rotation_keeps_the_previous_and_moves_no_version() {
        let mut state = crate::ReplicatedState::default();
        let rotate = |at_ms, secret| Command::RotateCookieSecret { at_ms, secret };
        assert_eq!(
            state.apply(&rotate(1_000, [1; 16])),
            Response::Applied { version: 0 }
        );
        state.apply(&rotate(2_000, [2; 16]));
        let c = state.cookies;
        assert_eq!(
            (c.current, c.previous, c.rotated_at_ms),
            (Some([2; 16]), Some([1; 16]), 2_000)
        );
        assert_eq!((state.version, state.revision), (0, 2));
        // the secrets travel in snapshots: a node that installs one serves them
        let json = serde_json::to_string(&state).unwrap();
        let back: crate::ReplicatedState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cookies, c);
    }

    #[test]
    fn a_restore_takes_the_backups_state_past_both_versions() {
        let mut old = crate::ReplicatedState::default();
        old.apply(&Command::ReplaceSpec(Box::new(spec())));
        old.apply(&Command::SetWeight {
            pool: "web".into(),
            endpoint: "eu-1".into(),
            weight: 9,
        });
        let backup = crate::state::Backup::of(&old, 1);
        assert_eq!(backup.version, 2);
        let text = serde_json::to_string(&backup).unwrap();
        let backup = crate::state::Backup::parse(&text).unwrap();
        // onto an empty state
        let mut fresh = crate::ReplicatedState::default();
        let restore = |force| Command::Restore {
            backup: Box::new(backup.clone()),
            force,
        };
        assert_eq!(
            fresh.apply(&restore(false)),
            Response::Applied { version: 3 }
        );
        assert_eq!(fresh.spec, old.spec);
        // onto one with a spec: refused, unchanged, unless forced
        let before = fresh.clone();
        assert!(matches!(
            fresh.apply(&restore(false)),
            Response::Rejected { .. }
        ));
        assert_eq!(fresh, before);
        assert_eq!(
            fresh.apply(&restore(true)),
            Response::Applied { version: 4 }
        );
        // a file of another format is no backup
        assert!(crate::state::Backup::parse("{\"format\": \"x\"}").is_err());
        // counters at their limits are refused, not wrapped or overflowed
        let mut huge = backup.clone();
        huge.version = u64::MAX;
        let before = fresh.clone();
        let refused = fresh.apply(&Command::Restore {
            backup: Box::new(huge),
            force: true,
        });
        assert!(matches!(refused, Response::Rejected { .. }), "{refused:?}");
        assert_eq!(fresh, before);
        let mut seq = backup.clone();
        seq.state.audit_seq = u64::MAX - 1;
        assert!(seq.check().is_err());
    }

    #[tokio::test]
    async fn commands_apply_and_bump_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        sm.on_change(move |s| sink.lock().unwrap().push(s.version));
        let out = sm
            .apply(vec![
                entry(1, Command::ReplaceSpec(Box::new(spec()))),
                entry(
                    2,
                    Command::SetWeight {
                        pool: "web".into(),
                        endpoint: "eu-1".into(),
                        weight: 7,
                    },
                ),
                entry(
                    3,
                    Command::SetAdminState {
                        pool: "web".into(),
                        endpoint: "nope".into(),
                        state: AdminState::Drained,
                    },
                ),
                entry(
                    4,
                    Command::SetAdminState {
                        pool: "web".into(),
                        endpoint: "eu-1".into(),
                        state: AdminState::Drained,
                    },
                ),
            ])
            .await
            .unwrap();
        assert_eq!(out[0], Response::Applied { version: 1 });
        assert_eq!(out[1], Response::Applied { version: 2 });
        assert_eq!(
            out[2],
            Response::Rejected {
                reason: "pool \"web\" has no endpoint \"nope\"".into()
            }
        );
        assert_eq!(out[3], Response::Applied { version: 3 });
        let ep = &sm.state().spec.pools["web"].endpoints[0];
        assert_eq!((ep.weight, ep.state), (7, AdminState::Drained));
        assert_eq!(
            *seen.lock().unwrap(),
            [3],
            "published once per applied batch"
        );
    }

    #[tokio::test]
    async fn a_snapshot_restores_the_state_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        sm.apply(vec![entry(1, Command::ReplaceSpec(Box::new(spec())))])
            .await
            .unwrap();
        let snap = sm.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.unwrap().index, 1);
        drop(sm);
        let mut again = StateMachine::open(dir.path()).unwrap();
        assert_eq!(again.state().version, 1);
        assert_eq!(again.state().spec, spec());
        let (last, _) = again.applied_state().await.unwrap();
        assert_eq!(last.unwrap().index, 1);
    }
}

/// Log entries and the vote survive closing and reopening the database.
#[tokio::test]
async fn the_log_and_vote_survive_a_reopen() {
    use crate::engine::{KvEngine, KvTree};
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

    let dir = TempDir::new().unwrap();
    {
        let engine = Sled::open(&dir.path().join("db")).unwrap();
        let mut log = LogStore::new(&engine).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        let entries: Vec<Entry<TypeConfig>> = (1..=3)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 1), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        // `append` needs a callback only a running Raft can make (the suite
        // covers it); write the entries into the log's tree as it does
        let tree = engine.open_tree("raft_log").unwrap();
        for e in &entries {
            tree.insert(
                &e.log_id.index.to_be_bytes(),
                serde_json::to_vec(e).unwrap(),
            )
            .unwrap();
        }
        tree.flush().await.unwrap();
    }
    let engine = Sled::open(&dir.path().join("db")).unwrap();
    let mut log = LogStore::new(&engine).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    let got = log.try_get_log_entries(1..=3).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.unwrap().index, 3);
}

/// Three nodes in this process, talking Raft over HTTP on loopback.
mod cluster {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use openraft::error::{ClientWriteError, RaftError};
    use openraft::{BasicNode, Config, Raft};

    use crate::auth::{Credentials, Need};
    use crate::engine::Sled;
    use crate::http::guarded;
    use crate::log_store::LogStore;
    use crate::network::{routes, HttpNetwork};
    use crate::state::StateMachine;
    use crate::{Command, NodeId, Response, TypeConfig};

    const SECRET: &str = "a-cluster-secret-of-at-least-32-chars";

    struct Node {
        raft: Raft<TypeConfig>,
        addr: String,
        version: Arc<Mutex<u64>>,
        _dir: tempfile::TempDir,
    }

    async fn start(id: NodeId) -> Node {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let engine = Sled::open(&dir.path().join("db")).unwrap();
        let log = LogStore::new(&engine).unwrap();
        let mut sm = StateMachine::open(&dir.path().join("snapshots")).unwrap();
        let version = Arc::new(Mutex::new(0));
        let seen = version.clone();
        sm.on_change(move |s| *seen.lock().unwrap() = s.version);
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        }
        .validate()
        .unwrap();
        // nodes prove themselves with the cluster secret, over the real
        // bounded listener
        let client = crate::tls::http_client(None, Some(SECRET));
        let raft = Raft::new(
            id,
            Arc::new(config),
            HttpNetwork::new(client, "http"),
            log,
            sm,
        )
        .await
        .unwrap();
        let creds = Arc::new(Credentials::new(Vec::new(), Some(SECRET), false));
        let app = guarded(routes(raft.clone(), Default::default()), &creds, Need::Node);
        tokio::spawn(crate::http::serve(
            listener,
            None,
            app,
            Default::default(),
            Arc::new(|_| false),
        ));
        Node {
            raft,
            addr,
            version,
            _dir: dir,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_replicate_a_write_over_http() {
        let nodes = vec![start(1).await, start(2).await, start(3).await];
        let members: BTreeMap<NodeId, BasicNode> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i as NodeId + 1, BasicNode::new(&n.addr)))
            .collect();
        nodes[0].raft.initialize(members).await.unwrap();
        let leader = nodes[0]
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .unwrap()
            .current_leader
            .unwrap();
        let leader_node = &nodes[(leader - 1) as usize];
        let written = leader_node
            .raft
            .client_write(Command::ReplaceSpec(Box::default()))
            .await
            .unwrap();
        assert_eq!(written.data, Response::Applied { version: 1 });
        let index = written.log_id.index;
        for n in &nodes {
            n.raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(index), "the write applied")
                .await
                .unwrap();
            assert_eq!(*n.version.lock().unwrap(), 1);
        }
        // a follower refuses writes and names the leader
        let follower = nodes
            .iter()
            .find(|n| n.raft.metrics().borrow().id != leader)
            .unwrap();
        match follower
            .raft
            .client_write(Command::ReplaceSpec(Box::default()))
            .await
        {
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                assert_eq!(f.leader_id, Some(leader));
            }
            other => panic!("expected a forward to the leader, got {other:?}"),
        }
        for n in nodes {
            n.raft.shutdown().await.unwrap();
        }
    }
}

mod compaction {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use meridian_probes::{Observation, Report};
    use openraft::ServerState;

    use crate::node::{ClusterNode, NodeOptions, Timing};
    use crate::Command;

    /// A report of `n` observations: a large entry, as probe reports are.
    fn report(n: usize) -> Command {
        let observations = (0..n)
            .map(|i| Observation {
                pool: "web".into(),
                endpoint: format!("e{i}"),
                up: true,
                ok: true,
                connect_ms: Some(0.25),
                ttfb_ms: Some(1.5),
                error: None,
            })
            .collect();
        Command::Observe {
            at_ms: 1,
            report: Report {
                region: "eu".into(),
                agent: "eu/1".into(),
                observations,
            },
        }
    }

    /// A one-node cluster in `dir`, initialized and leading.
    async fn single(dir: &std::path::Path, timing: Timing) -> ClusterNode {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let node = ClusterNode::start(
            NodeOptions {
                id: 1,
                data_dir: dir.to_path_buf(),
                advertise: "127.0.0.1:0".into(),
                timing,
                tls: None,
                check_spec: None,
                credentials: Default::default(),
                secret: None,
                limits: Default::default(),
            },
            |_| {},
        )
        .await
        .unwrap();
        node.init(BTreeMap::new()).await.unwrap();
        node.raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.state == ServerState::Leader, "leader")
            .await
            .unwrap();
        node
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_over_its_byte_budget_is_snapshotted_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let node = single(
            dir.path(),
            Timing {
                heartbeat: Duration::from_millis(50),
                election_timeout: Duration::from_millis(150),
                // the count alone would never snapshot here
                snapshot_every: 1_000_000,
                snapshot_bytes: 64 << 10,
                ..Timing::default()
            },
        )
        .await;
        // about 10 KB each: the budget passes after about 7 of them
        let mut last = 0;
        for _ in 0..30 {
            last = node.write(report(100)).await.unwrap().index;
        }
        let m = node
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.purged.is_some_and(|p| Some(p) == m.snapshot),
                "a snapshot, and the log purged up to it",
            )
            .await
            .unwrap();
        let upto = m.purged.unwrap().index;
        assert!(upto >= 5 && upto <= last, "purged to {upto} of {last}");
        // what was purged is in the snapshot: every write is in the state
        assert_eq!(node.state().revision, 30);
        node.shutdown().await;
    }

    /// A clock that jumps ahead (or a time chosen by a client) cannot pin
    /// the cluster's health clock: stamps run ahead of the last one by no
    /// more than the time that really passed, and never go back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_leader_stamps_reports_with_a_clock_that_cannot_jump() {
        let dir = tempfile::tempdir().unwrap();
        let node = single(
            dir.path(),
            Timing {
                heartbeat: Duration::from_millis(50),
                election_timeout: Duration::from_millis(150),
                ..Timing::default()
            },
        )
        .await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = node.stamp(now);
        assert_eq!(first, now);
        let jumped = node.stamp(u64::MAX);
        assert!(
            jumped - first < 2_000,
            "a jump of the wall clock ran ahead: {jumped}"
        );
        // and through the state machine: a report claiming a far-future
        // time is stamped with the leader's own clock
        let mut far = report(1);
        if let Command::Observe { at_ms, .. } = &mut far {
            *at_ms = u64::MAX;
        }
        node.write(far).await.unwrap();
        assert_eq!(node.state().revision, 1, "the report applied");
        let clock = node.state().health.now_ms;
        assert!(clock < now + 60_000, "the health clock was pinned: {clock}");
        // the wall clock going back does not take stamps behind the
        // cluster's clock
        assert!(node.stamp(now - 3_600_000) >= clock);
        node.shutdown().await;
    }
}
