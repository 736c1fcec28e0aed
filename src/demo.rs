//! A seeded demo program: three merchants with different rules, consumers who buy, refer
//! friends, redeem points, get refunds and link an EVM wallet.
//!
//! The demo writes every participant's key under `DIR/demo/keys/` (0600) so a newcomer can sign
//! more requests as any of them, and prints a summary with the ids to try.

use crate::clock::DAY_MS;
use crate::dsse::{self, Envelope};
use crate::ledger::Ledger;
use crate::payload::ProgramRules;
use crate::sequencer::SequencerOptions;
use crate::{evm, keys};
use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use rand::RngCore;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// A progress bar on stderr with rate and ETA (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// What the demo wrote.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// Entries appended.
    pub entries: u64,
    /// Merchant ids with their names.
    pub merchants: Vec<(String, String)>,
    /// Consumers created.
    pub consumers: u64,
    /// Purchases recorded.
    pub purchases: u64,
    /// Referrals accepted.
    pub referrals: u64,
    /// Redemptions.
    pub redemptions: u64,
    /// Refunds (partial and full).
    pub refunds: u64,
    /// EVM addresses linked.
    pub evm_links: u64,
    /// A consumer to look at (`pointsledger balance --data DIR <id>`).
    pub example_consumer: String,
    /// Where the participants' keys are.
    pub keys_dir: String,
    /// The log's size after the demo.
    pub tree_size: u64,
}

fn demo_rules(i: usize) -> (&'static str, ProgramRules) {
    let programs = [
        (
            "Carnival Cafe",
            ProgramRules {
                earn_bps: 1000,
                point_value_milli: 1000,
                max_redeem_bps: 5000,
                validity_ms: 365 * DAY_MS,
                pending_ms: 0,
                referee_discount_bps: 1000,
                referee_discount_max: 1000,
                referrer_reward_points: 200,
                referrer_reward_cap: 10,
                max_points_per_order: 100_000,
            },
        ),
        (
            "Universal Outfitters",
            ProgramRules {
                earn_bps: 500,
                point_value_milli: 1000,
                max_redeem_bps: 3000,
                validity_ms: 180 * DAY_MS,
                pending_ms: 14 * DAY_MS,
                referee_discount_bps: 1500,
                referee_discount_max: 2000,
                referrer_reward_points: 500,
                referrer_reward_cap: 5,
                max_points_per_order: 50_000,
            },
        ),
        (
            "Night Market Eats",
            ProgramRules {
                earn_bps: 800,
                point_value_milli: 500,
                max_redeem_bps: 2000,
                validity_ms: 90 * DAY_MS,
                pending_ms: 0,
                referee_discount_bps: 500,
                referee_discount_max: 500,
                referrer_reward_points: 100,
                referrer_reward_cap: 20,
                max_points_per_order: 20_000,
            },
        ),
    ];
    programs[i % programs.len()].clone()
}

/// A request of the demo's, to be signed (with the others of its batch, on every core).
struct Unsigned<'k> {
    kind: &'static str,
    payload: serde_json::Value,
    signers: Vec<&'k SigningKey>,
}

fn unsigned<'k>(
    kind: &'static str,
    payload: serde_json::Value,
    signers: &[&'k SigningKey],
) -> Unsigned<'k> {
    Unsigned {
        kind,
        payload,
        signers: signers.to_vec(),
    }
}

fn signed(u: &Unsigned<'_>) -> Result<Envelope> {
    let (first, rest) = u.signers.split_first().context("no signer")?;
    let mut env = dsse::sign(u.kind, serde_json::to_vec(&u.payload)?, first)?;
    for k in rest {
        env.add_signature(k)?;
    }
    Ok(env)
}

