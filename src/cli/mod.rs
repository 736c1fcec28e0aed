//! The command line: embedded mode on a data directory (`--data DIR`), or a client of a
//! running server (`--server URL`) for the same reads and writes.
//!
//! Every command prints its result on stdout (JSON, one object per line, where it prints data)
//! and a one-line error on stderr with a non-zero exit when anything is wrong. Commands that
//! append sign a checkpoint covering what they wrote before they exit, so a data directory at
//! rest is always verifiable.

use crate::client::Client;
use crate::clock::SystemClock;
use crate::dsse::{self, Envelope};
use crate::errors::Code;
use crate::ledger::{self, Ledger, LedgerError};
use crate::payload::{Payload, KINDS};
use crate::{keys, merkle};
use anyhow::{anyhow, bail, Context, Result};
use backend::{Backend, Target};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod backend;
mod till;

/// A verifiable points-and-rewards ledger.
#[derive(Parser, Debug)]
#[command(name = "pointsledger", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A chain to read anchors from (`audit`, `verify`); no key needed.
#[derive(clap::Args, Debug)]
struct ChainRead {
    /// A chain RPC URL: check anchors against the contract (with --contract).
    #[arg(long, requires = "contract")]
    rpc: Option<String>,
    /// The LedgerAnchor contract's address (with --rpc).
    #[arg(long, requires = "rpc")]
    contract: Option<String>,
    /// The chain id the RPC endpoint must report.
    #[arg(long, default_value_t = crate::anchor::chain::DEFAULT_CHAIN_ID)]
    chain_id: u64,
}

impl ChainRead {
    /// `(rpc, chain id, contract)` when both --rpc and --contract are given.
    fn resolve(self) -> Result<Option<(String, u64, crate::anchor::Address)>> {
        match (self.rpc, self.contract) {
            (Some(rpc), Some(c)) => Ok(Some((rpc, self.chain_id, parse_contract(&c)?))),
            _ => Ok(None),
        }
    }
}

/// Witnesses whose cosignatures a checkpoint must carry (`verify`, `audit`).
#[derive(clap::Args, Debug)]
struct WitnessRead {
    /// A witness key (`name+keyid+key`, as `pointsledger witness --print-key` prints it), or a
    /// file holding it. Repeatable.
    #[arg(long = "witness-key", value_name = "KEY")]
    witness_keys: Vec<String>,
    /// Valid cosignatures required among the --witness-key witnesses [default: all of them].
    #[arg(long, requires = "witness_keys")]
    quorum: Option<usize>,
}

