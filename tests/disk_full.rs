//! The disk filling up under the real `pointsledger serve`, on a small tmpfs volume of its own.
//!
//! With the free-space reserve (`--min-free-bytes`), writes are refused with 503
//! `storage_full` and a message saying why, before any write can fail half-way; reads go on;
//! once space is freed, writing resumes by itself; every acknowledged entry is kept, across a
//! SIGKILL too, and an audit passes.
//!
//! Without the reserve the volume really runs out. If the log's append is what fails, the group
//! is not acknowledged and refused with 503 `storage_full`; if the state store's write after an
//! append fails (sled grows its files; the log's segment is preallocated), that group stays
//! acknowledged and the writer refuses everything after it (503 `unavailable`, "restart the
//! server"). After space is freed and the server restarted (the log cuts a torn tail, the state
//! replays what it misses), every acknowledged entry is there, writes go through and the audit
//! passes.
//!
//! Mounting a tmpfs needs root: as root the tests mount it directly; otherwise each test runs
//! itself again inside a new user and mount namespace (`unshare --user --map-root-user
//! --mount`), where it may.

mod common;
#[path = "common/server.rs"]
mod server;

use common::{rules, Party};
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir};
use pointsledger::merkle;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Volume {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Volume {
    fn mount(size_mib: u64) -> Volume {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vol");
        std::fs::create_dir(&path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Volume { dir, path }
    }

    fn free(&self) -> u64 {
        fs2::available_space(&self.path).expect("statvfs")
    }

    /// Fills the volume with a file until `leave` bytes are free (in whole MiB writes).
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5a_u8; MIB as usize];
        while self.free() > leave + MIB {
            f.write_all(&chunk).expect("fill");
        }
        f.sync_all().expect("sync filler");
        filler
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Runs `body` where a tmpfs can be mounted: here if this process is root, else in this same
/// test run again under `unshare`, which must pass.
fn with_mount_rights(test: &str, body: impl FnOnce()) {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return body();
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        out.status.success(),
        "{test} under unshare failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A ledger on the volume with one merchant, served by the real binary.
struct Case {
    vol: Volume,
    data: PathBuf,
    log: PathBuf,
    signer: Arc<server::Signer>,
    shop: Party,
    consumers: Vec<Party>,
    rt: tokio::runtime::Runtime,
    acked: Vec<(u64, String)>,
    orders: u64,
}

impl Case {
    fn new(size_mib: u64) -> Case {
        let vol = Volume::mount(size_mib);
        let data = vol.path.join("ledger");
        ledger::init(&data, "disk.pointsledger.local").expect("init");
        let operator = keys::read_key_file(&DataDir(data.clone()).operator_key()).expect("key");
        let log = vol.dir.path().join("serve.log");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        Case {
            vol,
            data,
            log,
            signer: Arc::new(server::Signer::new(operator)),
            shop: Party::new(),
            consumers: (0..10).map(|_| Party::new()).collect(),
            rt,
            acked: Vec::new(),
            orders: 0,
        }
    }

    fn serve(&self, min_free: u64) -> server::Binary {
        server::Binary::start(
            &[
                "--data",
                self.data.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
                "--checkpoint-interval",
                "50ms",
                "--min-free-bytes",
                &min_free.to_string(),
            ],
            &[],
            &self.log,
        )
    }

    /// One purchase; remembers it if acknowledged.
    fn purchase(&mut self, api: &server::Api) -> (u16, Value) {
        self.orders += 1;
        let who = &self.consumers[self.orders as usize % self.consumers.len()];
        // The longest order id makes each entry bigger, so the volume fills in fewer requests.
        let order = format!("{:0>64}", self.orders);
        let env = self.signer.purchase(&self.shop, who, &order, 1_000);
        let (status, body) = self.rt.block_on(api.submit(&env));
        if status == 200 {
            let hash = body["leaf_hash"].as_str().expect("hash").to_owned();
            self.acked
                .push((body["index"].as_u64().expect("index"), hash));
        }
        (status, body)
    }

    /// Purchases until one is refused (at most `max`); returns the refusal.
    fn purchase_until_refused(&mut self, api: &server::Api, max: u64) -> (u16, Value) {
        for _ in 0..max {
            let (status, body) = self.purchase(api);
            if status != 200 {
                return (status, body);
            }
        }
        panic!("{max} purchases went through; the volume never filled")
    }

    /// Every acknowledged entry is served byte for byte.
    fn check_acked(&self, api: &server::Api) {
        self.rt.block_on(async {
            for (index, hash) in &self.acked {
                let (status, leaf) = api.get_bytes(&format!("/v1/entries/{index}")).await;
                assert_eq!(status, 200, "acknowledged entry {index} lost");
                assert_eq!(
                    &hex::encode(merkle::leaf_hash(&leaf)),
                    hash,
                    "entry {index} changed"
                );
            }
        });
    }

    /// Reads that must go on while writes are refused: an account, health.
    fn check_reads(&self, api: &server::Api) {
        self.rt.block_on(async {
            let (status, account) = api
                .get(&format!("/v1/accounts/{}", self.consumers[1].id))
                .await;
            assert_eq!(status, 200, "{account}");
            let (status, health) = api.get("/healthz").await;
            assert_eq!(status, 200, "{health}");
        })
    }

    /// The size and root of the checkpoint once it covers the whole log.
    fn tree(&self, api: &server::Api) -> (u64, [u8; 32]) {
        self.rt.block_on(api.tree())
    }

    fn audit(&self, api: &server::Api) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let state = self.vol.dir.path().join("audit");
        server::assert_audit_passes(&api.base, &state, &[], &format!("the server's log:\n{log}"));
    }
}

#[test]
fn the_reserve_refuses_writes_until_space_returns() {
    with_mount_rights("the_reserve_refuses_writes_until_space_returns", || {
        let reserve = 8 * MIB;
        let mut case = Case::new(48);
        let mut srv = case.serve(reserve);
        let api = srv.api.clone();
        case.rt
            .block_on(api.accept(&case.signer.register(&case.shop, &rules())));
        // Leave 2 MiB above the reserve: the server's own writes use it up.
        let filler = case.vol.fill(reserve + 2 * MIB);
        let (status, body) = case.purchase_until_refused(&api, 20_000);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "storage_full", "{body}");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains("bytes free") && message.contains("reserve"),
            "{message}"
        );
        assert!(
            case.acked.len() > 10,
            "only {} acknowledged",
            case.acked.len()
        );

        // Refused writes change nothing; reads go on.
        case.check_reads(&api);
        let before = case.tree(&api);
        for _ in 0..5 {
            let (status, body) = case.purchase(&api);
            assert_eq!(
                (status, body["error"].as_str()),
                (503, Some("storage_full"))
            );
        }
        assert_eq!(case.tree(&api), before, "a refused write changed the tree");
        case.check_acked(&api);

        // Space returns: writing resumes without a restart.
        std::fs::remove_file(filler).expect("free the space");
        for _ in 0..20 {
            let (status, body) = case.purchase(&api);
            assert_eq!(status, 200, "after space returned: {body}");
        }

        // And survives a SIGKILL.
        srv.child.kill().expect("SIGKILL");
        let _ = srv.child.wait();
        let srv = case.serve(reserve);
        case.check_acked(&srv.api);
        case.check_reads(&srv.api);
        let (size, _) = case.tree(&srv.api);
        assert_eq!(
            size as usize,
            case.acked.len() + 1,
            "entries beyond the acknowledged"
        );
        case.audit(&srv.api);
        srv.stop();
    });
}