/// Seeds the demo program into `ledger` (whose data directory is `data`).
pub fn seed(
    ledger: &mut Ledger,
    data: &Path,
    consumers: u64,
    purchases: u64,
    progress: bool,
) -> Result<DemoSummary> {
    if !(2..=100_000).contains(&consumers) || purchases > 10_000_000 {
        bail!("--consumers must be 2..=100000 and --purchases at most 10000000");
    }
    let keys_dir = data.join("demo").join("keys");
    if keys_dir.exists() {
        bail!(
            "{} exists: this directory already holds a demo",
            keys_dir.display()
        );
    }
    let operator = keys::read_key_file(&crate::ledger::DataDir(data.to_owned()).operator_key())?;
    let operator_id = keys::public_id(&operator.verifying_key());
    let origin = ledger.config().log.origin.clone();
    let new_key = |name: String| -> Result<(SigningKey, String)> {
        let k = keys::generate();
        keys::write_key_file(&keys_dir.join(format!("{name}.key")), &k)?;
        let id = keys::public_id(&k.verifying_key());
        Ok((k, id))
    };
    let merchants: Vec<(SigningKey, String, ProgramRules)> = (0..3)
        .map(|i| new_key(format!("merchant-{i}")).map(|(k, id)| (k, id, demo_rules(i).1)))
        .collect::<Result<_>>()?;
    let people: Vec<(SigningKey, String)> = (0..consumers)
        .map(|i| new_key(format!("consumer-{i}")))
        .collect::<Result<_>>()?;

    let mut summary = DemoSummary {
        entries: 0,
        merchants: Vec::new(),
        consumers,
        purchases: 0,
        referrals: 0,
        redemptions: 0,
        refunds: 0,
        evm_links: 0,
        example_consumer: people[1].1.clone(),
        keys_dir: keys_dir.display().to_string(),
        tree_size: 0,
    };
    let mut nonce = 0u64;
    let mut next_nonce = || {
        nonce += 1;
        format!("demo-{nonce}")
    };
    // A checkpoint each interval, as the server cuts them: each flushes the state store, so a
    // demo that is killed leaves a ledger that opens as quickly as a served one.
    let interval = SequencerOptions::default().checkpoint_interval;
    let mut last_checkpoint = Instant::now();
    let mut submit =
        |ledger: &mut Ledger, batch: Vec<Unsigned>, s: &mut DemoSummary| -> Result<()> {
            let batch = batch
                .par_iter()
                .map(signed)
                .collect::<Result<Vec<Envelope>>>()?;
            for r in ledger.submit(batch) {
                r.context("the demo's own entry was refused")?;
                s.entries += 1;
            }
            if last_checkpoint.elapsed() >= interval {
                ledger.checkpoint()?;
                last_checkpoint = Instant::now();
            }
            Ok(())
        };

    let mut batch = Vec::new();
    for (i, (_, id, rules)) in merchants.iter().enumerate() {
        let name = demo_rules(i).0;
        summary.merchants.push((id.clone(), name.to_owned()));
        batch.push(unsigned(
            "merchant.register",
            json!({"operator": operator_id, "merchant": id, "name": name, "rules": rules, "nonce": next_nonce()}),
            &[&operator],
        ));
    }
    submit(ledger, std::mem::take(&mut batch), &mut summary)?;

    let bar = if progress {
        progress_bar(purchases, "seeding purchases")
    } else {
        ProgressBar::hidden()
    };
    let mut refunds_due: Vec<(usize, String, u64)> = Vec::new();
    let chunk = consumers.clamp(32, 512);
    let mut m = 0u64;
    while m < purchases {
        let end = (m + chunk).min(purchases);
        for (merchant, order_id, amount) in refunds_due.drain(..) {
            let (mkey, mid, _) = &merchants[merchant];
            batch.push(unsigned(
                "refund",
                json!({"merchant": mid, "order_id": order_id, "amount": amount, "nonce": next_nonce()}),
                &[mkey],
            ));
            summary.refunds += 1;
        }
        submit(ledger, std::mem::take(&mut batch), &mut summary)?;
        // Available points as committed before this chunk, less what the chunk already spends.
        let mut spendable = std::collections::HashMap::<usize, u64>::new();
        for p in m..end {
            let c = (p % consumers) as usize;
            let mi = (p % 3) as usize;
            let (mkey, mid, rules) = &merchants[mi];
            let (ckey, cid) = &people[c];
            let amount = 500 + (p * 7919) % 20_000;
            let order_id = format!("order-{p}");
            if p == c as u64 && c % 3 != 0 {
                batch.push(unsigned(
                    "referral.accept",
                    json!({"consumer": cid, "referrer": people[c - 1].1, "nonce": next_nonce()}),
                    &[ckey],
                ));
                summary.referrals += 1;
            }
            if p >= consumers && p % 4 == 0 {
                let left = match spendable.get(&c) {
                    Some(v) => *v,
                    None => {
                        let acc = ledger.account(cid)?.unwrap_or_default();
                        let b =
                            acc.balance(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
                        b.available.saturating_sub(b.debt)
                    }
                };
                let max_discount = amount * rules.max_redeem_bps / 10_000;
                let points = left.min(max_discount * 1000 / rules.point_value_milli);
                if points >= 10 {
                    batch.push(unsigned(
                        "redeem",
                        json!({"consumer": cid, "merchant": mid, "order_id": order_id,
                               "order_amount": amount, "points": points, "nonce": next_nonce()}),
                        &[ckey, mkey],
                    ));
                    summary.redemptions += 1;
                    spendable.insert(c, left - points);
                } else {
                    spendable.insert(c, left);
                }
            }
            batch.push(unsigned(
                "purchase",
                json!({"merchant": mid, "consumer": cid, "order_id": order_id, "amount": amount, "nonce": next_nonce()}),
                &[mkey],
            ));
            summary.purchases += 1;
            if p % 25 == 7 {
                refunds_due.push((mi, order_id, amount));
            } else if p % 10 == 3 {
                refunds_due.push((mi, order_id, amount * 3 / 10));
            }
        }
        submit(ledger, std::mem::take(&mut batch), &mut summary)?;
        bar.set_position(end);
        m = end;
    }
    for (merchant, order_id, amount) in refunds_due.drain(..) {
        let (mkey, mid, _) = &merchants[merchant];
        batch.push(unsigned(
            "refund",
            json!({"merchant": mid, "order_id": order_id, "amount": amount, "nonce": next_nonce()}),
            &[mkey],
        ));
        summary.refunds += 1;
    }
    // The first two consumers link a wallet, once they are customers (a link needs a purchase).
    for (key, id) in people.iter().take(2.min(purchases as usize)) {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let n = next_nonce();
        let address = evm::address_of(&secret)?;
        let sig = evm::sign_link(&secret, &evm::link_message(&origin, id, &address, &n))?;
        batch.push(unsigned(
            "account.link_evm",
            json!({"consumer": id, "address": address, "evm_signature": sig, "nonce": n}),
            &[key],
        ));
        summary.evm_links += 1;
    }
    submit(ledger, batch, &mut summary)?;
    bar.finish_and_clear();
    ledger.checkpoint()?;
    summary.tree_size = ledger.size();
    Ok(summary)
}
