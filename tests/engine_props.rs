//! The engine over random operation sequences: whatever is accepted or refused, the books
//! balance. For every account Σ effects = balance, no lot goes below zero or above its credit,
//! every figure stays within 0..=2^53-1 (also when the sequence pushes accounts against that
//! cap), a negative total only ever comes with recorded clawback debt, a refusal is always a
//! rule's refusal (never an internal error), and replaying the log reproduces the state exactly.

mod common;

use common::*;
use pointsledger::clock::DAY_MS;
use pointsledger::engine::StateView;
use pointsledger::ledger::{LedgerError, Receipt};
use pointsledger::payload::MAX_SAFE_INT;
use proptest::prelude::*;

/// Refusals a random sequence may meet; anything else (`internal`, `unavailable`, a malformed
/// request the test did not mean to send) fails the property.
const RULE_REFUSALS: [&str; 12] = [
    "insufficient_points",
    "redeem_share_exceeded",
    "discount_zero",
    "order_exists",
    "order_consumer_mismatch",
    "refund_exceeds_order",
    "unknown_order",
    "balance_overflow",
    "self_referral",
    "referrer_already_bound",
    "referee_has_purchases",
    "referrer_not_customer",
];

fn expected(r: Result<Receipt, LedgerError>) -> Result<bool, TestCaseError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if RULE_REFUSALS.contains(&e.code().as_str()) => Ok(false),
        Err(e) => Err(TestCaseError::fail(format!(
            "unexpected refusal {}: {e}",
            e.code()
        ))),
    }
}

