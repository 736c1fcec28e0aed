//! The points rules against a real sled ledger: one consumer's story worked out by hand, then
//! every refusal with its code and a check that nothing changed.

mod common;

use common::*;
use pointsledger::clock::DAY_MS;
use pointsledger::engine::Reason;
use pointsledger::errors::Class;
use pointsledger::ledger::LedgerError;
use serde_json::json;

fn code(r: Result<pointsledger::ledger::Receipt, LedgerError>) -> &'static str {
    match r {
        Ok(r) => panic!("expected a refusal, got entry {}", r.index),
        Err(e) => e.code().as_str(),
    }
}

/// register → purchase → referral → referred first purchase with discount → redemption →
/// partial refunds → expiry, with every balance worked out by hand (rules in `common::rules`:
/// 10% earn, 1 point = 1 unit, 50% max redeem, 14-day pending, 365-day validity, referee 10%
/// capped at 500, referrer reward 300).
#[test]
fn story_of_bob_and_alice() {
    let mut f = Fixture::new();
    let (shop, alice, bob) = (Party::new(), Party::new(), Party::new());
    f.register(&shop, &rules());

    // Alice buys for 100.00: 1000 points, pending for 14 days.
    let r = f.purchase(&shop, &alice, "a1", 10_000).expect("a1");
    assert_eq!(r.effects.changes[0].delta, 1000);
    assert_eq!(r.effects.changes[0].available_at, Some(T0 + 14 * DAY_MS));
    assert_eq!(f.account(&alice).balance(T0).pending, 1000);
    assert_eq!(f.account(&alice).balance(T0).available, 0);

    // Bob accepts Alice as referrer, then buys for 200.00: referee discount min(10%, 500) = 500,
    // paid 19_500 → 1950 points; Alice gets a pending 300-point reward.
    f.refer(&bob, &alice).expect("referral");
    let r = f.purchase(&shop, &bob, "b1", 20_000).expect("b1");
    assert_eq!(r.effects.discount.map(|d| d.value), Some(500));
    let deltas: Vec<(String, i64, Reason)> = r
        .effects
        .changes
        .iter()
        .map(|c| (c.account.clone(), c.delta, c.reason))
        .collect();
    assert_eq!(
        deltas,
        vec![
            (bob.id.clone(), 1950, Reason::Earn),
            (alice.id.clone(), 300, Reason::ReferralReward)
        ]
    );

    // 15 days later Bob's points are available; he redeems 1500 on order b2 (40.00, max 50%).
    f.clock.advance(15 * DAY_MS);
    let now = T0 + 15 * DAY_MS;
    assert_eq!(f.account(&bob).balance(now).available, 1950);
    let r = f.redeem(&bob, &shop, "b2", 4_000, 1500).expect("redeem");
    assert_eq!(r.effects.discount.map(|d| d.value), Some(1500));
    f.purchase(&shop, &bob, "b2", 4_000).expect("b2"); // paid 2500 in money → 250 points
    let b = f.account(&bob).balance(now);
    assert_eq!((b.available, b.pending, b.total), (450, 250, 700));

    // Refund a quarter of b2: reverse ⌊250/4⌋ = 62 earned, return ⌊1500/4⌋ = 375 redeemed.
    let r = f.refund(&shop, "b2", 1_000).expect("refund b2");
    let got: Vec<(i64, Reason)> = r
        .effects
        .changes
        .iter()
        .map(|c| (c.delta, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![(-62, Reason::RefundReversal), (375, Reason::RedeemReturn)]
    );
    let b = f.account(&bob).balance(now);
    assert_eq!((b.available, b.pending, b.total), (825, 188, 1013));

    // Refund half of b1: reverse ⌊1950/2⌋ = 975 (825 from the lot, 150 as debt), and claw back
    // ⌊300/2⌋ = 150 of Alice's reward.
    let r = f.refund(&shop, "b1", 10_000).expect("refund b1");
    let got: Vec<(i64, Reason)> = r
        .effects
        .changes
        .iter()
        .map(|c| (c.delta, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (-825, Reason::RefundReversal),
            (-150, Reason::Debt),
            (-150, Reason::ReferralClawback)
        ]
    );
    let b = f.account(&bob).balance(now);
    assert_eq!((b.available, b.pending, b.debt, b.total), (0, 188, 150, 38));
    assert_eq!(f.account(&alice).balance(now).total, 1150);

    // A year later Alice's lots have expired; her next purchase sweeps them (1000 + 150) and
    // earns 100. Bob's b2 lot (188) is available, 150 of it owed: 38 spendable.
    f.clock.set(T0 + 381 * DAY_MS);
    let now = T0 + 381 * DAY_MS;
    assert_eq!(f.account(&alice).balance(now).expired_unswept, 1150);
    let r = f.purchase(&shop, &alice, "a2", 1_000).expect("a2");
    let got: Vec<(i64, Reason)> = r
        .effects
        .changes
        .iter()
        .map(|c| (c.delta, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (-1000, Reason::Expire),
            (-150, Reason::Expire),
            (100, Reason::Earn)
        ]
    );
    assert_eq!(f.account(&alice).balance(now).total, 100);

    let before = f.tree();
    assert_eq!(
        code(f.redeem(&bob, &shop, "b3", 10_000, 39)),
        "insufficient_points"
    );
    assert_eq!(f.tree(), before, "a refused redemption changed the log");
    let r = f
        .redeem(&bob, &shop, "b3", 10_000, 38)
        .expect("redeem the rest");
    let got: Vec<(i64, Reason)> = r
        .effects
        .changes
        .iter()
        .map(|c| (c.delta, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (-150, Reason::DebtSettled),
            (150, Reason::DebtSettled),
            (-38, Reason::Redeem)
        ]
    );
    let b = f.account(&bob).balance(now);
    assert_eq!((b.total, b.debt, b.available), (0, 0, 0));

    // The invariant: Σ effects per account = its balance.
    for p in [&alice, &bob] {
        assert_eq!(f.effects_sum(&p.id), f.account(p).balance(now).total);
    }
    // History says why every point moved.
    let rows = f.ledger.store().history(&bob.id, 0, 100).expect("history");
    assert_eq!(
        rows.len(),
        7,
        "referral, b1, redeem, b2, two refunds, redeem"
    );
}

#[test]
fn refusals_have_codes_and_change_nothing() {
    let mut f = Fixture::new();
    let (shop, other_shop, alice, bob, carol) = (
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
    );
    f.register(&shop, &rules());
    f.purchase(&shop, &alice, "a1", 10_000).expect("a1");
    f.clock.advance(15 * DAY_MS);

    let before = f.tree();
    let alice_before = f.account(&alice);
    let cases: Vec<(&str, Result<_, LedgerError>)> = vec![
        (
            "unknown_merchant",
            f.purchase(&other_shop, &alice, "x", 100),
        ),
        ("order_exists", f.purchase(&shop, &bob, "a1", 5)),
        (
            "insufficient_points",
            f.redeem(&alice, &shop, "r1", 1_000_000, 1001),
        ),
        (
            "redeem_share_exceeded",
            f.redeem(&alice, &shop, "r1", 1_000, 501),
        ),
        (
            "redeem_after_purchase",
            f.redeem(&alice, &shop, "a1", 10_000, 10),
        ),
        ("unknown_order", f.refund(&shop, "nope", 10)),
        ("refund_exceeds_order", f.refund(&shop, "a1", 10_001)),
        ("self_referral", f.refer(&alice, &alice)),
        ("referrer_not_customer", f.refer(&carol, &bob)),
        ("referee_has_purchases", f.refer(&alice, &bob)),
    ];
    for (want, got) in cases {
        assert_eq!(code(got), want);
    }
    // Wrong signer: a purchase signed by a consumer instead of the merchant.
    let p = json!({"merchant": shop.id, "consumer": bob.id, "order_id": "w", "amount": 5, "nonce": "w"});
    let err = f
        .submit(sign("purchase", &p, &[&bob.key]))
        .expect_err("wrong signer");
    assert_eq!(
        (err.code().as_str(), err.code().class()),
        ("wrong_signers", Class::Forbidden)
    );
    // A redemption signed by the consumer alone.
    let p = json!({"consumer": alice.id, "merchant": shop.id, "order_id": "r9", "order_amount": 100, "points": 10, "nonce": "q"});
    assert_eq!(
        code(f.submit(sign("redeem", &p, &[&alice.key]))),
        "wrong_signers"
    );
    // A merchant program signed by someone other than the operator.
    let p = json!({"operator": bob.id, "merchant": carol.id, "name": "X", "rules": rules(), "nonce": "z"});
    assert_eq!(
        code(f.submit(sign("merchant.register", &p, &[&bob.key]))),
        "not_operator"
    );
    // Expired request.
    let p = json!({"merchant": shop.id, "consumer": bob.id, "order_id": "e", "amount": 5, "nonce": "e", "expires_at": T0});
    assert_eq!(
        code(f.submit(sign("purchase", &p, &[&shop.key]))),
        "request_expired"
    );
    // Malformed payloads: zero, negative, overflowing amounts.
    for amount in [
        json!(0),
        json!(-5),
        json!(9_007_199_254_740_992u64),
        json!(1.5),
    ] {
        let p = json!({"merchant": shop.id, "consumer": bob.id, "order_id": "z", "amount": amount, "nonce": "z"});
        let err = f
            .submit(sign("purchase", &p, &[&shop.key]))
            .expect_err("bad amount");
        assert_eq!(
            (err.code().as_str(), err.code().class()),
            ("malformed_payload", Class::Malformed)
        );
    }
    assert_eq!(f.tree(), before);
    assert_eq!(f.account(&alice), alice_before);
}

#[test]
fn resubmission_returns_the_original_and_reuse_conflicts() {
    let mut f = Fixture::new();
    let (shop, alice) = (Party::new(), Party::new());
    f.register(&shop, &rules());
    let p = json!({"merchant": shop.id, "consumer": alice.id, "order_id": "o1", "amount": 1000, "nonce": "k1"});
    let env = sign("purchase", &p, &[&shop.key]);
    let first = f.submit(env.clone()).expect("first");
    let size = f.ledger.size();
    f.clock.advance(1000);
    assert_eq!(f.submit(env).expect("again"), first);
    assert_eq!(f.ledger.size(), size);
    // Same nonce, other content.
    let p2 = json!({"merchant": shop.id, "consumer": alice.id, "order_id": "o2", "amount": 1000, "nonce": "k1"});
    let err = f
        .submit(sign("purchase", &p2, &[&shop.key]))
        .expect_err("nonce");
    assert_eq!(
        (err.code().as_str(), err.code().class()),
        ("nonce_reused", Class::Conflict)
    );
    // Same order, other nonce.
    let p3 = json!({"merchant": shop.id, "consumer": alice.id, "order_id": "o1", "amount": 999, "nonce": "k3"});
    assert_eq!(
        code(f.submit(sign("purchase", &p3, &[&shop.key]))),
        "order_exists"
    );
    // Two conflicting requests inside one group: the second is refused.
    let a = sign(
        "purchase",
        &json!({"merchant": shop.id, "consumer": alice.id, "order_id": "g", "amount": 5, "nonce": "g1"}),
        &[&shop.key],
    );
    let b = sign(
        "purchase",
        &json!({"merchant": shop.id, "consumer": alice.id, "order_id": "g", "amount": 6, "nonce": "g2"}),
        &[&shop.key],
    );
    let results = f.ledger.submit(vec![a, b]);
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().map_err(|e| e.code().as_str()).err(),
        Some("order_exists")
    );
}

