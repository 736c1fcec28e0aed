//! The points engine: validates one request against the current state and computes its effects.
//!
//! [`apply`] is a pure function of (state, payload, signers, leaf timestamp, leaf index): it reads
//! state through [`StateView`], changes only local copies, and returns the [`Effects`] written into
//! the leaf together with the [`Writes`] the store commits. A refused request returns an error and
//! leaves nothing behind, because nothing was written. Replaying the log through `apply` from an
//! empty state reproduces every effect, which is how `rebuild` and auditors check the ledger.
//!
//! All arithmetic is on integers, checked or widened to u128; every division rounds down. Every
//! figure an account holds (points in its lots, debt, counts) stays within 0..=2^53-1: a credit
//! or a sum that would leave that range refuses the entry (`balance_overflow`), so no figure can
//! saturate or wrap. Rules are listed in docs/PROTOCOL.md and each is tested in
//! `tests/engine.rs`.

mod lots;
pub mod state;

use crate::errors::Code;
use crate::evm;
use crate::payload::{
    LinkEvm, MerchantProgram, Payload, PayloadError, Purchase, Redeem, ReferralAccept, Refund,
    MAX_SAFE_INT,
};
use serde::{Deserialize, Serialize};
use state::{
    Account, Draw, Lot, LotSource, Merchant, Order, PurchaseRecord, RedemptionRecord, RewardRecord,
};
use std::collections::BTreeMap;

/// How many referees one referrer may bring (anti-abuse cap, protocol-wide).
pub const MAX_REFEREES_PER_REFERRER: u64 = 100;

/// Most lots one redemption draws from (settling debt included). Each lot drawn is a change in
/// the leaf, and a refund of the order later returns to each of them: at this bound both leaves
/// stay well inside the 65,535 bytes an entry bundle holds, whatever else they carry.
pub const MAX_REDEEM_LOTS: usize = 100;

/// Most `expire` changes one account's sweep records lot by lot; the lots swept past them are
/// recorded as one `expire` change without a lot. The sweep itself removes every expired lot.
/// Bounds what an account holding many lots that expire together adds to a leaf.
pub const MAX_EXPIRE_CHANGES: usize = 32;

/// What the engine needs to know about the log itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The log's origin line (also bound into EVM link messages).
    pub origin: String,
    /// The operator key id, the only signer of merchant programs.
    pub operator: String,
}

/// Read access to derived state; the store implements it over sled plus the open group.
pub trait StateView {
    /// An account, if it has ever been touched.
    fn account(&self, id: &str) -> Result<Option<Account>, EngineError>;
    /// A registered merchant.
    fn merchant(&self, id: &str) -> Result<Option<Merchant>, EngineError>;
    /// What has been recorded against an order.
    fn order(&self, merchant: &str, order_id: &str) -> Result<Option<Order>, EngineError>;
    /// Whether `signer` already used `nonce`.
    fn nonce_used(&self, signer: &str, nonce: &str) -> Result<bool, EngineError>;
    /// The consumer an EVM address is linked to.
    fn evm_owner(&self, address: &str) -> Result<Option<String>, EngineError>;
}

/// The state changes of one accepted entry, to be committed with its leaf.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Writes {
    /// Accounts after the entry.
    pub accounts: BTreeMap<String, Account>,
    /// Merchants registered or updated.
    pub merchants: BTreeMap<String, Merchant>,
    /// Orders after the entry, keyed by (merchant, order id).
    pub orders: BTreeMap<(String, String), Order>,
    /// (signer, nonce) pairs now used.
    pub nonces: Vec<(String, String)>,
    /// EVM address bindings: address → consumer, or `None` to release an address (the store
    /// supports it; the rules never release one, since a link is permanent).
    pub evm: BTreeMap<String, Option<String>>,
}

/// Why an account's points moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Points earned by a purchase (a new lot).
    Earn,
    /// A referrer's reward for a referee's first purchase (a new lot).
    ReferralReward,
    /// Points spent on a redemption.
    Redeem,
    /// Earned points reversed by a refund.
    RefundReversal,
    /// Redeemed points given back by a refund.
    RedeemReturn,
    /// A referrer's reward taken back by a refund of the referee's purchase.
    ReferralClawback,
    /// A lot's remainder expired.
    Expire,
    /// A reversal or clawback that no lot could cover, owed by the account.
    Debt,
    /// Debt paid from a lot (two changes: the lot's debit and the debt's credit).
    DebtSettled,
}

/// One account's change in one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The account's key id.
    pub account: String,
    /// Change in the account's total (Σ lots − debt).
    pub delta: i64,
    /// Why.
    pub reason: Reason,
    /// The lot touched; absent for debt changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    /// For a new lot: when it becomes spendable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<u64>,
    /// For a new lot: when it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// A discount granted on an order, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Discount {
    /// What paid for it.
    pub source: DiscountSource,
    /// Value in minor units.
    pub value: u64,
}

/// What a discount was paid with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscountSource {
    /// The referee discount on a referred consumer's first purchase.
    Referee,
    /// Points redeemed.
    Points,
}

/// What an entry did, as written in its leaf; an auditor recomputes and compares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Effects {
    /// Point movements, in the order they happened.
    pub changes: Vec<Change>,
    /// The discount granted, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Discount>,
}

