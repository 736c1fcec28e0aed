//! The command line: embedded mode, working directly on a data directory.
//!
//! Every command prints its result on stdout (JSON, one object per line, where it prints data)
//! and a one-line error on stderr with a non-zero exit when anything is wrong. Commands that
//! append sign a checkpoint covering what they wrote before they exit, so a data directory at
//! rest is always verifiable.

use crate::checkpoint::{self, TlogProof};
use crate::clock::{Clock, SystemClock};
use crate::dsse::{self, Envelope};
use crate::engine::StateView;
use crate::ledger::{self, Leaf, Ledger, LedgerError};
use crate::payload::{Payload, KINDS};
use crate::views::{self, AccountView};
use crate::{keys, merkle};
use anyhow::{anyhow, bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A verifiable points-and-rewards ledger.
#[derive(Parser, Debug)]
#[command(name = "pointsledger", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an Ed25519 key into a new 0600 file and print its public id.
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a new ledger: log and operator keys under DIR/keys, an empty store under DIR/db.
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
    /// Verify and append envelopes; prints one JSON receipt per line.
    ///
    /// With files, the append is all-or-nothing: if any envelope is refused nothing is written.
    /// With `-`, envelopes are read one JSON object per line from stdin and appended in groups
    /// as they arrive; a receipt line is printed only once its entry is durable, and refused
    /// envelopes get an error line.
    Append {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// Envelope files, or `-` for JSON lines on stdin.
        #[arg(required = true)]
        envelopes: Vec<PathBuf>,
    },
    /// Print an account's balance, lots and linked address as JSON.
    Balance {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The account's public key id.
        account: String,
    },
    /// Print an account's history, one JSON row per entry, each with why the points moved.
    History {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The account's public key id.
        account: String,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Print the log's verifier key (`name+keyid+base64`).
    LogKey {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Print leaves START..END (END exclusive), one base64 leaf per line.
    Leaves {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
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
    /// Verify a tlog-proof receipt offline: checkpoint signature, inclusion, envelope signatures.
    Verify {
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        log_key: String,
        /// The .tlog-proof file.
        proof: PathBuf,
    },
    /// Replay the whole log into fresh state and check it matches.
    Rebuild {
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
    /// Run the HTTP service on a data directory.
    Serve(crate::server::ServeArgs),
    /// Measure ingest, signature verification and proof generation; ends with `NAME VALUE UNIT`
    /// lines.
    Bench {
        /// A scratch directory (created; its contents are replaced).
        #[arg(long)]
        data: PathBuf,
        /// Entries per ingest measurement.
        #[arg(long, default_value_t = 50_000)]
        entries: u64,
        /// Tree size for the inclusion proof measurement.
        #[arg(long, default_value_t = 1_000_000)]
        tree_size: u64,
    },
}

#[derive(Subcommand, Debug)]
enum Prove {
    /// A c2sp.org/tlog-proof for leaf INDEX against the checkpoint of size N (default: latest).
    Inclusion {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The leaf index.
        #[arg(long)]
        index: u64,
        /// The checkpoint's tree size.
        #[arg(long)]
        size: Option<u64>,
    },
    /// The RFC 6962 consistency proof from size FROM to size TO, one base64 hash per line.
    Consistency {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The older tree size (at least 1).
        #[arg(long)]
        from: u64,
        /// The newer tree size.
        #[arg(long)]
        to: u64,
    },
}

/// Runs the command line; errors are printed as one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let key = keys::generate();
            keys::write_key_file(&out, &key)?;
            println!("{}", keys::public_id(&key.verifying_key()));
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
        } => sign(&key, kind.as_deref(), cosign.as_deref(), payload.as_deref())?,
        Command::Append { data, envelopes } => append(&data, &envelopes)?,
        Command::Balance { data, account } => {
            keys::parse_public_id(&account)?;
            let (store, _) = ledger::open_store(&data)?;
            let acc = store.account(&account)?.unwrap_or_default();
            print_json(&AccountView::new(&account, acc, SystemClock.now_ms()))?;
        }
        Command::History { data, account } => {
            keys::parse_public_id(&account)?;
            let (store, _) = ledger::open_store(&data)?;
            let mut from = 0;
            loop {
                let page = views::history(&store, &account, from, 1000)?;
                let Some(last) = page.last().map(|r| r.index) else {
                    break;
                };
                for row in page {
                    print_json(&row)?;
                }
                from = last + 1;
            }
        }
        Command::Checkpoint { data } => {
            let (store, _) = ledger::open_store(&data)?;
            let (_, note) = store
                .latest_checkpoint()?
                .ok_or_else(|| anyhow!("the log is empty: no checkpoint yet"))?;
            print!("{note}");
        }
        Command::LogKey { data } => println!("{}", open(&data)?.verifier_key()),
        Command::Leaves { data, start, end } => {
            let (store, _) = ledger::open_store(&data)?;
            let size = store.size()?;
            if start >= end || end > size {
                bail!("need START < END <= {size} (the log's size); got {start}..{end}");
            }
            let mut out = std::io::stdout().lock();
            let mut next = start;
            while next < end {
                let stop = (next + 1000).min(end);
                for leaf in store.leaves(next, stop)? {
                    writeln!(out, "{}", B64.encode(leaf))?;
                }
                next = stop;
            }
        }
        Command::Prove(Prove::Inclusion { data, index, size }) => {
            print!("{}", prove_inclusion(&data, index, size)?.to_text());
        }
        Command::Prove(Prove::Consistency { data, from, to }) => {
            let (store, _) = ledger::open_store(&data)?;
            let size = store.size()?;
            if from == 0 || from > to || to > size {
                bail!("need 1 <= FROM <= TO <= {size} (the log's size); got {from}..{to}");
            }
            for h in merkle::prove_consistency(from, to, &store)? {
                println!("{}", B64.encode(h));
            }
        }
        Command::Verify { log_key, proof } => verify(&log_key, &proof)?,
        Command::Rebuild { data } => {
            let mut ledger = open_for_rebuild(&data)?;
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
        Command::Serve(args) => crate::server::run(args)?,
        Command::Bench {
            data,
            entries,
            tree_size,
        } => crate::bench::run(&data, entries, tree_size)?,
    }
    Ok(())
}

/// Opens a ledger for `rebuild`, which must work even when a previous rebuild was interrupted.
fn open_for_rebuild(data: &Path) -> Result<Ledger> {
    match Ledger::open(data, Arc::new(SystemClock)) {
        Err(LedgerError::SelfCheck(msg)) if msg.contains("rebuild was interrupted") => {
            let (store, _) = ledger::open_store(data)?;
            store.finish_rebuild()?;
            drop(store);
            open(data)
        }
        other => Ok(other?),
    }
}

fn sign(
    key: &Path,
    kind: Option<&str>,
    cosign: Option<&Path>,
    payload: Option<&Path>,
) -> Result<()> {
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
            let bytes = read_input(path)?;
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
    println!("{}", String::from_utf8_lossy(&envelope.to_json_bytes()));
    Ok(())
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
        anyhow!(
            "{}: {} ({}); nothing was written",
            files[i].display(),
            e,
            e.code()
        )
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
        let items: Vec<_> = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| dsse::parse(l.as_bytes()).map_err(LedgerError::from))
            .collect();
        let parsed: Vec<Envelope> = items
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let checks = dsse::verify_all(&parsed);
        let mut checks = checks.into_iter();
        let verified = items
            .into_iter()
            .map(|r| {
                r.and_then(|env| match checks.next() {
                    Some(Ok(())) => Ok(env),
                    Some(Err(e)) => Err(e.into()),
                    None => Err(LedgerError::NotFound("verification result missing".into())),
                })
            })
            .collect();
        for result in ledger.sequence(verified) {
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

fn prove_inclusion(data: &Path, index: u64, size: Option<u64>) -> Result<TlogProof> {
    let (store, _) = ledger::open_store(data)?;
    let (size, note) = match size {
        Some(n) => (
            n,
            store
                .checkpoint(n)?
                .ok_or_else(|| anyhow!("no checkpoint was cut at size {n}"))?,
        ),
        None => store
            .latest_checkpoint()?
            .ok_or_else(|| anyhow!("the log is empty: no checkpoint yet"))?,
    };
    if index >= size {
        bail!("leaf {index} is not covered by the checkpoint of size {size}");
    }
    let leaf = store
        .leaf(index)?
        .ok_or_else(|| anyhow!("leaf {index} is missing"))?;
    Ok(TlogProof {
        extra: Some(leaf),
        index,
        proof: merkle::prove_inclusion(size, index, &store)?,
        checkpoint: note,
    })
}

fn verify(log_key: &str, proof_file: &Path) -> Result<()> {
    let key = match std::fs::read_to_string(log_key) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => log_key.trim().to_owned(),
    };
    let text = String::from_utf8(read_input(proof_file)?).context("the proof is not UTF-8")?;
    let proof = TlogProof::parse(&text)?;
    let leaf_bytes = proof
        .extra
        .clone()
        .ok_or_else(|| anyhow!("the proof carries no leaf (no `extra` line)"))?;
    let cp = checkpoint::verify_tlog_proof(&proof, &key, &leaf_bytes)?;
    let leaf = Leaf::decode(proof.index, &leaf_bytes)?;
    if leaf.index != proof.index {
        bail!(
            "the leaf says index {} but the proof is for {}",
            leaf.index,
            proof.index
        );
    }
    let env = leaf.envelope()?;
    env.verify()?;
    let payload = Payload::parse(env.kind(), env.payload())?;
    let mut required: Vec<&str> = payload.required_signers();
    required.sort_unstable();
    let mut signers: Vec<&str> = env.signers().collect();
    signers.sort_unstable();
    if required != signers {
        bail!(
            "the envelope is signed by {signers:?} but a {} needs {required:?}",
            env.kind()
        );
    }
    print_json(&serde_json::json!({
        "valid": true,
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": B64.encode(cp.root),
        "index": proof.index,
        "leaf_hash": hex::encode(merkle::leaf_hash(&leaf_bytes)),
        "kind": env.kind(),
        "signers": signers,
        "timestamp_ms": leaf.timestamp_ms,
        "effects": leaf.effects,
    }))
}