#[test]
fn referral_rules_one_level_and_caps() {
    let mut f = Fixture::new();
    let shop = Party::new();
    let mut r = rules();
    r.referrer_reward_cap = 1;
    f.register(&shop, &r);
    let (a, b, c, d) = (Party::new(), Party::new(), Party::new(), Party::new());
    f.purchase(&shop, &a, "a", 1000).expect("a buys");
    f.refer(&b, &a).expect("b accepts a");
    assert_eq!(code(f.refer(&b, &c)), "referrer_already_bound");
    f.purchase(&shop, &b, "b", 1000).expect("b buys");
    // c is referred by b: only b is rewarded, never a (one level).
    f.refer(&c, &b).expect("c accepts b");
    let rc = f.purchase(&shop, &c, "c", 1000).expect("c buys");
    let rewarded: Vec<&str> = rc
        .effects
        .changes
        .iter()
        .filter(|ch| ch.reason == Reason::ReferralReward)
        .map(|ch| ch.account.as_str())
        .collect();
    assert_eq!(rewarded, vec![b.id.as_str()]);
    // a's reward cap at this merchant is 1: d's first purchase gives d a discount, a no reward.
    f.refer(&d, &a).expect("d accepts a");
    let rd = f.purchase(&shop, &d, "d", 1000).expect("d buys");
    assert!(rd.effects.discount.is_some());
    assert!(rd
        .effects
        .changes
        .iter()
        .all(|ch| ch.reason != Reason::ReferralReward));
}

