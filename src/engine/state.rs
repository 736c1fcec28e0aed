//! The state the engine derives from the log: accounts with their lots, merchants, orders.
//!
//! Nothing here is a source of truth: every value is a function of the leaves, which is what lets
//! `rebuild` and an auditor reproduce it exactly. Values are stored (postcard-encoded)
//! in sled by [`crate::state`] and read back through [`StateView`](crate::engine::StateView).

pub use super::lots::{LotChunk, LotPos, Lots, LotsIter};
use crate::payload::ProgramRules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A batch of points credited by one entry, spent and expired on its own schedule.
///
/// Tying every debit to a lot is what keeps expiry, refunds and redemptions consistent: a
/// redemption says which lots it drew from, a refund returns points to those same lots, and an
/// expired lot takes exactly its own remainder with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lot {
    /// `"<leaf index>.<ordinal>"`: the entry that created it, so the id is stable under replay.
    pub id: String,
    /// The merchant whose program issued the points.
    pub merchant: String,
    /// Why the lot exists.
    pub source: LotSource,
    /// The order that earned it.
    pub order_id: String,
    /// Points credited when the lot was created.
    pub points: u64,
    /// Points still in the lot.
    pub remaining: u64,
    /// Unix ms from which the points may be spent (end of the refund window).
    pub available_at: u64,
    /// Unix ms at which the remaining points expire.
    pub expires_at: u64,
}

/// Why a lot was credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LotSource {
    /// Points earned by a purchase.
    Purchase,
    /// A referrer's reward for a referee's first purchase.
    ReferralReward,
}

/// A consumer's (or referrer's) account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Lots not yet expired, ordered by `(expires_at, id)`: the order redemptions draw in.
    pub lots: Lots,
    /// Points clawed back after the lots they came from were spent; settled before any spend.
    pub debt: u64,
    /// The referrer this account accepted, bound once.
    pub referrer: Option<String>,
    /// How many referees accepted this account as referrer (bounded per referrer).
    pub referees: u64,
    /// Purchases recorded for this account (a referee must have none; a referrer at least one).
    pub purchases: u64,
    /// The linked EVM address, `0x` and 40 lowercase hex digits; set once, never changed.
    pub evm_address: Option<String>,
    /// Referral rewards received, per merchant (each merchant caps them).
    pub rewards_by_merchant: BTreeMap<String, u64>,
}

/// How an account's points stand at a given time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Balance {
    /// Σ remaining over all lots − debt: what the effects of the log add up to.
    pub total: i64,
    /// Points spendable now (before settling debt).
    pub available: u64,
    /// Points still in their refund window.
    pub pending: u64,
    /// Available points that expire within the next 30 days.
    pub expiring_30d: u64,
    /// Points past expiry that no entry has swept yet (they can no longer be spent).
    pub expired_unswept: u64,
    /// Clawback debt, at most 2^53-1.
    pub debt: u64,
}

impl Account {
    /// The account's balance as seen at `now_ms`.
    ///
    /// The engine keeps Σ remaining and the debt within 0..=2^53-1 (and the auditor checks it),
    /// so none of these sums can reach the bounds of its type; the sums saturate rather than
    /// wrap so that a state which broke that invariant still shows as absurd, never as small.
    pub fn balance(&self, now_ms: u64) -> Balance {
        let mut b = Balance {
            debt: self.debt,
            ..Balance::default()
        };
        let horizon = now_ms.saturating_add(30 * crate::clock::DAY_MS);
        let mut sum: i128 = 0;
        for lot in &self.lots {
            sum += i128::from(lot.remaining);
            let r = lot.remaining;
            if lot.expires_at <= now_ms {
                b.expired_unswept = b.expired_unswept.saturating_add(r);
            } else if lot.available_at > now_ms {
                b.pending = b.pending.saturating_add(r);
            } else {
                b.available = b.available.saturating_add(r);
                if lot.expires_at <= horizon {
                    b.expiring_30d = b.expiring_30d.saturating_add(r);
                }
            }
        }
        sum -= i128::from(self.debt);
        b.total = i64::try_from(sum).unwrap_or(i64::MAX);
        b
    }

    /// Σ remaining over all lots, the quantity bounded by 2^53-1; exact (128-bit) whatever the
    /// lots hold.
    pub fn held(&self) -> u128 {
        self.lots.held()
    }
}

/// A registered merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    /// Display name.
    pub name: String,
    /// The program in force (changes apply to entries sequenced after the update).
    pub rules: ProgramRules,
    /// Leaf index of the registration.
    pub registered_at_index: u64,
}

/// Everything recorded against one (merchant, order id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The purchase, once recorded.
    pub purchase: Option<PurchaseRecord>,
    /// The redemption, if points paid part of the order.
    pub redemption: Option<RedemptionRecord>,
}

/// What a purchase did, kept so refunds can reverse it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRecord {
    /// Leaf index of the purchase.
    pub index: u64,
    /// The buyer.
    pub consumer: String,
    /// The order's price before discounts.
    pub amount: u64,
    /// The referee discount granted (first referred purchase), in minor units.
    pub referee_discount: u64,
    /// Points earned.
    pub earned: u64,
    /// The lot holding the earned points.
    pub lot: Option<String>,
    /// The referrer reward this purchase triggered.
    pub reward: Option<RewardRecord>,
    /// Sum of refunds so far, in minor units (≤ amount).
    pub refunded: u64,
    /// Earned points reversed so far.
    pub reversed: u64,
    /// Points of the earned lot that expired and that no reversal has accounted for yet: a
    /// refund takes those back from nobody, since they already left the account by expiry.
    pub lot_expired: u64,
}

/// A referrer reward and how much of it refunds took back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRecord {
    /// The referrer rewarded.
    pub referrer: String,
    /// The lot credited.
    pub lot: String,
    /// Points credited.
    pub points: u64,
    /// Points clawed back so far.
    pub clawed: u64,
    /// Points of the reward lot that expired and that no clawback has accounted for yet.
    pub expired: u64,
}

/// A redemption on an order and the lots it drew from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    /// Leaf index of the redemption.
    pub index: u64,
    /// The consumer who spent the points.
    pub consumer: String,
    /// The order's price the redemption was made against; its purchase must match it.
    pub order_amount: u64,
    /// Points spent.
    pub points: u64,
    /// Discount granted, in minor units.
    pub discount: u64,
    /// Lots drawn from, in drawing order, with points taken and points returned by refunds.
    pub drawn: Vec<Draw>,
    /// Points returned by refunds so far.
    pub returned: u64,
}

/// Points taken from one lot by a redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    /// The lot.
    pub lot: String,
    /// Points taken.
    pub points: u64,
    /// Points given back by refunds.
    pub returned: u64,
}