/// Why the engine refused a request. Nothing has changed when one of these is returned.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// The payload failed to parse or check.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The envelope's signers are not exactly the roles the kind requires.
    #[error("{kind} must be signed by exactly {required:?}; signed by {actual:?}")]
    WrongSigners {
        /// The payload kind.
        kind: &'static str,
        /// The key ids that must sign.
        required: Vec<String>,
        /// The key ids that did sign.
        actual: Vec<String>,
    },
    /// A merchant program signed by a key that is not the log's operator key.
    #[error("merchant programs must be signed by the operator key {0}")]
    NotOperator(String),
    /// The signer already used this nonce for another request.
    #[error("nonce {nonce:?} already used by signer {signer}")]
    NonceReused {
        /// The signer.
        signer: String,
        /// The nonce.
        nonce: String,
    },
    /// The order already has an entry of this kind with other content.
    #[error("order {order_id:?} of merchant {merchant} already has a {kind}")]
    OrderExists {
        /// The merchant.
        merchant: String,
        /// The order.
        order_id: String,
        /// The kind already recorded.
        kind: &'static str,
    },
    /// `merchant.register` for a merchant that exists.
    #[error("merchant {0} is already registered (use merchant.update)")]
    MerchantExists(String),
    /// The EVM address is linked to another consumer.
    #[error("EVM address {0} is already linked to another consumer")]
    AddressLinked(String),
    /// The request's `expires_at` has passed.
    #[error("request expired at {expires_at} (sequenced at {now})")]
    Expired {
        /// The payload's expiry.
        expires_at: u64,
        /// The leaf timestamp.
        now: u64,
    },
    /// The merchant is not registered.
    #[error("unknown merchant {0}")]
    UnknownMerchant(String),
    /// No purchase was recorded for the order.
    #[error("no purchase recorded for order {order_id:?} of merchant {merchant}")]
    UnknownOrder {
        /// The merchant.
        merchant: String,
        /// The order.
        order_id: String,
    },
    /// A redemption would draw from more lots than one redemption may.
    #[error(
        "this redemption would draw from more than {MAX_REDEEM_LOTS} lots; the first \
         {MAX_REDEEM_LOTS} of them give {within} points: redeem at most that many on this order"
    )]
    TooManyLots {
        /// Points the first [`MAX_REDEEM_LOTS`] lots give after settling debt.
        within: u64,
    },
    /// A redemption asks for more points than are available.
    #[error("insufficient points: {available} available, {requested} requested")]
    InsufficientPoints {
        /// Spendable points after settling debt.
        available: u64,
        /// Points asked for.
        requested: u64,
    },
    /// The discount would exceed the merchant's cap on the share paid with points.
    #[error("a discount of {discount} exceeds the {max} payable in points on this order")]
    RedeemShareExceeded {
        /// The discount the points are worth.
        discount: u64,
        /// The largest discount allowed on this order.
        max: u64,
    },
    /// The points are worth less than one minor unit.
    #[error("{points} points are worth less than one minor unit here")]
    DiscountZero {
        /// Points asked for.
        points: u64,
    },
    /// The purchase names another consumer than the one the order's redemption was made for.
    #[error(
        "the order was redeemed by consumer {redeemed_by}; its purchase must name that consumer, \
         not {consumer}"
    )]
    OrderConsumerMismatch {
        /// `consumer` of the redemption.
        redeemed_by: String,
        /// `consumer` of the purchase.
        consumer: String,
    },
    /// The purchase's amount is not the amount the order's redemption was made against.
    #[error(
        "the order was redeemed against an amount of {redeemed_on}; the purchase says {amount}"
    )]
    OrderAmountMismatch {
        /// `order_amount` of the redemption.
        redeemed_on: u64,
        /// `amount` of the purchase.
        amount: u64,
    },
    /// Redemption after the order's purchase was recorded.
    #[error("redeem before the purchase: order {0:?} already has its purchase recorded")]
    RedeemAfterPurchase(String),
    /// Refunds would exceed the order's amount.
    #[error("refund of {amount} exceeds what is left to refund on the order ({left})")]
    RefundExceedsOrder {
        /// The refund asked for.
        amount: u64,
        /// Amount not yet refunded.
        left: u64,
    },
    /// A consumer named themselves as referrer.
    #[error("a consumer cannot refer themselves")]
    SelfReferral,
    /// The referee already has a referrer.
    #[error("this consumer already accepted a referrer")]
    ReferrerAlreadyBound,
    /// The referee already bought something.
    #[error("a referral must be accepted before the consumer's first purchase")]
    RefereeHasPurchases,
    /// The referrer has never bought anything.
    #[error("referrer {0} is not a customer yet (no purchase recorded)")]
    ReferrerNotCustomer(String),
    /// The referrer reached the per-referrer cap.
    #[error("referrer has reached the cap of {MAX_REFEREES_PER_REFERRER} referees")]
    ReferralCapReached,
    /// `account.link_evm` for a consumer with no recorded purchase: links are for customers, so
    /// that fresh keys alone cannot append entries.
    #[error("consumer {0} has no recorded purchase yet: an EVM address can be linked after the first purchase")]
    ConsumerNotCustomer(String),
    /// `account.link_evm` for a consumer that already linked an address (a link is permanent).
    #[error("this consumer already linked EVM address {0}; a link cannot be changed")]
    AlreadyLinked(String),
    /// The EIP-191 proof of an address link failed.
    #[error(transparent)]
    Evm(#[from] evm::EvmError),
    /// A figure of an account (points held, debt, a count) would exceed 2^53-1.
    #[error("account {0} would exceed the largest figure an account holds (2^53-1)")]
    BalanceOverflow(String),
    /// The derived state breaks an invariant the engine keeps (a bug or a corrupt store).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed underneath.
    #[error("storage: {0}")]
    Storage(String),
}