#[test]
fn full_refund_reverses_everything_exactly() {
    let mut f = Fixture::new();
    let (shop, a, b) = (Party::new(), Party::new(), Party::new());
    f.register(&shop, &rules());
    f.purchase(&shop, &a, "a", 3_333).expect("a");
    f.refer(&b, &a).expect("refer");
    f.purchase(&shop, &b, "b", 7_777).expect("b");
    for part in [1_111, 2_222, 4_444] {
        f.refund(&shop, "b", part).expect("partial");
    }
    assert_eq!(f.account(&b).balance(T0).total, 0);
    assert_eq!(
        f.account(&a).balance(T0).total,
        333,
        "only a's own purchase remains"
    );
    assert_eq!(code(f.refund(&shop, "b", 1)), "refund_exceeds_order");
}

#[test]
fn evm_link_checks_the_wallet_signature() {
    use pointsledger::evm;
    let mut f = Fixture::new();
    let (shop, alice, bob) = (Party::new(), Party::new(), Party::new());
    f.register(&shop, &rules());
    f.purchase(&shop, &alice, "a1", 1_000)
        .expect("alice is a customer");
    f.purchase(&shop, &bob, "b1", 1_000)
        .expect("bob is a customer");
    let secret = [9u8; 32];
    let address = evm::address_of(&secret).expect("address");
    let origin = f.ledger.config().log.origin.clone();
    let msg = evm::link_message(&origin, &alice.id, &address, "l1");
    let sig = evm::sign_link(&secret, &msg).expect("sign");
    // The same signature offered for Bob is refused: the message names the consumer.
    let forged =
        json!({"consumer": bob.id, "address": address, "evm_signature": sig, "nonce": "l1"});
    assert_eq!(
        code(f.submit(sign("account.link_evm", &forged, &[&bob.key]))),
        "bad_evm_signature"
    );
    let p = json!({"consumer": alice.id, "address": address, "evm_signature": sig, "nonce": "l1"});
    f.submit(sign("account.link_evm", &p, &[&alice.key]))
        .expect("link");
    assert_eq!(
        f.account(&alice).evm_address.as_deref(),
        Some(address.as_str())
    );
    // Bob cannot take an address that is linked to Alice, even with a valid signature.
    let msg = evm::link_message(&origin, &bob.id, &address, "l2");
    let sig = evm::sign_link(&secret, &msg).expect("sign");
    let p = json!({"consumer": bob.id, "address": address, "evm_signature": sig, "nonce": "l2"});
    assert_eq!(
        code(f.submit(sign("account.link_evm", &p, &[&bob.key]))),
        "address_linked"
    );
}

