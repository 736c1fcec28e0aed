//! The anchorer's persistent state machine, one record per anchored checkpoint.

use super::chain::{Chain, ChainError, Mined};
use crate::checkpoint;
use crate::merkle;
use crate::state::{Store, StoreError};
use ethers::types::{H256, U256};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most anchor records one re-check of final anchors reads ([`Anchorer::recheck_final`]): a
/// loss deeper than this many anchors is found on the next re-check, after the newest
/// checkpoint has been anchored again.
pub const MAX_RECHECK: usize = 1024;

/// Where a checkpoint's anchor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnchorStatus {
    /// Chosen for anchoring, no transaction in flight.
    Pending,
    /// A transaction is in flight.
    Sent,
    /// Mined, not yet as deep as the confirmation depth.
    Confirmed,
    /// Mined, deep enough, and its block still on the chain at that depth.
    Final,
}

/// One checkpoint's anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnchorRecord {
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Its root, hex.
    pub root: String,
    /// Where it stands.
    pub status: AnchorStatus,
    /// The transaction in flight or mined, `0x` hex.
    pub tx_hash: Option<String>,
    /// The transaction's nonce (resends reuse it, so at most one can ever be mined).
    pub nonce: Option<u64>,
    /// The gas price of the last send, in wei.
    pub gas_price_wei: Option<u128>,
    /// The block that holds the transaction.
    pub block_number: Option<u64>,
    /// That block's hash, `0x` hex, re-checked at the confirmation depth.
    pub block_hash: Option<String>,
    /// When the transaction was last sent, unix ms.
    pub sent_at_ms: Option<u64>,
    /// How many times a transaction was sent for it.
    pub sends: u32,
    /// The anchored size the consistency proof started from.
    pub from_size: u64,
}

/// Why an anchoring step failed; the state is unchanged and the step can be retried.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The chain failed (RPC outage, refusal).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proof or checkpoint could not be produced.
    #[error("{0}")]
    Log(String),
}

/// How the anchorer behaves.
#[derive(Debug, Clone, Copy)]
pub struct AnchorPolicy {
    /// Blocks on top of the anchoring block before it is final (1 = the block itself).
    pub confirmations: u64,
    /// How long a sent transaction may stay unmined before it is sent again with more gas.
    pub resend_after: Duration,
    /// Most gas price to pay, in wei.
    pub gas_price_ceiling: U256,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_h256(s: &Option<String>) -> Option<H256> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// The anchorer's window on the ledger's store: the signed checkpoints and the tree hashes under
/// them, which it reads, and its own records, which it reads and writes. Nothing of the state
/// derived from the log is reachable through it, so the anchorer cannot come to depend on it.
#[derive(Clone)]
pub struct AnchorStore(Store);

impl AnchorStore {
    /// The window on `store`.
    pub fn new(store: Store) -> AnchorStore {
        AnchorStore(store)
    }

    /// The newest signed checkpoint, `(size, note)`.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.0.latest_checkpoint()
    }

    /// The record with a transaction in flight or awaiting its depth, if any.
    pub fn in_flight(&self) -> Result<Option<AnchorRecord>, StoreError> {
        self.0.anchor_in_flight()
    }

    /// Records newest first, below tree size `before` (all if `None`).
    pub fn newest_first(
        &self,
        before: Option<u64>,
    ) -> impl Iterator<Item = Result<AnchorRecord, StoreError>> {
        self.0.anchors_newest_first(before)
    }

    /// Writes a record (flushed).
    pub fn put(&self, rec: &AnchorRecord) -> Result<(), StoreError> {
        self.0.put_anchor(rec)
    }

    /// Removes the record of `tree_size`.
    pub fn delete(&self, tree_size: u64) -> Result<(), StoreError> {
        self.0.delete_anchor(tree_size)
    }

    /// Binds the records to a contract, dropping those of another; how many were dropped.
    pub fn bind_target(&self, chain_id: u64, contract: &str) -> Result<usize, StoreError> {
        self.0.bind_anchor_target(chain_id, contract)
    }
}

impl merkle::HashSource for AnchorStore {
    /// The log's tree hashes, for the consistency proof an anchor carries.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<merkle::Hash>, merkle::MerkleError> {
        self.0.read_hashes(indexes)
    }
}

/// Drives checkpoints onto the chain, one step at a time.
pub struct Anchorer {
    /// The chain and contract.
    pub chain: Chain,
    /// Checkpoints, tree hashes and the anchor records.
    pub store: AnchorStore,
    /// The log's verifier key: only checkpoints it signed are anchored.
    pub verifier_key: String,
    /// Behaviour.
    pub policy: AnchorPolicy,
}

