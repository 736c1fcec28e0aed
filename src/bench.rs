//! `pointsledger bench`: ingest, signature and proof figures measured in one run.
//!
//! Throughput only means something beside a ceiling measured on the same cores in the same run,
//! so the benchmark first measures raw Ed25519 verification (one core, all cores, batched on all
//! cores), then durable ingest of purchase entries (one signature each) and redeem entries (two)
//! through the real sequencer pipeline with signature checks on, then a full audit of that
//! ledger over loopback HTTP (`pointsledger audit` with a fresh mirror), then inclusion proof
//! generation from a log of its own. It ends with one `NAME VALUE UNIT` line per figure.
//!
//! `pointsledger bench http` is the same idea over the network: a load generator that keeps
//! many keep-alive connections busy against a running server.

use crate::client::Client;
use crate::clock::SystemClock;
use crate::demo::progress_bar;
use crate::dsse::{self, Envelope};
use crate::ledger::{self, Ledger};
use crate::merkle;
use crate::payload::ProgramRules;
use crate::sequencer::{Sequencer, SequencerOptions};
use crate::wire::BatchItem;
use crate::{keys, ledger::DataDir};
use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::Rng;
use rayon::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs every measurement; `entries` per ingest run, a tree of `tree_size` for proofs.
pub fn run(dir: &Path, entries: u64, tree_size: u64) -> Result<()> {
    if entries == 0 || tree_size == 0 {
        bail!("--entries and --tree-size must be positive");
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let mut figures: Vec<(String, f64, &str)> = Vec::new();
    let cores = rayon::current_num_threads();
    eprintln!("bench: {cores} cores, {entries} entries per ingest run, tree of {tree_size}");

    let (one, all, batched) = verify_ceiling(20_000);
    figures.push(("verify_single_1core".into(), one, "sig/s"));
    figures.push((format!("verify_single_{cores}core"), all, "sig/s"));
    figures.push((format!("verify_batch_{cores}core"), batched, "sig/s"));

    let (purchases, redeems) = ingest(&dir.join("ingest"), entries)?;
    figures.push(("ingest_purchase".into(), purchases, "entries/s"));
    figures.push((
        "ingest_purchase_vs_batch_ceiling".into(),
        100.0 * purchases / batched,
        "%",
    ));
    figures.push((
        format!("ingest_purchase_vs_strict_{cores}core_ceiling"),
        100.0 * purchases / all,
        "%",
    ));
    figures.push(("ingest_redeem".into(), redeems, "entries/s"));
    figures.push((
        format!("ingest_redeem_vs_strict_{cores}core_ceiling"),
        100.0 * 2.0 * redeems / all,
        "% (2 sigs/entry)",
    ));
    let (bytes, entries) = disk_use(&dir.join("ingest"))?;
    figures.push((
        "disk_per_entry".into(),
        bytes as f64 / entries as f64,
        "bytes",
    ));
    figures.push((
        "ingest_redeem_vs_batch_ceiling".into(),
        100.0 * 2.0 * redeems / batched,
        "% (2 sigs/entry)",
    ));

    // Purchases carry one signature and redeems two: 1.5 per entry on average (plus one
    // registration), which the ratio accounts for.
    let audit = audit_rate(&dir.join("ingest"), &dir.join("audit"))?;
    figures.push(("audit".into(), audit, "entries/s"));
    figures.push((
        "audit_vs_batch_ceiling".into(),
        100.0 * 1.5 * audit / batched,
        "% (1.5 sigs/entry)",
    ));
    figures.push((
        format!("audit_vs_strict_{cores}core_ceiling"),
        100.0 * 1.5 * audit / all,
        "% (1.5 sigs/entry)",
    ));

    let (p50, p99) = inclusion_latency(&dir.join("tree"), tree_size)?;
    figures.push((format!("inclusion_proof_p50_at_{tree_size}"), p50, "us"));
    figures.push((format!("inclusion_proof_p99_at_{tree_size}"), p99, "us"));

    for (name, value, unit) in figures {
        println!("{name} {value:.1} {unit}");
    }
    Ok(())
}

/// Bytes the whole data directory takes on disk (allocated blocks, so preallocated log space
/// counts), and the entries in its log.
fn disk_use(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    fn walk(p: &Path) -> std::io::Result<u64> {
        let meta = std::fs::symlink_metadata(p)?;
        let mut total = meta.blocks() * 512;
        if meta.is_dir() {
            for entry in std::fs::read_dir(p)? {
                total += walk(&entry?.path())?;
            }
        }
        Ok(total)
    }
    let bytes = walk(dir).with_context(|| format!("measuring {}", dir.display()))?;
    let (store, _) = ledger::open_store(dir)?;
    Ok((bytes, store.size()?.max(1)))
}

fn signed_messages(n: usize) -> Vec<(Vec<u8>, Signature, VerifyingKey)> {
    let key = keys::generate();
    (0..n)
        .map(|i| {
            let msg = format!("message {i}").into_bytes();
            let sig = key.sign(&msg);
            (msg, sig, key.verifying_key())
        })
        .collect()
}

/// Raw Ed25519 verification: one core, all cores, batched (64 per batch) on all cores.
fn verify_ceiling(n: usize) -> (f64, f64, f64) {
    let items = signed_messages(n);
    let rate = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        n as f64 / t.elapsed().as_secs_f64()
    };
    let one = rate(&|| {
        for (m, s, k) in &items {
            let _ = k.verify_strict(m, s);
        }
    });
    let all = rate(&|| {
        items.par_iter().for_each(|(m, s, k)| {
            let _ = k.verify_strict(m, s);
        })
    });
    let batched = rate(&|| {
        items.par_chunks(64).for_each(|c| {
            let msgs: Vec<&[u8]> = c.iter().map(|(m, _, _)| m.as_slice()).collect();
            let sigs: Vec<Signature> = c.iter().map(|(_, s, _)| *s).collect();
            let keys: Vec<VerifyingKey> = c.iter().map(|(_, _, k)| *k).collect();
            let _ = ed25519_dalek::verify_batch(&msgs, &sigs, &keys);
        })
    });
    (one, all, batched)
}

