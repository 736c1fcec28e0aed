//! `pointsledger serve` settings: command-line flags, `POINTSLEDGER_*` environment variables and
//! an optional TOML file, merged with the precedence flag > environment > file > default.
//!
//! clap reads a flag and its environment variable together (the flag wins). Every field is
//! optional there, so that a value given by neither can still come from the file named by
//! `--config`, and only then from the default that `--help` documents. The TOML keys are the
//! long flag names with `_` for `-` (`max_body_bytes = 65536`, `request_timeout = "10s"`);
//! unknown keys are refused so that a misspelt setting is not silently ignored.

use super::witnesses::WitnessTarget;
use crate::anchor::chain::{DEFAULT_CHAIN_ID, DEFAULT_GAS_PRICE_CEILING_GWEI, DEFAULT_RPC_URL};
use crate::anchor::{AnchorSettings, ChainSettings};
use crate::errors::Code;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Why `serve` cannot start with the settings it was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value the service cannot run with, or a needed one is missing.
    #[error("invalid settings: {0}")]
    Invalid(String),
    /// The settings file named by `--config` cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The error's code in the one table.
    pub fn code(&self) -> Code {
        Code::BadSettings
    }
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `pointsledger serve` settings as given on the command line and in the environment.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// The data directory, created by `pointsledger init` (required here, in the environment
    /// or in the config file).
    #[arg(long, env = "POINTSLEDGER_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free port. The address is printed as
    /// `listening on http://ADDR` once the socket is bound [default: 127.0.0.1:8080].
    #[arg(long, env = "POINTSLEDGER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// A TOML file setting any option of this command by its long name with `_` for `-`, e.g.
    /// `max_body_bytes = 65536` or `request_timeout = "10s"`. Flags and environment variables
    /// win over the file.
    #[arg(long, env = "POINTSLEDGER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest request body accepted, in bytes (all routes but the batch route); larger bodies
    /// get 413 `too_large` [default: 65536].
    #[arg(long, env = "POINTSLEDGER_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest body of `POST /v1/entries/batch`, in bytes [default: 1048576].
    #[arg(long, env = "POINTSLEDGER_MAX_BATCH_BODY_BYTES", value_name = "BYTES")]
    pub max_batch_body_bytes: Option<usize>,
    /// Most envelopes in one `POST /v1/entries/batch`; more get 413 `too_many_entries`
    /// [default: 256].
    #[arg(long, env = "POINTSLEDGER_MAX_BATCH", value_name = "N")]
    pub max_batch: Option<usize>,
    /// Longest a request may take, as `<n>ms`, `<n>s` or `<n>m`; slower requests get 408
    /// `timeout` (an entry may still have been appended: resubmitting the identical envelope
    /// returns its receipt) [default: 10s].
    #[arg(long, env = "POINTSLEDGER_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<DurationSetting>,
    /// How often a checkpoint is signed if the log grew, as `<n>ms`, `<n>s` or `<n>m`
    /// [default: 1s].
    #[arg(
        long,
        env = "POINTSLEDGER_CHECKPOINT_INTERVAL",
        value_name = "DURATION"
    )]
    pub checkpoint_interval: Option<DurationSetting>,
    /// Most envelopes the sequencer commits as one group (one batch, one flush)
    /// [default: 4096].
    #[arg(long, env = "POINTSLEDGER_MAX_GROUP", value_name = "N")]
    pub max_group: Option<usize>,
    /// Most write requests (`POST /v1/entries` and `/v1/entries/batch`) handled at once;
    /// further writes wait for a slot within their request timeout. Reads, `/healthz` and
    /// `/metrics` never wait for these slots [default: 512].
    #[arg(long, env = "POINTSLEDGER_MAX_CONCURRENCY", value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// Most read requests (every other route but `/healthz` and `/metrics`, which have no
    /// limit) handled at once; further reads wait for a slot within their request timeout
    /// [default: 512].
    #[arg(long, env = "POINTSLEDGER_MAX_READ_CONCURRENCY", value_name = "N")]
    pub max_read_concurrency: Option<usize>,
    /// Longest a request body may take to arrive, as `<n>ms`, `<n>s` or `<n>m`, counted apart
    /// from the request timeout; a slower body gets 408 `timeout` and its connection is closed
    /// (nothing was appended) [default: 5s].
    #[arg(long, env = "POINTSLEDGER_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<DurationSetting>,
    /// Longest a request's headers may take from its first byte; slower connections are closed
    /// [default: 5s].
    #[arg(long, env = "POINTSLEDGER_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<DurationSetting>,
    /// How long a connection may stay open with no request in progress and no bytes moving
    /// (before its first request and between kept-alive requests) [default: 30s].
    #[arg(long, env = "POINTSLEDGER_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<DurationSetting>,
    /// Most connections open at once; connections over it are closed as soon as they are
    /// accepted. 0 derives it from the descriptor limit, which the server raises to its hard
    /// limit at start: that limit less 256 (half of it below 512). A larger value is lowered
    /// to that [default: 0].
    #[arg(long, env = "POINTSLEDGER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address (one /64 for IPv6); further ones
    /// are closed as soon as they are accepted [default: 1024].
    #[arg(long, env = "POINTSLEDGER_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Writes signed by a consumer alone (`account.link_evm`, `referral.accept`) accepted per
    /// client address per minute, after a burst of `--consumer-write-burst`; more get 429
    /// `rate_limited` with `Retry-After`. 0 turns the limit off [default: 60].
    #[arg(
        long,
        env = "POINTSLEDGER_CONSUMER_WRITES_PER_MINUTE",
        value_name = "N"
    )]
    pub consumer_writes_per_minute: Option<u32>,
    /// Consumer-signed writes one address may make at once before the per-minute rate applies;
    /// 0 turns the limit off [default: 20].
    #[arg(long, env = "POINTSLEDGER_CONSUMER_WRITE_BURST", value_name = "N")]
    pub consumer_write_burst: Option<u32>,
    /// Free bytes kept on the data volume: below this, writes get 503 `storage_full` (reads go
    /// on) until space is freed; 0 turns the check off. The log grows its file by at most a
    /// quarter of it at a time, and the rest covers a group and its state [default: 268435456,
    /// 256 MiB].
    #[arg(long, env = "POINTSLEDGER_MIN_FREE_BYTES", value_name = "BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Entries whose accounts are kept as they were before each group, for reads at a recent
    /// checkpoint (`GET /v1/accounts/{id}?at=SIZE`, which audits under load compare with);
    /// each costs about the lot chunk its entry changed; 0 turns them off [default: 4096].
    #[arg(long, env = "POINTSLEDGER_ACCOUNT_VERSIONS", value_name = "ENTRIES")]
    pub account_versions: Option<u64>,
    /// The LedgerAnchor contract (`0x` address) to anchor checkpoints to; anchoring is on when
    /// this is set, and needs `--evm-key` too.
    #[arg(
        long,
        env = "POINTSLEDGER_CONTRACT",
        value_name = "ADDRESS",
        help_heading = "Anchoring"
    )]
    pub contract: Option<String>,
    /// The chain's JSON-RPC URL [default: http://127.0.0.1:8545].
    #[arg(
        long,
        env = "POINTSLEDGER_RPC_URL",
        value_name = "URL",
        help_heading = "Anchoring"
    )]
    pub rpc_url: Option<String>,
    /// The chain id the node must report [default: 31337, a local anvil].
    #[arg(
        long,
        env = "POINTSLEDGER_CHAIN_ID",
        value_name = "ID",
        help_heading = "Anchoring"
    )]
    pub chain_id: Option<u64>,
    /// The file holding the EVM secret key (64 hex digits, mode 0600) of the contract's
    /// operator, which pays for anchors.
    #[arg(
        long,
        env = "POINTSLEDGER_EVM_KEY",
        value_name = "FILE",
        help_heading = "Anchoring"
    )]
    pub evm_key: Option<PathBuf>,
    /// Blocks on top of an anchor's block before it is final (1 = its own block) [default: 2].
    #[arg(
        long,
        env = "POINTSLEDGER_CONFIRMATIONS",
        value_name = "N",
        help_heading = "Anchoring"
    )]
    pub confirmations: Option<u64>,
    /// How often the newest checkpoint is anchored if the chain is behind it [default: 30s].
    #[arg(
        long,
        env = "POINTSLEDGER_ANCHOR_INTERVAL",
        value_name = "DURATION",
        help_heading = "Anchoring"
    )]
    pub anchor_interval: Option<DurationSetting>,
    /// How long an anchor transaction may wait unmined before it is sent again, same nonce,
    /// with a higher gas price [default: 60s].
    #[arg(
        long,
        env = "POINTSLEDGER_ANCHOR_RESEND_AFTER",
        value_name = "DURATION",
        help_heading = "Anchoring"
    )]
    pub anchor_resend_after: Option<DurationSetting>,
    /// How often the anchors called final are read back from the chain (also once at start);
    /// one the chain no longer holds (a deep reorg, a reset chain) is anchored again
    /// [default: 60s].
    #[arg(
        long,
        env = "POINTSLEDGER_ANCHOR_RECHECK_INTERVAL",
        value_name = "DURATION",
        help_heading = "Anchoring"
    )]
    pub anchor_recheck_interval: Option<DurationSetting>,
    /// Most gas price paid for an anchor, in gwei [default: 200].
    #[arg(
        long,
        env = "POINTSLEDGER_GAS_PRICE_CEILING_GWEI",
        value_name = "GWEI",
        help_heading = "Anchoring"
    )]
    pub gas_price_ceiling_gwei: Option<u64>,
    /// A witness to ask for a cosignature of each checkpoint: its key as
    /// `pointsledger witness --print-key` prints it, `@`, its URL. Repeatable.
    #[arg(
        long = "witness",
        env = "POINTSLEDGER_WITNESSES",
        value_delimiter = ',',
        value_name = "NAME+KEYID+KEY@URL",
        help_heading = "Witnesses"
    )]
    pub witnesses: Vec<WitnessTarget>,
    /// Cosignatures a checkpoint needs to count as witnessed (`pointsledger_witnessed_size`)
    /// [default: every witness].
    #[arg(
        long,
        env = "POINTSLEDGER_WITNESS_QUORUM",
        value_name = "K",
        help_heading = "Witnesses"
    )]
    pub witness_quorum: Option<usize>,
}

