//! What several fuzz targets share.

/// A fixed log key's verifier key (origin `fuzz.pointsledger.local`), so that notes naming it
/// get as far as the signature check.
pub fn verifier_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        pointsledger::checkpoint::verifier_key("fuzz.pointsledger.local", &key.verifying_key())
    })
}