impl EngineError {
    /// The error's code in the one table ([`crate::errors`]), which gives its class and status.
    pub fn code(&self) -> Code {
        use EngineError::*;
        match self {
            // A payload over its kind's limit is the same refusal as one over the envelope's.
            Payload(PayloadError::TooLarge { .. }) => Code::TooLarge,
            Payload(_) => Code::MalformedPayload,
            Evm(e) if e.is_malformed() => Code::MalformedPayload,
            WrongSigners { .. } => Code::WrongSigners,
            NotOperator(_) => Code::NotOperator,
            NonceReused { .. } => Code::NonceReused,
            OrderExists { .. } => Code::OrderExists,
            MerchantExists(_) => Code::MerchantExists,
            AddressLinked(_) => Code::AddressLinked,
            Expired { .. } => Code::RequestExpired,
            UnknownMerchant(_) => Code::UnknownMerchant,
            UnknownOrder { .. } => Code::UnknownOrder,
            InsufficientPoints { .. } => Code::InsufficientPoints,
            TooManyLots { .. } => Code::TooManyLots,
            RedeemShareExceeded { .. } => Code::RedeemShareExceeded,
            DiscountZero { .. } => Code::DiscountZero,
            RedeemAfterPurchase(_) => Code::RedeemAfterPurchase,
            OrderConsumerMismatch { .. } => Code::OrderConsumerMismatch,
            OrderAmountMismatch { .. } => Code::OrderAmountMismatch,
            RefundExceedsOrder { .. } => Code::RefundExceedsOrder,
            SelfReferral => Code::SelfReferral,
            ReferrerAlreadyBound => Code::ReferrerAlreadyBound,
            RefereeHasPurchases => Code::RefereeHasPurchases,
            ReferrerNotCustomer(_) => Code::ReferrerNotCustomer,
            ReferralCapReached => Code::ReferralCapReached,
            ConsumerNotCustomer(_) => Code::ConsumerNotCustomer,
            AlreadyLinked(_) => Code::EvmAlreadyLinked,
            Evm(_) => Code::BadEvmSignature,
            BalanceOverflow(_) => Code::BalanceOverflow,
            Internal(_) => Code::Internal,
            Storage(_) => Code::Unavailable,
        }
    }
}

/// `a * b / c` rounded down, computed exactly in 128 bits; refused (never saturated) when the
/// quotient does not fit in u64 or `c` is 0. Payload ranges keep every use in the rules far
/// from either.
pub fn mul_div(a: u64, b: u64, c: u64) -> Result<u64, EngineError> {
    let q = (u128::from(a) * u128::from(b))
        .checked_div(u128::from(c))
        .ok_or_else(|| EngineError::Internal(format!("{a} × {b} / {c}: division by zero")))?;
    u64::try_from(q).map_err(|_| EngineError::Internal(format!("{a} × {b} / {c} exceeds u64")))
}

/// `a + b` for a figure of `account`, refused when it would exceed 2^53-1.
fn add_capped(account: &str, a: u64, b: u64) -> Result<u64, EngineError> {
    a.checked_add(b)
        .filter(|t| *t <= MAX_SAFE_INT)
        .ok_or_else(|| EngineError::BalanceOverflow(account.to_owned()))
}

/// `a - b` where the engine's invariants guarantee `b ≤ a`; a violation is an internal error,
/// never a wrapped figure.
fn sub_exact(a: u64, b: u64, what: &str) -> Result<u64, EngineError> {
    a.checked_sub(b)
        .ok_or_else(|| EngineError::Internal(format!("{what}: {b} exceeds {a}")))
}

/// Validates `payload` (signed by `signers`) against `view` at leaf time `now` as leaf `index`.
pub fn apply(
    view: &dyn StateView,
    config: &LogConfig,
    payload: &Payload,
    signers: &[String],
    now: u64,
    index: u64,
) -> Result<(Effects, Writes), EngineError> {
    check_signers(payload, signers)?;
    if let Some(expires_at) = payload.expires_at() {
        if expires_at <= now {
            return Err(EngineError::Expired { expires_at, now });
        }
    }
    for signer in signers {
        if view.nonce_used(signer, payload.nonce())? {
            return Err(EngineError::NonceReused {
                signer: signer.clone(),
                nonce: payload.nonce().to_owned(),
            });
        }
    }
    let mut tx = Tx {
        view,
        now,
        index,
        effects: Effects::default(),
        writes: Writes::default(),
        lots_created: 0,
    };
    match payload {
        Payload::MerchantRegister(p) => tx.merchant_program(config, p, true)?,
        Payload::MerchantUpdate(p) => tx.merchant_program(config, p, false)?,
        Payload::Purchase(p) => tx.purchase(p)?,
        Payload::Redeem(p) => tx.redeem(p)?,
        Payload::Refund(p) => tx.refund(p)?,
        Payload::ReferralAccept(p) => tx.referral_accept(p)?,
        Payload::LinkEvm(p) => tx.link_evm(config, p)?,
    }
    for signer in signers {
        tx.writes
            .nonces
            .push((signer.clone(), payload.nonce().to_owned()));
    }
    Ok((tx.effects, tx.writes))
}

