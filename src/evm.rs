//! Binding an EVM wallet address to a consumer account (`account.link_evm`).
//!
//! The consumer proves control of the address with an EIP-191 `personal_sign` signature over
//! [`link_message`]. The message names the log's origin, the consumer key, the address and the
//! request's nonce, so a signature cannot be replayed on another log, for another consumer, or
//! twice. Recovery uses `ethers-core`, the one EVM crypto dependency of the ledger core.

use ethers_core::types::{Address, Signature};
use std::str::FromStr;

/// Why an EIP-191 link proof was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EvmError {
    /// The address is not `0x` followed by 40 hex digits.
    #[error("malformed EVM address {0:?}: expected 0x followed by 40 hex digits")]
    BadAddress(String),
    /// The signature is not `0x` followed by 130 hex digits (r, s, v).
    #[error("malformed EIP-191 signature: expected 0x followed by 130 hex digits")]
    BadSignature,
    /// The signature is well formed but recovers to another address.
    #[error("EIP-191 signature recovers to {recovered}, not {claimed}")]
    WrongSigner {
        /// The address named in the request.
        claimed: String,
        /// The address the signature actually recovers to.
        recovered: String,
    },
}

/// Parses an address and returns its canonical form: `0x` and 40 lowercase hex digits.
pub fn normalize_address(s: &str) -> Result<String, EvmError> {
    let hex_part = s
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| EvmError::BadAddress(s.chars().take(64).collect()))?;
    Ok(format!("0x{}", hex_part.to_ascii_lowercase()))
}

/// Checks that a signature is `0x` followed by 130 hex digits (r, s, v).
pub fn check_signature_format(signature_hex: &str) -> Result<(), EvmError> {
    signature_hex
        .strip_prefix("0x")
        .filter(|h| h.len() == 130 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|_| ())
        .ok_or(EvmError::BadSignature)
}

/// The exact text the EVM wallet signs to link `address` to `consumer` on the log `origin`.
pub fn link_message(origin: &str, consumer: &str, address: &str, nonce: &str) -> String {
    format!(
        "pointsledger account link\norigin: {origin}\nconsumer: {consumer}\naddress: {address}\nnonce: {nonce}\n"
    )
}

/// Checks that `signature_hex` is an EIP-191 signature of `message` by `address`.
pub fn verify_link(address: &str, message: &str, signature_hex: &str) -> Result<(), EvmError> {
    let address = normalize_address(address)?;
    let sig_hex = signature_hex
        .strip_prefix("0x")
        .filter(|h| h.len() == 130)
        .ok_or(EvmError::BadSignature)?;
    let signature = Signature::from_str(sig_hex).map_err(|_| EvmError::BadSignature)?;
    let recovered = signature
        .recover(message)
        .map_err(|_| EvmError::BadSignature)?;
    let claimed = Address::from_str(&address).map_err(|_| EvmError::BadAddress(address.clone()))?;
    if recovered != claimed {
        return Err(EvmError::WrongSigner {
            claimed: address,
            recovered: format!("{recovered:#x}"),
        });
    }
    Ok(())
}

fn secp_key(secret: &[u8; 32]) -> Result<ethers_core::k256::ecdsa::SigningKey, EvmError> {
    ethers_core::k256::ecdsa::SigningKey::from_bytes(secret.into())
        .map_err(|_| EvmError::BadSignature)
}

/// The address of a secp256k1 secret key, `0x` and 40 lowercase hex digits.
pub fn address_of(secret: &[u8; 32]) -> Result<String, EvmError> {
    let address = ethers_core::utils::secret_key_to_address(&secp_key(secret)?);
    Ok(format!("{address:#x}"))
}

/// Signs `message` EIP-191 style with a secp256k1 secret key; for the demo, tools and tests.
pub fn sign_link(secret: &[u8; 32], message: &str) -> Result<String, EvmError> {
    let key = secp_key(secret)?;
    let digest = ethers_core::utils::hash_message(message);
    let (sig, recid) = key
        .sign_prehash_recoverable(digest.as_bytes())
        .map_err(|_| EvmError::BadSignature)?;
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    Ok(format!("0x{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            verify_link(&addr, &msg, "0x12"),
            Err(EvmError::BadSignature)
        );
    }
}
