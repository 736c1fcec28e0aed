//! Binding an EVM wallet address to a consumer account (`account.link_evm`).
//!
//! The consumer proves control of the address with an EIP-191 `personal_sign` signature over
//! [`link_message`]. The message names the log's origin, the consumer key, the address and the
//! request's nonce, so a signature cannot be replayed on another log, for another consumer, or
//! twice. Recovery uses `ethers-core`, the one EVM crypto dependency of the ledger core.
//!
//! Both fields have exactly one accepted spelling: lowercase hex, `v` of 27 or 28 and a low `s`
//! (EIP-2). A secp256k1 signature `(r, s, v)` has a twin `(r, n − s, v ^ 1)` that recovers to the
//! same address, and `v` has several conventions (0/1, 27/28, EIP-155); accepting more than one
//! form would let one link be written as several byte-different, equally valid envelopes.

use ethers_core::k256::ecdsa::Signature as EcdsaSignature;
use ethers_core::types::{Address, Signature};
use std::str::FromStr;

/// Why an EIP-191 link proof was refused.
///
/// [`BadAddress`](EvmError::BadAddress) and [`BadSignature`](EvmError::BadSignature) are
/// malformed fields (`malformed_payload`); the other two are a well-formed proof that does not
/// prove the link (`bad_evm_signature`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EvmError {
    /// The address is not `0x` followed by 40 lowercase hex digits.
    #[error("malformed EVM address {0:?}: expected 0x followed by 40 lowercase hex digits")]
    BadAddress(String),
    /// The signature is not in its one canonical form; the reason says which part is wrong.
    #[error("malformed EIP-191 signature: {0}")]
    BadSignature(&'static str),
    /// The signature is well formed but no public key recovers from it.
    #[error("the EIP-191 signature recovers to no address")]
    Unrecoverable,
    /// The signature is well formed but recovers to another address.
    #[error("EIP-191 signature recovers to {recovered}, not {claimed}")]
    WrongSigner {
        /// The address named in the request.
        claimed: String,
        /// The address the signature actually recovers to.
        recovered: String,
    },
}

impl EvmError {
    /// True for a field that is not in its canonical form (as opposed to a proof that fails).
    pub fn is_malformed(&self) -> bool {
        matches!(self, EvmError::BadAddress(_) | EvmError::BadSignature(_))
    }
}