#[test]
fn quote_matches_what_the_engine_then_accepts() {
    use pointsledger::engine;
    let mut f = Fixture::new();
    let (shop, a, b) = (Party::new(), Party::new(), Party::new());
    let mut r = rules();
    r.point_value_milli = 700; // 1 point = 0.7 units: the cap is not a multiple of the value
    f.register(&shop, &r);
    f.purchase(&shop, &a, "a", 90_000).expect("a");
    f.refer(&b, &a).expect("refer");
    f.clock.advance(15 * DAY_MS);
    let now = T0 + 15 * DAY_MS;
    let q = engine::quote(f.ledger.store(), &shop.id, &b.id, 20_000, now).expect("quote b");
    assert_eq!((q.referee_discount, q.redeemable_points), (500, 0));
    let q = engine::quote(f.ledger.store(), &shop.id, &a.id, 1_001, now).expect("quote a");
    assert_eq!(q.spendable_points, 9000);
    // cap = ⌊1001·50%⌋ = 500 units; 714 points are worth ⌊714·0.7⌋ = 499, 715 → 500, 716 → 501.
    assert_eq!((q.redeemable_points, q.redeemable_value), (715, 500));
    assert_eq!(
        code(f.redeem(&a, &shop, "q1", 1_001, q.redeemable_points + 1)),
        "redeem_share_exceeded"
    );
    f.redeem(&a, &shop, "q1", 1_001, q.redeemable_points)
        .expect("the quoted maximum is accepted");
    assert!(
        engine::quote(f.ledger.store(), &b.id, &a.id, 1, now).is_err(),
        "unknown merchant"
    );
}

