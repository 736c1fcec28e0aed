//! Chain test fixtures: a real anvil node (installed by `scripts/toolchain.sh`), raw JSON-RPC,
//! and a contract deployed with a fresh, funded key.
#![allow(dead_code)]

use pointsledger::anchor::{self, ChainSettings};
use pointsledger::keys;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn anvil_path() -> String {
    if let Ok(p) = std::env::var("ANVIL") {
        return p;
    }
    let out = Command::new("scripts/toolchain.sh")
        .arg("--env")
        .output()
        .expect("scripts/toolchain.sh installs anvil");
    let env = String::from_utf8_lossy(&out.stdout);
    env.split_whitespace()
        .find_map(|w| w.strip_prefix("ANVIL="))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no anvil: {env}"))
}

pub struct Anvil {
    pub child: Child,
    pub url: String,
    pub port: u16,
    /// The file the chain is dumped to, if any.
    state: Option<std::path::PathBuf>,
}

/// A free loopback port below the kernel's ephemeral range, so that no outgoing connection of
/// this machine can take it while a killed node is down and its port is to be bound again.
pub fn free_port() -> u16 {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(10000..low.max(10001));
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 10000..{low}");
}

impl Anvil {
    pub fn start() -> Anvil {
        Anvil::start_on(free_port(), None)
    }

    /// anvil on `port`; with `state`, the chain is loaded from that file and dumped to it every
    /// second, so that it survives a SIGKILL (up to the last second). anvil rewrites the file in
    /// place, so a SIGKILL in the middle of a dump leaves it cut short, and anvil then refuses
    /// to start: the last dump that parsed is kept beside it (`<state>.good`) and put back then,
    /// which is the chain as it was a second earlier, a loss the tests already allow.
    pub fn start_on(port: u16, state: Option<&std::path::Path>) -> Anvil {
        let mut cmd = Command::new(anvil_path());
        cmd.args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--silent",
        ]);
        let log = std::env::temp_dir().join(format!("anvil-{}-{port}.log", std::process::id()));
        if let Some(state) = state {
            keep_last_good_dump(state);
            cmd.arg("--state")
                .arg(state)
                .args(["--state-interval", "1"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("anvil log file"))
            .spawn()
            .expect("spawn anvil");
        let mut anvil = Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            state: state.map(std::path::Path::to_path_buf),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = anvil.child.try_wait().expect("anvil status");
            if exited.is_some() || Instant::now() > deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("anvil did not start on port {port} ({exited:?}): {said}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&log);
        anvil
    }

    /// SIGKILL: no state dump, no goodbye.
    pub fn kill(mut self) -> u16 {
        self.child.kill().expect("SIGKILL anvil");
        let _ = self.child.wait();
        if let Some(state) = &self.state {
            keep_last_good_dump(state);
        }
        self.port
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps a copy of `state` while it parses, and puts the copy back when it does not (a dump torn
/// by a SIGKILL).
fn keep_last_good_dump(state: &std::path::Path) {
    let good = state.with_extension("good");
    match std::fs::read(state) {
        Ok(bytes) if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() => {
            std::fs::write(&good, &bytes).expect("copy of the chain state")
        }
        Ok(_) => {
            eprintln!("anvil's state dump was torn by its SIGKILL: the previous one is used");
            std::fs::copy(&good, state).expect("a torn chain state and no earlier one");
        }
        Err(_) => {}
    }
}

pub async fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("rpc")
        .json()
        .await
        .expect("json");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

/// Funds a fresh EVM key on `anvil`, deploys the contract with it, and returns the key file,
/// the chain settings and the contract address.
pub fn deploy_with_fresh_key(
    rt: &tokio::runtime::Runtime,
    anvil: &Anvil,
    dir: &std::path::Path,
) -> (std::path::PathBuf, ChainSettings, ethers::types::Address) {
    let evm = keys::generate();
    let key_file = dir.join("evm.key");
    keys::write_key_file(&key_file, &evm).expect("key file");
    rt.block_on(rpc(
        &anvil.url,
        "anvil_setBalance",
        json!([ethers_address(&evm.to_bytes()), "0x56BC75E2D63100000"]),
    ));
    let settings = ChainSettings {
        rpc_url: anvil.url.clone(),
        chain_id: 31337,
        evm_key: key_file.clone(),
        gas_price_ceiling_gwei: 500,
    };
    let contract = rt.block_on(anchor::deploy(&settings)).expect("deploy");
    (key_file, settings, contract)
}

pub fn ethers_address(secret: &[u8; 32]) -> String {
    pointsledger::evm::address_of(secret).expect("address")
}