fn rules() -> ProgramRules {
    ProgramRules {
        earn_bps: 1000,
        point_value_milli: 1000,
        max_redeem_bps: 5000,
        validity_ms: 365 * crate::clock::DAY_MS,
        pending_ms: 0,
        referee_discount_bps: 0,
        referee_discount_max: 0,
        referrer_reward_points: 0,
        referrer_reward_cap: 0,
        max_points_per_order: 1_000_000,
    }
}

fn env(kind: &str, v: serde_json::Value, signers: &[&SigningKey]) -> Result<Envelope> {
    let mut e = dsse::sign(kind, serde_json::to_vec(&v)?, signers[0])?;
    for k in &signers[1..] {
        e.add_signature(k)?;
    }
    Ok(e)
}

/// Pushes `envelopes` through the sequencer from 8 concurrent producers; returns entries/s.
fn pump(ledger: Ledger, envelopes: Vec<Envelope>, label: &'static str) -> Result<(Ledger, f64)> {
    let n = envelopes.len();
    let (seq, handle) = Sequencer::spawn(ledger, SequencerOptions::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bar = progress_bar(n as u64, label);
    let start = Instant::now();
    let refused = runtime.block_on(async {
        let mut tasks = Vec::new();
        let per = n.div_ceil(8);
        let mut it = envelopes.into_iter();
        for _ in 0..8 {
            let mine: Vec<Envelope> = it.by_ref().take(per).collect();
            let h = handle.clone();
            let bar = bar.clone();
            tasks.push(tokio::spawn(async move {
                let mut refused = 0usize;
                for chunk in mine.chunks(256) {
                    let results = h.submit_many(chunk.to_vec()).await.unwrap_or_default();
                    refused += results.iter().filter(|r| r.is_err()).count();
                    bar.inc(chunk.len() as u64);
                }
                refused
            }));
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap_or(usize::MAX / 16);
        }
        refused
    });
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    drop(handle);
    let ledger = seq.join()?;
    if refused > 0 {
        bail!("{refused} benchmark entries were refused");
    }
    Ok((ledger, n as f64 / elapsed))
}

/// Durable ingest of `n` purchases, then `n` redeems, through the sequencer.
fn ingest(dir: &Path, n: u64) -> Result<(f64, f64)> {
    ledger::init(dir, "bench.pointsledger.local")?;
    let mut ledger = Ledger::open(dir, Arc::new(SystemClock))?;
    let operator = keys::read_key_file(&DataDir(dir.to_owned()).operator_key())?;
    let merchant = keys::generate();
    let mid = keys::public_id(&merchant.verifying_key());
    let register = env(
        "merchant.register",
        json!({"operator": ledger.config().log.operator, "merchant": mid, "name": "Bench",
               "rules": rules(), "nonce": "r"}),
        &[&operator],
    )?;
    ledger.submit(vec![register]).remove(0)?;
    let consumers: Vec<SigningKey> = (0..1000).map(|_| keys::generate()).collect();
    let cid = |i: u64| keys::public_id(&consumers[(i % 1000) as usize].verifying_key());
    eprintln!("bench: signing {n} purchases");
    let purchases: Vec<Envelope> = (0..n)
        .into_par_iter()
        .map(|i| {
            env(
                "purchase",
                json!({"merchant": mid, "consumer": cid(i), "order_id": format!("p{i}"),
                       "amount": 10_000, "nonce": format!("p{i}")}),
                &[&merchant],
            )
        })
        .collect::<Result<_>>()?;
    let (ledger, purchase_rate) = pump(ledger, purchases, "ingest purchases")?;
    eprintln!("bench: signing {n} redeems");
    let redeems: Vec<Envelope> = (0..n)
        .into_par_iter()
        .map(|i| {
            let consumer = &consumers[(i % 1000) as usize];
            env(
                "redeem",
                json!({"consumer": cid(i), "merchant": mid, "order_id": format!("r{i}"),
                       "order_amount": 10_000, "points": 1, "nonce": format!("r{i}")}),
                &[consumer, &merchant],
            )
        })
        .collect::<Result<_>>()?;
    let (mut ledger, redeem_rate) = pump(ledger, redeems, "ingest redeems")?;
    ledger.checkpoint()?;
    Ok((purchase_rate, redeem_rate))
}

/// Serves the ledger in `dir` on a loopback port and audits it from scratch with a fresh
/// mirror, as `pointsledger audit` does; returns the audit's entries per second.
fn audit_rate(dir: &Path, state: &Path) -> Result<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(dir, clock.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(
            ledger,
            clock,
            crate::server::Settings::default(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        eprintln!("bench: auditing the ingest ledger over HTTP");
        let report = crate::audit::run(&crate::audit::AuditOptions {
            server: url,
            state: state.to_owned(),
            log_key: None,
            chain: None,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            checkpoints_page: crate::audit::CHECKPOINTS_PAGE,
            witnesses: Vec::new(),
            quorum: 0,
        })
        .await;
        let _ = stop.send(());
        server.await??;
        let report = report?;
        if let Some(d) = report.discrepancy {
            bail!("the audit of the benchmark's own ledger failed: {d}");
        }
        Ok(report.entries_per_second)
    })
}

/// Builds a log of `size` 8-byte leaves (appended in groups of 4096), then times 10,000
/// inclusion proofs read from it at random indexes after 1,000 untimed ones (steady state: the
/// upper tree levels are in the page cache).
fn inclusion_latency(dir: &Path, size: u64) -> Result<(f64, f64)> {
    let mut log = crate::log::LogWriter::open(dir)?;
    let bar = progress_bar(size, "building tree");
    let mut i = 0u64;
    while i < size {
        let end = (i + 4096).min(size);
        let leaves: Vec<[u8; 8]> = (i..end).map(u64::to_be_bytes).collect();
        log.append(&leaves)?;
        i = end;
        bar.set_position(i);
    }
    bar.finish_and_clear();
    let store = log.reader();
    let root = merkle::root(size, &store)?;
    let mut rng = rand::thread_rng();
    for _ in 0..1_000 {
        merkle::prove_inclusion(size, rng.gen_range(0..size), &store)?;
    }
    let mut times = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let index = rng.gen_range(0..size);
        let t = Instant::now();
        let proof = merkle::prove_inclusion(size, index, &store)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        merkle::verify_inclusion(
            index,
            size,
            &merkle::leaf_hash(&index.to_be_bytes()),
            &proof,
            &root,
        )?;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
}

/// A client of the server at `url`, the runtime the load runs on (two workers, as many as the
/// machine's cores), and the server's `/v1/log`.
fn connect(url: &str) -> Result<(Client, tokio::runtime::Runtime, crate::wire::LogInfo)> {
    let client = Client::new(url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let info = runtime.block_on(client.log_info())?;
    Ok((client, runtime, info))
}

/// `pointsledger bench http` settings.
#[derive(clap::Args, Debug)]
pub struct HttpArgs {
    /// The server's base URL.
    #[arg(long)]
    pub server: String,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// The operator key file of the server's ledger (to register a benchmark merchant).
    #[arg(long)]
    pub operator_key: PathBuf,
    /// Entries per measurement (single, then batched).
    #[arg(long, default_value_t = 20_000)]
    pub entries: u64,
    /// Entries per request in the batched measurement.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// Loads a running server: `entries` single submissions from `clients` concurrent clients, then
/// `entries` more in batches; prints throughput and latency percentiles.
pub fn run_http(args: &HttpArgs) -> Result<()> {
    if args.clients == 0 || args.entries == 0 || args.batch == 0 || args.clients > 1024 {
        bail!("--clients must be 1..=1024, --entries and --batch positive");
    }
    let (client, runtime, info) = connect(&args.server)?;
    let operator = keys::read_key_file(&args.operator_key)?;
    let operator_id = keys::public_id(&operator.verifying_key());
    if info.operator_key != operator_id {
        bail!(
            "{} is not this server's operator key",
            args.operator_key.display()
        );
    }
    let merchant = keys::generate();
    let mid = keys::public_id(&merchant.verifying_key());
    let run_id = hex::encode(rand::random::<[u8; 4]>());
    let register = env(
        "merchant.register",
        json!({"operator": operator_id, "merchant": mid, "name": "HTTP bench",
               "rules": rules(), "nonce": format!("bench-{run_id}")}),
        &[&operator],
    )?;
    runtime.block_on(client.submit(&register))?;
    let consumers: Vec<String> = (0..1000)
        .map(|_| keys::public_id(&keys::generate().verifying_key()))
        .collect();
    let n = args.entries;
    eprintln!("bench http: signing {} purchases", 2 * n);
    let envelopes: Vec<Envelope> = (0..2 * n)
        .into_par_iter()
        .map(|i| {
            env(
                "purchase",
                json!({"merchant": mid, "consumer": consumers[(i % 1000) as usize],
                       "order_id": format!("{run_id}-{i}"), "amount": 10_000, "nonce": format!("{run_id}-{i}")}),
                &[&merchant],
            )
        })
        .collect::<Result<_>>()?;
    let (single, batched) = envelopes.split_at(n as usize);
    let single_jobs: Vec<Vec<Envelope>> = single.iter().map(|e| vec![e.clone()]).collect();
    let batch_jobs: Vec<Vec<Envelope>> = batched
        .chunks(args.batch)
        .map(<[Envelope]>::to_vec)
        .collect();

    let (rate1, lat1) = runtime.block_on(load(&client, single_jobs, args.clients, "single"))?;
    let (rate2, lat2) = runtime.block_on(load(&client, batch_jobs, args.clients, "batched"))?;
    println!("http_single {rate1:.1} entries/s");
    println!("http_single_p50 {:.2} ms", percentile(&lat1, 50));
    println!("http_single_p99 {:.2} ms", percentile(&lat1, 99));
    println!("http_batch{} {rate2:.1} entries/s", args.batch);
    println!(
        "http_batch{}_p50 {:.2} ms/request",
        args.batch,
        percentile(&lat2, 50)
    );
    println!(
        "http_batch{}_p99 {:.2} ms/request",
        args.batch,
        percentile(&lat2, 99)
    );
    Ok(())
}

/// `pointsledger bench proofs` settings.
#[derive(clap::Args, Debug)]
pub struct ProofArgs {
    /// The server's base URL.
    #[arg(long)]
    pub server: String,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Proofs to time (after a tenth as many untimed ones).
    #[arg(long, default_value_t = 10_000)]
    pub proofs: u64,
}

/// Times `GET /v1/proofs/inclusion` at random indexes of the server's latest checkpoint (whose
/// signature is checked with the key the server names: this measures the server, it does not
/// audit it); every proof is verified against the checkpoint's root, outside the timing.
/// Prints throughput and latency percentiles.
pub fn run_proofs(args: &ProofArgs) -> Result<()> {
    if args.clients == 0 || args.clients > 1024 || args.proofs == 0 || args.proofs > 10_000_000 {
        bail!("--clients must be 1..=1024 and --proofs 1..=10000000");
    }
    let (client, runtime, info) = connect(&args.server)?;
    let verifier_key = info.verifier_key.as_str();
    let note = runtime.block_on(client.checkpoint())?;
    let cp = crate::checkpoint::open_checkpoint(&note, verifier_key)?;
    if cp.size == 0 {
        bail!("the server's log is empty");
    }
    let size = cp.size;
    let mut warm: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..args.proofs + args.proofs / 10)
            .map(|_| rng.gen_range(0..size))
            .collect()
    };
    let timed = warm.split_off((args.proofs / 10) as usize);
    eprintln!(
        "bench proofs: {} proofs at tree size {size}, {} clients",
        args.proofs, args.clients
    );
    let (rate, latencies) = runtime.block_on(async {
        for index in warm {
            client.inclusion(index, size).await?;
        }
        let (client, root) = (client.clone(), cp.root);
        drive(
            timed,
            args.clients,
            "proofs",
            |_| 1,
            move |index| {
                let client = client.clone();
                async move {
                    let t = Instant::now();
                    let proof = client.inclusion(index, size).await?;
                    let took = t.elapsed();
                    let leaf = merkle::leaf_hash(&client.leaf(index).await?);
                    merkle::verify_inclusion(index, size, &leaf, &proof, &root)?;
                    Ok(took)
                }
            },
        )
        .await
    })?;
    println!("http_proofs_at_{size} {rate:.1} proofs/s");
    println!(
        "http_proof_p50_at_{size} {:.3} ms",
        percentile(&latencies, 50)
    );
    println!(
        "http_proof_p99_at_{size} {:.3} ms",
        percentile(&latencies, 99)
    );
    Ok(())
}

/// The `p`th percentile of sorted `values` (NaN when there are none).
fn percentile(values: &[f64], p: usize) -> f64 {
    values
        .get(values.len() * p / 100)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Runs `jobs` (each one request) from `clients` concurrent tasks; returns entries/s and the
/// sorted request latencies in ms. Any refused entry fails the run.
async fn load(
    client: &Client,
    jobs: Vec<Vec<Envelope>>,
    clients: usize,
    label: &'static str,
) -> Result<(f64, Vec<f64>)> {
    let client = client.clone();
    drive(
        jobs,
        clients,
        label,
        |job| job.len() as u64,
        move |job| {
            let client = client.clone();
            async move {
                let t = Instant::now();
                if job.len() == 1 {
                    client.submit(&job[0]).await?;
                } else {
                    for r in client.submit_batch(&job).await? {
                        if let BatchItem::Refused { error, message, .. } = r {
                            bail!("an entry was refused: {error}: {message}");
                        }
                    }
                }
                Ok(t.elapsed())
            }
        },
    )
    .await
}

/// Runs `jobs` from `clients` concurrent tasks through `run`, which returns how long the part
/// of a job that is measured took; returns units per second (a job counts `units(job)`) over
/// the whole run and the sorted latencies in ms. The first error stops the run.
async fn drive<J, F, Fut>(
    jobs: Vec<J>,
    clients: usize,
    label: &'static str,
    units: fn(&J) -> u64,
    run: F,
) -> Result<(f64, Vec<f64>)>
where
    J: Send + 'static,
    F: Fn(J) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Duration>> + Send,
{
    let total: u64 = jobs.iter().map(units).sum();
    let queue = Arc::new(std::sync::Mutex::new(jobs.into_iter()));
    let bar = progress_bar(total, label);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, bar, run) = (queue.clone(), bar.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(_) => None,
                };
                let Some(job) = job else { break };
                let n = units(&job);
                latencies.push(run(job).await?.as_secs_f64() * 1e3);
                bar.inc(n);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    all.sort_by(f64::total_cmp);
    Ok((total as f64 / elapsed, all))
}