#[test]
fn a_real_enospc_loses_nothing_acknowledged() {
    with_mount_rights("a_real_enospc_loses_nothing_acknowledged", || {
        let mut case = Case::new(48);
        let mut srv = case.serve(0);
        let api = srv.api.clone();
        case.rt
            .block_on(api.accept(&case.signer.register(&case.shop, &rules())));
        for _ in 0..20 {
            assert_eq!(case.purchase(&api).0, 200);
        }
        let filler = case.vol.fill(0);
        let (status, body) = case.purchase_until_refused(&api, 50_000);
        assert_eq!(status, 503, "{body}");
        match body["error"].as_str() {
            // The log refused the group: nothing of it was acknowledged, the writer goes on.
            Some("storage_full") => {}
            // The state write after an append failed: the writer stops for good, later writes
            // are refused with the reason.
            Some("unavailable") => {
                let (status, body) = case.purchase(&api);
                assert_eq!(status, 503, "{body}");
                let message = body["message"].as_str().expect("message");
                assert!(message.contains("restart the server"), "{message}");
            }
            other => panic!("refused with {other:?}: {body}"),
        }
        // (sled may refuse some reads too once a write of its failed: no read is promised here.)

        std::fs::remove_file(filler).expect("free the space");
        srv.child.kill().expect("SIGKILL");
        let _ = srv.child.wait();
        let srv = case.serve(0);
        case.check_acked(&srv.api);
        for _ in 0..5 {
            let (status, body) = case.purchase(&srv.api);
            assert_eq!(status, 200, "after the restart: {body}");
        }
        case.check_reads(&srv.api);
        // The audit compares balances with the server's: wait until a checkpoint covers every
        // entry written.
        case.tree(&srv.api);
        case.audit(&srv.api);
        srv.stop();
    });
}