/// A duration written as `<n>ms`, `<n>s` or `<n>m` (flags, environment and TOML alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl FromStr for DurationSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let bad = || format!("{s:?} is not a duration like 250ms, 10s or 2m");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(DurationSetting(d))
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `--config` file: the same settings as the flags, every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    max_batch_body_bytes: Option<usize>,
    max_batch: Option<usize>,
    request_timeout: Option<DurationSetting>,
    checkpoint_interval: Option<DurationSetting>,
    max_group: Option<usize>,
    max_concurrency: Option<usize>,
    max_read_concurrency: Option<usize>,
    body_timeout: Option<DurationSetting>,
    header_timeout: Option<DurationSetting>,
    idle_timeout: Option<DurationSetting>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    consumer_writes_per_minute: Option<u32>,
    consumer_write_burst: Option<u32>,
    min_free_bytes: Option<u64>,
    account_versions: Option<u64>,
    contract: Option<String>,
    rpc_url: Option<String>,
    chain_id: Option<u64>,
    evm_key: Option<PathBuf>,
    confirmations: Option<u64>,
    anchor_interval: Option<DurationSetting>,
    anchor_resend_after: Option<DurationSetting>,
    anchor_recheck_interval: Option<DurationSetting>,
    gas_price_ceiling_gwei: Option<u64>,
    witnesses: Option<Vec<String>>,
    witness_quorum: Option<usize>,
}

