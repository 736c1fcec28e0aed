//! `pointsledger audit`: a monitor in the manner of Certificate Transparency monitors.
//!
//! It mirrors the log into a state directory of its own and checks everything the operator
//! could get wrong or lie about, trusting nothing but the log's verifier key (given, or pinned
//! on the first run):
//!
//! - every leaf: its index, its envelope's signatures (strict, as the writer checks them), and
//!   a replay through the points engine on the mirror's own state, which refuses a kind signed
//!   by the wrong roles and must reproduce the leaf's recorded effects exactly;
//! - the books, after every leaf, on the replayed state itself rather than on the engine's word:
//!   every account the entry wrote has each figure in range (points held, each lot, debt and
//!   counts within 0..=2^53-1, no lot holding more than it was credited, every delta within
//!   ±(2^53-1)), and its balance (Σ remaining − debt) moved by exactly the sum of the entry's
//!   deltas for it, while no account the entry did not write has a delta. From the empty state
//!   this gives, by induction, balance = Σ of the account's deltas over the log, for every
//!   account after every entry;
//! - the tree: the mirror computes every hash itself; the latest checkpoint's signature, its
//!   root against the mirror's, and its consistency with the checkpoint seen on the last run
//!   (a forked view is caught even before the leaves are fetched); then every checkpoint the
//!   log lists since the last run (`GET /v1/checkpoints`), each signed by the log key and of
//!   the mirror's tree. Two signed notes that are not of one tree are a split view, and are
//!   written out as evidence anyone can check with the log key ([`checkpoint::SplitView`]):
//!   a listed note against the latest one with a consistency proof from the mirror, or the
//!   note seen before against the server's own note of that size over another root;
//! - anchors: every anchor the server lists, and with `--rpc` every `Anchored` event of the
//!   contract, against the mirror's root at that size;
//! - receipts: the JSON receipt the server serves for the checkpoint's last entry, through the
//!   library's receipt verifier ([`crate::receipt`]), against the mirror's leaf and roots;
//! - balances: every account the new entries touched, as the server reports it at the audited
//!   checkpoint (`?at=SIZE`, so entries the server took since do not count), against the
//!   mirror's replayed state; when the server no longer keeps that checkpoint's accounts, the
//!   audit mirrors on to the newest checkpoint and compares there (at most eight passes);
//! - anchors the server calls final: each must be an `Anchored` event (with `--rpc`);
//! - witnesses (with `--witness-key`): the audited checkpoint carries a quorum of cosignatures.
//!
//! Leaves are fetched through the tlog-tiles API (docs/PROTOCOL.md §12.12), one entry bundle of
//! 256 per request, the next fetched while one is checked, and committed to the mirror a bundle
//! at a time after it passed, so a run that stops (or finds a discrepancy) resumes from the last
//! good bundle. The first discrepancy ends
//! the run and is named: where (entry index, checkpoint or anchor size, account), what was
//! expected and what was found.

use crate::anchor::{AnchorStatus, Chain, ChainError};
use crate::checkpoint::{self, Checkpoint};
use crate::client::{Client, ClientError};
use crate::engine::state::Account;
use crate::engine::{Effects, EngineError, LogConfig, StateView, Writes};
use crate::keys;
use crate::ledger::{self, replay_leaf, Leaf, LedgerError};
use crate::log::layout::TILE_WIDTH;
use crate::log::LogWriter;
use crate::merkle::{self, Hash, MerkleError};
use crate::payload::MAX_SAFE_INT;
use crate::state::{Group, StateWriter, Store, StoreError, StoredConfig, WriterCache};
use crate::views::AccountView;
use crate::{receipt, wire};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Checkpoints asked for per request of the checkpoint history: the server's page limit.
pub const CHECKPOINTS_PAGE: usize = 1000;

/// Mirroring passes before the accounts must compare (see [`run`]): each pass mirrors what the
/// server took during the one before, so under a steady write load they grow shorter.
const MAX_PASSES: usize = 8;

/// Most anchor records read from the server in one run.
const MAX_ANCHORS: usize = 100_000;

/// Why an audit could not run to a verdict (as opposed to a [`Discrepancy`], which is one).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The server could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The mirror's store failed.
    #[error("the audit state: {0}")]
    Store(#[from] StoreError),
    /// The audit state does not fit this log or these options.
    #[error("{0}")]
    State(String),
}

impl From<MerkleError> for AuditError {
    fn from(e: MerkleError) -> Self {
        AuditError::State(format!("the mirror's tree: {e}"))
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// Where: `entry 17`, `checkpoint 40`, `anchor 40`, `account <id>`.
    pub at: String,
    /// What was checked.
    pub what: String,
    /// What the mirror computed or the signature requires.
    pub expected: String,
    /// What the server (or chain) says.
    pub found: String,
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: expected {}, found {}",
            self.at, self.what, self.expected, self.found
        )
    }
}

