//! The engine over random operation sequences: whatever is accepted or refused, the books
//! balance. For every account Σ effects = balance, no lot goes below zero, a negative total only
//! ever comes with recorded clawback debt, and replaying the log reproduces the state exactly.

mod common;

use common::*;
use pointsledger::clock::DAY_MS;
use proptest::prelude::*;

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
        2 => (0..4usize, 0..2usize, 1..50_000u64, 1..3_000u64)
            .prop_map(|(c, m, amount, points)| Op::Redeem { c, m, amount, points }),
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
                    if f.purchase(&shops[*m], &people[*c], &id, *amount).is_ok() {
                        orders.push((*m, id));
                    }
                }
                Op::Redeem { c, m, amount, points } => {
                    let id = format!("o{i}");
                    if f.redeem(&people[*c], &shops[*m], &id, *amount, *points).is_ok() {
                        // The order's purchase follows its redemption, as at a till.
                        if f.purchase(&shops[*m], &people[*c], &id, *amount).is_ok() {
                            orders.push((*m, id));
                        }
                    }
                }
                Op::Refund { order, amount } => {
                    if !orders.is_empty() {
                        let (m, id) = orders[order % orders.len()].clone();
                        let _ = f.refund(&shops[m], &id, *amount);
                    }
                }
                Op::Refer { referee, referrer } => {
                    let _ = f.refer(&people[*referee], &people[*referrer]);
                }
                Op::Advance { days } => f.clock.advance(days * DAY_MS),
            }
        }
        let now = pointsledger::clock::Clock::now_ms(&f.clock);
        for p in &people {
            let acc = f.account(p);
            let b = acc.balance(now);
            prop_assert_eq!(f.effects_sum(&p.id), b.total, "Σ effects ≠ balance");
            prop_assert!(acc.lots.iter().all(|l| l.remaining <= l.points));
            // Debt is only what the log recorded as such: Σ debt changes (−) and settlements
            // (+, without a lot) add up to the account's debt, so a negative balance is always
            // recorded clawback debt and never a silent overdraft.
            prop_assert_eq!(f.debt_from_log(&p.id), b.debt as i64, "debt not explained by the log");
        }
        let (before, after) = f.ledger.rebuild(&|_| {}).expect("rebuild");
        prop_assert_eq!(before, after, "replay did not reproduce the state");
    }
}