/// How the service behaves once running; everything but where the data is and where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Largest request body on every route but the batch route, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of the batch route, in bytes.
    pub max_batch_body_bytes: usize,
    /// Most envelopes in one batch.
    pub max_batch: usize,
    /// Longest a request may take before it is answered with 408.
    pub request_timeout: Duration,
    /// How often the sequencer signs a checkpoint if the log grew.
    pub checkpoint_interval: Duration,
    /// Most envelopes in one sequencer group.
    pub max_group: usize,
    /// Most write requests handled at once.
    pub max_concurrency: usize,
    /// Most read requests handled at once (`/healthz` and `/metrics` are not counted).
    pub max_read_concurrency: usize,
    /// Longest a request body may take to arrive (apart from the request timeout).
    pub body_timeout: Duration,
    /// Longest a request's headers may take from its first byte.
    pub header_timeout: Duration,
    /// Longest a connection may stay open with no request in progress and nothing moving.
    pub idle_timeout: Duration,
    /// Most connections open at once; 0 derives it from the descriptor limit.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// Consumer-signed writes per address per minute (0: no limit).
    pub consumer_writes_per_minute: u32,
    /// Consumer-signed writes one address may make at once (0: no limit).
    pub consumer_write_burst: u32,
    /// Free bytes the writer keeps on the data volume (0: no check).
    pub min_free_bytes: u64,
    /// Entries whose accounts are kept as they were before each group (0: none).
    pub account_versions: u64,
    /// Anchoring to an EVM chain, if on.
    pub anchor: Option<AnchorSettings>,
    /// The witnesses asked to cosign each checkpoint.
    pub witnesses: Vec<WitnessTarget>,
    /// Cosignatures a checkpoint needs to count as witnessed.
    pub witness_quorum: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 1024 * 1024,
            max_batch: 256,
            request_timeout: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
            max_group: 4096,
            max_concurrency: 512,
            max_read_concurrency: 512,
            body_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_connections_per_ip: 1024,
            consumer_writes_per_minute: 60,
            consumer_write_burst: 20,
            min_free_bytes: crate::ledger::DEFAULT_MIN_FREE_BYTES,
            account_versions: 4096,
            anchor: None,
            witnesses: Vec::new(),
            witness_quorum: 0,
        }
    }
}

