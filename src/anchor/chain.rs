//! The chain side: an ethers client for the `LedgerAnchor` contract, and `deploy`.

use crate::keys;
use ethers::abi::Abi;
use ethers::contract::{Contract, ContractFactory};
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Middleware, Provider};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, BlockId, BlockNumber, Bytes, TransactionRequest, H256, U256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The compiled contract, committed under `contracts/artifacts/` (checked fresh by CI).
const ARTIFACT: &str = include_str!("../../contracts/artifacts/LedgerAnchor.json");

type Client = SignerMiddleware<Provider<Http>, LocalWallet>;

/// Why talking to the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC endpoint could not be reached or answered with an error.
    #[error("RPC {url}: {reason}")]
    Rpc {
        /// The endpoint.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The node is on another chain than configured.
    #[error("the RPC endpoint is on chain {actual}, not the configured chain {expected}")]
    WrongChain {
        /// Configured chain id.
        expected: u64,
        /// The node's chain id.
        actual: u64,
    },
    /// The EVM key file is unusable.
    #[error("EVM key: {0}")]
    Key(String),
    /// The contract call or deployment failed (a revert names the contract's error).
    #[error("contract: {0}")]
    Contract(String),
    /// The committed contract artifact does not decode.
    #[error("contract artifact: {0}")]
    Artifact(String),
}

/// The RPC URL of a local anvil.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:8545";
/// anvil's chain id.
pub const DEFAULT_CHAIN_ID: u64 = 31337;
/// Most gas price paid for an anchor unless configured, in gwei.
pub const DEFAULT_GAS_PRICE_CEILING_GWEI: u64 = 200;

/// Where and how to anchor.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ChainSettings {
    /// The chain's JSON-RPC URL.
    #[arg(
        long,
        env = "POINTSLEDGER_RPC_URL",
        default_value = DEFAULT_RPC_URL
    )]
    pub rpc_url: String,
    /// The chain id the node must report (31337 for a local anvil).
    #[arg(long, env = "POINTSLEDGER_CHAIN_ID", default_value_t = DEFAULT_CHAIN_ID)]
    pub chain_id: u64,
    /// The file holding the EVM account's secret key (64 hex digits, mode 0600), which pays for
    /// anchors and is the contract's operator.
    #[arg(long, env = "POINTSLEDGER_EVM_KEY")]
    pub evm_key: PathBuf,
    /// Most gas price the anchorer will pay, in gwei (resends bump up to it).
    #[arg(
        long,
        env = "POINTSLEDGER_GAS_PRICE_CEILING_GWEI",
        default_value_t = DEFAULT_GAS_PRICE_CEILING_GWEI
    )]
    pub gas_price_ceiling_gwei: u64,
}

/// The endpoint as it may be shown in errors and logs: scheme, host and port only. Hosted RPC
/// URLs often carry an API key in their path, query or user info, and that is a secret.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path().len() > 1 || u.query().is_some() || !u.username().is_empty() {
                "/…"
            } else {
                ""
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(unparsable RPC URL)".into(),
    }
}

/// Removes `url` (as given and as the URL parser prints it) from an error text.
fn scrub(url: &str, text: String) -> String {
    let mut text = text.replace(url, &redact_url(url));
    if let Ok(u) = reqwest::Url::parse(url) {
        text = text.replace(u.as_str(), &redact_url(url));
    }
    text
}

fn rpc(url: &str) -> impl Fn(String) -> ChainError + '_ {
    move |reason| ChainError::Rpc {
        url: redact_url(url),
        reason: scrub(url, reason),
    }
}

