//! The witness as a child process (`pointsledger witness`), for the tests that need one beside
//! a log: started on a port, its key read from its first line, SIGKILLed, started again.
#![allow(dead_code)]

use crate::server::{eventually, Api};
use pointsledger::checkpoint;
use pointsledger::witness::cosignature::{self, CosignerKey};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The name every test witness goes by.
pub const NAME: &str = "witness.test/w1";

/// `pointsledger witness --dir DIR --name NAME`, to add flags to.
pub fn command(dir: &Path) -> Command {
    command_named(dir, NAME)
}

/// `pointsledger witness --dir DIR --name name`, to add flags to.
pub fn command_named(dir: &Path, name: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pointsledger"));
    cmd.args([
        "witness",
        "--dir",
        dir.to_str().expect("path"),
        "--name",
        name,
    ]);
    cmd
}

/// A free loopback address to start a witness on later (the log must know it first).
pub fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("127.0.0.1:{port}")
}

pub struct Witness {
    child: Child,
    pub url: String,
    pub key: CosignerKey,
}

impl Witness {
    pub fn start(dir: &Path, log_keys: &[&str]) -> Witness {
        Witness::start_on(dir, log_keys, "127.0.0.1:0")
    }

    pub fn start_on(dir: &Path, log_keys: &[&str], listen: &str) -> Witness {
        Witness::start_named(dir, NAME, log_keys, listen)
    }

    pub fn start_named(dir: &Path, name: &str, log_keys: &[&str], listen: &str) -> Witness {
        let mut cmd = command_named(dir, name);
        cmd.args(["--listen", listen]);
        for k in log_keys {
            cmd.args(["--log-key", k]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn witness");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("key line");
        let key = CosignerKey::parse(line.trim().strip_prefix("witness ").expect("witness KEY"))
            .expect("a witness key");
        line.clear();
        out.read_line(&mut line).expect("listen line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_owned();
        Witness { child, url, key }
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The witness key a fresh witness directory will sign with (made by `--print-key`).
pub fn print_key(dir: &Path) -> String {
    print_key_named(dir, NAME)
}

/// The key a fresh witness directory will sign with under `name`.
pub fn print_key_named(dir: &Path, name: &str) -> String {
    let out = command_named(dir, name)
        .arg("--print-key")
        .output()
        .expect("run");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The newest checkpoint note carrying a valid cosignature by `key`, from `path`.
pub async fn cosigned_note(api: &Api, path: &str, key: &CosignerKey, min: u64) -> String {
    let vkey = api.verifier_key().await;
    eventually(30, "a cosigned checkpoint", || async {
        let (code, _, note) = api.get_text(path).await;
        let size = checkpoint::open_checkpoint(&note, &vkey).ok()?.size;
        (code == 200
            && size >= min
            && cosignature::check_quorum(&note, std::slice::from_ref(key), 1).is_ok())
        .then_some(note)
    })
    .await
}