impl Settings {
    /// Refuses settings the service cannot run with (zero sizes, counts or durations; 0 is
    /// allowed only where it means "derive" or "off").
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_batch_body_bytes", self.max_batch_body_bytes),
            ("max_batch", self.max_batch),
            ("max_group", self.max_group),
            ("max_concurrency", self.max_concurrency),
            ("max_read_concurrency", self.max_read_concurrency),
            ("max_connections_per_ip", self.max_connections_per_ip),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        let durations = [
            ("request_timeout", self.request_timeout),
            ("checkpoint_interval", self.checkpoint_interval),
            ("body_timeout", self.body_timeout),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Invalid(format!(
                "{name} must be longer than 0"
            )));
        }
        if self.witnesses.len() >= crate::checkpoint::MAX_NOTE_SIGNATURES {
            return Err(ConfigError::Invalid(format!(
                "at most {} witnesses: a checkpoint carries at most {} signatures, the log's \
                 among them",
                crate::checkpoint::MAX_NOTE_SIGNATURES - 1,
                crate::checkpoint::MAX_NOTE_SIGNATURES
            )));
        }
        let mut names: Vec<&str> = self.witnesses.iter().map(|w| w.key.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(format!(
                "two witnesses are named {}: their cosignatures could not be told apart",
                w[0]
            )));
        }
        let keys: Vec<_> = self.witnesses.iter().map(|w| w.key.clone()).collect();
        crate::witness::cosignature::check_distinct(&keys)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.witness_quorum > self.witnesses.len() {
            return Err(ConfigError::Invalid(format!(
                "witness_quorum is {} but {} witnesses are configured",
                self.witness_quorum,
                self.witnesses.len()
            )));
        }
        if let Some(a) = &self.anchor {
            if a.interval.is_zero() || a.resend_after.is_zero() || a.recheck_interval.is_zero() {
                return Err(ConfigError::Invalid(
                    "anchor_interval, anchor_resend_after and anchor_recheck_interval must be \
                     longer than 0"
                        .into(),
                ));
            }
            if a.confirmations == 0 {
                return Err(ConfigError::Invalid(
                    "confirmations must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Everything `serve` needs, resolved from flags, environment, file and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The data directory.
    pub data: PathBuf,
    /// The address to listen on.
    pub listen: String,
    /// The service's tuning.
    pub settings: Settings,
}

impl ServeConfig {
    /// Resolves `args` (flags and environment, already merged by clap) over the file named by
    /// `args.config`, if any, over the defaults.
    pub fn resolve(args: &ServeArgs) -> Result<ServeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        ServeConfig::merge(args, file)
    }

    fn merge(args: &ServeArgs, file: FileConfig) -> Result<ServeConfig, ConfigError> {
        let d = Settings::default();
        let dur = |a: Option<DurationSetting>, f: Option<DurationSetting>, default: Duration| {
            a.or(f).map_or(default, |s| s.0)
        };
        let settings = Settings {
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            max_batch_body_bytes: args
                .max_batch_body_bytes
                .or(file.max_batch_body_bytes)
                .unwrap_or(d.max_batch_body_bytes),
            max_batch: args.max_batch.or(file.max_batch).unwrap_or(d.max_batch),
            request_timeout: dur(
                args.request_timeout,
                file.request_timeout,
                d.request_timeout,
            ),
            checkpoint_interval: dur(
                args.checkpoint_interval,
                file.checkpoint_interval,
                d.checkpoint_interval,
            ),
            max_group: args.max_group.or(file.max_group).unwrap_or(d.max_group),
            max_concurrency: args
                .max_concurrency
                .or(file.max_concurrency)
                .unwrap_or(d.max_concurrency),
            max_read_concurrency: args
                .max_read_concurrency
                .or(file.max_read_concurrency)
                .unwrap_or(d.max_read_concurrency),
            body_timeout: dur(args.body_timeout, file.body_timeout, d.body_timeout),
            header_timeout: dur(args.header_timeout, file.header_timeout, d.header_timeout),
            idle_timeout: dur(args.idle_timeout, file.idle_timeout, d.idle_timeout),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_connections_per_ip: args
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            consumer_writes_per_minute: args
                .consumer_writes_per_minute
                .or(file.consumer_writes_per_minute)
                .unwrap_or(d.consumer_writes_per_minute),
            consumer_write_burst: args
                .consumer_write_burst
                .or(file.consumer_write_burst)
                .unwrap_or(d.consumer_write_burst),
            min_free_bytes: args
                .min_free_bytes
                .or(file.min_free_bytes)
                .unwrap_or(d.min_free_bytes),
            account_versions: args
                .account_versions
                .or(file.account_versions)
                .unwrap_or(d.account_versions),
            anchor: anchor_settings(args, &file)?,
            witnesses: Vec::new(),
            witness_quorum: 0,
        };
        let witnesses = if args.witnesses.is_empty() {
            file.witnesses
                .unwrap_or_default()
                .iter()
                .map(|w| w.parse())
                .collect::<Result<Vec<WitnessTarget>, String>>()
                .map_err(ConfigError::Invalid)?
        } else {
            args.witnesses.clone()
        };
        let settings = Settings {
            witness_quorum: args
                .witness_quorum
                .or(file.witness_quorum)
                .unwrap_or(witnesses.len()),
            witnesses,
            ..settings
        };
        settings.validate()?;
        let data = args.data.clone().or(file.data).ok_or_else(|| {
            ConfigError::Invalid(
                "no data directory: pass --data DIR, set POINTSLEDGER_DATA or put `data` in the \
                 config file"
                    .into(),
            )
        })?;
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        Ok(ServeConfig {
            data,
            listen,
            settings,
        })
    }
}

/// Anchoring is on when a contract is named; it then needs the EVM key file.
fn anchor_settings(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<AnchorSettings>, ConfigError> {
    let Some(contract) = args.contract.clone().or(file.contract.clone()) else {
        return Ok(None);
    };
    let contract = contract.trim().parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "contract must be a 0x address of 40 hex digits, got {contract:?}"
        ))
    })?;
    let evm_key = args
        .evm_key
        .clone()
        .or(file.evm_key.clone())
        .ok_or_else(|| {
            ConfigError::Invalid(
                "anchoring to a contract needs the operator's EVM key: pass --evm-key FILE, set \
             POINTSLEDGER_EVM_KEY or put `evm_key` in the config file"
                    .into(),
            )
        })?;
    let dur = |a: Option<DurationSetting>, f: Option<DurationSetting>, default: u64| {
        a.or(f).map_or(Duration::from_secs(default), |s| s.0)
    };
    Ok(Some(AnchorSettings {
        chain: ChainSettings {
            rpc_url: args
                .rpc_url
                .clone()
                .or(file.rpc_url.clone())
                .unwrap_or_else(|| DEFAULT_RPC_URL.to_owned()),
            chain_id: args.chain_id.or(file.chain_id).unwrap_or(DEFAULT_CHAIN_ID),
            evm_key,
            gas_price_ceiling_gwei: args
                .gas_price_ceiling_gwei
                .or(file.gas_price_ceiling_gwei)
                .unwrap_or(DEFAULT_GAS_PRICE_CEILING_GWEI),
        },
        contract,
        confirmations: args.confirmations.or(file.confirmations).unwrap_or(2),
        interval: dur(args.anchor_interval, file.anchor_interval, 30),
        resend_after: dur(args.anchor_resend_after, file.anchor_resend_after, 60),
        recheck_interval: dur(
            args.anchor_recheck_interval,
            file.anchor_recheck_interval,
            60,
        ),
    }))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.to_string().replace('\n', " ");
        ConfigError::Invalid(format!("{}: {}", path.display(), msg.trim()))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            "250ms".parse::<DurationSetting>(),
            Ok(DurationSetting(Duration::from_millis(250)))
        );
        assert_eq!(
            "10s".parse::<DurationSetting>().unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            "2m".parse::<DurationSetting>().unwrap().0,
            Duration::from_secs(120)
        );
        for bad in ["10", "s", "1h", "-1s", "1.5s", ""] {
            assert!(bad.parse::<DurationSetting>().is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = toml::from_str(
            "data = \"/from/file\"\nlisten = \"0.0.0.0:1\"\nmax_batch = 7\n\
             request_timeout = \"3s\"\ncheckpoint_interval = \"250ms\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            max_batch: Some(9),
            listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        let c = ServeConfig::merge(&args, file).unwrap();
        assert_eq!(c.data, PathBuf::from("/from/file"));
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.settings.max_batch, 9);
        assert_eq!(c.settings.request_timeout, Duration::from_secs(3));
        assert_eq!(c.settings.checkpoint_interval, Duration::from_millis(250));
        assert_eq!(c.settings.max_body_bytes, 64 * 1024);
        assert_eq!(
            c.settings.max_connections, 0,
            "derived from the descriptor limit"
        );
    }

    #[test]
    fn edge_settings_come_from_the_file_too() {
        let file: FileConfig = toml::from_str(
            "data = \"/d\"\nbody_timeout = \"2s\"\nheader_timeout = \"1s\"\n\
             idle_timeout = \"9s\"\nmax_connections = 5000\nmax_connections_per_ip = 40\n\
             max_read_concurrency = 64\nconsumer_writes_per_minute = 0\n\
             consumer_write_burst = 5\n",
        )
        .unwrap();
        let args = ServeArgs {
            header_timeout: Some(DurationSetting(Duration::from_millis(300))),
            ..ServeArgs::default()
        };
        let s = ServeConfig::merge(&args, file).unwrap().settings;
        assert_eq!(s.body_timeout, Duration::from_secs(2));
        assert_eq!(s.header_timeout, Duration::from_millis(300));
        assert_eq!(s.idle_timeout, Duration::from_secs(9));
        assert_eq!(
            (
                s.max_connections,
                s.max_connections_per_ip,
                s.max_read_concurrency
            ),
            (5000, 40, 64)
        );
        assert_eq!(
            (s.consumer_writes_per_minute, s.consumer_write_burst),
            (0, 5)
        );
        let zero = ServeArgs {
            data: Some("/d".into()),
            idle_timeout: Some(DurationSetting(Duration::ZERO)),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::merge(&zero, FileConfig::default()).is_err());
    }

    #[test]
    fn unknown_keys_and_zero_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("max_batches = 3").is_err());
        let args = ServeArgs {
            data: Some("/d".into()),
            max_group: Some(0),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::merge(&args, FileConfig::default()).is_err());
        let args = ServeArgs::default();
        assert!(
            ServeConfig::merge(&args, FileConfig::default()).is_err(),
            "no data directory"
        );
    }
}