/// The envelope's signers must be exactly the roles `payload` names (the one signer check: the
/// engine and the receipt verifier both use it).
pub fn check_signers(payload: &Payload, signers: &[String]) -> Result<(), EngineError> {
    let mut required: Vec<String> = payload
        .required_signers()
        .into_iter()
        .map(str::to_owned)
        .collect();
    required.sort();
    required.dedup();
    let mut actual = signers.to_vec();
    actual.sort();
    if required != actual {
        return Err(EngineError::WrongSigners {
            kind: payload.kind(),
            required,
            actual,
        });
    }
    Ok(())
}

/// One entry's working copy: reads go to the local copies first, then to the view.
struct Tx<'a> {
    view: &'a dyn StateView,
    now: u64,
    index: u64,
    effects: Effects,
    writes: Writes,
    lots_created: u32,
}

impl Tx<'_> {
    /// An account as this entry sees it, without changing it.
    fn peek_account(&self, id: &str) -> Result<Account, EngineError> {
        match self.writes.accounts.get(id) {
            Some(a) => Ok(a.clone()),
            None => Ok(self.view.account(id)?.unwrap_or_default()),
        }
    }

    /// An account to change; expired lots are swept (and recorded) on first touch.
    fn account_mut(&mut self, id: &str) -> Result<&mut Account, EngineError> {
        if !self.writes.accounts.contains_key(id) {
            let mut account = self.view.account(id)?.unwrap_or_default();
            let now = self.now;
            // Lots are in expiry order, so the expired ones come first.
            let expired = account.lots.take_while_not(|l| l.expires_at > now);
            self.writes.accounts.insert(id.to_owned(), account);
            let mut beyond: u64 = 0;
            for (n, lot) in expired.into_iter().filter(|l| l.remaining > 0).enumerate() {
                self.note_expired(&lot)?;
                if n < MAX_EXPIRE_CHANGES {
                    self.effects.changes.push(change(
                        id,
                        -signed(lot.remaining)?,
                        Reason::Expire,
                        Some(&lot.id),
                    ));
                } else {
                    beyond = add_exact(beyond, lot.remaining, "expired")?;
                }
            }
            if beyond > 0 {
                self.effects
                    .changes
                    .push(change(id, -signed(beyond)?, Reason::Expire, None));
            }
        }
        self.writes
            .accounts
            .get_mut(id)
            .ok_or_else(|| EngineError::Storage("account vanished from the working copy".into()))
    }

    fn merchant(&self, id: &str) -> Result<Merchant, EngineError> {
        if let Some(m) = self.writes.merchants.get(id) {
            return Ok(m.clone());
        }
        self.view
            .merchant(id)?
            .ok_or_else(|| EngineError::UnknownMerchant(id.to_owned()))
    }

    fn order(&self, merchant: &str, order_id: &str) -> Result<Order, EngineError> {
        if let Some(o) = self
            .writes
            .orders
            .get(&(merchant.to_owned(), order_id.to_owned()))
        {
            return Ok(o.clone());
        }
        Ok(self.view.order(merchant, order_id)?.unwrap_or_default())
    }

    /// Notes on the order that created `lot` how many of its points expired, so that a later
    /// refund does not take them a second time.
    fn note_expired(&mut self, lot: &Lot) -> Result<(), EngineError> {
        let mut order = self.order(&lot.merchant, &lot.order_id)?;
        let Some(purchase) = order.purchase.as_mut() else {
            return Ok(());
        };
        if purchase.lot.as_deref() == Some(lot.id.as_str()) {
            purchase.lot_expired = add_exact(purchase.lot_expired, lot.remaining, "expired")?;
        } else if let Some(reward) = purchase.reward.as_mut().filter(|r| r.lot == lot.id) {
            reward.expired = add_exact(reward.expired, lot.remaining, "expired reward")?;
        } else {
            return Ok(());
        }
        self.put_order(&lot.merchant, &lot.order_id, order);
        Ok(())
    }

    fn put_order(&mut self, merchant: &str, order_id: &str, order: Order) {
        self.writes
            .orders
            .insert((merchant.to_owned(), order_id.to_owned()), order);
    }

    /// Credits a new lot to `account`; returns its id.
    #[allow(clippy::too_many_arguments)]
    fn credit_lot(
        &mut self,
        account: &str,
        merchant: &str,
        order_id: &str,
        source: LotSource,
        points: u64,
        pending_ms: u64,
        validity_ms: u64,
    ) -> Result<String, EngineError> {
        let id = format!("{}.{}", self.index, self.lots_created);
        self.lots_created += 1;
        // Exactly min(t + pending_ms, 2^53-1) as §6 defines it: a sum the addition would
        // saturate is above 2^53-1 anyway, so the minimum is the same.
        let available_at = self.now.saturating_add(pending_ms).min(MAX_SAFE_INT);
        let expires_at = available_at.saturating_add(validity_ms).min(MAX_SAFE_INT);
        let acc = self.account_mut(account)?;
        check_held(account, acc.held(), points)?;
        let lot = Lot {
            id: id.clone(),
            merchant: merchant.to_owned(),
            source,
            order_id: order_id.to_owned(),
            points,
            remaining: points,
            available_at,
            expires_at,
        };
        acc.lots
            .insert_by_key(lot, |l| (l.expires_at, lot_order(&l.id)));
        let reason = match source {
            LotSource::Purchase => Reason::Earn,
            LotSource::ReferralReward => Reason::ReferralReward,
        };
        let mut c = change(account, signed(points)?, reason, Some(&id));
        c.available_at = Some(available_at);
        c.expires_at = Some(expires_at);
        self.effects.changes.push(c);
        Ok(id)
    }

    /// Takes up to `points` from lot `lot_id`, then the rest as debt; `reason` labels both.
    ///
    /// Up to `expired` of what the lot cannot cover had already left the account by expiry and
    /// is not taken again; `expired` is reduced by what this call accounts for that way.
    fn take_back(
        &mut self,
        account: &str,
        lot_id: &str,
        points: u64,
        reason: Reason,
        expired: &mut u64,
    ) -> Result<(), EngineError> {
        if points == 0 {
            return Ok(());
        }
        let acc = self.account_mut(account)?;
        let from_lot = acc
            .lots
            .find(lot_id)
            .and_then(|pos| {
                acc.lots.update(pos, |lot| {
                    let t = lot.remaining.min(points);
                    lot.remaining -= t;
                    t
                })
            })
            .unwrap_or(0);
        let uncovered = sub_exact(points, from_lot, "take back")?;
        let gone = uncovered.min(*expired);
        *expired -= gone;
        let owed = uncovered - gone;
        acc.debt = add_capped(account, acc.debt, owed)?;
        if from_lot > 0 {
            self.effects
                .changes
                .push(change(account, -signed(from_lot)?, reason, Some(lot_id)));
        }
        if owed > 0 {
            self.effects
                .changes
                .push(change(account, -signed(owed)?, Reason::Debt, None));
        }
        Ok(())
    }

    fn merchant_program(
        &mut self,
        config: &LogConfig,
        p: &MerchantProgram,
        register: bool,
    ) -> Result<(), EngineError> {
        if p.operator != config.operator {
            return Err(EngineError::NotOperator(config.operator.clone()));
        }
        let existing = self.view.merchant(&p.merchant)?;
        let registered_at_index = match (register, existing) {
            (true, Some(_)) => return Err(EngineError::MerchantExists(p.merchant.clone())),
            (true, None) => self.index,
            (false, Some(m)) => m.registered_at_index,
            (false, None) => return Err(EngineError::UnknownMerchant(p.merchant.clone())),
        };
        self.writes.merchants.insert(
            p.merchant.clone(),
            Merchant {
                name: p.name.clone(),
                rules: p.rules.clone(),
                registered_at_index,
            },
        );
        Ok(())
    }

    fn purchase(&mut self, p: &Purchase) -> Result<(), EngineError> {
        let merchant = self.merchant(&p.merchant)?;
        let rules = &merchant.rules;
        let mut order = self.order(&p.merchant, &p.order_id)?;
        if order.purchase.is_some() {
            return Err(EngineError::OrderExists {
                merchant: p.merchant.clone(),
                order_id: p.order_id.clone(),
                kind: "purchase",
            });
        }
        if let Some(red) = &order.redemption {
            // The redemption spent this consumer's points on this order: the purchase is theirs,
            // or its discount would go to someone else and a refund would pay the points back
            // to an account that did not buy.
            if red.consumer != p.consumer {
                return Err(EngineError::OrderConsumerMismatch {
                    redeemed_by: red.consumer.clone(),
                    consumer: p.consumer.clone(),
                });
            }
            if red.order_amount != p.amount {
                return Err(EngineError::OrderAmountMismatch {
                    redeemed_on: red.order_amount,
                    amount: p.amount,
                });
            }
        }
        let buyer = self.peek_account(&p.consumer)?;
        // The referee discount and referrer reward apply to a referred consumer's first purchase.
        let mut referee_discount = 0;
        let mut reward = None;
        if let (Some(referrer), 0) = (&buyer.referrer, buyer.purchases) {
            referee_discount = mul_div(p.amount, rules.referee_discount_bps, 10_000)?
                .min(rules.referee_discount_max);
            let rewarded = self
                .peek_account(referrer)?
                .rewards_by_merchant
                .get(&p.merchant)
                .copied()
                .unwrap_or(0);
            if rules.referrer_reward_points > 0 && rewarded < rules.referrer_reward_cap {
                reward = Some(referrer.clone());
            }
        }
        let points_discount = order.redemption.as_ref().map_or(0, |r| r.discount);
        // max(0, amount − referee_discount − points_discount), as §5.2 defines it.
        let paid = p
            .amount
            .saturating_sub(referee_discount)
            .saturating_sub(points_discount);
        let earned = mul_div(paid, rules.earn_bps, 10_000)?.min(rules.max_points_per_order);
        let lot = if earned > 0 {
            Some(self.credit_lot(
                &p.consumer,
                &p.merchant,
                &p.order_id,
                LotSource::Purchase,
                earned,
                rules.pending_ms,
                rules.validity_ms,
            )?)
        } else {
            self.account_mut(&p.consumer)?;
            None
        };
        let buyer = self.account_mut(&p.consumer)?;
        buyer.purchases = add_capped(&p.consumer, buyer.purchases, 1)?;
        let reward = match reward {
            Some(referrer) => {
                let points = rules.referrer_reward_points;
                let lot = self.credit_lot(
                    &referrer,
                    &p.merchant,
                    &p.order_id,
                    LotSource::ReferralReward,
                    points,
                    rules.pending_ms,
                    rules.validity_ms,
                )?;
                let count = self
                    .account_mut(&referrer)?
                    .rewards_by_merchant
                    .entry(p.merchant.clone())
                    .or_insert(0);
                *count = add_capped(&referrer, *count, 1)?;
                Some(RewardRecord {
                    referrer,
                    lot,
                    points,
                    clawed: 0,
                    expired: 0,
                })
            }
            None => None,
        };
        if referee_discount > 0 {
            self.effects.discount = Some(Discount {
                source: DiscountSource::Referee,
                value: referee_discount,
            });
        }
        order.purchase = Some(PurchaseRecord {
            index: self.index,
            consumer: p.consumer.clone(),
            amount: p.amount,
            referee_discount,
            earned,
            lot,
            reward,
            refunded: 0,
            reversed: 0,
            lot_expired: 0,
        });
        self.put_order(&p.merchant, &p.order_id, order);
        Ok(())
    }

    fn redeem(&mut self, p: &Redeem) -> Result<(), EngineError> {
        let merchant = self.merchant(&p.merchant)?;
        let rules = &merchant.rules;
        let mut order = self.order(&p.merchant, &p.order_id)?;
        if order.redemption.is_some() {
            return Err(EngineError::OrderExists {
                merchant: p.merchant.clone(),
                order_id: p.order_id.clone(),
                kind: "redeem",
            });
        }
        if order.purchase.is_some() {
            return Err(EngineError::RedeemAfterPurchase(p.order_id.clone()));
        }
        let discount = mul_div(p.points, rules.point_value_milli, 1000)?;
        if discount == 0 {
            return Err(EngineError::DiscountZero { points: p.points });
        }
        let max = mul_div(p.order_amount, rules.max_redeem_bps, 10_000)?;
        if discount > max {
            return Err(EngineError::RedeemShareExceeded { discount, max });
        }
        let now = self.now;
        let consumer = p.consumer.clone();
        let acc = self.account_mut(&consumer)?;
        let spendable = |l: &Lot| l.available_at <= now && l.remaining > 0;
        let available: u128 = acc
            .lots
            .with_points()
            .filter(|(_, l)| spendable(l))
            .map(|(_, l)| u128::from(l.remaining))
            .sum();
        // max(0, available − debt): what a redemption may spend (§5.3).
        let free = u64::try_from(available.saturating_sub(u128::from(acc.debt)))
            .map_err(|_| EngineError::Internal(format!("{consumer} holds {available} points")))?;
        if free < p.points {
            return Err(EngineError::InsufficientPoints {
                available: free,
                requested: p.points,
            });
        }
        // Lots are kept in (expires_at, id) order: draw oldest-expiring first, debt before spend.
        let mut debt = acc.debt;
        let mut want = p.points;
        let mut settled = Vec::new();
        let mut drawn = Vec::new();
        // What each lot gives, planned over the lots as they stand, then taken.
        let mut takes = Vec::new();
        for (pos, lot) in acc.lots.with_points().filter(|(_, l)| spendable(l)) {
            let s = lot.remaining.min(debt);
            if s > 0 {
                debt -= s;
                settled.push((lot.id.clone(), s));
            }
            let t = (lot.remaining - s).min(want);
            if t > 0 {
                want -= t;
                drawn.push(Draw {
                    lot: lot.id.clone(),
                    points: t,
                    returned: 0,
                });
            }
            takes.push((pos, s + t));
            if debt == 0 && want == 0 {
                break;
            }
            if takes.len() == MAX_REDEEM_LOTS {
                let within = p.points - want;
                return Err(EngineError::TooManyLots { within });
            }
        }
        for (pos, n) in takes {
            acc.lots.update(pos, |lot| lot.remaining -= n);
        }
        acc.debt = debt;
        for (lot, s) in settled {
            self.effects.changes.push(change(
                &consumer,
                -signed(s)?,
                Reason::DebtSettled,
                Some(&lot),
            ));
            self.effects
                .changes
                .push(change(&consumer, signed(s)?, Reason::DebtSettled, None));
        }
        for d in &drawn {
            self.effects.changes.push(change(
                &consumer,
                -signed(d.points)?,
                Reason::Redeem,
                Some(&d.lot),
            ));
        }
        self.effects.discount = Some(Discount {
            source: DiscountSource::Points,
            value: discount,
        });
        order.redemption = Some(RedemptionRecord {
            index: self.index,
            consumer,
            order_amount: p.order_amount,
            points: p.points,
            discount,
            drawn,
            returned: 0,
        });
        self.put_order(&p.merchant, &p.order_id, order);
        Ok(())
    }

    fn refund(&mut self, p: &Refund) -> Result<(), EngineError> {
        self.merchant(&p.merchant)?;
        // Sweep every account this refund touches first: a sweep may note expired points on
        // this very order, and the order must be read after that.
        let seen = self.order(&p.merchant, &p.order_id)?;
        if let Some(purchase) = &seen.purchase {
            self.account_mut(&purchase.consumer)?;
            if let Some(reward) = &purchase.reward {
                self.account_mut(&reward.referrer)?;
            }
        }
        if let Some(red) = &seen.redemption {
            self.account_mut(&red.consumer)?;
        }
        let mut order = self.order(&p.merchant, &p.order_id)?;
        let unknown = || EngineError::UnknownOrder {
            merchant: p.merchant.clone(),
            order_id: p.order_id.clone(),
        };
        let mut purchase = order.purchase.take().ok_or_else(unknown)?;
        let left = sub_exact(purchase.amount, purchase.refunded, "refunded")?;
        if p.amount > left {
            return Err(EngineError::RefundExceedsOrder {
                amount: p.amount,
                left,
            });
        }
        purchase.refunded = add_exact(purchase.refunded, p.amount, "refunded")?;
        // Cumulative pro rata: after refunds totalling R of amount A, exactly ⌊x·R/A⌋ of each
        // quantity x has been reversed, so partial refunds never drift and a full refund is exact.
        let (refunded, amount) = (purchase.refunded, purchase.amount);
        let target = mul_div(purchase.earned, refunded, amount)?;
        let reverse = sub_exact(target, purchase.reversed, "reversed")?;
        purchase.reversed = target;
        if let Some(lot) = purchase.lot.clone() {
            let consumer = purchase.consumer.clone();
            self.take_back(
                &consumer,
                &lot,
                reverse,
                Reason::RefundReversal,
                &mut purchase.lot_expired,
            )?;
        }
        if let Some(reward) = purchase.reward.as_mut() {
            let target = mul_div(reward.points, refunded, amount)?;
            let claw = sub_exact(target, reward.clawed, "clawed")?;
            reward.clawed = target;
            let (referrer, lot) = (reward.referrer.clone(), reward.lot.clone());
            self.take_back(
                &referrer,
                &lot,
                claw,
                Reason::ReferralClawback,
                &mut reward.expired,
            )?;
        }
        if let Some(red) = order.redemption.as_mut() {
            let target = mul_div(red.points, refunded, amount)?;
            let mut give = sub_exact(target, red.returned, "returned")?;
            red.returned = target;
            let consumer = red.consumer.clone();
            // Give back to the lots drawn last first: they expire latest.
            for draw in red.drawn.iter_mut().rev() {
                let g = sub_exact(draw.points, draw.returned, "drawn")?.min(give);
                if g == 0 {
                    continue;
                }
                draw.returned += g;
                give -= g;
                let acc = self.account_mut(&consumer)?;
                let held = acc.held();
                // A lot that has expired and been swept keeps its points expired.
                if let Some(pos) = acc.lots.find(&draw.lot) {
                    // A return is a credit like any other: the account's lots stay within the
                    // cap, or the refund is refused.
                    check_held(&consumer, held, g)?;
                    let returned = acc.lots.update(pos, |lot| {
                        match lot.remaining.checked_add(g).filter(|r| *r <= lot.points) {
                            Some(r) => lot.remaining = r,
                            None => return false,
                        }
                        true
                    });
                    if returned != Some(true) {
                        return Err(EngineError::Internal(format!(
                            "lot {} would hold more than it was credited",
                            draw.lot
                        )));
                    }
                    self.effects.changes.push(change(
                        &consumer,
                        signed(g)?,
                        Reason::RedeemReturn,
                        Some(&draw.lot),
                    ));
                }
            }
        }
        order.purchase = Some(purchase);
        self.put_order(&p.merchant, &p.order_id, order);
        Ok(())
    }

    fn referral_accept(&mut self, p: &ReferralAccept) -> Result<(), EngineError> {
        if p.consumer == p.referrer {
            return Err(EngineError::SelfReferral);
        }
        let referee = self.peek_account(&p.consumer)?;
        if referee.referrer.is_some() {
            return Err(EngineError::ReferrerAlreadyBound);
        }
        if referee.purchases > 0 {
            return Err(EngineError::RefereeHasPurchases);
        }
        let referrer = self.peek_account(&p.referrer)?;
        if referrer.purchases == 0 {
            return Err(EngineError::ReferrerNotCustomer(p.referrer.clone()));
        }
        if referrer.referees >= MAX_REFEREES_PER_REFERRER {
            return Err(EngineError::ReferralCapReached);
        }
        self.account_mut(&p.consumer)?.referrer = Some(p.referrer.clone());
        let referrer = self.account_mut(&p.referrer)?;
        referrer.referees = add_capped(&p.referrer, referrer.referees, 1)?;
        Ok(())
    }

    /// Links an address, once per consumer and only for a customer: no merchant signs a link, so
    /// these two rules are what bound the links anyone can append (docs/PROTOCOL.md §5.6). They
    /// are checked before the signature is recovered, the costly step.
    fn link_evm(&mut self, config: &LogConfig, p: &LinkEvm) -> Result<(), EngineError> {
        let consumer = self.peek_account(&p.consumer)?;
        if consumer.purchases == 0 {
            return Err(EngineError::ConsumerNotCustomer(p.consumer.clone()));
        }
        if let Some(linked) = consumer.evm_address {
            return Err(EngineError::AlreadyLinked(linked));
        }
        let address = p.address.clone();
        let message = evm::link_message(&config.origin, &p.consumer, &address, &p.nonce);
        evm::verify_link(&address, &message, &p.evm_signature)?;
        if self.view.evm_owner(&address)?.is_some() {
            return Err(EngineError::AddressLinked(address));
        }
        self.account_mut(&p.consumer)?.evm_address = Some(address.clone());
        self.writes.evm.insert(address, Some(p.consumer.clone()));
        Ok(())
    }
}