impl WitnessRead {
    /// The keys and the quorum, parsed.
    fn resolve(&self) -> Result<(Vec<crate::witness::cosignature::CosignerKey>, usize)> {
        let keys = self
            .witness_keys
            .iter()
            .map(|k| {
                let k = key_or_file(k)?;
                crate::witness::cosignature::CosignerKey::parse(&k)
                    .map_err(|e| anyhow!("--witness-key {k}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        crate::witness::cosignature::check_distinct(&keys).map_err(|e| anyhow!("{e}"))?;
        let quorum = self.quorum.unwrap_or(keys.len());
        if quorum > keys.len() {
            bail!(
                "--quorum {quorum} is more than the {} witness keys given",
                keys.len()
            );
        }
        Ok((keys, quorum))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a key into a new 0600 file and print its public id (with --evm, the EVM
    /// address of the same secret, for `deploy` and `anchor`).
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Print the EVM address instead of the Ed25519 public id.
        #[arg(long)]
        evm: bool,
    },
    /// Create a new ledger: log and operator keys under DIR/keys, an empty log under DIR/log and
    /// an empty state store under DIR/state.
    Init {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The log's origin, e.g. `ledger.example.com/points` (checkpoint first line and key name).
        #[arg(long)]
        origin: String,
    },
    /// Sign a payload as a DSSE envelope (printed on stdout).
    Sign {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The payload kind: merchant.register, merchant.update, purchase, redeem, refund,
        /// referral.accept or account.link_evm.
        #[arg(long)]
        kind: Option<String>,
        /// Add this key's signature to an existing envelope (e.g. a merchant countersigning a
        /// consumer's redemption) instead of signing a new payload.
        #[arg(long, value_name = "ENVELOPE.json")]
        cosign: Option<PathBuf>,
        /// The payload JSON file (`-` for stdin); with --cosign it must match the envelope's.
        payload: Option<PathBuf>,
    },
    /// Sign a payload and send it to a server; prints the receipt.
    Submit {
        /// The server's base URL.
        #[arg(long)]
        server: String,
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The payload kind.
        #[arg(long)]
        kind: String,
        /// The payload JSON file (`-` for stdin).
        payload: PathBuf,
    },
    /// Verify and append envelopes; prints one JSON receipt per line.
    ///
    /// With --data and files, the append is all-or-nothing: if any envelope is refused nothing
    /// is written. With --data and `-`, envelopes are read one JSON object per line from stdin
    /// and appended in groups as they arrive; a receipt line is printed only once its entry is
    /// durable, and refused envelopes get an error line. With --server, each envelope is
    /// submitted and answered on its own.
    Append {
        #[command(flatten)]
        target: Target,
        /// Envelope files, or `-` for JSON lines on stdin (embedded mode).
        #[arg(required = true)]
        envelopes: Vec<PathBuf>,
    },
    /// Print an account's balance, lots and linked address as JSON.
    Balance {
        #[command(flatten)]
        target: Target,
        /// The account's public key id.
        account: String,
    },
    /// Print an account's history, one JSON row per entry, each with why the points moved.
    History {
        #[command(flatten)]
        target: Target,
        /// The account's public key id.
        account: String,
    },
    /// Quote an order: the referral discount and the most points redeemable on it.
    Quote {
        #[command(flatten)]
        target: Target,
        /// The merchant's key id.
        #[arg(long)]
        merchant: String,
        /// The consumer's key id.
        #[arg(long)]
        consumer: String,
        /// The order's amount in minor units.
        #[arg(long)]
        amount: u64,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        target: Target,
    },
    /// Print the log's verifier key (`name+keyid+base64`).
    LogKey {
        #[command(flatten)]
        target: Target,
    },
    /// Print leaves START..END (END exclusive), one base64 leaf per line.
    Leaves {
        #[command(flatten)]
        target: Target,
        /// First leaf index.
        #[arg(long)]
        start: u64,
        /// One past the last leaf index.
        #[arg(long)]
        end: u64,
    },
    /// Produce inclusion or consistency proofs.
    #[command(subcommand)]
    Prove(Prove),
    /// Save the receipt of entry INDEX (a c2sp.org/tlog-proof against the latest checkpoint).
    Receipt {
        #[command(flatten)]
        target: Target,
        /// The entry's index.
        #[arg(long)]
        index: u64,
        /// Where to save it (default: receipt-INDEX.tlog-proof, or .json with --anchored).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Save the JSON receipt with the on-chain anchor that covers its checkpoint and the
        /// consistency proof to it (with --server), for `verify --rpc`.
        #[arg(long)]
        anchored: bool,
        /// Prove against the stored checkpoint of this size instead of the latest (with
        /// --server).
        #[arg(long)]
        checkpoint: Option<u64>,
    },
    /// Verify a receipt offline: checkpoint signature, inclusion, envelope signatures; with
    /// --rpc also that the root anchored on chain covers it.
    Verify {
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        log_key: String,
        /// The receipt: a .tlog-proof file, or the JSON of `receipt --anchored`.
        proof: PathBuf,
        #[command(flatten)]
        chain: ChainRead,
        #[command(flatten)]
        witnesses: WitnessRead,
    },
    /// At the till, the consumer's side: sign a redemption, save it and show it as a QR code
    /// for the merchant to scan.
    RedeemRequest {
        /// The consumer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The merchant's key id.
        #[arg(long)]
        merchant: String,
        /// The merchant's order reference.
        #[arg(long)]
        order_id: String,
        /// The order's amount in minor units.
        #[arg(long)]
        order_amount: u64,
        /// Points to spend.
        #[arg(long)]
        points: u64,
        /// The request expires this many seconds from now.
        #[arg(long, default_value_t = 300)]
        expires_in: u64,
        /// Where to save the half-signed envelope.
        #[arg(long)]
        out: PathBuf,
    },
    /// At the till, the merchant's side: check a consumer's redemption, countersign it and
    /// submit it; prints the receipt.
    RedeemAccept {
        /// The server's base URL.
        #[arg(long)]
        server: String,
        /// The merchant's key file.
        #[arg(long)]
        key: PathBuf,
        /// The consumer's half-signed envelope.
        envelope: PathBuf,
    },
    /// Replay the whole log into fresh state and check it matches.
    Rebuild {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Move a data directory of the earlier layout (everything in DIR/db) to the current one
    /// (the log in DIR/log, the state in DIR/state), checking every leaf; safe to run again if
    /// cut short.
    Migrate {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Seed a realistic demo program: merchants, consumers, purchases, referrals, redemptions,
    /// refunds and an EVM link.
    Demo {
        /// The data directory (initialised with `init`).
        #[arg(long)]
        data: PathBuf,
        /// How many consumers.
        #[arg(long, default_value_t = 20)]
        consumers: u64,
        /// How many purchases.
        #[arg(long, default_value_t = 100)]
        purchases: u64,
    },
    /// Deploy the LedgerAnchor contract with the EVM key's address as operator; prints its
    /// address.
    Deploy {
        #[command(flatten)]
        chain: crate::anchor::ChainSettings,
    },
    /// Anchor the newest checkpoint of a data directory to the chain and wait until the anchor
    /// is final; prints each step's record as a JSON line.
    Anchor {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The LedgerAnchor contract's address.
        #[arg(long, env = "POINTSLEDGER_CONTRACT")]
        contract: String,
        #[command(flatten)]
        chain: crate::anchor::ChainSettings,
        /// Blocks on top of the anchoring block before the anchor is final (1 = its own).
        #[arg(long, default_value_t = 2)]
        confirmations: u64,
        /// Seconds to wait for finality before giving up (the state is kept; run again).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Audit a server's log as a monitor: mirror it into a state directory (resuming where the
    /// last run stopped) and check every signature, the replayed effects, the tree, the latest
    /// checkpoint against the last one seen, every anchor and the balances the server reports.
    /// Exits 0 only if all holds; otherwise names the first discrepancy.
    Audit {
        /// The server's URL.
        #[arg(long, env = "POINTSLEDGER_SERVER")]
        server: String,
        /// The mirror's directory; keep it between runs to audit incrementally.
        #[arg(long, default_value = "pointsledger-audit")]
        state: PathBuf,
        /// The log's verifier key (`name+keyid+base64`), or a file holding it. Pinned on the
        /// first run (taken from the server if not given, and printed) and checked afterwards.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        chain: ChainRead,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Checkpoints asked for per request of the checkpoint history (tests page with 1).
        #[arg(long, hide = true, default_value_t = crate::audit::CHECKPOINTS_PAGE as u64,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        checkpoints_page: u64,
        #[command(flatten)]
        witnesses: WitnessRead,
    },
    /// Check a split-view evidence file (`split-view-A-B.json`, written by `audit`): both
    /// checkpoints signed by the log key and not of one tree. Exits 0 only if it shows a split
    /// view.
    SplitView {
        /// The log's verifier key (`name+keyid+base64`), or a file holding it.
        #[arg(long)]
        log_key: String,
        /// The evidence file (JSON).
        evidence: PathBuf,
    },
    /// Run the HTTP service on a data directory.
    Serve(Box<crate::server::ServeArgs>),
    /// Run a c2sp.org/tlog-witness: cosign the checkpoints of the logs it trusts, each only if
    /// it extends the last one it cosigned.
    Witness(crate::witness::WitnessArgs),
    /// Measure ingest, signature verification and proof generation in process; ends with
    /// `NAME VALUE UNIT` lines. `bench http` measures a running server instead.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        http: Option<BenchHttp>,
        /// A scratch directory (created; its contents are replaced).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Entries per ingest measurement.
        #[arg(long, default_value_t = 50_000)]
        entries: u64,
        /// Tree size for the inclusion proof measurement.
        #[arg(long, default_value_t = 1_000_000)]
        tree_size: u64,
    },
}

#[derive(Subcommand, Debug)]
enum BenchHttp {
    /// Load a running server over keep-alive connections: single and batched submissions.
    Http(crate::bench::HttpArgs),
    /// Time inclusion proofs from a running server at random indexes of its latest checkpoint,
    /// each checked against the checkpoint's root.
    Proofs(crate::bench::ProofArgs),
}

#[derive(Subcommand, Debug)]
enum Prove {
    /// A c2sp.org/tlog-proof for leaf INDEX against the checkpoint of size N (default: latest).
    Inclusion {
        #[command(flatten)]
        target: Target,
        /// The leaf index.
        #[arg(long)]
        index: u64,
        /// The checkpoint's tree size.
        #[arg(long)]
        size: Option<u64>,
    },
    /// The RFC 6962 consistency proof from size FROM to size TO, one base64 hash per line.
    Consistency {
        #[command(flatten)]
        target: Target,
        /// The older tree size (at least 1).
        #[arg(long)]
        from: u64,
        /// The newer tree size.
        #[arg(long)]
        to: u64,
    },
}

/// Runs the command line; errors are printed as one line on stderr, `error: CODE: MESSAGE`
/// when the error has a code in the one table ([`crate::errors`]), and the exit code is the
/// code's class's (1 for a failure without a code, such as a file that cannot be read).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Witness(_)) {
        crate::server::init_tracing_at("warn");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            match error_code(&e) {
                Some(code) => {
                    eprintln!("error: {code}: {msg}");
                    ExitCode::from(code.class().exit_code())
                }
                None => {
                    eprintln!("error: {msg}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The code of the first error in `e`'s chain that has one.
fn error_code(e: &anyhow::Error) -> Option<Code> {
    e.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<LedgerError>() {
            Some(e.code())
        } else if let Some(e) = cause.downcast_ref::<crate::engine::EngineError>() {
            Some(e.code())
        } else if let Some(e) = cause.downcast_ref::<dsse::DsseError>() {
            Some(e.code())
        } else if let Some(e) = cause.downcast_ref::<crate::receipt::ReceiptError>() {
            Some(e.code())
        } else if let Some(e) = cause.downcast_ref::<crate::server::ServerError>() {
            Some(e.code())
        } else if let Some(e) = cause.downcast_ref::<crate::server::ConfigError>() {
            Some(e.code())
        } else if let Some(crate::client::ClientError::Api { code, .. }) =
            cause.downcast_ref::<crate::client::ClientError>()
        {
            Code::parse(code)
        } else {
            None
        }
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn open(data: &Path) -> Result<Ledger> {
    Ok(Ledger::open(data, Arc::new(SystemClock))?)
}

fn read_envelope(path: &Path) -> Result<Envelope> {
    dsse::parse(&read_input(path)?).with_context(|| format!("{}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, evm } => {
            let key = keys::generate();
            let id = match evm {
                true => crate::evm::address_of(&key.to_bytes())?,
                false => keys::public_id(&key.verifying_key()),
            };
            keys::write_key_file(&out, &key)?;
            println!("{id}");
        }
        Command::Init { data, origin } => {
            let config = ledger::init(&data, &origin)?;
            let ledger = open(&data)?;
            print_json(&serde_json::json!({
                "origin": config.log.origin,
                "verifier_key": ledger.verifier_key(),
                "operator_key": config.log.operator,
                "log_key_file": ledger::DataDir(data.clone()).log_key(),
                "operator_key_file": ledger::DataDir(data.clone()).operator_key(),
            }))?;
        }
        Command::Sign {
            key,
            kind,
            cosign,
            payload,
        } => {
            let env = sign(&key, kind.as_deref(), cosign.as_deref(), payload.as_deref())?;
            println!("{}", String::from_utf8_lossy(&env.to_json_bytes()));
        }
        Command::Submit {
            server,
            key,
            kind,
            payload,
        } => {
            let env = sign(&key, Some(&kind), None, Some(&payload))?;
            let client = Client::new(&server)?;
            print_json(&backend::runtime()?.block_on(client.submit(&env))?)?;
        }
        Command::Append { target, envelopes } => match (&target.data, &target.server) {
            (Some(data), _) => append(data, &envelopes)?,
            (_, Some(server)) => {
                let envs = envelopes
                    .iter()
                    .map(|f| read_envelope(f))
                    .collect::<Result<Vec<_>>>()?;
                let client = Client::new(server)?;
                let mut refused = 0;
                for r in backend::submit_remote(&client, &backend::runtime()?, &envs) {
                    match r {
                        Ok(receipt) => print_json(&receipt)?,
                        Err(e) => {
                            refused += 1;
                            eprintln!("error: {e}");
                        }
                    }
                }
                if refused > 0 {
                    bail!("{refused} envelope(s) refused");
                }
            }
            _ => bail!("give --data DIR or --server URL"),
        },
        Command::Balance { target, account } => {
            keys::parse_public_id(&account)?;
            print_json(&Backend::open(&target)?.account(&account)?)?;
        }
        Command::History { target, account } => {
            keys::parse_public_id(&account)?;
            Backend::open(&target)?.history(&account, &mut |row| print_json(&row))?;
        }
        Command::Quote {
            target,
            merchant,
            consumer,
            amount,
        } => {
            keys::parse_public_id(&merchant)?;
            keys::parse_public_id(&consumer)?;
            print_json(&Backend::open(&target)?.quote(&merchant, &consumer, amount)?)?;
        }
        Command::Checkpoint { target } => print!("{}", Backend::open(&target)?.checkpoint()?),
        Command::LogKey { target } => {
            println!("{}", Backend::open(&target)?.verifier_key()?);
        }
        Command::Leaves { target, start, end } => {
            let backend = Backend::open(&target)?;
            let size = backend.size()?;
            if start >= end || end > size {
                bail!("need START < END <= {size} (the log's size); got {start}..{end}");
            }
            let mut out = std::io::stdout().lock();
            backend.leaves(start, end, &mut |leaf| {
                writeln!(out, "{}", B64.encode(leaf))?;
                Ok(())
            })?;
        }
        Command::Prove(Prove::Inclusion {
            target,
            index,
            size,
        }) => print!(
            "{}",
            Backend::open(&target)?.inclusion(index, size)?.to_text()
        ),
        Command::Prove(Prove::Consistency { target, from, to }) => {
            for h in Backend::open(&target)?.consistency(from, to)? {
                println!("{h}");
            }
        }
        Command::Receipt {
            target,
            index,
            out,
            anchored,
            checkpoint,
        } => {
            let (text, ext) = if anchored || checkpoint.is_some() {
                let server = target.server.as_deref().ok_or_else(|| {
                    anyhow!(
                        "--anchored and --checkpoint need --server (the anchor is the server's)"
                    )
                })?;
                let client = crate::client::Client::new(server)?;
                let doc =
                    backend::runtime()?.block_on(client.receipt_document(index, checkpoint))?;
                match anchored {
                    true => (format!("{}\n", serde_json::to_string_pretty(&doc)?), "json"),
                    false => (doc.tlog_proof, "tlog-proof"),
                }
            } else {
                (
                    Backend::open(&target)?.inclusion(index, None)?.to_text(),
                    "tlog-proof",
                )
            };
            let path = out.unwrap_or_else(|| PathBuf::from(format!("receipt-{index}.{ext}")));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
        }
        Command::Verify {
            log_key,
            proof,
            chain,
            witnesses,
        } => verify(&log_key, &proof, chain.resolve()?, &witnesses)?,
        Command::RedeemRequest {
            key,
            merchant,
            order_id,
            order_amount,
            points,
            expires_in,
            out,
        } => till::redeem_request(
            &key,
            &merchant,
            &order_id,
            order_amount,
            points,
            expires_in,
            &out,
        )?,
        Command::RedeemAccept {
            server,
            key,
            envelope,
        } => till::redeem_accept(&server, &key, &envelope)?,
        Command::Migrate { data } => {
            let bar = crate::demo::progress_bar(0, "migrating");
            let done = crate::migrate::migrate(&data, &|what, n, total| {
                bar.set_message(what.to_owned());
                bar.set_length(total.max(n));
                bar.set_position(n);
            })?;
            bar.finish_and_clear();
            print_json(&serde_json::json!({
                "moved": done.moved,
                "entries": done.entries,
                "state_digest_before": done.digest_before.map(hex::encode),
                "state_digest_after": hex::encode(done.digest_after),
                "identical": done.digest_before.is_none_or(|b| b == done.digest_after),
            }))?;
        }
        Command::Rebuild { data } => {
            let mut ledger = open(&data)?;
            let bar = crate::demo::progress_bar(ledger.size(), "replaying");
            let (before, after) = ledger.rebuild(&|n| bar.set_position(n))?;
            bar.finish_and_clear();
            print_json(&serde_json::json!({
                "entries": ledger.size(),
                "state_digest_before": hex::encode(before),
                "state_digest_after": hex::encode(after),
                "identical": before == after,
            }))?;
        }
        Command::Demo {
            data,
            consumers,
            purchases,
        } => {
            let mut ledger = open(&data)?;
            let summary = crate::demo::seed(&mut ledger, &data, consumers, purchases, true)?;
            print_json(&summary)?;
        }
        Command::Deploy { chain } => {
            let address = backend::runtime()?.block_on(crate::anchor::deploy(&chain))?;
            print_json(&serde_json::json!({
                "contract": format!("{address:#x}"),
                "chain_id": chain.chain_id,
                "rpc_url": chain.rpc_url,
            }))?;
        }
        Command::Anchor {
            data,
            contract,
            chain,
            confirmations,
            timeout,
        } => anchor_once(&data, &contract, &chain, confirmations, timeout)?,
        Command::Serve(args) => crate::server::run(*args)?,
        Command::Witness(args) => crate::witness::run(args)?,
        Command::Audit {
            server,
            state,
            log_key,
            chain,
            json,
            checkpoints_page,
            witnesses,
        } => {
            let (witnesses, quorum) = witnesses.resolve()?;
            audit(
                crate::audit::AuditOptions {
                    server,
                    state,
                    log_key: log_key.map(|k| key_or_file(&k)).transpose()?,
                    chain: chain.resolve()?,
                    progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                    checkpoints_page: checkpoints_page as usize,
                    witnesses,
                    quorum,
                },
                json,
            )?
        }
        Command::SplitView { log_key, evidence } => split_view(&log_key, &evidence)?,
        Command::Bench {
            http: Some(BenchHttp::Http(args)),
            ..
        } => crate::bench::run_http(&args)?,
        Command::Bench {
            http: Some(BenchHttp::Proofs(args)),
            ..
        } => crate::bench::run_proofs(&args)?,
        Command::Bench {
            http: None,
            data,
            entries,
            tree_size,
        } => {
            let data =
                data.ok_or_else(|| anyhow!("--data DIR is required (a scratch directory)"))?;
            crate::bench::run(&data, entries, tree_size)?
        }
    }
    Ok(())
}

/// Runs `pointsledger split-view`: prints what the evidence shows, or fails saying why not.
fn split_view(log_key: &str, evidence: &Path) -> Result<()> {
    let key = key_or_file(log_key)?;
    let bytes = read_input(evidence)?;
    let evidence: crate::checkpoint::SplitView =
        serde_json::from_slice(&bytes).context("the evidence is not a split-view JSON file")?;
    let (older, newer, in_newer) = crate::checkpoint::check_split_view(&evidence, &key)
        .map_err(|e| anyhow::Error::new(e).context("the evidence does not show a split view"))?;
    println!(
        "split view: the log signed size {} with root {}, and size {} whose tree has root {} at \
         size {}",
        older.size,
        hex::encode(older.root),
        newer.size,
        hex::encode(in_newer),
        older.size
    );
    Ok(())
}

/// Runs `pointsledger audit` and prints its report; a discrepancy is an error (exit 1).
fn audit(opts: crate::audit::AuditOptions, json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(crate::audit::run(&opts))?;
    if let Some(key) = &report.pinned_from_server {
        eprintln!(
            "pinned the log key the server gave: {key} (check it out of band, or start over \
             with --log-key)"
        );
    }
    if json {
        print_json(&report)?;
    } else if report.ok {
        println!(
            "audit passed: {} entries ({} new, {:.0}/s), checkpoint {} root {}, {} signed \
             checkpoints, {} anchors, {} accounts checked",
            report.entries,
            report.new_entries,
            report.entries_per_second,
            report.checkpoint_size.map_or("-".into(), |s| s.to_string()),
            report.root.as_deref().unwrap_or("-"),
            report.checkpoints_checked,
            report.anchors_checked,
            report.accounts_checked,
        );
    }
    match &report.discrepancy {
        None => Ok(()),
        Some(d) => bail!("audit failed at {d}"),
    }
}

/// Steps the anchorer until the newest checkpoint's anchor is final or `timeout` seconds pass.
fn anchor_once(
    data: &Path,
    contract: &str,
    settings: &crate::anchor::ChainSettings,
    confirmations: u64,
    timeout: u64,
) -> Result<()> {
    use crate::anchor::{AnchorSettings, AnchorStatus, Anchorer, Chain};
    let address = contract
        .parse()
        .map_err(|_| anyhow!("--contract must be a 0x address, got {contract:?}"))?;
    let ledger = open(data)?;
    let rt = backend::runtime()?;
    let chain = rt.block_on(Chain::connect(settings, address))?;
    rt.block_on(chain.check())?;
    let dropped = ledger
        .store()
        .bind_anchor_target(settings.chain_id, &format!("{address:#x}"))?;
    if dropped > 0 {
        eprintln!("dropped {dropped} anchor records of another contract");
    }
    let policy = AnchorSettings {
        chain: settings.clone(),
        contract: address,
        confirmations,
        interval: std::time::Duration::from_secs(1),
        resend_after: std::time::Duration::from_secs(30),
        recheck_interval: std::time::Duration::from_secs(60),
    }
    .policy();
    let anchorer = Anchorer {
        chain,
        store: crate::anchor::AnchorStore::new(ledger.store().clone()),
        verifier_key: ledger.verifier_key(),
        policy,
    };
    for size in rt.block_on(anchorer.recheck_final())? {
        eprintln!("the anchor of size {size} is no longer on the chain; anchoring again");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut last = None;
    loop {
        let step = rt.block_on(anchorer.step())?;
        if step != last {
            if let Some(rec) = &step {
                print_json(rec)?;
            }
            last = step.clone();
        }
        match step {
            None => return Ok(()),
            Some(rec) if rec.status == AnchorStatus::Final => {
                // Final: the next step finds nothing newer to anchor, or starts the next one.
                if rt.block_on(anchorer.step())?.is_none() {
                    return Ok(());
                }
            }
            Some(_) => {}
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the anchor is not final after {timeout} s; its state is kept, run again to go on"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Signs a new payload, or adds a signature to an envelope, after checking it as the ledger will.
fn sign(
    key: &Path,
    kind: Option<&str>,
    cosign: Option<&Path>,
    payload: Option<&Path>,
) -> Result<Envelope> {
    let signing_key = keys::read_key_file(key)?;
    let envelope = match cosign {
        Some(path) => {
            let mut env = dsse::parse(&read_input(path)?)
                .with_context(|| format!("envelope {}", path.display()))?;
            env.verify()
                .with_context(|| format!("envelope {} has a bad signature", path.display()))?;
            if let Some(kind) = kind {
                if kind != env.kind() {
                    bail!(
                        "--kind {kind} does not match the envelope's kind {}",
                        env.kind()
                    );
                }
            }
            if let Some(p) = payload {
                let expected = read_input(p)?;
                let same = serde_json::from_slice::<serde_json::Value>(&expected)
                    .ok()
                    .zip(serde_json::from_slice::<serde_json::Value>(env.payload()).ok())
                    .is_some_and(|(a, b)| a == b);
                if !same {
                    bail!("{} is not the payload the envelope carries", p.display());
                }
            }
            env.add_signature(&signing_key)?;
            env
        }
        None => {
            let kind = kind.ok_or_else(|| anyhow!("--kind is required to sign a new payload"))?;
            if !KINDS.contains(&kind) {
                bail!("unknown kind {kind:?}; one of: {}", KINDS.join(", "));
            }
            let path = payload.ok_or_else(|| anyhow!("a PAYLOAD.json file is required"))?;
            // The ledger takes compact JSON only: a hand-written file is compacted (whitespace
            // outside strings removed, nothing else changed) before it is signed.
            let bytes = crate::payload::compact(&read_input(path)?);
            let parsed = Payload::parse(kind, &bytes)?;
            let me = keys::public_id(&signing_key.verifying_key());
            if !parsed.required_signers().contains(&me.as_str()) {
                bail!(
                    "this key ({me}) is not a signer of this {kind}: it must be signed by {:?}",
                    parsed.required_signers()
                );
            }
            dsse::sign(kind, bytes, &signing_key)?
        }
    };
    Ok(envelope)
}

fn append(data: &Path, files: &[PathBuf]) -> Result<()> {
    let mut ledger = open(data)?;
    if files.len() == 1 && files[0] == Path::new("-") {
        return append_stream(&mut ledger);
    }
    let mut envelopes = Vec::with_capacity(files.len());
    for f in files {
        let env = dsse::parse(&read_input(f)?).with_context(|| format!("{}", f.display()))?;
        envelopes.push(env);
    }
    let receipts = ledger.submit_atomic(envelopes).map_err(|(i, e)| {
        anyhow::Error::new(e).context(format!("{}: nothing was written", files[i].display()))
    })?;
    ledger.checkpoint()?;
    for r in receipts {
        print_json(&r)?;
    }
    Ok(())
}

/// Appends JSON-lines envelopes from stdin in groups of whatever has arrived.
fn append_stream(ledger: &mut Ledger) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4096);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut refused = 0u64;
    let mut line_no = 0u64;
    while let Ok(first) = rx.recv() {
        let mut lines = vec![first];
        while lines.len() < 1024 {
            match rx.try_recv() {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        let items = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| dsse::parse(l.as_bytes()).map_err(LedgerError::from))
            .collect();
        for result in ledger.sequence(ledger::verified(items)) {
            line_no += 1;
            match result {
                Ok(r) => print_json(&r)?,
                Err(e) => {
                    refused += 1;
                    print_json(
                        &serde_json::json!({"line": line_no, "error": e.code(), "message": e.to_string()}),
                    )?;
                }
            }
        }
        std::io::stdout().flush()?;
    }
    ledger.checkpoint()?;
    if refused > 0 {
        bail!("{refused} envelope(s) refused (see the error lines on stdout)");
    }
    Ok(())
}

/// A key given inline or as a file holding it.
fn key_or_file(key: &str) -> Result<String> {
    Ok(match std::fs::read_to_string(key) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => key.trim().to_owned(),
    })
}

fn parse_contract(contract: &str) -> Result<crate::anchor::Address> {
    contract
        .parse()
        .map_err(|_| anyhow!("--contract must be a 0x address, got {contract:?}"))
}

/// Runs `pointsledger verify`: the library's receipt verifier on a receipt file, then with
/// --rpc the root on chain; prints what the receipt proves.
fn verify(
    log_key: &str,
    proof_file: &Path,
    chain: Option<(String, u64, crate::anchor::Address)>,
    witnesses: &WitnessRead,
) -> Result<()> {
    let key = key_or_file(log_key)?;
    let (witness_keys, quorum) = witnesses.resolve()?;
    let text = String::from_utf8(read_input(proof_file)?).context("the proof is not UTF-8")?;
    let v = crate::receipt::verify_file(&text, &key)
        .map_err(|e| anyhow::Error::new(e).context("the receipt does not verify"))?;
    let cosigned = v
        .witnessed(&witness_keys, quorum)
        .map_err(|e| anyhow::Error::new(e).context("the receipt is not witnessed"))?;
    let anchored = match chain {
        None => None,
        Some((rpc, chain_id, contract)) => Some(
            backend::runtime()?
                .block_on(crate::receipt::check_on_chain(&v, &rpc, chain_id, contract))
                .map_err(|e| anyhow::Error::new(e).context("the receipt is not anchored"))?,
        ),
    };
    let hash = merkle::leaf_hash(&v.leaf_bytes);
    print_json(&serde_json::json!({
        "valid": true,
        "anchored": anchored,
        "witnesses": cosigned
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "time": c.time}))
            .collect::<Vec<_>>(),
        "origin": v.checkpoint.origin,
        "tree_size": v.checkpoint.size,
        "root": B64.encode(v.checkpoint.root),
        "index": v.index,
        "hash": B64.encode(hash),
        "leaf_hash": hex::encode(hash),
        "kind": v.kind,
        "signers": v.signers,
        "timestamp_ms": v.leaf.timestamp_ms,
        "effects": v.leaf.effects,
    }))
}