fn artifact() -> Result<(Abi, Bytes), ChainError> {
    let v: serde_json::Value =
        serde_json::from_str(ARTIFACT).map_err(|e| ChainError::Artifact(e.to_string()))?;
    let abi: Abi = serde_json::from_value(v["abi"].clone())
        .map_err(|e| ChainError::Artifact(e.to_string()))?;
    let code = v["bytecode"]["object"]
        .as_str()
        .or_else(|| v["bytecode"].as_str())
        .ok_or_else(|| ChainError::Artifact("no bytecode".into()))?;
    let code: Bytes = code
        .parse()
        .map_err(|_| ChainError::Artifact("bytecode is not hex".into()))?;
    Ok((abi, code))
}

/// A provider for `rpc_url` whose node must report `chain_id`.
async fn provider(rpc_url: &str, chain_id: u64) -> Result<Provider<Http>, ChainError> {
    let err = rpc(rpc_url);
    let provider = Provider::<Http>::try_from(rpc_url)
        .map_err(|e| err(e.to_string()))?
        .interval(Duration::from_millis(100));
    let actual = provider
        .get_chainid()
        .await
        .map_err(|e| err(e.to_string()))?
        .as_u64();
    if actual != chain_id {
        return Err(ChainError::WrongChain {
            expected: chain_id,
            actual,
        });
    }
    Ok(provider)
}

async fn client(settings: &ChainSettings) -> Result<Arc<Client>, ChainError> {
    let provider = provider(&settings.rpc_url, settings.chain_id).await?;
    // The secret is read with the same permission checks as every key of the ledger.
    let secret = keys::read_key_file(&settings.evm_key)
        .map_err(|e| ChainError::Key(e.to_string()))?
        .to_bytes();
    let wallet = LocalWallet::from_bytes(&secret)
        .map_err(|_| ChainError::Key("not a valid secp256k1 secret key".into()))?
        .with_chain_id(settings.chain_id);
    Ok(Arc::new(SignerMiddleware::new(provider, wallet)))
}

/// Connects to the chain at `rpc_url` for reading only: the wallet is a throwaway that never
/// signs, so auditors need no key.
async fn read_only_client(rpc_url: &str, chain_id: u64) -> Result<Arc<Client>, ChainError> {
    let provider = provider(rpc_url, chain_id).await?;
    let wallet = LocalWallet::new(&mut rand::thread_rng()).with_chain_id(chain_id);
    Ok(Arc::new(SignerMiddleware::new(provider, wallet)))
}

/// Deploys `LedgerAnchor` with the EVM key's address as operator; returns the contract address.
pub async fn deploy(settings: &ChainSettings) -> Result<Address, ChainError> {
    let client = client(settings).await?;
    let (abi, code) = artifact()?;
    let operator = client.address();
    let factory = ContractFactory::new(abi, code, client);
    let contract = factory
        .deploy(operator)
        .map_err(|e| ChainError::Contract(scrub(&settings.rpc_url, e.to_string())))?
        .confirmations(1usize)
        .send()
        .await
        .map_err(|e| ChainError::Contract(scrub(&settings.rpc_url, e.to_string())))?;
    Ok(contract.address())
}

/// What a transaction's receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// The block that holds it.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: H256,
    /// Whether the call succeeded (false: reverted).
    pub success: bool,
}

/// A connection to a deployed `LedgerAnchor`.
pub struct Chain {
    client: Arc<Client>,
    contract: Contract<Client>,
    url: String,
}

impl Chain {
    /// Connects to the contract at `address`, checking the chain id.
    pub async fn connect(settings: &ChainSettings, address: Address) -> Result<Chain, ChainError> {
        let client = client(settings).await?;
        let (abi, _) = artifact()?;
        let contract = Contract::new(address, abi, client.clone());
        Ok(Chain {
            client,
            contract,
            url: settings.rpc_url.clone(),
        })
    }

    /// Connects to the contract at `address` to read it (no key needed).
    pub async fn read_only(
        rpc_url: &str,
        chain_id: u64,
        address: Address,
    ) -> Result<Chain, ChainError> {
        let client = read_only_client(rpc_url, chain_id).await?;
        let (abi, _) = artifact()?;
        let contract = Contract::new(address, abi, client.clone());
        Ok(Chain {
            client,
            contract,
            url: rpc_url.to_owned(),
        })
    }

