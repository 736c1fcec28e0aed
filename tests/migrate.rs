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
/// Its state digest, as the earlier release's `rebuild` printed it.
const DIGEST: &str = "d854c37e0439dbea2b60889790ecdfef70ffa2ec26bbe076c0f225d5805f7f7d";

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