impl Anchorer {
    /// One step: advances the record in flight, or starts anchoring the newest checkpoint if the
    /// chain is behind it. Returns the record it worked on, if any.
    pub async fn step(&self) -> Result<Option<AnchorRecord>, AnchorError> {
        if let Some(rec) = self.store.in_flight()? {
            let rec = match rec.status {
                AnchorStatus::Sent => self.check_sent(rec).await?,
                AnchorStatus::Confirmed => self.check_confirmed(rec).await?,
                _ => rec,
            };
            self.store.put(&rec)?;
            return Ok(Some(rec));
        }
        self.start_newest().await
    }

    async fn start_newest(&self) -> Result<Option<AnchorRecord>, AnchorError> {
        let Some((size, note)) = self.store.latest_checkpoint()? else {
            return Ok(None);
        };
        let (anchored, _) = self.chain.anchored().await?;
        if size <= anchored {
            return Ok(None);
        }
        let cp = checkpoint::open_checkpoint(&note, &self.verifier_key)
            .map_err(|e| AnchorError::Log(format!("checkpoint {size}: {e}")))?;
        let mut rec = AnchorRecord {
            tree_size: size,
            root: hex::encode(cp.root),
            status: AnchorStatus::Pending,
            tx_hash: None,
            nonce: None,
            gas_price_wei: None,
            block_number: None,
            block_hash: None,
            sent_at_ms: None,
            sends: 0,
            from_size: anchored,
        };
        self.send_fresh(&mut rec).await?;
        // Pending records left by a refusal or a reorg are replaced by this newer anchor.
        for old in self.store.newest_first(None) {
            let old = old?;
            if old.status != AnchorStatus::Pending {
                break;
            }
            self.store.delete(old.tree_size)?;
        }
        self.store.put(&rec)?;
        Ok(Some(rec))
    }

    /// Sends with the account's next nonce at the node's gas price (within the ceiling).
    async fn send_fresh(&self, rec: &mut AnchorRecord) -> Result<(), AnchorError> {
        let nonce = self.chain.next_nonce().await?;
        let price = self
            .chain
            .gas_price()
            .await?
            .min(self.policy.gas_price_ceiling);
        self.send(rec, nonce, price).await
    }

    async fn send(
        &self,
        rec: &mut AnchorRecord,
        nonce: U256,
        price: U256,
    ) -> Result<(), AnchorError> {
        let proof = if rec.from_size == 0 {
            Vec::new()
        } else {
            merkle::prove_consistency(rec.from_size, rec.tree_size, &self.store)
                .map_err(|e| AnchorError::Log(e.to_string()))?
        };
        let mut root = [0u8; 32];
        hex::decode_to_slice(&rec.root, &mut root).map_err(|e| AnchorError::Log(e.to_string()))?;
        let tx = self
            .chain
            .send_anchor(rec.tree_size, root, proof, nonce, price)
            .await?;
        rec.status = AnchorStatus::Sent;
        rec.tx_hash = Some(format!("{tx:#x}"));
        rec.nonce = Some(nonce.as_u64());
        rec.gas_price_wei = Some(price.as_u128());
        rec.sent_at_ms = Some(now_ms());
        rec.sends += 1;
        rec.block_number = None;
        rec.block_hash = None;
        Ok(())
    }

