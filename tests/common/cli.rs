//! Running the real `pointsledger` binary from tests: a call, a call that must succeed, a call
//! that must fail with a one-line error, and JSON input files.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn pl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(args)
        .output()
        .expect("run pointsledger")
}

pub fn ok(args: &[&str]) -> String {
    let out = pl(args);
    assert!(
        out.status.success(),
        "pointsledger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Runs a command that must fail; returns its one-line error.
pub fn fails(args: &[&str]) -> String {
    let out = pl(args);
    assert!(
        !out.status.success(),
        "pointsledger {args:?} should have failed"
    );
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Runs a command that must fail with the error `code`: its one-line error names the code, and
/// its exit code is the code's class's, both from the one table.
pub fn fails_with(args: &[&str], code: &str) -> String {
    let out = pl(args);
    let table = pointsledger::errors::Code::parse(code).expect("a code of the table");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(
        out.status.code(),
        Some(i32::from(table.class().exit_code())),
        "pointsledger {args:?}: {err}"
    );
    assert!(
        err.starts_with(&format!("error: {code}: ")),
        "pointsledger {args:?}: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

pub fn write(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).expect("json")).expect("write");
    p.display().to_string()
}