/// Orders lot ids `"<index>.<ordinal>"` numerically, so ties on expiry break by creation order.
pub fn lot_order(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('.').unwrap_or((id, "0"));
    (a.parse().unwrap_or(u64::MAX), b.parse().unwrap_or(u64::MAX))
}

/// A point figure as a delta; every such figure is at most 2^53-1, so this never fails.
fn signed(points: u64) -> Result<i64, EngineError> {
    i64::try_from(points).map_err(|_| EngineError::Internal(format!("{points} points")))
}

/// `a + b` where the engine's invariants keep the sum far below u64::MAX.
fn add_exact(a: u64, b: u64, what: &str) -> Result<u64, EngineError> {
    a.checked_add(b)
        .ok_or_else(|| EngineError::Internal(format!("{what}: {a} + {b} exceeds u64")))
}

/// Refuses a credit of `points` to an account whose lots hold `held`, if they would then hold
/// more than 2^53-1.
fn check_held(account: &str, held: u128, points: u64) -> Result<(), EngineError> {
    if held + u128::from(points) > u128::from(MAX_SAFE_INT) {
        return Err(EngineError::BalanceOverflow(account.to_owned()));
    }
    Ok(())
}

fn change(account: &str, delta: i64, reason: Reason, lot: Option<&str>) -> Change {
    Change {
        account: account.to_owned(),
        delta,
        reason,
        lot: lot.map(str::to_owned),
        available_at: None,
        expires_at: None,
    }
}

