//! `pointsledger migrate` on a data directory of the earlier layout (tests/vectors/legacy:
//! 58 demo entries written by the release before the log store, everything in sled's
//! `DIR/db`): the ledger refuses to open it, naming the command; the migration moves the log
//! and state, replays every leaf and reproduces the same tree, checkpoint and state; running it
//! again, or after a migration cut short, is safe.

#[path = "common/cli.rs"]
mod run;

use run::{fails_with, ok};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The fixture's latest checkpoint, as the earlier release printed it.
const CHECKPOINT: &str =
    "legacy.pointsledger.local\n58\ndw5n3mWzLQQTvb/YSnC1nMr8cP10VuheeS0CshR3ZUU=\n";
/// Its state digest, as this release computes it of the old store before the migration
/// (`state_digest_before`, read under the keys of the current state layout) and of the state
/// replayed after it.
const DIGEST: &str = "41fbcf68c0fb050bdda28daad7cfbce0406b76c19c96cbb216b7dd46eeeafc57";

fn unpack(into: &Path) -> PathBuf {
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/legacy/v1.tar.gz"))
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar");
    assert!(status.success());
    into.join("v1")
}

#[test]
fn an_old_data_directory_is_refused_then_migrated_exactly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = unpack(tmp.path());
    let d = data.to_str().expect("path");

    // Refused, never opened empty, and named the command that moves it.
    let err = fails_with(&["checkpoint", "--data", d], "needs_migration");
    assert!(
        err.contains(&format!("pointsledger migrate --data {d}")),
        "{err}"
    );
    fails_with(
        &["serve", "--data", d, "--listen", "127.0.0.1:0"],
        "needs_migration",
    );
    assert!(data.join("db").exists() && !data.join("log").exists());

    // A migration cut short during the copy left a partial log behind: it starts again.
    std::fs::create_dir(data.join("log.migrating")).expect("mkdir");
    std::fs::write(data.join("log.migrating/segment"), b"torn").expect("write");

    let out: Value = serde_json::from_str(&ok(&["migrate", "--data", d])).expect("json");
    assert_eq!(out["moved"], true, "{out}");
    assert_eq!(out["entries"], 58, "{out}");
    assert_eq!(out["state_digest_before"], DIGEST, "{out}");
    assert_eq!(out["state_digest_after"], DIGEST, "{out}");
    assert_eq!(out["identical"], true, "{out}");
    assert!(!data.join("db").exists() && !data.join("log.migrating").exists());
    assert!(data.join("log").is_dir() && data.join("state").is_dir());

    // The same log: its signed checkpoint, the tree under it, every entry still provable.
    let cp = ok(&["checkpoint", "--data", d]);
    assert!(cp.starts_with(CHECKPOINT), "{cp}");
    let rebuilt: Value = serde_json::from_str(&ok(&["rebuild", "--data", d])).expect("json");
    assert_eq!(rebuilt["state_digest_after"], DIGEST);
    let leaves = ok(&["leaves", "--data", d, "--start", "0", "--end", "58"]);
    assert_eq!(leaves.lines().count(), 58);

    // Again: nothing to move, nothing changed.
    let again: Value = serde_json::from_str(&ok(&["migrate", "--data", d])).expect("json");
    assert_eq!(again["moved"], false, "{again}");
    assert_eq!(again["state_digest_after"], DIGEST);
}

/// tests/vectors/legacy/layout1.tar.gz: a data directory of the current layout (log and state
/// apart) whose state store is of the earlier state layout (ids spelled out in every key), made
/// by the release before the state layout was named: 57 demo entries. The first command that
/// opens it rebuilds the state from the log, saying so, and every account reads as that release
/// read it; later opens do not rebuild again.
#[test]
fn a_state_store_of_an_earlier_layout_is_rebuilt_from_the_log_on_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/legacy/layout1.tar.gz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("tar");
    assert!(status.success());
    let d = tmp.path().join("layout1");
    let d = d.to_str().expect("path");
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/legacy");
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(vectors.join("layout1-lots.json")).expect("lots"),
    )
    .expect("json");
    let account = want["account"].as_str().expect("account");

    let first = run::pl(&["history", "--data", d, account]);
    assert!(first.status.success());
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(said.contains("earlier layout"), "{said}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        std::fs::read_to_string(vectors.join("layout1-history.jsonl")).expect("history")
    );
    let again = run::pl(&["balance", "--data", d, account]);
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("earlier layout"),
        "rebuilt once"
    );
    let balance: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(balance["lots"], want["lots"]);
    assert_eq!(balance["balance"]["total"], want["total"]);
    let rebuilt: Value = serde_json::from_str(&ok(&["rebuild", "--data", d])).expect("json");
    assert_eq!(rebuilt["identical"], true, "{rebuilt}");
}
