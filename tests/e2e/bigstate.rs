//! Big state moves: a follower that missed megabytes of probe reports
//! catches up, a node joins a cluster whose state is 10 MB, and a report
//! too large to be one Raft entry is refused without disturbing the
//! leader.

use std::time::Instant;

use crate::cluster::{Cluster, Tls, BOUND};
use crate::harness::http;
use crate::security::token;

/// A report for region eu of `n` observations (about 90 bytes each).
fn report(n: usize, round: usize) -> String {
    let obs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"pool":"web","endpoint":"endpoint-{i:05}","up":true,"ok":true,"connect_ms":{}.25,"ttfb_ms":{}.5}}"#,
                round + i % 7,
                round + i % 11
            )
        })
        .collect();
    format!(
        r#"{{"region":"eu","agent":"eu/bench","observations":[{}]}}"#,
        obs.join(",")
    )
}

fn applied(c: &Cluster, via: u64, id: u64) -> Option<u64> {
    c.status_json(via)[id.to_string()]["applied_index"].as_u64()
}

fn term(c: &Cluster, via: u64) -> u64 {
    c.status_json(via)[via.to_string()]["term"]
        .as_u64()
        .expect("term")
}

/// Waits until node `id` has applied everything node `via` has.
fn wait_caught_up(c: &Cluster, via: u64, id: u64) {
    let deadline = Instant::now() + BOUND;
    loop {
        let want = applied(c, via, via);
        if want.is_some() && applied(c, id, id) >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never caught up ({:?} of {want:?}):\n{}",
            applied(c, id, id),
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_follower_catches_up_on_megabytes_of_reports() {
    let mut c = Cluster::start_with(3, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    c.kill(3);
    let probe = token(&c, "probe-eu.token");
    let api = c.node(1).api.clone();
    let body = report(1000, 0);
    assert!(body.len() > 85_000, "about 90 KB: {}", body.len());
    for round in 0..40 {
        let (status, reply) = http(
            &api,
            "POST",
            "/probe/report",
            Some(&probe),
            &report(1000, round),
        );
        assert_eq!(status, 200, "report {round}: {reply}");
    }
    let term_before = term(&c, 1);
    c.restart(3);
    wait_caught_up(&c, 1, 3);
    c.wait_healthy(3);
    assert_eq!(term(&c, 1), term_before, "catching up forced no election");
}

#[test]
fn a_node_joins_a_cluster_whose_state_is_10_mb() {
    // two nodes: the 10 MB spec must replicate (in parts: one entry that
    // size would never reach a follower within a heartbeat)
    let mut c = Cluster::start_with(2, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    // 5000 TXT sets of 2 KB
    let mut text = crate::cluster::spec(1);
    let value = "x".repeat(250);
    for i in 0..5000 {
        text.push_str(&format!(
            "      - {{name: t{i}, type: TXT, values: [\"{value}\", \"{value}\", \"{value}\", \"{value}\", \"{value}\", \"{value}\", \"{value}\", \"{value}\"]}}\n"
        ));
    }
    text.push_str("pools:\n  web:\n    endpoints: [{id: a, address: 192.0.2.1, region: eu}]\n");
    assert!(text.len() > 10_000_000, "{}", text.len());
    let file = c.dir.path().join("big.yaml");
    std::fs::write(&file, &text).expect("write");
    let (code, out, err) = c.cli(1, &["apply", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    // small writes past snapshot_every: the log is purged, so the new
    // node can only come up through the snapshot
    let admin = token(&c, "admin.token");
    for w in 2..=12 {
        let cmd = format!(r#"{{"SetWeight":{{"pool":"web","endpoint":"a","weight":{w}}}}}"#);
        let (status, body) = http(&c.node(1).api, "POST", "/cluster/write", Some(&admin), &cmd);
        assert_eq!(status, 200, "{body}");
    }
    wait_caught_up(&c, 1, 2);
    let txt = crate::harness::dig(c.node(2).dns(), &["t4999.glb.example.com", "TXT"]);
    assert_eq!(
        txt.answer.len(),
        1,
        "node 2 got the big spec through the log"
    );
    c.join_new(3);
    let status = c.wait_healthy(3);
    assert!(status.contains("3 voters"), "{status}");
    wait_caught_up(&c, 1, 3);
    let txt = crate::harness::dig(c.node(3).dns(), &["t4999.glb.example.com", "TXT"]);
    assert_eq!(txt.answer.len(), 1, "node 3 serves the big state");
    let joined = &c.status_json(3)["3"];
    assert!(
        joined["snapshot_index"].as_u64().is_some(),
        "node 3 came up through a snapshot: {joined}"
    );
}

#[test]
fn a_report_too_big_for_one_entry_is_refused_without_an_election() {
    let c = Cluster::start_with(3, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    let leader_term = term(&c, 1);
    let big = report(34_000, 0);
    assert!(big.len() > 3_000_000, "{}", big.len());
    // and one just over the limit (512 KiB) as well
    let over = report(6_000, 0);
    assert!(over.len() > 512 * 1024, "{}", over.len());
    let (status, _) = http(
        &c.node(1).api,
        "POST",
        "/probe/report",
        Some(&token(&c, "probe-eu.token")),
        &over,
    );
    assert_eq!(status, 413);
    let (status, body) = http(
        &c.node(2).api,
        "POST",
        "/probe/report",
        Some(&token(&c, "probe-eu.token")),
        &big,
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "a JSON error: {body}");
    c.wait_healthy(1);
    assert_eq!(term(&c, 1), leader_term, "no election");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Two of three nodes put back to an old copy of their stores (an
/// operator restoring a backup): the majority has forgotten acknowledged
/// writes. The cluster cannot heal that on its own, and `status` must say
/// it is unhealthy rather than `ok`.
#[test]
fn a_split_cluster_is_reported_unhealthy() {
    let mut c = Cluster::start_with(3, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    for v in 1..=3 {
        c.apply_until_acked(&[1], v);
    }
    for id in [1, 2, 3] {
        c.kill(id);
    }
    let backup = c.dir.path().join("backup");
    for id in [1, 2] {
        copy_dir(c.node(id).data_path(), &backup.join(id.to_string()));
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    for v in 4..=20 {
        c.apply_until_acked(&[1, 2, 3], v);
    }
    // every node holds every write before the rollback
    wait_caught_up(&c, 1, 3);
    wait_caught_up(&c, 1, 2);
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2] {
        std::fs::remove_dir_all(c.node(id).data_path()).expect("wipe");
        copy_dir(&backup.join(id.to_string()), c.node(id).data_path());
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    // whatever the nodes make of it, status never calls it healthy
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let mut saw_divergence = false;
    while Instant::now() < deadline {
        for via in [1, 2] {
            let (code, out, err) = c.cli(via, &["status"]);
            assert_ne!(code, 0, "a split cluster reported healthy:\n{out}{err}");
            saw_divergence |= out.contains("diverged");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(saw_divergence, "status named the divergence:\n{}", c.logs());
}
