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
}

impl Anvil {
    pub fn start() -> Anvil {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Anvil::start_on(port, None)
    }

    /// anvil on `port`; with `state`, the chain is loaded from that file and dumped to it every
    /// second, so that it survives a SIGKILL (up to the last second).
    pub fn start_on(port: u16, state: Option<&std::path::Path>) -> Anvil {
        let mut cmd = Command::new(anvil_path());
        cmd.args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--silent",
        ]);
        if let Some(state) = state {
            cmd.arg("--state")
                .arg(state)
                .args(["--state-interval", "1"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn anvil");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "anvil did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Anvil { child, url, port }
    }

    /// SIGKILL: no state dump, no goodbye.
    pub fn kill(mut self) -> u16 {
        self.child.kill().expect("SIGKILL anvil");
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