/// Points that expired are not taken a second time by a later refund: only what was spent is
/// clawed back as debt (earn 1000, spend 400, 600 expire, full refund → debt 400, not 1000).
#[test]
fn refund_after_expiry_takes_back_only_what_was_spent() {
    let mut f = Fixture::new();
    let (shop, alice, bob) = (Party::new(), Party::new(), Party::new());
    let mut r = rules();
    r.pending_ms = 0;
    r.validity_ms = 30 * DAY_MS;
    f.register(&shop, &r);
    f.purchase(&shop, &alice, "a1", 10_000).expect("earn 1000");
    f.redeem(&alice, &shop, "a2", 1_000, 400)
        .expect("spend 400");
    f.refer(&bob, &alice).expect("bob is referred");
    f.purchase(&shop, &bob, "b1", 10_000)
        .expect("alice's reward of 300");
    f.clock.advance(31 * DAY_MS);
    // The refund sweeps the expired lots (600 of Alice's, her 300 reward, Bob's points) and
    // takes back only the 400 Alice spent.
    let rc = f.refund(&shop, "a1", 10_000).expect("full refund");
    let got: Vec<(i64, Reason)> = rc
        .effects
        .changes
        .iter()
        .map(|c| (c.delta, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (-600, Reason::Expire),
            (-300, Reason::Expire),
            (-400, Reason::Debt)
        ]
    );
    let b = f.account(&alice).balance(T0 + 31 * DAY_MS);
    assert_eq!((b.total, b.debt), (-400, 400));
    // Bob's refund claws back nothing from Alice: her reward had expired unspent.
    let rc = f.refund(&shop, "b1", 10_000).expect("bob's refund");
    assert!(
        rc.effects.changes.iter().all(|c| c.account != alice.id),
        "{:?}",
        rc.effects
    );
    assert_eq!(f.account(&alice).balance(T0 + 31 * DAY_MS).total, -400);
    for p in [&alice, &bob] {
        assert_eq!(
            f.effects_sum(&p.id),
            f.account(p).balance(T0 + 31 * DAY_MS).total
        );
    }
    let (before, after) = f.ledger.rebuild(&|_| {}).expect("rebuild");
    assert_eq!(before, after);
}

#[test]
fn purchase_must_match_the_amount_its_order_was_redeemed_against() {
    let mut f = Fixture::new();
    let (shop, alice) = (Party::new(), Party::new());
    let mut r = rules();
    r.pending_ms = 0;
    f.register(&shop, &r);
    f.purchase(&shop, &alice, "a1", 10_000).expect("earn");
    f.redeem(&alice, &shop, "a2", 2_000, 500)
        .expect("redeem against 2000");
    assert_eq!(
        code(f.purchase(&shop, &alice, "a2", 20_000)),
        "order_amount_mismatch"
    );
    // paid in money: 2000 − 500 = 1500 → 150 points.
    let rc = f
        .purchase(&shop, &alice, "a2", 2_000)
        .expect("matching purchase");
    assert_eq!(rc.effects.changes[0].delta, 150);
}