/// The figures every account must keep in range, and Σ effects = balance.
fn check_books(f: &Fixture, people: &[Party]) -> Result<(), TestCaseError> {
    let now = pointsledger::clock::Clock::now_ms(&f.clock);
    for p in people {
        let acc = f.account(p);
        let b = acc.balance(now);
        prop_assert_eq!(f.effects_sum(&p.id), b.total, "Σ effects ≠ balance");
        prop_assert!(
            acc.held() <= u128::from(MAX_SAFE_INT),
            "held {}",
            acc.held()
        );
        prop_assert!(acc.debt <= MAX_SAFE_INT, "debt {}", acc.debt);
        prop_assert!(acc
            .lots
            .iter()
            .all(|l| l.remaining <= l.points && l.points <= MAX_SAFE_INT));
        prop_assert_eq!(
            f.debt_from_log(&p.id),
            b.debt as i64,
            "debt not explained by the log"
        );
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Purchase {
        c: usize,
        m: usize,
        amount: u64,
    },
    Redeem {
        c: usize,
        m: usize,
        amount: u64,
        points: u64,
        buyer: usize,
    },
    Refund {
        order: usize,
        amount: u64,
    },
    Refer {
        referee: usize,
        referrer: usize,
    },
    Advance {
        days: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..2usize, 1..50_000u64).prop_map(|(c, m, amount)| Op::Purchase { c, m, amount }),
        2 => (0..4usize, 0..2usize, 1..50_000u64, 1..3_000u64, 0..4usize)
            .prop_map(|(c, m, amount, points, buyer)| Op::Redeem { c, m, amount, points, buyer }),
        2 => (0..40usize, 1..30_000u64).prop_map(|(order, amount)| Op::Refund { order, amount }),
        1 => (0..4usize, 0..4usize).prop_map(|(referee, referrer)| Op::Refer { referee, referrer }),
        1 => (0..200u64).prop_map(|days| Op::Advance { days }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn books_balance_under_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
        let mut f = Fixture::new();
        let shops = [Party::new(), Party::new()];
        let mut fast = rules();
        fast.pending_ms = 0;
        fast.validity_ms = 90 * DAY_MS;
        f.register(&shops[0], &rules());
        f.register(&shops[1], &fast);
        let people: Vec<Party> = (0..4).map(|_| Party::new()).collect();
        let mut orders: Vec<(usize, String)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Purchase { c, m, amount } => {
                    let id = format!("o{i}");
                    if expected(f.purchase(&shops[*m], &people[*c], &id, *amount))? {
                        orders.push((*m, id));
                    }
                }
                Op::Redeem { c, m, amount, points, buyer } => {
                    let id = format!("o{i}");
                    if expected(f.redeem(&people[*c], &shops[*m], &id, *amount, *points))? {
                        // A purchase of the order for anyone but the redeemer is refused.
                        if buyer != c {
                            let r = f.purchase(&shops[*m], &people[*buyer], &id, *amount);
                            prop_assert_eq!(r.err().map(|e| e.code().as_str()), Some("order_consumer_mismatch"));
                        }
                        // The order's purchase follows its redemption, as at a till.
                        if expected(f.purchase(&shops[*m], &people[*c], &id, *amount))? {
                            orders.push((*m, id));
                        }
                    }
                }
                Op::Refund { order, amount } => {
                    if !orders.is_empty() {
                        let (m, id) = orders[order % orders.len()].clone();
                        expected(f.refund(&shops[m], &id, *amount))?;
                    }
                }
                Op::Refer { referee, referrer } => {
                    expected(f.refer(&people[*referee], &people[*referrer]))?;
                }
                Op::Advance { days } => f.clock.advance(days * DAY_MS),
            }
        }
        // Debt is only what the log recorded as such: Σ debt changes (−) and settlements
        // (+, without a lot) add up to the account's debt, so a negative balance is always
        // recorded clawback debt and never a silent overdraft.
        check_books(&f, &people)?;
        let (before, after) = f.ledger.rebuild(&|_| {}).expect("rebuild");
        prop_assert_eq!(before, after, "replay did not reproduce the state");
    }

    /// The redeem / purchase / refund loop against the cap: one point per minor unit and
    /// amounts up to 2^53-1, so credits, returns and debt all press against 2^53-1. Whatever
    /// the sequence, each figure stays in range, the books balance, and the only refusals are
    /// the rules' own (`balance_overflow` among them), never an internal error.
    #[test]
    fn figures_stay_within_the_cap(
        fill in 0..5_000u64,
        ops in proptest::collection::vec(cap_op(), 1..40),
    ) {
        let mut f = Fixture::new();
        let shop = Party::new();
        let mut r = rules();
        r.pending_ms = 0;
        r.earn_bps = 10_000;
        r.max_redeem_bps = 10_000;
        r.max_points_per_order = MAX_SAFE_INT;
        r.referrer_reward_points = MAX_SAFE_INT / 2;
        f.register(&shop, &r);
        let people: Vec<Party> = (0..3).map(|_| Party::new()).collect();
        let mut orders: Vec<String> = Vec::new();
        // The first consumer starts `fill` points short of the cap.
        f.purchase(&shop, &people[0], "start", MAX_SAFE_INT - fill).expect("start");
        for (i, op) in ops.iter().enumerate() {
            let id = format!("o{i}");
            match *op {
                // The attack's loop: redeem on an order, buy it (paid 0), earn the points back
                // elsewhere, refund the order (which returns the redeemed points).
                CapOp::Loop { c, points, refill } => {
                    if expected(f.redeem(&people[c], &shop, &id, points, points))?
                        && expected(f.purchase(&shop, &people[c], &id, points))?
                    {
                        expected(f.purchase(&shop, &people[c], &format!("{id}r"), refill))?;
                        expected(f.refund(&shop, &id, points))?;
                    }
                }
                CapOp::Purchase { c, amount } => {
                    if expected(f.purchase(&shop, &people[c], &id, amount))? {
                        orders.push(id);
                    }
                }
                CapOp::Redeem { c, amount, points } => {
                    if expected(f.redeem(&people[c], &shop, &id, amount, points))?
                        && expected(f.purchase(&shop, &people[c], &id, amount))?
                    {
                        orders.push(id);
                    }
                }
                CapOp::Refund { order, permille } => {
                    if !orders.is_empty() {
                        let id = orders[order % orders.len()].clone();
                        // A share of what the order can still refund (at least 1).
                        let amount = f
                            .ledger
                            .store()
                            .order(&shop.id, &id)
                            .expect("order")
                            .and_then(|o| o.purchase)
                            .map_or(1, |p| ((p.amount - p.refunded) / 1000 * permille).max(1));
                        expected(f.refund(&shop, &id, amount))?;
                    }
                }
                CapOp::Refer { referee, referrer } => {
                    expected(f.refer(&people[referee], &people[referrer]))?;
                }
            }
        }
        check_books(&f, &people)?;
        let (before, after) = f.ledger.rebuild(&|_| {}).expect("rebuild");
        prop_assert_eq!(before, after, "replay did not reproduce the state");
    }
}

#[derive(Debug, Clone)]
enum CapOp {
    Loop { c: usize, points: u64, refill: u64 },
    Purchase { c: usize, amount: u64 },
    Redeem { c: usize, amount: u64, points: u64 },
    Refund { order: usize, permille: u64 },
    Refer { referee: usize, referrer: usize },
}

/// Amounts near the cap, near half of it, or small.
fn big() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0..1_000u64).prop_map(|d| MAX_SAFE_INT - d),
        (0..1_000u64).prop_map(|d| MAX_SAFE_INT / 2 - d),
        1..10_000u64,
    ]
}

fn cap_op() -> impl Strategy<Value = CapOp> {
    prop_oneof![
        4 => (0..3usize, 1..5_000u64, 1..6_000u64)
            .prop_map(|(c, points, refill)| CapOp::Loop { c, points, refill }),
        3 => (0..3usize, big()).prop_map(|(c, amount)| CapOp::Purchase { c, amount }),
        3 => (0..3usize, big(), big()).prop_map(|(c, amount, points)| CapOp::Redeem { c, amount, points }),
        3 => (0..40usize, 0..=1000u64).prop_map(|(order, permille)| CapOp::Refund { order, permille }),
        1 => (0..3usize, 0..3usize).prop_map(|(referee, referrer)| CapOp::Refer { referee, referrer }),
    ]
}