    async fn check_sent(&self, mut rec: AnchorRecord) -> Result<AnchorRecord, AnchorError> {
        let Some(tx) = parse_h256(&rec.tx_hash) else {
            rec.status = AnchorStatus::Pending;
            return Ok(rec);
        };
        if let Some(m) = self.chain.mined(tx).await? {
            return self.on_mined(rec, m).await;
        }
        let (anchored, _) = self.chain.anchored().await?;
        if anchored >= rec.tree_size {
            // Our own transaction may have been mined between the two reads (the node answers
            // each from its head at the time); if not, another one (an earlier send with the
            // same nonce) covered it.
            if let Some(m) = self.chain.mined(tx).await? {
                return self.on_mined(rec, m).await;
            }
            return self.superseded_or_pending(rec).await;
        }
        let stale = rec.sent_at_ms.is_none_or(|t| {
            now_ms().saturating_sub(t) >= self.policy.resend_after.as_millis() as u64
        });
        let dropped = !self.chain.knows(tx).await?;
        let nonce = U256::from(rec.nonce.unwrap_or_default());
        let next_nonce = self.chain.next_nonce().await?;
        // The node forgot nonces before ours (it restarted from older state): ours can never be
        // mined until they are used again.
        let gapped = next_nonce < nonce;
        if dropped || stale || gapped {
            let last = U256::from(rec.gas_price_wei.unwrap_or_default());
            // A replacement must pay at least 10% more; 25% leaves room for rounding.
            let bumped: U256 =
                (last * U256::from(125u64) / U256::from(100u64)).max(self.chain.gas_price().await?);
            let price = bumped.min(self.policy.gas_price_ceiling);
            // A stuck transaction is replaced under its own nonce; a dropped or gapped one is
            // sent afresh with the account's next nonce (its own if still free).
            let nonce = if dropped || gapped { next_nonce } else { nonce };
            // The proof starts from what the chain holds now, which a rollback can lower.
            rec.from_size = anchored;
            match self.send(&mut rec, nonce, price).await {
                Ok(()) => {}
                Err(AnchorError::Chain(ChainError::Contract(msg)))
                    if msg.contains("SizeNotGrowing") =>
                {
                    return self.superseded_or_pending(rec).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rec)
    }

    /// Our transaction is in a block: confirmed there if it succeeded, otherwise refused.
    async fn on_mined(&self, mut rec: AnchorRecord, m: Mined) -> Result<AnchorRecord, AnchorError> {
        if !m.success {
            return self.superseded_or_pending(rec).await;
        }
        rec.status = AnchorStatus::Confirmed;
        rec.block_number = Some(m.block_number);
        rec.block_hash = Some(format!("{:#x}", m.block_hash));
        Ok(rec)
    }

    async fn check_confirmed(&self, mut rec: AnchorRecord) -> Result<AnchorRecord, AnchorError> {
        let (Some(number), Some(hash)) = (rec.block_number, parse_h256(&rec.block_hash)) else {
            rec.status = AnchorStatus::Pending;
            return Ok(rec);
        };
        let head = self.chain.head().await?;
        let still_there = self.chain.block_hash(number).await? == Some(hash)
            && match parse_h256(&rec.tx_hash) {
                Some(tx) => self
                    .chain
                    .mined(tx)
                    .await?
                    .is_some_and(|m| m.block_hash == hash),
                None => false,
            };
        if !still_there {
            // Reorged away: the anchor is gone; send it again (the nonce may be free again).
            rec.status = AnchorStatus::Pending;
            rec.block_number = None;
            rec.block_hash = None;
            let (anchored, _) = self.chain.anchored().await?;
            if anchored >= rec.tree_size {
                return self.superseded_or_pending(rec).await;
            }
            rec.from_size = anchored;
            self.send_fresh(&mut rec).await?;
            return Ok(rec);
        }
        if head + 1 >= number + self.policy.confirmations {
            rec.status = AnchorStatus::Final;
        }
        Ok(rec)
    }

    /// Re-reads the anchors called final, newest first, from the chain, and returns the sizes
    /// of those whose root the contract no longer holds at their size (a reorg deeper than the
    /// confirmation depth, a chain reset to older state). The newest such one goes back to
    /// pending, so that the next step anchors the newest checkpoint again; one below an anchor
    /// the chain holds is covered by it (the contract took that anchor as an extension of an
    /// older one) and its record is dropped.
    ///
    /// The walk stops at two held anchors in a row of which the newer was sent as an
    /// extension of the older (`from_size`): the contract accepted each anchor only as an
    /// extension of the one it held, so everything below is held too. It reads at most
    /// [`MAX_RECHECK`] records.
    pub async fn recheck_final(&self) -> Result<Vec<u64>, AnchorError> {
        let mut lost = Vec::new();
        let mut newer_held: Option<AnchorRecord> = None;
        for rec in self.store.newest_first(None).take(MAX_RECHECK) {
            let mut rec = rec?;
            if rec.status != AnchorStatus::Final {
                continue;
            }
            let on_chain = self.chain.root_at(rec.tree_size).await?;
            if hex::encode(on_chain) != rec.root {
                lost.push(rec.tree_size);
                if newer_held.is_some() {
                    self.store.delete(rec.tree_size)?;
                } else {
                    rec.status = AnchorStatus::Pending;
                    rec.tx_hash = None;
                    rec.block_number = None;
                    rec.block_hash = None;
                    self.store.put(&rec)?;
                }
                continue;
            }
            // Held. A reorg may have moved its transaction to another block: follow it.
            if let Some(tx) = parse_h256(&rec.tx_hash) {
                if let Some(m) = self.chain.mined(tx).await? {
                    let hash = format!("{:#x}", m.block_hash);
                    if rec.block_hash.as_deref() != Some(hash.as_str()) {
                        rec.block_number = Some(m.block_number);
                        rec.block_hash = Some(hash);
                        self.store.put(&rec)?;
                    }
                }
            }
            if newer_held
                .as_ref()
                .is_some_and(|n| n.from_size == rec.tree_size)
            {
                break;
            }
            newer_held = Some(rec);
        }
        Ok(lost)
    }

    /// After a refusal or a covering anchor: final if the chain holds this root at this size,
    /// otherwise pending (the next step starts over from what the chain holds).
    async fn superseded_or_pending(
        &self,
        mut rec: AnchorRecord,
    ) -> Result<AnchorRecord, AnchorError> {
        let on_chain = self.chain.root_at(rec.tree_size).await?;
        if hex::encode(on_chain) == rec.root {
            rec.status = AnchorStatus::Final;
        } else {
            rec.status = AnchorStatus::Pending;
            rec.tx_hash = None;
        }
        Ok(rec)
    }
}