/// An EVM link is for customers, once: a fresh key cannot link, a customer links one address,
/// and neither another address nor the same one can be linked to that account afterwards.
#[test]
fn evm_links_need_a_purchase_and_are_made_once() {
    use pointsledger::evm;
    let mut f = Fixture::new();
    let (shop, alice) = (Party::new(), Party::new());
    f.register(&shop, &rules());
    let origin = f.ledger.config().log.origin.clone();
    let link = |who: &Party, secret: [u8; 32], nonce: &str| {
        let address = evm::address_of(&secret).expect("address");
        let msg = evm::link_message(&origin, &who.id, &address, nonce);
        let sig = evm::sign_link(&secret, &msg).expect("sign");
        let p =
            json!({"consumer": who.id, "address": address, "evm_signature": sig, "nonce": nonce});
        sign("account.link_evm", &p, &[&who.key])
    };
    let before = f.tree();
    let err = f
        .submit(link(&alice, [3u8; 32], "l1"))
        .expect_err("no purchase yet");
    assert_eq!(
        (err.code().as_str(), err.code().class()),
        ("consumer_not_customer", Class::Rule)
    );
    assert!(err.to_string().contains("no recorded purchase"), "{err}");
    assert_eq!(f.tree(), before);
    f.purchase(&shop, &alice, "a1", 1_000).expect("a purchase");
    f.submit(link(&alice, [3u8; 32], "l2"))
        .expect("a customer links");
    let linked = f.account(&alice);
    assert_eq!(
        linked.evm_address,
        Some(evm::address_of(&[3u8; 32]).expect("address"))
    );
    let before = f.tree();
    for (secret, nonce) in [([4u8; 32], "l3"), ([3u8; 32], "l4")] {
        let err = f
            .submit(link(&alice, secret, nonce))
            .expect_err("a second link");
        assert_eq!(
            (err.code().as_str(), err.code().class()),
            ("evm_already_linked", Class::Conflict)
        );
    }
    assert_eq!(f.tree(), before, "a refused link changed the log");
    assert_eq!(f.account(&alice), linked);
}

/// The bug: consumer C redeems on order X; the merchant records X's purchase for Q. Q's payment
/// would be reduced by C's discount (Q earns less) and a refund would return the points to C.
/// The purchase must name C, or it is refused and nothing changes.
#[test]
fn purchase_must_name_the_consumer_its_order_was_redeemed_for() {
    let mut f = Fixture::new();
    let (shop, c, q) = (Party::new(), Party::new(), Party::new());
    let mut r = rules();
    r.pending_ms = 0;
    f.register(&shop, &r);
    f.purchase(&shop, &c, "c1", 10_000).expect("C earns 1000");
    f.redeem(&c, &shop, "x", 2_000, 800)
        .expect("C redeems 800 on X");
    let before = (f.tree(), f.account(&c), f.account(&q));
    let err = f
        .purchase(&shop, &q, "x", 2_000)
        .expect_err("X is C's order");
    assert_eq!(
        (err.code().as_str(), err.code().class()),
        ("order_consumer_mismatch", Class::Rule)
    );
    assert!(err.to_string().contains(&c.id), "{err}");
    assert_eq!((f.tree(), f.account(&c), f.account(&q)), before);
    // Q's own order is unaffected: the full price earns the full points.
    let rq = f.purchase(&shop, &q, "q1", 2_000).expect("Q's own order");
    assert_eq!(rq.effects.changes[0].delta, 200);
    // The purchase for C goes through: paid 2000 − 800 = 1200 → 120 points; a full refund
    // returns the 800 to C and reverses the 120.
    let rc = f
        .purchase(&shop, &c, "x", 2_000)
        .expect("C's purchase of X");
    assert_eq!(rc.effects.changes[0].delta, 120);
    let refund = f.refund(&shop, "x", 2_000).expect("refund X");
    let got: Vec<(&str, i64, Reason)> = refund
        .effects
        .changes
        .iter()
        .map(|ch| (ch.account.as_str(), ch.delta, ch.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (c.id.as_str(), -120, Reason::RefundReversal),
            (c.id.as_str(), 800, Reason::RedeemReturn)
        ]
    );
    assert_eq!(f.account(&c).balance(T0).total, 1000);
    assert_eq!(f.account(&q).balance(T0).total, 200);
}