/// What a merchant may offer a consumer on an order, computed without changing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quote {
    /// The merchant asking.
    pub merchant: String,
    /// The consumer at the till.
    pub consumer: String,
    /// The order's price, in minor units.
    pub order_amount: u64,
    /// The referee discount a purchase of this amount would get now (first referred purchase).
    pub referee_discount: u64,
    /// Points the consumer can spend now (available − debt).
    pub spendable_points: u64,
    /// The most points a redemption on this order may spend (spendable and the merchant's cap).
    pub redeemable_points: u64,
    /// The discount those points are worth, in minor units.
    pub redeemable_value: u64,
}

/// Quotes an order: the referral discount and the most points redeemable on it at `now`.
pub fn quote(
    view: &dyn StateView,
    merchant: &str,
    consumer: &str,
    order_amount: u64,
    now: u64,
) -> Result<Quote, EngineError> {
    let m = view
        .merchant(merchant)?
        .ok_or_else(|| EngineError::UnknownMerchant(merchant.to_owned()))?;
    let rules = &m.rules;
    let account = view.account(consumer)?.unwrap_or_default();
    let referee_discount = match (&account.referrer, account.purchases) {
        (Some(_), 0) => mul_div(order_amount, rules.referee_discount_bps, 10_000)?
            .min(rules.referee_discount_max),
        _ => 0,
    };
    let balance = account.balance(now);
    // max(0, available − debt), as a redemption computes it.
    let spendable_points = balance.available.saturating_sub(balance.debt);
    // The largest p with ⌊p·value/1000⌋ ≤ cap is ⌊((cap+1)·1000 − 1)/value⌋; cap ≤ 2^53-1, so
    // (cap+1)·1000 fits in u64.
    let cap = mul_div(order_amount, rules.max_redeem_bps, 10_000)?;
    let by_cap = mul_div(add_exact(cap, 1, "cap")?, 1000, 1)? - 1;
    let by_cap = mul_div(by_cap, 1, rules.point_value_milli)?;
    let redeemable_points = spendable_points.min(by_cap);
    Ok(Quote {
        merchant: merchant.to_owned(),
        consumer: consumer.to_owned(),
        order_amount,
        referee_discount,
        spendable_points,
        redeemable_points,
        redeemable_value: mul_div(redeemable_points, rules.point_value_milli, 1000)?,
    })
}
