//! Where a command's data comes from: a data directory (embedded mode) or a server's HTTP API.
//!
//! Each read command has one implementation per backend here, returning the same types, so the
//! command line prints the same thing whichever way it reaches the ledger.

use crate::checkpoint::TlogProof;
use crate::client::Client;
use crate::clock::{Clock, SystemClock};
use crate::dsse::Envelope;
use crate::engine::{self, Quote, StateView};
use crate::ledger::{self, Receipt};
use crate::merkle;
use crate::state::Store;
use crate::views::{self, AccountView, HistoryRow};
use crate::wire::BatchItem;
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;

/// Selects the ledger a command works on: exactly one of `--data` or `--server`.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub(super) struct Target {
    /// The data directory (embedded mode, no server needed).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A pointsledger server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
}

/// An opened target.
pub(super) enum Backend {
    /// A store opened read-only from a data directory.
    Local(Store),
    /// A server, with a runtime to drive its async client.
    Remote(Client, tokio::runtime::Runtime),
}

/// A runtime for the blocking command line to drive async HTTP calls.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl Backend {
    /// Opens the target.
    pub(super) fn open(target: &Target) -> Result<Backend> {
        match (&target.data, &target.server) {
            (Some(dir), None) => Ok(Backend::Local(ledger::open_store(dir)?.0)),
            (None, Some(url)) => Ok(Backend::Remote(Client::new(url)?, runtime()?)),
            _ => bail!("give exactly one of --data DIR or --server URL"),
        }
    }

    /// An account's view now.
    pub(super) fn account(&self, id: &str) -> Result<AccountView> {
        match self {
            Backend::Local(store) => {
                let acc = store.account(id)?.unwrap_or_default();
                Ok(AccountView::new(id, acc, SystemClock.now_ms()))
            }
            Backend::Remote(c, rt) => Ok(rt.block_on(c.account(id))?),
        }
    }

    /// Every history row of an account, page by page, passed to `each`.
    pub(super) fn history(
        &self,
        id: &str,
        each: &mut dyn FnMut(HistoryRow) -> Result<()>,
    ) -> Result<()> {
        let mut from = 0;
        loop {
            let (rows, next) = match self {
                Backend::Local(store) => {
                    let rows = views::history(store, id, from, 1000)?;
                    let next = rows.last().map(|r| r.index + 1);
                    (rows, next)
                }
                Backend::Remote(c, rt) => {
                    let page = rt.block_on(c.history(id, from, 1000))?;
                    (page.rows, page.next)
                }
            };
            let done = rows.is_empty();
            for row in rows {
                each(row)?;
            }
            match next {
                Some(n) if !done && n > from => from = n,
                _ => return Ok(()),
            }
        }
    }

    /// The latest checkpoint note.
    pub(super) fn checkpoint(&self) -> Result<String> {
        match self {
            Backend::Local(store) => Ok(store
                .latest_checkpoint()?
                .ok_or_else(|| anyhow!("the log is empty: no checkpoint yet"))?
                .1),
            Backend::Remote(c, rt) => Ok(rt.block_on(c.checkpoint())?),
        }
    }

    /// The checkpoint note at `size`.
    fn checkpoint_at(&self, size: u64) -> Result<String> {
        match self {
            Backend::Local(store) => store
                .checkpoint(size)?
                .ok_or_else(|| anyhow!("no checkpoint was cut at size {size}")),
            Backend::Remote(c, rt) => Ok(rt.block_on(c.checkpoint_at(size))?),
        }
    }

    /// The log's size.
    pub(super) fn size(&self) -> Result<u64> {
        match self {
            Backend::Local(store) => Ok(store.size()?),
            Backend::Remote(c, rt) => Ok(rt.block_on(c.log_info())?.size),
        }
    }

    /// Leaves `start..end`, passed to `each` in order.
    pub(super) fn leaves(
        &self,
        start: u64,
        end: u64,
        each: &mut dyn FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut next = start;
        while next < end {
            let stop = (next + 1000).min(end);
            let page = match self {
                Backend::Local(store) => store.leaves(next, stop)?,
                Backend::Remote(c, rt) => rt.block_on(c.leaves(next, stop))?,
            };
            if page.len() as u64 != stop - next {
                bail!(
                    "expected {} leaves from {next}, got {}",
                    stop - next,
                    page.len()
                );
            }
            for leaf in page {
                each(leaf)?;
            }
            next = stop;
        }
        Ok(())
    }

    /// A c2sp.org/tlog-proof for leaf `index` against the checkpoint of `size` (default latest).
    pub(super) fn inclusion(&self, index: u64, size: Option<u64>) -> Result<TlogProof> {
        let note = match size {
            Some(n) => self.checkpoint_at(n)?,
            None => self.checkpoint()?,
        };
        let cp_size: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| anyhow!("the checkpoint has no size line"))?;
        if index >= cp_size {
            bail!("leaf {index} is not covered by the checkpoint of size {cp_size}");
        }
        let (leaf, proof) = match self {
            Backend::Local(store) => (
                store
                    .leaf(index)?
                    .ok_or_else(|| anyhow!("leaf {index} is missing"))?,
                merkle::prove_inclusion(cp_size, index, store)?,
            ),
            Backend::Remote(c, rt) => rt.block_on(async {
                let leaf = c.leaf(index).await?;
                let proof = c.inclusion(index, cp_size).await?;
                Ok::<_, anyhow::Error>((leaf, proof))
            })?,
        };
        Ok(TlogProof {
            extra: Some(leaf),
            index,
            proof,
            checkpoint: note,
        })
    }

    /// The consistency proof from `from` to `to`, as base64 hashes.
    pub(super) fn consistency(&self, from: u64, to: u64) -> Result<Vec<String>> {
        let size = self.size()?;
        if from == 0 || from > to || to > size {
            bail!("need 1 <= FROM <= TO <= {size} (the log's size); got {from}..{to}");
        }
        match self {
            Backend::Local(store) => Ok(crate::wire::encode_hashes(&merkle::prove_consistency(
                from, to, store,
            )?)),
            Backend::Remote(c, rt) => Ok(crate::wire::encode_hashes(
                &rt.block_on(c.consistency(from, to))?,
            )),
        }
    }

    /// A quote for an order at the current time.
    pub(super) fn quote(&self, merchant: &str, consumer: &str, amount: u64) -> Result<Quote> {
        match self {
            Backend::Local(store) => Ok(engine::quote(
                store,
                merchant,
                consumer,
                amount,
                SystemClock.now_ms(),
            )?),
            Backend::Remote(c, rt) => Ok(rt.block_on(c.quote(merchant, consumer, amount))?),
        }
    }

    /// The log's verifier key.
    pub(super) fn verifier_key(&self) -> Result<String> {
        match self {
            Backend::Local(store) => {
                let config = store
                    .config()?
                    .ok_or_else(|| anyhow!("this data directory holds no ledger"))?;
                let key = crate::keys::parse_public_id(&config.log_key)?;
                Ok(crate::checkpoint::verifier_key(&config.log.origin, &key))
            }
            Backend::Remote(c, rt) => Ok(rt.block_on(c.log_info())?.verifier_key),
        }
    }
}

/// Submits envelopes to a server one by one; one result per envelope.
pub(super) fn submit_remote(
    client: &Client,
    rt: &tokio::runtime::Runtime,
    envelopes: &[Envelope],
) -> Vec<Result<Receipt>> {
    rt.block_on(async {
        let mut out = Vec::with_capacity(envelopes.len());
        for chunk in envelopes.chunks(256) {
            match client.submit_batch(chunk).await {
                Ok(results) => out.extend(results.into_iter().map(|r| match r {
                    BatchItem::Accepted { receipt } => Ok(receipt),
                    BatchItem::Refused {
                        error,
                        message,
                        status,
                    } => Err(anyhow!("server refused ({status} {error}): {message}")),
                })),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|_| Err(anyhow!("{msg}"))));
                }
            }
        }
        out
    })
}