/// The loop attack in a fast form: a consumer at the cap redeems, the order is bought, the
/// lots are filled back to the cap, and the refund that would return the redeemed points on
/// top of it is refused (`balance_overflow`): a return is a credit like any other.
#[test]
fn a_refund_cannot_return_points_beyond_the_cap() {
    use pointsledger::payload::MAX_SAFE_INT;
    let mut f = Fixture::new();
    let (shop, c) = (Party::new(), Party::new());
    let mut r = rules();
    r.pending_ms = 0;
    r.earn_bps = 10_000; // one point per minor unit
    r.max_redeem_bps = 10_000;
    r.max_points_per_order = MAX_SAFE_INT;
    f.register(&shop, &r);
    f.purchase(&shop, &c, "fill", MAX_SAFE_INT)
        .expect("earn up to the cap");
    assert_eq!(f.account(&c).held(), u128::from(MAX_SAFE_INT));
    assert_eq!(
        f.purchase(&shop, &c, "one-more", 1)
            .expect_err("over the cap")
            .code(),
        "balance_overflow"
    );
    f.redeem(&c, &shop, "loop", 1_000, 1_000).expect("redeem");
    f.purchase(&shop, &c, "loop", 1_000)
        .expect("paid 0, earns 0");
    f.purchase(&shop, &c, "refill", 1_000)
        .expect("back to the cap");
    assert_eq!(f.account(&c).held(), u128::from(MAX_SAFE_INT));
    let before = (f.tree(), f.account(&c));
    let err = f
        .refund(&shop, "loop", 1_000)
        .expect_err("return over the cap");
    assert_eq!(
        (err.code().as_str(), err.code().class()),
        ("balance_overflow", Class::Rule)
    );
    assert!(err.to_string().contains("2^53-1"), "{err}");
    let partial = f.refund(&shop, "loop", 1).expect_err("even one point over");
    assert_eq!(partial.code(), "balance_overflow");
    assert_eq!(
        (f.tree(), f.account(&c)),
        before,
        "a refused refund changed something"
    );
    // Once the points are spent the same refund passes, exactly up to the cap.
    f.redeem(&c, &shop, "spend", 1_000, 1_000).expect("spend");
    f.refund(&shop, "loop", 1_000).expect("now it fits");
    let acc = f.account(&c);
    assert_eq!(acc.held(), u128::from(MAX_SAFE_INT));
    assert_eq!(f.effects_sum(&c.id), acc.balance(T0).total);
    assert_eq!(acc.balance(T0).total, MAX_SAFE_INT as i64);
    let (before, after) = f.ledger.rebuild(&|_| {}).expect("rebuild");
    assert_eq!(before, after);
}

#[test]
fn leaves_stay_inside_a_bundle_however_many_lots_an_account_holds() {
    let mut f = Fixture::new();
    let shop = Party::new();
    let carol = Party::new();
    f.register(&shop, &rules());
    // 1000 purchases of 100: 1000 lots of 10 points.
    let envs: Vec<_> = (0..1000)
        .map(|i| {
            let p = json!({"merchant": shop.id, "consumer": carol.id, "order_id": format!("p{i}"),
                           "amount": 100, "nonce": f.nonce()});
            sign("purchase", &p, &[&shop.key])
        })
        .collect();
    for r in f.ledger.submit(envs) {
        r.expect("purchase");
    }
    f.clock.advance(15 * DAY_MS);
    let before = (f.tree(), f.account(&carol));
    // A redemption drawing on more than 100 lots is refused, saying what 100 lots give.
    let err = match f.redeem(&carol, &shop, "big", 20_000, 10_000) {
        Ok(r) => panic!(
            "a redemption of 1000 lots was accepted as entry {}",
            r.index
        ),
        Err(e) => e,
    };
    assert_eq!(err.code().as_str(), "too_many_lots", "{err}");
    assert!(err.to_string().contains("give 1000 points"), "{err}");
    assert_eq!((f.tree(), f.account(&carol)), before, "nothing changed");
    // 100 lots go through, and so does the refund that returns to all of them.
    let redeemed = f
        .redeem(&carol, &shop, "hundred", 2_000, 1_000)
        .expect("a redemption of 100 lots");
    let leaf_len =
        |f: &Fixture, i: u64| f.ledger.store().leaf(i).expect("read").expect("leaf").len();
    assert_eq!(
        redeemed
            .effects
            .changes
            .iter()
            .filter(|c| c.lot.is_some())
            .count(),
        100
    );
    f.purchase(&shop, &carol, "hundred", 2_000)
        .expect("the order's purchase");
    let refund = f.refund(&shop, "hundred", 2_000).expect("a full refund");
    let returned = refund
        .effects
        .changes
        .iter()
        .filter(|c| c.reason == pointsledger::engine::Reason::RedeemReturn)
        .count();
    assert_eq!(returned, 100);
    assert!(leaf_len(&f, redeemed.index) < 30_000 && leaf_len(&f, refund.index) < 30_000);
    // A year on, every lot has expired: the next entry that touches the account sweeps all
    // 900 left with points, recording 32 of them lot by lot and the rest as one change.
    f.clock.advance(366 * DAY_MS);
    let held = f
        .account(&carol)
        .lots
        .iter()
        .map(|l| l.remaining)
        .sum::<u64>();
    let swept = f.purchase(&shop, &carol, "after", 100).expect("a purchase");
    let expired: Vec<_> = swept
        .effects
        .changes
        .iter()
        .filter(|c| c.reason == pointsledger::engine::Reason::Expire)
        .collect();
    assert_eq!(expired.len(), 33);
    assert!(expired[..32].iter().all(|c| c.lot.is_some()) && expired[32].lot.is_none());
    assert_eq!(
        expired.iter().map(|c| c.delta).sum::<i64>(),
        -(held as i64),
        "every expired point leaves the account"
    );
    assert!(leaf_len(&f, swept.index) < 10_000);
    let now = pointsledger::clock::Clock::now_ms(&f.clock);
    assert!(
        f.account(&carol).lots.iter().all(|l| l.expires_at > now),
        "no expired lot is left"
    );
}

