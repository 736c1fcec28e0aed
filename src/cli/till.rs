//! The two-party redemption as it happens at a till.
//!
//! The consumer signs a redemption on their own device (`redeem-request`), which shows it as a
//! QR code; the merchant scans it, checks it, countersigns and submits it (`redeem-accept`).
//! Neither side's key ever leaves its device, and the ledger refuses a redemption missing either
//! signature.

use super::{print_json, read_envelope};
use crate::client::Client;
use crate::clock::{Clock, SystemClock};
use crate::dsse;
use crate::keys;
use crate::payload::Payload;
use anyhow::{bail, Context, Result};
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use rand::RngCore;
use std::path::Path;

/// Signs a redemption as the consumer, saves it to `out` and prints it as a QR code.
pub(super) fn redeem_request(
    key: &Path,
    merchant: &str,
    order_id: &str,
    order_amount: u64,
    points: u64,
    expires_in: u64,
    out: &Path,
) -> Result<()> {
    let consumer_key = keys::read_key_file(key)?;
    let consumer = keys::public_id(&consumer_key.verifying_key());
    keys::parse_public_id(merchant)?;
    let mut nonce = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let expires_at = SystemClock
        .now_ms()
        .saturating_add(expires_in.saturating_mul(1000));
    let payload = serde_json::json!({
        "consumer": consumer, "merchant": merchant, "order_id": order_id,
        "order_amount": order_amount, "points": points,
        "nonce": format!("r-{}", hex::encode(nonce)), "expires_at": expires_at,
    });
    let bytes = serde_json::to_vec(&payload)?;
    Payload::parse("redeem", &bytes)?;
    let env = dsse::sign("redeem", bytes, &consumer_key)?;
    let json = env.to_json_bytes();
    std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    let code = QrCode::new(&json).context("the request is too large for a QR code")?;
    let art = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    println!("{art}");
    eprintln!(
        "redemption of {points} points on order {order_id} saved to {} (valid {expires_in} s); show the code to the merchant",
        out.display()
    );
    Ok(())
}

/// Checks a consumer's redemption, countersigns it as the merchant and submits it.
pub(super) fn redeem_accept(server: &str, key: &Path, envelope: &Path) -> Result<()> {
    let merchant_key = keys::read_key_file(key)?;
    let me = keys::public_id(&merchant_key.verifying_key());
    let mut env = read_envelope(envelope)?;
    if env.kind() != "redeem" {
        bail!("this is a {} request, not a redemption", env.kind());
    }
    env.verify()
        .context("the consumer's signature does not verify")?;
    let Payload::Redeem(p) = Payload::parse("redeem", env.payload())? else {
        bail!("not a redemption payload");
    };
    if p.merchant != me {
        bail!(
            "this redemption is for merchant {}, not this key ({me})",
            p.merchant
        );
    }
    if !env.signers().any(|s| s == p.consumer) {
        bail!(
            "the redemption is not signed by its consumer {}",
            p.consumer
        );
    }
    if p.expires_at.is_some_and(|t| t <= SystemClock.now_ms()) {
        bail!("the redemption request has expired; ask the consumer for a new one");
    }
    env.add_signature(&merchant_key)?;
    let client = Client::new(server)?;
    let receipt = super::backend::runtime()?.block_on(client.submit(&env))?;
    print_json(&receipt)
}
