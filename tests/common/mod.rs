//! Shared test fixtures: a ledger on a real sled directory with a manual clock, and helpers
//! that sign requests as merchants, consumers and the operator.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use pointsledger::clock::{ManualClock, DAY_MS};
use pointsledger::dsse::{self, Envelope};
use pointsledger::engine::state::Account;
use pointsledger::engine::StateView;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir, Leaf, Ledger, LedgerError, Receipt};
use pointsledger::payload::ProgramRules;
use serde_json::{json, Value};
use std::sync::Arc;

pub const T0: u64 = 1_700_000_000_000;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub ledger: Ledger,
    pub operator: SigningKey,
    nonce: u64,
}

pub struct Party {
    pub key: SigningKey,
    pub id: String,
}

impl Party {
    pub fn new() -> Party {
        let key = keys::generate();
        let id = keys::public_id(&key.verifying_key());
        Party { key, id }
    }
}

pub fn rules() -> ProgramRules {
    ProgramRules {
        earn_bps: 1000,
        point_value_milli: 1000,
        max_redeem_bps: 5000,
        validity_ms: 365 * DAY_MS,
        pending_ms: 14 * DAY_MS,
        referee_discount_bps: 1000,
        referee_discount_max: 500,
        referrer_reward_points: 300,
        referrer_reward_cap: 5,
        max_points_per_order: 1_000_000,
    }
}

pub fn sign(kind: &str, payload: &Value, signers: &[&SigningKey]) -> Envelope {
    let mut env =
        dsse::sign(kind, serde_json::to_vec(payload).expect("json"), signers[0]).expect("sign");
    for k in &signers[1..] {
        env.add_signature(k).expect("cosign");
    }
    env
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        ledger::init(dir.path(), "test.pointsledger.local").expect("init");
        let clock = ManualClock::new(T0);
        let ledger = Ledger::open(dir.path(), Arc::new(clock.clone())).expect("open");
        let operator =
            keys::read_key_file(&DataDir(dir.path().to_owned()).operator_key()).expect("op key");
        Fixture {
            dir,
            clock,
            ledger,
            operator,
            nonce: 0,
        }
    }

    pub fn nonce(&mut self) -> String {
        self.nonce += 1;
        format!("n{}", self.nonce)
    }

    pub fn submit(&mut self, env: Envelope) -> Result<Receipt, LedgerError> {
        self.ledger.submit(vec![env]).remove(0)
    }

    pub fn register(&mut self, merchant: &Party, rules: &ProgramRules) -> Receipt {
        let op = keys::public_id(&self.operator.verifying_key());
        let p = json!({"operator": op, "merchant": merchant.id, "name": "Shop", "rules": rules, "nonce": self.nonce()});
        let env = sign("merchant.register", &p, &[&self.operator.clone()]);
        self.submit(env).expect("register")
    }

    pub fn purchase(
        &mut self,
        m: &Party,
        c: &Party,
        order: &str,
        amount: u64,
    ) -> Result<Receipt, LedgerError> {
        let p = json!({"merchant": m.id, "consumer": c.id, "order_id": order, "amount": amount, "nonce": self.nonce()});
        self.submit(sign("purchase", &p, &[&m.key]))
    }

    pub fn redeem(
        &mut self,
        c: &Party,
        m: &Party,
        order: &str,
        order_amount: u64,
        points: u64,
    ) -> Result<Receipt, LedgerError> {
        let p = json!({"consumer": c.id, "merchant": m.id, "order_id": order, "order_amount": order_amount, "points": points, "nonce": self.nonce()});
        self.submit(sign("redeem", &p, &[&c.key, &m.key]))
    }

    pub fn refund(&mut self, m: &Party, order: &str, amount: u64) -> Result<Receipt, LedgerError> {
        let p =
            json!({"merchant": m.id, "order_id": order, "amount": amount, "nonce": self.nonce()});
        self.submit(sign("refund", &p, &[&m.key]))
    }

    pub fn refer(&mut self, referee: &Party, referrer: &Party) -> Result<Receipt, LedgerError> {
        let p = json!({"consumer": referee.id, "referrer": referrer.id, "nonce": self.nonce()});
        self.submit(sign("referral.accept", &p, &[&referee.key]))
    }

    pub fn account(&self, p: &Party) -> Account {
        self.ledger
            .store()
            .account(&p.id)
            .expect("read")
            .unwrap_or_default()
    }

    /// (tree size, root) — what must not change when a request is refused.
    pub fn tree(&self) -> (u64, [u8; 32]) {
        let size = self.ledger.size();
        (
            size,
            pointsledger::merkle::root(size, self.ledger.store()).expect("root"),
        )
    }

    /// The debt the log's effects record for `account`: debts taken minus debts settled.
    pub fn debt_from_log(&self, account: &str) -> i64 {
        use pointsledger::engine::Reason;
        self.changes(account)
            .filter(|c| c.lot.is_none())
            .map(|c| match c.reason {
                Reason::Debt | Reason::DebtSettled => -c.delta,
                _ => 0,
            })
            .sum()
    }

    fn changes(&self, account: &str) -> impl Iterator<Item = pointsledger::engine::Change> + '_ {
        let account = account.to_owned();
        self.ledger
            .store()
            .leaves(0, self.ledger.size())
            .expect("leaves")
            .into_iter()
            .enumerate()
            .flat_map(|(i, b)| Leaf::decode(i as u64, &b).expect("leaf").effects.changes)
            .filter(move |c| c.account == account)
    }

    /// Σ of every effect delta recorded for `account` across the whole log.
    pub fn effects_sum(&self, account: &str) -> i64 {
        self.changes(account).map(|c| c.delta).sum()
    }
}

/// The high-s twin of a canonical EIP-191 signature: `(r, n − s)` with the other `v`. It
/// recovers to the same address; the ledger refuses it as not canonical (EIP-2).
pub fn high_s_twin(sig_hex: &str) -> String {
    use ethers_core::k256::ecdsa::Signature;
    let bytes = hex::decode(&sig_hex[2..]).expect("hex");
    let sig = Signature::from_slice(&bytes[..64]).expect("signature");
    let neg = -*sig.s();
    let twin = Signature::from_scalars(sig.r().to_bytes(), neg.to_bytes()).expect("twin");
    let mut out = twin.to_bytes().to_vec();
    out.push(if bytes[64] == 27 { 28 } else { 27 });
    format!("0x{}", hex::encode(out))
}

/// `sig_hex` with its last byte, `v`, replaced.
pub fn with_v(sig_hex: &str, v: u8) -> String {
    format!("{}{v:02x}", &sig_hex[..130])
}