fn discrepancy(
    at: String,
    what: &str,
    expected: impl ToString,
    found: impl ToString,
) -> Discrepancy {
    Discrepancy {
        at,
        what: what.to_owned(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// What to audit and where to keep the mirror.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The server's base URL.
    pub server: String,
    /// The mirror's directory (created on the first run).
    pub state: PathBuf,
    /// The log's verifier key; pinned on the first run (from the server if not given) and
    /// required to match on later runs.
    pub log_key: Option<String>,
    /// Chain RPC URL, chain id and contract, to check the on-chain anchors.
    pub chain: Option<(String, u64, crate::anchor::Address)>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Checkpoints asked for per request of the checkpoint history ([`CHECKPOINTS_PAGE`];
    /// smaller in tests, to page).
    pub checkpoints_page: usize,
    /// Witnesses whose cosignatures the latest checkpoint must carry, `quorum` of them at
    /// least (none: no witness is required).
    pub witnesses: Vec<crate::witness::cosignature::CosignerKey>,
    /// Valid cosignatures required among `witnesses`.
    pub quorum: usize,
}

/// How long the audit waits for the latest checkpoint to carry its witnesses' cosignatures: a
/// log serves a checkpoint as soon as it is signed and adds them within a second or two.
const WITNESS_WAIT: Duration = Duration::from_secs(10);

/// The verdict of one run.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// True only if every check held.
    pub ok: bool,
    /// Entries verified in the mirror after this run.
    pub entries: u64,
    /// Entries verified by this run.
    pub new_entries: u64,
    /// The checkpoint audited (size), if the log has one.
    pub checkpoint_size: Option<u64>,
    /// Its root, hex.
    pub root: Option<String>,
    /// Anchors checked against the log (server records and chain events).
    pub anchors_checked: u64,
    /// Checkpoints of the log's history checked this run (signature, root in the mirror).
    pub checkpoints_checked: u64,
    /// The required witnesses whose valid cosignature the audited checkpoint carries.
    pub witnesses: Vec<String>,
    /// Accounts whose reported state was compared with the replay.
    pub accounts_checked: u64,
    /// Entries per second this run (signatures, replay, tree).
    pub entries_per_second: f64,
    /// The first discrepancy, if any.
    pub discrepancy: Option<Discrepancy>,
    /// The log key this run pinned, on a first run that took it from the server rather than
    /// from `--log-key` (check it out of band).
    pub pinned_from_server: Option<String>,
}

/// The mirror: the audited log's leaves and tree in a log of its own (`STATE/log`) and its
/// replayed state behind it (`STATE/state`), kept the way the ledger keeps its own.
struct Mirror {
    /// Set when this run pinned the server's own key.
    pinned_from_server: Option<String>,
    /// The mirrored log; appended to only after a page passed every check.
    mirrored: LogWriter,
    store: Store,
    log: LogConfig,
    verifier_key: String,
    size: u64,
    cache: WriterCache,
    /// Writes the mirror's state behind its log, as the ledger's is.
    state: StateWriter,
    last_ts: u64,
}

impl Mirror {
    /// Opens the mirror in `state`, creating it from the server's log description on the
    /// first run; the verifier key is pinned then and must match afterwards.
    async fn open(opts: &AuditOptions, client: &Client) -> Result<Mirror, AuditError> {
        let info = client.log_info().await?;
        let key_file = opts.state.join("log-verifier-key");
        let pinned = std::fs::read_to_string(&key_file).ok();
        let verifier_key = match (&pinned, &opts.log_key) {
            (Some(p), Some(given)) if p.trim() != given.trim() => {
                return Err(AuditError::State(format!(
                    "{} pins the log key {}, not {given}; audit another log in another state \
                     directory",
                    opts.state.display(),
                    p.trim()
                )))
            }
            (Some(p), _) => p.trim().to_owned(),
            (None, Some(given)) => given.trim().to_owned(),
            (None, None) => info.verifier_key.clone(),
        };
        let (origin, public) = checkpoint::parse_verifier_key(&verifier_key)
            .map_err(|e| AuditError::State(format!("the log key: {e}")))?;
        if opts.state.join("db").exists() {
            return Err(AuditError::State(format!(
                "{} is an audit state of the earlier layout; move it aside and audit into a new \
                 state directory with --log-key set to the key it pinned ({})",
                opts.state.display(),
                key_file.display()
            )));
        }
        let mirrored = LogWriter::open(&opts.state.join("log"))
            .map_err(|e| AuditError::State(format!("the mirror's log: {e}")))?;
        let store = Store::open(&opts.state.join("state"), mirrored.reader())?;
        let config = match store.config()? {
            Some(c) => c,
            None => {
                let c = StoredConfig {
                    log: LogConfig {
                        origin: origin.clone(),
                        operator: info.operator_key.clone(),
                    },
                    log_key: keys::public_id(&public),
                };
                keys::parse_public_id(&c.log.operator)
                    .map_err(|e| AuditError::State(format!("the operator key: {e}")))?;
                store.put_config(&c)?;
                c
            }
        };
        if pinned.is_none() {
            std::fs::write(&key_file, format!("{verifier_key}\n"))
                .map_err(|e| AuditError::State(format!("writing {}: {e}", key_file.display())))?;
        }
        if config.log.origin != origin || config.log_key != keys::public_id(&public) {
            return Err(AuditError::State(format!(
                "{} mirrors another log ({})",
                opts.state.display(),
                config.log.origin
            )));
        }
        let size = store.size()?;
        // The mirror's state is written behind its log, as the ledger's is: a run cut short
        // may leave the last pages of the log unreflected. They passed every check before they
        // were appended, so they are replayed (and checked again) here.
        let mut cache = WriterCache::default();
        // A mirror's state of an earlier layout is rebuilt from its log, as the ledger's is.
        let stale = store.stale_layout()?.is_some();
        if stale {
            store.clear_derived()?;
        }
        let state = store.state_size()?;
        if state > size {
            return Err(AuditError::State(format!(
                "the mirror's state reflects {state} entries but its log holds {size}; audit \
                 into a new state directory"
            )));
        }
        ledger::replay(&store, &config.log, &mut cache, state..size, &|_| {})
            .map_err(|e| AuditError::State(format!("replaying the mirror's log: {e}")))?;
        if stale {
            store.finish_rebuild()?;
        }
        let last_ts = match size {
            0 => 0,
            n => {
                let bytes = store.leaf(n - 1)?.ok_or_else(|| {
                    AuditError::State(format!("mirror leaf {} is missing", n - 1))
                })?;
                Leaf::decode(n - 1, &bytes)
                    .map_err(|e| AuditError::State(e.to_string()))?
                    .timestamp_ms
            }
        };
        Ok(Mirror {
            state: StateWriter::start(&store),
            pinned_from_server: (pinned.is_none() && opts.log_key.is_none())
                .then(|| verifier_key.clone()),
            mirrored,
            store,
            log: config.log,
            verifier_key,
            size,
            cache,
            last_ts,
        })
    }

    /// Checks one page of leaves starting at the mirror's size and commits it; returns the
    /// accounts the page touched, or the first discrepancy (nothing of the page committed).
    fn append_page(
        &mut self,
        leaves: Vec<Vec<u8>>,
        touched: &mut BTreeSet<String>,
    ) -> Result<Option<Discrepancy>, AuditError> {
        let start = self.size;
        let at = |i: u64| format!("entry {i}");
        // The ledger's own replay checks: decoding and signatures in parallel, then in order
        // the time, the rules and the effects; the books are the auditor's addition.
        let checked = ledger::checked_leaves(start, &leaves);
        let store = self.store.clone();
        let mut group = Group::new(&store, start, std::mem::take(&mut self.cache));
        let mut last_ts = self.last_ts;
        for (item, bytes) in checked.into_iter().zip(leaves) {
            let replayed = item.and_then(|(leaf, env)| {
                replay_leaf(&group, &self.log, &leaf, &env, last_ts).map(|r| (leaf, r))
            });
            let (leaf, (effects, writes)) = match replayed {
                Ok(x) => x,
                Err(f) => {
                    self.cache = group.into_cache();
                    return Ok(Some(discrepancy(at(f.index), f.what, f.expected, f.found)));
                }
            };
            let index = leaf.index;
            let before = |id: &str| StateView::account(&group, id);
            if let Some(d) = check_books(index, &before, &writes, &effects)? {
                self.cache = group.into_cache();
                return Ok(Some(d));
            }
            touched.extend(effects.changes.iter().map(|c| c.account.clone()));
            group.push(bytes, writes)?;
            last_ts = leaf.timestamp_ms;
        }
        let size = group.size();
        let (result, cache) = group.commit_to(&mut self.mirrored, &self.state);
        self.cache = cache;
        result.map_err(|e| AuditError::State(format!("the mirror: {e}")))?;
        self.size = size;
        self.last_ts = last_ts;
        Ok(None)
    }

    fn root(&self, size: u64) -> Result<Hash, AuditError> {
        Ok(merkle::root(size, &self.store)?)
    }
}

/// Runs one audit; `Ok` carries the verdict (see [`AuditReport::ok`]).
pub async fn run(opts: &AuditOptions) -> Result<AuditReport, AuditError> {
    std::fs::create_dir_all(&opts.state)
        .map_err(|e| AuditError::State(format!("creating {}: {e}", opts.state.display())))?;
    let client = Client::new(&opts.server)?;
    let mut mirror = Mirror::open(opts, &client).await?;
    let started = Instant::now();
    let first = mirror.size;
    let mut report = AuditReport {
        ok: false,
        entries: mirror.size,
        new_entries: 0,
        checkpoint_size: None,
        root: None,
        anchors_checked: 0,
        checkpoints_checked: 0,
        witnesses: Vec::new(),
        accounts_checked: 0,
        entries_per_second: 0.0,
        discrepancy: None,
        pinned_from_server: mirror.pinned_from_server.clone(),
    };
    // Each pass mirrors up to the latest checkpoint; then the accounts the new entries
    // touched are compared with the server's view at that checkpoint. A server under write load
    // keeps those views for its recent checkpoints only: if the mirrored one has aged out, the
    // audit passes again, up to the newest, and compares there.
    let mut touched = BTreeSet::new();
    let mut verdict = None;
    for pass in 1..=MAX_PASSES {
        verdict = audit(opts, &client, &mut mirror, &mut report, &mut touched).await?;
        if verdict.is_some() {
            break;
        }
        match compare_accounts(&client, &mirror, &touched, &mut report).await? {
            Compared::All(found) => {
                verdict = found;
                break;
            }
            Compared::NotKept(why) if pass == MAX_PASSES => {
                return Err(AuditError::State(format!(
                    "the server no longer keeps the accounts as they were at checkpoint {} \
                     after {MAX_PASSES} passes ({why}); run the audit again: it resumes there",
                    mirror.size
                )))
            }
            Compared::NotKept(_) => {}
        }
    }
    report.entries = mirror.size;
    report.new_entries = mirror.size - first;
    let secs = started.elapsed().as_secs_f64();
    report.entries_per_second = if secs > 0.0 {
        report.new_entries as f64 / secs
    } else {
        0.0
    };
    report.ok = verdict.is_none();
    report.discrepancy = verdict;
    Ok(report)
}

/// Mirrors up to the server's latest checkpoint and checks everything but the accounts; the
/// accounts the new entries touched are added to `touched`.
async fn audit(
    opts: &AuditOptions,
    client: &Client,
    mirror: &mut Mirror,
    report: &mut AuditReport,
    touched: &mut BTreeSet<String>,
) -> Result<Option<Discrepancy>, AuditError> {
    // 1. The latest checkpoint: signed by the pinned key, cosigned by the required witnesses,
    //    never smaller than the last one seen, and consistent with it.
    let deadline = Instant::now() + WITNESS_WAIT;
    let (note, cp) = loop {
        let note = match client.checkpoint().await {
            Ok(n) => n,
            Err(ClientError::Api { status: 404, .. }) if mirror.size == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cp: Checkpoint = match checkpoint::open_checkpoint(&note, &mirror.verifier_key) {
            Ok(cp) => cp,
            Err(e) => {
                return Ok(Some(discrepancy(
                    "checkpoint (latest)".into(),
                    "signature by the log key",
                    &mirror.verifier_key,
                    e,
                )))
            }
        };
        if opts.witnesses.is_empty() {
            break (note, cp);
        }
        match crate::witness::cosignature::check_quorum(&note, &opts.witnesses, opts.quorum) {
            Ok(valid) => {
                report.witnesses = valid.into_iter().map(|c| c.name).collect();
                break (note, cp);
            }
            Err(e) if Instant::now() >= deadline => {
                return Ok(Some(discrepancy(
                    format!("checkpoint {}", cp.size),
                    "witness cosignatures",
                    format!(
                        "{} of {}",
                        opts.quorum,
                        opts.witnesses
                            .iter()
                            .map(|w| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    e,
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let at_cp = format!("checkpoint {}", cp.size);
    report.checkpoint_size = Some(cp.size);
    report.root = Some(hex::encode(cp.root));
    if let Some((seen, seen_note)) = mirror.store.latest_checkpoint()? {
        let seen_cp = checkpoint::open_checkpoint(&seen_note, &mirror.verifier_key)
            .map_err(|e| AuditError::State(format!("the mirror's checkpoint {seen}: {e}")))?;
        if cp.size < seen {
            return Ok(Some(discrepancy(
                at_cp,
                "the log only grows",
                format!("at least {seen} entries (seen before)"),
                cp.size,
            )));
        }
        if cp.size > seen {
            let proof = client.consistency(seen, cp.size).await.ok();
            let ok = proof.as_ref().is_some_and(|p| {
                merkle::verify_consistency(seen, cp.size, &seen_cp.root, &cp.root, p).is_ok()
            });
            if !ok {
                let file = match fork_evidence(client, &mirror.verifier_key, &seen_note, &note)
                    .await
                {
                    Some(evidence) => Some(save_split_view(opts, &mirror.verifier_key, &evidence)?),
                    None => None,
                };
                return Ok(Some(discrepancy(
                    at_cp,
                    &format!(
                        "consistency with checkpoint {seen} seen before (a fork{})",
                        evidence_named(file.as_deref())
                    ),
                    format!("a tree extending root {}", hex::encode(seen_cp.root)),
                    format!("root {} and no valid proof", hex::encode(cp.root)),
                )));
            }
        } else if cp.root != seen_cp.root {
            let file = save_split_view(
                opts,
                &mirror.verifier_key,
                &checkpoint::SplitView::same_size(seen_note, note, &cp.root),
            )?;
            return Ok(Some(discrepancy(
                at_cp,
                &format!(
                    "the same size signs the same root (a split view{})",
                    evidence_named(Some(&file))
                ),
                hex::encode(seen_cp.root),
                hex::encode(cp.root),
            )));
        }
    }
    if cp.size < mirror.size {
        return Ok(Some(discrepancy(
            at_cp,
            "the checkpoint covers the entries already verified",
            format!("at least {}", mirror.size),
            cp.size,
        )));
    }

    // 2. Leaves up to the checkpoint, page by page, the next page fetched while one is checked.
    let bar = opts.progress.then(|| {
        let bar = crate::demo::progress_bar(cp.size, "auditing");
        bar.set_position(mirror.size);
        bar.reset_eta();
        bar
    });
    // Through the tlog-tiles API: one entry bundle (256 leaves) per request, the part of it
    // before `start` dropped (a run resuming inside a bundle).
    let fetch = |start: u64| {
        let client = client.clone();
        let bundle = start / TILE_WIDTH;
        let width = (cp.size - bundle * TILE_WIDTH).min(TILE_WIDTH) as u16;
        let skip = (start - bundle * TILE_WIDTH) as usize;
        tokio::spawn(async move {
            // A bundle the checkpoint covers but the server does not have is reported as
            // missing leaves below, not as a failure to fetch.
            let mut leaves = match client.entry_bundle(bundle, width).await {
                Err(ClientError::Api { status: 404, .. }) => return Ok(Vec::new()),
                other => other?,
            };
            leaves.drain(..skip.min(leaves.len()));
            Ok::<_, ClientError>(leaves)
        })
    };
    let mut next = (mirror.size < cp.size).then(|| fetch(mirror.size));
    while let Some(pending) = next.take() {
        let mut leaves = pending
            .await
            .map_err(|e| AuditError::State(format!("fetching leaves: {e}")))??;
        leaves.truncate((cp.size - mirror.size) as usize);
        if leaves.is_empty() {
            return Ok(Some(discrepancy(
                format!("entry {}", mirror.size),
                &format!("the leaves checkpoint {} covers are served", cp.size),
                "a leaf",
                "none",
            )));
        }
        let after = mirror.size + leaves.len() as u64;
        if after < cp.size {
            next = Some(fetch(after));
        }
        let found = tokio::task::block_in_place(|| mirror.append_page(leaves, touched))?;
        if let Some(d) = found {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Ok(Some(d));
        }
        if let Some(bar) = &bar {
            bar.set_position(mirror.size);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    // 3. The tree: the mirror's root at the checkpoint's size is the signed root.
    let root = mirror.root(cp.size)?;
    if root != cp.root {
        return Ok(Some(first_bad_entry(client, mirror, &cp).await?));
    }
    // 3b. The history: every checkpoint the log signed since the last run, up to this one,
    //     recorded in the mirror as it passes (this one last).
    if let Some(d) = check_history(opts, client, mirror, &note, &cp, report).await? {
        return Ok(Some(d));
    }

    // 4. Anchors: the server's records, and the chain's events, against the mirror's tree;
    //    every anchor the server calls final must be an event on the chain.
    let mut finals = Vec::new();
    for view in client.anchors(MAX_ANCHORS).await? {
        let rec = &view.record;
        if !matches!(rec.status, AnchorStatus::Confirmed | AnchorStatus::Final)
            || rec.tree_size > mirror.size
        {
            continue;
        }
        if rec.status == AnchorStatus::Final {
            finals.push(rec.tree_size);
        }
        let expected = mirror.root(rec.tree_size)?;
        // Both encodings are served (the hex one deprecated); a client may read either.
        if view.root_hash != wire::encode_hash(&expected) || rec.root != hex::encode(expected) {
            return Ok(Some(discrepancy(
                format!("anchor {}", rec.tree_size),
                "the server's anchor record holds the log's root",
                wire::encode_hash(&expected),
                format!("{} (hex {})", view.root_hash, rec.root),
            )));
        }
        report.anchors_checked += 1;
    }
    if let Some(d) = check_receipt(client, mirror, &cp).await? {
        return Ok(Some(d));
    }
    if let Some((rpc_url, chain_id, contract)) = &opts.chain {
        let chain = Chain::read_only(rpc_url, *chain_id, *contract).await?;
        let events = chain.anchored_events().await?;
        let on_chain: std::collections::HashSet<u64> = events.iter().map(|(s, _)| *s).collect();
        if let Some(size) = finals.iter().find(|size| !on_chain.contains(size)) {
            return Ok(Some(discrepancy(
                format!("anchor {size}"),
                &format!("an Anchored event on chain {chain_id} at {contract:#x} for the anchor the server calls final"),
                format!("an event at size {size}"),
                "none: the chain does not hold it",
            )));
        }
        for (size, root) in events {
            if size > mirror.size {
                // Anchored beyond the checkpoint this run audited: checked on a later run.
                continue;
            }
            let expected = mirror.root(size)?;
            if root != expected {
                return Ok(Some(discrepancy(
                    format!("anchor {size}"),
                    &format!("the root anchored on chain {chain_id} at {contract:#x}"),
                    hex::encode(expected),
                    hex::encode(root),
                )));
            }
            report.anchors_checked += 1;
        }
    }

    Ok(None)
}

/// How the accounts compared.
enum Compared {
    /// Every one was compared; the first that differs, if any.
    All(Option<Discrepancy>),
    /// The server no longer keeps the accounts as they were at the mirror's checkpoint.
    NotKept(String),
}

/// Compares each account in `touched` with the server's view of it at the mirror's checkpoint
/// (`GET /v1/accounts/{id}?at=SIZE`), so that entries the server took since do not count.
async fn compare_accounts(
    client: &Client,
    mirror: &Mirror,
    touched: &BTreeSet<String>,
    report: &mut AuditReport,
) -> Result<Compared, AuditError> {
    let mut checked = 0;
    for id in touched {
        let before = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let reported = match client.account_at(id, mirror.size).await {
            Ok(view) => view,
            Err(ClientError::Api {
                status: 410,
                message,
                ..
            }) => return Ok(Compared::NotKept(message)),
            Err(e) => return Err(e.into()),
        };
        let after = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let mine = StateView::account(&mirror.store, id)
            .map_err(|e| AuditError::State(format!("the mirror's account {id}: {e}")))?
            .unwrap_or_default();
        // The server's view is of some moment between the two readings of the clock.
        let matches = [before, after]
            .into_iter()
            .any(|t| AccountView::new(id, mine.clone(), t) == reported);
        if !matches {
            let expected = AccountView::new(id, mine, after);
            return Ok(Compared::All(Some(discrepancy(
                format!("account {id}"),
                "the account as the server reports it at the audited checkpoint (balance, lots, links)",
                serde_json::to_string(&expected).unwrap_or_default(),
                serde_json::to_string(&reported).unwrap_or_default(),
            ))));
        }
        checked += 1;
    }
    report.accounts_checked += checked;
    Ok(Compared::All(None))
}

/// Checks the checkpoints the server lists (`GET /v1/checkpoints`) from the one after the
/// latest the mirror recorded up to `cp` (the latest, whose root the mirror's tree has): each
/// is signed by the log key and its root is the mirror's at its size, so all of them are of
/// one tree and each is consistent with the next. Each that passes is recorded in the mirror,
/// so the next run starts after it and a later fork of any of them is caught. A root that is
/// not the mirror's is a split view: the evidence is written to a file beside the mirror
/// ([`crate::checkpoint::SplitView`]) and named in the discrepancy.
async fn check_history(
    opts: &AuditOptions,
    client: &Client,
    mirror: &mut Mirror,
    latest_note: &str,
    cp: &Checkpoint,
    report: &mut AuditReport,
) -> Result<Option<Discrepancy>, AuditError> {
    let start = mirror
        .store
        .latest_checkpoint()?
        .map_or(1, |(size, _)| size + 1);
    let mut from = start;
    let mut latest_listed = false;
    while from <= cp.size {
        let page = client.checkpoints(from, opts.checkpoints_page).await?;
        if page.checkpoints.len() > opts.checkpoints_page {
            return Ok(Some(discrepancy(
                format!("checkpoints from {from}"),
                "a page of the checkpoint list holds at most the limit asked",
                opts.checkpoints_page,
                page.checkpoints.len(),
            )));
        }
        let mut checked: Vec<(u64, &str)> = Vec::new();
        for listed in page.checkpoints.iter().take_while(|c| c.size <= cp.size) {
            let at = format!("checkpoint {}", listed.size);
            if listed.size < from {
                return Ok(Some(discrepancy(
                    at,
                    "the checkpoint list is in ascending size from the size asked",
                    format!("a size of at least {from}"),
                    listed.size,
                )));
            }
            let listed_cp = match checkpoint::open_checkpoint(&listed.note, &mirror.verifier_key) {
                Ok(c) if c.size == listed.size => c,
                Ok(c) => {
                    return Ok(Some(discrepancy(
                        at,
                        "the listed note signs the size it is listed at",
                        listed.size,
                        c.size,
                    )))
                }
                Err(e) => {
                    return Ok(Some(discrepancy(
                        at,
                        "signature by the log key (checkpoint history)",
                        &mirror.verifier_key,
                        e,
                    )))
                }
            };
            let root = mirror.root(listed.size)?;
            if listed_cp.root != root {
                let proof = merkle::prove_consistency(listed.size, cp.size, &mirror.store)?;
                let evidence = checkpoint::SplitView {
                    older: listed.note.clone(),
                    newer: latest_note.to_owned(),
                    older_size_root_in_newer: wire::encode_hash(&root),
                    proof: wire::encode_hashes(&proof),
                };
                let file = save_split_view(opts, &mirror.verifier_key, &evidence)?;
                return Ok(Some(discrepancy(
                    at,
                    &format!(
                        "one tree: the root at this size of the tree checkpoint {} signs (a \
                         split view{})",
                        cp.size,
                        evidence_named(Some(&file))
                    ),
                    hex::encode(root),
                    hex::encode(listed_cp.root),
                )));
            }
            latest_listed |= listed.size == cp.size;
            checked.push((listed.size, listed.note.as_str()));
            from = listed.size + 1;
        }
        report.checkpoints_checked += checked.len() as u64;
        let progressed = !checked.is_empty();
        mirror.store.put_checkpoints(checked)?;
        match page.next {
            Some(next) if progressed && next >= from => from = next,
            _ => break,
        }
    }
    if !latest_listed && start <= cp.size {
        return Ok(Some(discrepancy(
            format!("checkpoint {}", cp.size),
            "the latest checkpoint is in the checkpoint list",
            "listed",
            "missing",
        )));
    }
    Ok(None)
}

/// Writes split-view evidence into the mirror's directory as `split-view-A-B.json`, having
/// checked that it shows one ([`checkpoint::check_split_view`]); returns the file's path.
fn save_split_view(
    opts: &AuditOptions,
    verifier_key: &str,
    evidence: &checkpoint::SplitView,
) -> Result<PathBuf, AuditError> {
    let (older, newer, _) = checkpoint::check_split_view(evidence, verifier_key)
        .map_err(|e| AuditError::State(format!("the split view's evidence: {e}")))?;
    let path = opts
        .state
        .join(format!("split-view-{}-{}.json", older.size, newer.size));
    let json = serde_json::to_vec_pretty(evidence)
        .map_err(|e| AuditError::State(format!("encoding the split view: {e}")))?;
    std::fs::write(&path, json)
        .map_err(|e| AuditError::State(format!("writing the split view's evidence: {e}")))?;
    Ok(path)
}

/// Evidence that the tree of `newer` forks from `older` (of a smaller size, seen before), as a
/// third party can check it with the log key alone: the server's own note at the older size
/// over another root, if it lists one; otherwise the newer tree's root at the older size (from
/// the server's inclusion proof of that size's last leaf) with the server's consistency proof
/// from it to the newer root. None when the server gives neither in a form that verifies.
async fn fork_evidence(
    client: &Client,
    verifier_key: &str,
    older: &str,
    newer: &str,
) -> Option<checkpoint::SplitView> {
    let old_cp = checkpoint::open_checkpoint(older, verifier_key).ok()?;
    let new_cp = checkpoint::open_checkpoint(newer, verifier_key).ok()?;
    let seen = old_cp.size;
    if let Ok(listed) = client.checkpoint_at(seen).await {
        if let Ok(c) = checkpoint::open_checkpoint(&listed, verifier_key) {
            if c.root != old_cp.root {
                return Some(checkpoint::SplitView::same_size(
                    older.to_owned(),
                    listed,
                    &c.root,
                ));
            }
        }
    }
    let last = client.leaf(seen - 1).await.ok()?;
    let path = client.inclusion(seen - 1, seen).await.ok()?;
    let root = merkle::inclusion_root(seen - 1, seen, &merkle::leaf_hash(&last), &path).ok()?;
    let proof = client.consistency(seen, new_cp.size).await.ok()?;
    let evidence = checkpoint::SplitView {
        older: older.to_owned(),
        newer: newer.to_owned(),
        older_size_root_in_newer: crate::wire::encode_hash(&root),
        proof: proof.iter().map(crate::wire::encode_hash).collect(),
    };
    checkpoint::check_split_view(&evidence, verifier_key)
        .is_ok()
        .then_some(evidence)
}

/// "; the evidence is in FILE", or nothing without a file.
fn evidence_named(file: Option<&std::path::Path>) -> String {
    file.map_or_else(String::new, |f| {
        format!("; the evidence is in {}", f.display())
    })
}

/// How an account stood before an entry, as the replayed state says (default when untouched).
type Before<'a> = dyn Fn(&str) -> Result<Option<Account>, EngineError> + 'a;

/// Checks the books after entry `index`, on the state it leaves rather than on the engine's
/// word: every account it wrote has every figure in range ([`figure_out_of_range`]) and moved
/// its balance by the sum of the entry's deltas for it; no account has a delta without being
/// written. `before` reads the state before the entry.
fn check_books(
    index: u64,
    before: &Before<'_>,
    writes: &Writes,
    effects: &Effects,
) -> Result<Option<Discrepancy>, AuditError> {
    let at = || format!("entry {index}");
    let mut deltas: BTreeMap<&str, i128> = BTreeMap::new();
    for c in &effects.changes {
        if c.delta.unsigned_abs() > MAX_SAFE_INT {
            return Ok(Some(discrepancy(
                at(),
                &format!("a delta of account {} within ±(2^53-1)", c.account),
                format!("at most {MAX_SAFE_INT} in size"),
                c.delta,
            )));
        }
        *deltas.entry(&c.account).or_default() += i128::from(c.delta);
    }
    if let Some(id) = deltas.keys().find(|id| !writes.accounts.contains_key(**id)) {
        return Ok(Some(discrepancy(
            at(),
            &format!("account {id}, whose points the entry moves, is in the replayed state"),
            "written",
            "not written",
        )));
    }
    for (id, after) in &writes.accounts {
        if let Some((what, range, value)) = figure_out_of_range(after) {
            return Ok(Some(discrepancy(
                format!("account {id} after entry {index}"),
                &format!("{what} in range"),
                range,
                value,
            )));
        }
        let prior = before(id)
            .map_err(|e| AuditError::State(format!("the mirror's account {id}: {e}")))?
            .unwrap_or_default();
        let moved = book_balance(after) - book_balance(&prior);
        let recorded = deltas.get(id.as_str()).copied().unwrap_or(0);
        if moved != recorded {
            return Ok(Some(discrepancy(
                format!("account {id} after entry {index}"),
                "the change of its balance (Σ remaining − debt) is the sum of the entry's deltas",
                recorded,
                moved,
            )));
        }
    }
    Ok(None)
}

/// The receipt the server serves for the checkpoint's last entry, as a consumer would fetch
/// it: it must pass the receipt verifier under the pinned key, be the mirror's leaf, and its
/// anchor (if any) must hold the mirror's root at the anchored size.
async fn check_receipt(
    client: &Client,
    mirror: &Mirror,
    cp: &Checkpoint,
) -> Result<Option<Discrepancy>, AuditError> {
    let Some(index) = cp.size.checked_sub(1) else {
        return Ok(None);
    };
    let at = format!("receipt {index}");
    let doc = client.receipt_document(index, Some(cp.size)).await?;
    let verified = match receipt::verify_document(&doc, &mirror.verifier_key) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Some(discrepancy(
                at,
                "the served receipt verifies",
                "a valid receipt",
                format!("{} ({e})", e.code()),
            )))
        }
    };
    let mine = mirror
        .store
        .leaf(index)?
        .ok_or_else(|| AuditError::State(format!("mirror leaf {index} is missing")))?;
    if verified.leaf_bytes != mine {
        return Ok(Some(discrepancy(
            at,
            "the receipt's leaf is the log's",
            wire::encode_hash(&merkle::leaf_hash(&mine)),
            wire::encode_hash(&merkle::leaf_hash(&verified.leaf_bytes)),
        )));
    }
    if let Some(a) = &verified.anchor {
        if a.tree_size <= mirror.size {
            let expected = mirror.root(a.tree_size)?;
            if a.root != expected {
                return Ok(Some(discrepancy(
                    at,
                    &format!(
                        "the receipt's anchor holds the log's root at {}",
                        a.tree_size
                    ),
                    wire::encode_hash(&expected),
                    wire::encode_hash(&a.root),
                )));
            }
        }
    }
    Ok(None)
}

/// Σ remaining − debt, exactly.
fn book_balance(a: &Account) -> i128 {
    // Σ remaining fits in i128 for any number of u64 lots a store can hold.
    i128::try_from(a.held()).unwrap_or(i128::MAX) - i128::from(a.debt)
}

/// The first figure of `a` outside its range, as (what, the range, the value): points held,
/// debt, every lot's credit, remainder and dates, and the counts, all within 0..=2^53-1; no lot
/// holding more than it was credited or becoming available after it expires.
fn figure_out_of_range(a: &Account) -> Option<(String, String, String)> {
    let max = u128::from(MAX_SAFE_INT);
    let in_range = format!("0..={MAX_SAFE_INT}");
    let over = |what: String, v: u128| (v > max).then(|| (what, in_range.clone(), v.to_string()));
    if let Some(x) = over("points held (Σ remaining)".into(), a.held()) {
        return Some(x);
    }
    for (what, v) in [
        ("debt", a.debt),
        ("purchases", a.purchases),
        ("referees", a.referees),
    ] {
        if let Some(x) = over(what.into(), u128::from(v)) {
            return Some(x);
        }
    }
    for (merchant, v) in &a.rewards_by_merchant {
        if let Some(x) = over(format!("rewards from merchant {merchant}"), u128::from(*v)) {
            return Some(x);
        }
    }
    for lot in &a.lots {
        for (what, v) in [
            ("points", lot.points),
            ("remaining", lot.remaining),
            ("available_at", lot.available_at),
            ("expires_at", lot.expires_at),
        ] {
            if let Some(x) = over(format!("lot {} {what}", lot.id), u128::from(v)) {
                return Some(x);
            }
        }
        if lot.remaining > lot.points {
            return Some((
                format!("lot {} remaining", lot.id),
                format!("at most its {} points", lot.points),
                lot.remaining.to_string(),
            ));
        }
        if lot.available_at > lot.expires_at {
            return Some((
                format!("lot {} available_at", lot.id),
                format!("at most its expires_at {}", lot.expires_at),
                lot.available_at.to_string(),
            ));
        }
    }
    None
}

/// The checkpoint's root differs from the mirror's: finds the first entry whose bytes are not
/// what the checkpoint commits to. The mirror's prefix of size k is consistent with the
/// checkpoint for every k up to that entry and for none after, so a binary search over the
/// server's consistency proofs names it in O(log n) requests.
async fn first_bad_entry(
    client: &Client,
    mirror: &Mirror,
    cp: &Checkpoint,
) -> Result<Discrepancy, AuditError> {
    let consistent = |k: u64| async move {
        if k == 0 {
            return Ok::<_, AuditError>(true);
        }
        let Ok(proof) = client.consistency(k, cp.size).await else {
            return Ok(false);
        };
        let mine = mirror.root(k)?;
        Ok(merkle::verify_consistency(k, cp.size, &mine, &cp.root, &proof).is_ok())
    };
    // Invariant: prefix `lo` is consistent, prefix `hi` is not.
    let (mut lo, mut hi) = (0u64, cp.size);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if consistent(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let index = hi - 1;
    let bytes = mirror
        .store
        .leaf(index)?
        .ok_or_else(|| AuditError::State(format!("mirror leaf {index} is missing")))?;
    Ok(discrepancy(
        format!("entry {index}"),
        &format!(
            "the leaf is the one checkpoint {} signs (its root {})",
            cp.size,
            hex::encode(cp.root)
        ),
        "a leaf hash the checkpoint's tree holds",
        format!(
            "the served leaf, hash {}",
            hex::encode(merkle::leaf_hash(&bytes))
        ),
    ))
}

impl From<LedgerError> for AuditError {
    fn from(e: LedgerError) -> Self {
        AuditError::State(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::{Lot, LotSource};
    use crate::engine::{Change, Reason};

    fn lot(id: &str, points: u64, remaining: u64) -> Lot {
        Lot {
            id: id.into(),
            merchant: "m".into(),
            source: LotSource::Purchase,
            order_id: "o".into(),
            points,
            remaining,
            available_at: 0,
            expires_at: 10,
        }
    }

    fn account(lots: Vec<Lot>, debt: u64) -> Account {
        Account {
            lots: lots.into(),
            debt,
            ..Account::default()
        }
    }

    fn change(account: &str, delta: i64, reason: Reason) -> Change {
        Change {
            account: account.into(),
            delta,
            reason,
            lot: Some("1.0".into()),
            available_at: None,
            expires_at: None,
        }
    }

    /// Runs the check of one entry that turns `before` into `after` for account `c`.
    fn check(before: Account, after: Account, changes: Vec<Change>) -> Option<Discrepancy> {
        let writes = Writes {
            accounts: [("c".to_owned(), after)].into_iter().collect(),
            ..Writes::default()
        };
        let effects = Effects {
            changes,
            discount: None,
        };
        let view = move |id: &str| Ok::<_, EngineError>((id == "c").then(|| before.clone()));
        check_books(7, &view, &writes, &effects).expect("the check runs")
    }

    #[test]
    fn books_that_add_up_pass() {
        let before = account(vec![lot("1.0", 1000, 400)], 0);
        let after = account(vec![lot("1.0", 1000, 1000)], 100);
        let changes = vec![
            change("c", 600, Reason::RedeemReturn),
            change("c", -100, Reason::Debt),
        ];
        assert_eq!(check(before, after, changes), None);
    }

    /// The state the uncapped `redeem_return` produced: a lot at the cap given points back on
    /// top, with a delta that records exactly that. The effects match a (buggy) replay and the
    /// balance moved by the deltas, so only the range check can see it.
    #[test]
    fn a_figure_beyond_the_cap_fails_even_when_the_deltas_agree() {
        let before = account(vec![lot("1.0", MAX_SAFE_INT, MAX_SAFE_INT - 1000)], 0);
        let after = account(vec![lot("1.0", MAX_SAFE_INT, MAX_SAFE_INT + 1000)], 0);
        let d = check(before, after, vec![change("c", 2000, Reason::RedeemReturn)])
            .expect("a discrepancy");
        assert_eq!(d.at, "account c after entry 7");
        assert!(d.what.contains("points held"), "{d}");
        assert_eq!(d.found, (u128::from(MAX_SAFE_INT) + 1000).to_string());

        // Within the cap in total, but a lot holding more than it was credited.
        let before = account(vec![lot("1.0", 500, 500)], 0);
        let after = account(vec![lot("1.0", 500, 700)], 0);
        let d = check(before, after, vec![change("c", 200, Reason::RedeemReturn)])
            .expect("a discrepancy");
        assert!(d.what.contains("lot 1.0 remaining"), "{d}");

        let before = account(vec![], MAX_SAFE_INT - 1);
        let after = account(vec![], MAX_SAFE_INT + 1);
        let d = check(before, after, vec![change("c", -2, Reason::Debt)]).expect("debt");
        assert!(d.what.contains("debt"), "{d}");
    }

    #[test]
    fn a_balance_that_moved_otherwise_than_the_deltas_fails() {
        let before = account(vec![lot("1.0", 1000, 400)], 0);
        let after = account(vec![lot("1.0", 1000, 1000)], 0);
        let d = check(before, after, vec![change("c", 500, Reason::RedeemReturn)])
            .expect("a discrepancy");
        assert_eq!((d.expected.as_str(), d.found.as_str()), ("500", "600"));
        assert!(d.what.contains("sum of the entry's deltas"), "{d}");
    }

    #[test]
    fn deltas_out_of_range_or_for_unwritten_accounts_fail() {
        let a = account(vec![lot("1.0", 10, 10)], 0);
        let d = check(
            a.clone(),
            a.clone(),
            vec![change("c", i64::MAX, Reason::Earn)],
        )
        .expect("delta");
        assert!(d.what.contains("within ±(2^53-1)"), "{d}");
        let d = check(a.clone(), a, vec![change("someone", 5, Reason::Earn)]).expect("unwritten");
        assert!(d.what.contains("account someone"), "{d}");
    }
}
