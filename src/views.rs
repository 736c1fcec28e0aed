//! Read-side views shared by the command line and the HTTP API, so both say the same thing.

use crate::engine::state::{Account, Balance, Lot};
use crate::engine::{Change, Discount};
use crate::ledger::{Leaf, LedgerError};
use crate::state::Store;
use serde::{Deserialize, Serialize};

/// An account as a consumer sees it at a given time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The account's key id.
    pub account: String,
    /// Available, pending, expiring, debt and the total the effects add up to.
    pub balance: Balance,
    /// Lots not yet swept, in drawing order.
    pub lots: Vec<Lot>,
    /// The referrer, once bound.
    pub referrer: Option<String>,
    /// Referees brought so far.
    pub referees: u64,
    /// Purchases recorded.
    pub purchases: u64,
    /// The linked EVM address.
    pub evm_address: Option<String>,
}

impl AccountView {
    /// The view of `acc` (id `id`) at `now_ms`.
    pub fn new(id: &str, acc: Account, now_ms: u64) -> AccountView {
        AccountView {
            account: id.to_owned(),
            balance: acc.balance(now_ms),
            lots: acc.lots.into_vec(),
            referrer: acc.referrer,
            referees: acc.referees,
            purchases: acc.purchases,
            evm_address: acc.evm_address,
        }
    }
}

/// One row of an account's history: the entry and why the account's points moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryRow {
    /// The entry's leaf index.
    pub index: u64,
    /// When it was sequenced.
    pub timestamp_ms: u64,
    /// The entry's kind.
    pub kind: String,
    /// The merchant involved, if any.
    pub merchant: Option<String>,
    /// The order involved, if any.
    pub order_id: Option<String>,
    /// Net change of this account's total.
    pub delta: i64,
    /// This account's changes, each with its reason and lot.
    pub changes: Vec<Change>,
    /// The discount the entry granted, if any.
    pub discount: Option<Discount>,
}

impl HistoryRow {
    /// The row of `leaf` for `account`.
    pub fn new(account: &str, leaf: Leaf) -> Result<HistoryRow, LedgerError> {
        let env = leaf.envelope()?;
        let payload: serde_json::Value =
            serde_json::from_slice(env.payload()).unwrap_or(serde_json::Value::Null);
        let text = |k: &str| payload.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let changes: Vec<Change> = leaf
            .effects
            .changes
            .into_iter()
            .filter(|c| c.account == account)
            .collect();
        Ok(HistoryRow {
            index: leaf.index,
            timestamp_ms: leaf.timestamp_ms,
            kind: env.kind().to_owned(),
            merchant: text("merchant"),
            order_id: text("order_id"),
            delta: changes.iter().map(|c| c.delta).sum(),
            changes,
            discount: leaf.effects.discount,
        })
    }
}

/// Up to `limit` history rows of `account`, from leaf index `from` on.
pub fn history(
    store: &Store,
    account: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<HistoryRow>, LedgerError> {
    store
        .history(account, from, limit)?
        .into_iter()
        .map(|index| {
            let bytes = store
                .leaf(index)?
                .ok_or_else(|| LedgerError::Internal(format!("leaf {index} is missing")))?;
            HistoryRow::new(account, Leaf::decode(index, &bytes)?)
        })
        .collect()
}
