//! The README's cluster and API walkthroughs, run as written: the shell blocks
//! between its `walkthrough:start` and `walkthrough:end` markers, in order,
//! with the built `meridian` first on PATH, in a directory of their own.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The walkthrough's shell commands, in order.
fn walkthrough() -> String {
    let readme = include_str!("../../README.md");
    let mut script = String::new();
    for part in readme.split("<!-- walkthrough:start -->").skip(1) {
        let (block, _) = part
            .split_once("<!-- walkthrough:end -->")
            .expect("every start has an end");
        let code = block
            .split_once("```sh\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(code, _)| code)
            .expect("a sh block between the markers");
        script.push_str(code);
    }
    script
}

#[test]
fn the_readme_cluster_walkthrough_runs_as_written() {
    let script = walkthrough();
    assert!(script.contains("meridian tls ca"), "{script}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin_dir = std::path::Path::new(crate::harness::BIN)
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // stop every node the script started, however it ends
    let full = format!("set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(dir.path())
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the walkthrough did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    let logs: String = (1..=3)
        .map(|id| {
            std::fs::read_to_string(dir.path().join(format!("mc/n{id}.log"))).unwrap_or_default()
        })
        .collect();
    assert!(status.success(), "{status}\n{out}\n{err}\n{logs}");
    assert!(out.contains("health: ok"), "{out}\n{err}\n{logs}");
    assert!(out.contains("3 voters"), "{out}");
    assert!(out.contains("applied zones.yaml"), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let after = |prefix: &str| {
        let at = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} in {out}\n{err}"));
        lines.get(at + 1).copied().unwrap_or("")
    };
    let first = after("applied zones.yaml");
    assert!(
        first == "192.0.2.10" || first == "198.51.100.10",
        "dig answered from the replicated state: {out}"
    );
    // the API walkthrough: a drain leaves one answer, a dry run changes
    // nothing, curl reads the diff and the audit log
    assert_eq!(
        after(r#"web/us-1: {"state":"drained"}"#),
        "192.0.2.10",
        "{out}"
    );
    assert!(out.contains("nothing changed"), "{out}");
    assert!(out.contains(r#""diff":"#), "{out}\n{err}");
    assert!(out.contains(r#""entries":"#), "{out}\n{err}");
    // the backup section: the state taken, and brought back through a
    // follower or the leader alike
    assert!(
        out.contains("restored backup.json (state version"),
        "{out}\n{err}"
    );
}