/// A state write that fails after its group was acknowledged: the group stays in the log and
/// readable, later writes are refused with `unavailable` until the ledger is reopened, and the
/// reopened ledger replays it into the state and takes writes again.
#[test]
fn a_failed_state_write_loses_nothing_and_stops_no_read() {
    let mut f = Fixture::new();
    let shop = Party::new();
    let dora = Party::new();
    f.register(&shop, &rules());
    f.purchase(&shop, &dora, "before", 1_000)
        .expect("a purchase");
    pointsledger::state::tamper::fail_next_state_write(f.ledger.store());
    let acked = f
        .purchase(&shop, &dora, "failed-behind", 2_000)
        .expect("acknowledged");
    assert!(f.ledger.store().settle().is_err(), "the state write failed");
    let err = f
        .purchase(&shop, &dora, "after", 3_000)
        .expect_err("writes are refused once the state could not be written");
    assert_eq!(err.code().as_str(), "unavailable", "{err}");
    // Reads go on, and see the acknowledged entry whose state sled never took.
    let account = f.account(&dora);
    assert_eq!(account.lots.len(), 2, "{account:?}");
    let history = f.ledger.store().history(&dora.id, 0, 10).expect("history");
    assert!(history.contains(&acked.index), "{history:?}");
    assert!(f.ledger.store().leaf(acked.index).expect("read").is_some());
    // Reopened, the ledger replays the group into the state and takes writes again.
    let size = f.tree().0;
    let Fixture {
        dir, clock, ledger, ..
    } = f;
    drop(ledger);
    let mut ledger =
        pointsledger::ledger::Ledger::open(dir.path(), std::sync::Arc::new(clock)).expect("reopen");
    assert_eq!(ledger.size(), size);
    let replayed = pointsledger::engine::StateView::account(ledger.store(), &dora.id)
        .expect("read")
        .expect("dora");
    assert_eq!(replayed, account);
    let p = json!({"merchant": shop.id, "consumer": dora.id, "order_id": "after",
                   "amount": 3_000, "nonce": "after-reopen"});
    ledger
        .submit(vec![sign("purchase", &p, &[&shop.key])])
        .remove(0)
        .expect("writes resume after the reopen");
}

#[test]
fn one_writer_owns_a_data_directory() {
    let f = Fixture::new();
    let clock = std::sync::Arc::new(pointsledger::clock::ManualClock::new(T0));
    let err = match pointsledger::ledger::Ledger::open(f.dir.path(), clock) {
        Ok(_) => panic!("a second writer opened a data directory the first one holds"),
        Err(e) => e,
    };
    assert!(
        matches!(err, LedgerError::Log(pointsledger::log::LogError::Locked)),
        "{err}"
    );
    assert_eq!(err.code().as_str(), "unavailable");
}