fn lower_hex(s: &str, digits: usize) -> Option<&str> {
    s.strip_prefix("0x")
        .filter(|h| h.len() == digits && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Checks that an address is in its canonical form: `0x` and 40 lowercase hex digits (an
/// EIP-55 mixed-case address must be lowercased by the client).
pub fn check_address(s: &str) -> Result<(), EvmError> {
    lower_hex(s, 40)
        .map(|_| ())
        .ok_or_else(|| EvmError::BadAddress(s.chars().take(64).collect()))
}

/// Parses a signature in its canonical form: `0x` and 130 lowercase hex digits `r ‖ s ‖ v`,
/// with `1 ≤ r < n`, `1 ≤ s ≤ n/2` (low-s, EIP-2) and `v` 27 or 28.
fn parse_signature(signature_hex: &str) -> Result<Signature, EvmError> {
    let hex_part = lower_hex(signature_hex, 130).ok_or(EvmError::BadSignature(
        "expected 0x followed by 130 lowercase hex digits (r, s, v)",
    ))?;
    let bytes = hex::decode(hex_part)
        .map_err(|_| EvmError::BadSignature("expected 130 lowercase hex digits"))?;
    let v = bytes[64];
    if v != 27 && v != 28 {
        return Err(EvmError::BadSignature("v must be 27 or 28"));
    }
    let ecdsa = EcdsaSignature::from_slice(&bytes[..64])
        .map_err(|_| EvmError::BadSignature("r and s must be between 1 and n - 1"))?;
    if ecdsa.normalize_s().is_some() {
        return Err(EvmError::BadSignature(
            "s must be at most n/2 (low-s, EIP-2); use the twin (r, n - s, v xor 1)",
        ));
    }
    Signature::from_str(hex_part).map_err(|_| EvmError::BadSignature("unreadable r, s, v"))
}

/// Checks that a signature is in its canonical form (see [`verify_link`]) without recovering it.
pub fn check_signature_format(signature_hex: &str) -> Result<(), EvmError> {
    parse_signature(signature_hex).map(|_| ())
}

/// The exact text the EVM wallet signs to link `address` to `consumer` on the log `origin`.
pub fn link_message(origin: &str, consumer: &str, address: &str, nonce: &str) -> String {
    format!(
        "pointsledger account link\norigin: {origin}\nconsumer: {consumer}\naddress: {address}\nnonce: {nonce}\n"
    )
}

/// Checks that `signature_hex` is the canonical EIP-191 signature of `message` by `address`:
/// both in canonical form ([`check_address`], low-s, `v` 27/28), and the signature recovers to
/// the address.
pub fn verify_link(address: &str, message: &str, signature_hex: &str) -> Result<(), EvmError> {
    check_address(address)?;
    let signature = parse_signature(signature_hex)?;
    let recovered = signature
        .recover(message)
        .map_err(|_| EvmError::Unrecoverable)?;
    let claimed = Address::from_str(address).map_err(|_| EvmError::BadAddress(address.into()))?;
    if recovered != claimed {
        return Err(EvmError::WrongSigner {
            claimed: address.to_owned(),
            recovered: format!("{recovered:#x}"),
        });
    }
    Ok(())
}

fn secp_key(secret: &[u8; 32]) -> Result<ethers_core::k256::ecdsa::SigningKey, EvmError> {
    ethers_core::k256::ecdsa::SigningKey::from_bytes(secret.into())
        .map_err(|_| EvmError::BadSignature("not a secp256k1 secret key"))
}

/// The address of a secp256k1 secret key, `0x` and 40 lowercase hex digits.
pub fn address_of(secret: &[u8; 32]) -> Result<String, EvmError> {
    let address = ethers_core::utils::secret_key_to_address(&secp_key(secret)?);
    Ok(format!("{address:#x}"))
}

/// Signs `message` EIP-191 style with a secp256k1 secret key, in the canonical form (low-s,
/// `v` = 27 + recovery id); for the demo, tools and tests.
pub fn sign_link(secret: &[u8; 32], message: &str) -> Result<String, EvmError> {
    let key = secp_key(secret)?;
    let digest = ethers_core::utils::hash_message(message);
    let (mut sig, recid) = key
        .sign_prehash_recoverable(digest.as_bytes())
        .map_err(|_| EvmError::BadSignature("signing failed"))?;
    let mut recid = recid.to_byte();
    if let Some(low) = sig.normalize_s() {
        sig = low;
        recid ^= 1;
    }
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid);
    Ok(format!("0x{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other valid-looking spelling of the same signature: `(r, n − s)` with the other `v`.
    fn high_s_twin(sig_hex: &str) -> String {
        let bytes = hex::decode(&sig_hex[2..]).expect("hex");
        let sig = EcdsaSignature::from_slice(&bytes[..64]).expect("signature");
        let neg = -*sig.s();
        let twin = EcdsaSignature::from_scalars(sig.r().to_bytes(), neg.to_bytes()).expect("twin");
        let mut out = twin.to_bytes().to_vec();
        out.push(if bytes[64] == 27 { 28 } else { 27 });
        format!("0x{}", hex::encode(out))
    }

    fn with_v(sig_hex: &str, v: u8) -> String {
        format!("{}{:02x}", &sig_hex[..130], v)
    }

    #[test]
    fn sign_then_verify_and_refuse_other_address() {
        let addr = address_of(&[7u8; 32]).expect("address");
        let msg = link_message("o", "c", &addr, "n1");
        let sig = sign_link(&[7u8; 32], &msg).expect("sign");
        verify_link(&addr, &msg, &sig).expect("verifies");
        let other = "0x000000000000000000000000000000000000dead";
        assert!(matches!(
            verify_link(other, &msg, &sig),
            Err(EvmError::WrongSigner { .. })
        ));
        assert!(verify_link(&addr, "another message", &sig).is_err());
        assert!(matches!(
            verify_link(&addr, &msg, "0x12"),
            Err(EvmError::BadSignature(_))
        ));
    }

    /// Every other spelling of a valid link proof is refused as malformed, although each of
    /// them recovers to the same address; only the canonical one verifies.
    #[test]
    fn one_canonical_form_per_signature() {
        for seed in 1..=40u8 {
            let secret = [seed; 32];
            let addr = address_of(&secret).expect("address");
            let msg = link_message("o", "c", &addr, "n1");
            let sig = sign_link(&secret, &msg).expect("sign");
            verify_link(&addr, &msg, &sig).expect("the canonical form verifies");
            let v = u8::from_str_radix(&sig[130..], 16).expect("v");
            let recid = v - 27;
            let twin = high_s_twin(&sig);
            let claimed = Address::from_str(&addr).expect("address");
            // The variants are real: ethers recovers the same address from them.
            for other in [with_v(&sig, recid), with_v(&sig, 35 + recid), twin.clone()] {
                let s = Signature::from_str(&other[2..]).expect("parse");
                assert_eq!(s.recover(msg.as_str()).expect("recovers"), claimed);
            }
            let variants = [
                sig.to_uppercase().replacen("0X", "0x", 1),
                with_v(&sig, 0),
                with_v(&sig, 1),
                with_v(&sig, 35),
                with_v(&sig, 36),
                twin,
            ];
            for bad in variants {
                assert!(
                    matches!(
                        verify_link(&addr, &msg, &bad),
                        Err(EvmError::BadSignature(_))
                    ),
                    "{bad} accepted"
                );
                assert!(check_signature_format(&bad).is_err());
            }
            let upper = format!("0x{}", addr[2..].to_uppercase());
            assert!(matches!(
                verify_link(&upper, &msg, &sig),
                Err(EvmError::BadAddress(_))
            ));
        }
        // r = 0 and s = 0 are not signatures at all.
        let zero = format!("0x{}1b", "0".repeat(128));
        assert!(matches!(
            check_signature_format(&zero),
            Err(EvmError::BadSignature(_))
        ));
    }
}