    /// Every `Anchored(size, root, previousSize)` event of the contract, in chain order: the
    /// whole anchoring history, which the contract keeps append-only.
    pub async fn anchored_events(&self) -> Result<Vec<(u64, [u8; 32])>, ChainError> {
        let filter = ethers::types::Filter::new()
            .address(self.address())
            .event("Anchored(uint64,bytes32,uint64)")
            .from_block(0u64);
        let logs = self
            .client
            .get_logs(&filter)
            .await
            .map_err(|e| self.rpc_err(e))?;
        logs.iter()
            .map(|log| {
                let size = log
                    .topics
                    .get(1)
                    .map(|t| U256::from_big_endian(t.as_bytes()))
                    .filter(|s| *s <= U256::from(u64::MAX))
                    .ok_or_else(|| {
                        ChainError::Contract("an Anchored event without a size".into())
                    })?;
                let root: [u8; 32] = log
                    .data
                    .get(..32)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        ChainError::Contract("an Anchored event without a root".into())
                    })?;
                Ok((size.as_u64(), root))
            })
            .collect()
    }

    fn rpc_err(&self, e: impl std::fmt::Display) -> ChainError {
        rpc(&self.url)(e.to_string())
    }

    fn contract_err(&self, e: impl std::fmt::Display) -> ChainError {
        ChainError::Contract(scrub(&self.url, e.to_string()))
    }

    /// Checks that a `LedgerAnchor` is deployed at the address and that this account is its
    /// operator, so that a wrong address or key is named at once rather than as a revert on
    /// every anchor.
    pub async fn check(&self) -> Result<(), ChainError> {
        let code = self
            .client
            .get_code(self.address(), None)
            .await
            .map_err(|e| self.rpc_err(e))?;
        if code.is_empty() {
            return Err(ChainError::Contract(format!(
                "no contract at {:#x} on this chain (deployed on another chain, or the chain \
                 was reset?)",
                self.address()
            )));
        }
        let operator: Address = self
            .contract
            .method::<_, Address>("operator", ())
            .map_err(|e| self.contract_err(e))?
            .call()
            .await
            .map_err(|e| self.contract_err(e))?;
        if operator != self.operator() {
            return Err(ChainError::Key(format!(
                "the contract's operator is {operator:#x}, not this key's address {:#x}",
                self.operator()
            )));
        }
        Ok(())
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        self.contract.address()
    }

    /// The anchoring account's address.
    pub fn operator(&self) -> Address {
        self.client.address()
    }

    /// The last anchored tree size and root.
    pub async fn anchored(&self) -> Result<(u64, [u8; 32]), ChainError> {
        let size: u64 = self
            .contract
            .method::<_, u64>("treeSize", ())
            .map_err(|e| self.contract_err(e))?
            .call()
            .await
            .map_err(|e| self.contract_err(e))?;
        let root: [u8; 32] = self
            .contract
            .method::<_, [u8; 32]>("root", ())
            .map_err(|e| self.contract_err(e))?
            .call()
            .await
            .map_err(|e| self.contract_err(e))?;
        Ok((size, root))
    }

    /// The root anchored at `size` (zero if none).
    pub async fn root_at(&self, size: u64) -> Result<[u8; 32], ChainError> {
        self.contract
            .method::<_, [u8; 32]>("rootAt", size)
            .map_err(|e| self.contract_err(e))?
            .call()
            .await
            .map_err(|e| self.contract_err(e))
    }

    /// The account's next nonce, counting pending transactions.
    pub async fn next_nonce(&self) -> Result<U256, ChainError> {
        self.client
            .get_transaction_count(self.operator(), Some(BlockId::Number(BlockNumber::Pending)))
            .await
            .map_err(|e| self.rpc_err(e))
    }

    /// The node's suggested gas price.
    pub async fn gas_price(&self) -> Result<U256, ChainError> {
        self.client
            .get_gas_price()
            .await
            .map_err(|e| self.rpc_err(e))
    }

    /// Sends `anchor(size, root, proof)` with the given nonce and gas price; returns the hash.
    ///
    /// The call is simulated first, so a proof the contract would refuse is reported as that
    /// refusal instead of costing gas.
    pub async fn send_anchor(
        &self,
        size: u64,
        root: [u8; 32],
        proof: Vec<[u8; 32]>,
        nonce: U256,
        gas_price: U256,
    ) -> Result<H256, ChainError> {
        let call = self
            .contract
            .method::<_, ()>("anchor", (size, root, proof))
            .map_err(|e| self.contract_err(e))?;
        call.call().await.map_err(|e| self.contract_err(e))?;
        let call = call.nonce(nonce).gas_price(gas_price).gas(2_000_000u64);
        let pending = call.send().await.map_err(|e| self.contract_err(e))?;
        Ok(pending.tx_hash())
    }

    /// Sends a call that is expected to be refused and returns the refusal (for tests and for
    /// showing that the contract is a witness): `Ok(())` means the chain accepted it.
    pub async fn try_anchor(
        &self,
        size: u64,
        root: [u8; 32],
        proof: Vec<[u8; 32]>,
    ) -> Result<(), ChainError> {
        self.contract
            .method::<_, ()>("anchor", (size, root, proof))
            .map_err(|e| self.contract_err(e))?
            .call()
            .await
            .map_err(|e| self.contract_err(e))
    }

    /// The receipt of `tx`, if mined.
    pub async fn mined(&self, tx: H256) -> Result<Option<Mined>, ChainError> {
        let receipt = self
            .client
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| self.rpc_err(e))?;
        Ok(receipt.and_then(|r| {
            Some(Mined {
                block_number: r.block_number?.as_u64(),
                block_hash: r.block_hash?,
                success: r.status.map(|s| s.as_u64() == 1).unwrap_or(false),
            })
        }))
    }

    /// Whether the node still knows `tx` (mined or waiting in its pool).
    pub async fn knows(&self, tx: H256) -> Result<bool, ChainError> {
        Ok(self
            .client
            .get_transaction(tx)
            .await
            .map_err(|e| self.rpc_err(e))?
            .is_some())
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        Ok(self
            .client
            .get_block_number()
            .await
            .map_err(|e| self.rpc_err(e))?
            .as_u64())
    }

    /// The hash of block `number` on the node's current chain.
    pub async fn block_hash(&self, number: u64) -> Result<Option<H256>, ChainError> {
        Ok(self
            .client
            .get_block(number)
            .await
            .map_err(|e| self.rpc_err(e))?
            .and_then(|b| b.hash))
    }

    /// Sends a raw JSON-RPC request (anvil's test methods: `evm_mine`, `anvil_dropTransaction`).
    pub async fn request(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, ChainError> {
        self.client
            .provider()
            .request(method, params)
            .await
            .map_err(|e| self.rpc_err(e))
    }

    /// A plain value transfer, used by tests to move the chain along.
    pub async fn transfer_to_self(&self) -> Result<H256, ChainError> {
        let tx = TransactionRequest::pay(self.operator(), 1u64);
        Ok(self
            .client
            .send_transaction(tx, None)
            .await
            .map_err(|e| self.rpc_err(e))?
            .tx_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_urls_lose_their_secrets_in_errors() {
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(
            redact_url("https://eth-sepolia.example.com/v2/SECRETKEY"),
            "https://eth-sepolia.example.com/…"
        );
        assert_eq!(
            redact_url("https://user:SECRET@node.example.com/?key=SECRET"),
            "https://node.example.com/…"
        );
        let url = "https://node.example.com/v3/SECRET";
        let err = rpc(url)(format!("error sending request for url ({url}): refused"));
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
