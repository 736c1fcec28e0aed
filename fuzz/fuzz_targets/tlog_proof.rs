//! c2sp.org/tlog-proof receipts as `pointsledger verify` reads them: parsing, then the full
//! verification (checkpoint signature, extra line, inclusion proof) for what parses.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use pointsledger::checkpoint::{self, TlogProof};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = TlogProof::parse(text) {
        // What parses must print back to the same text.
        assert_eq!(p.to_text(), text, "tlog-proof round trip");
        let leaf = p.extra.clone().unwrap_or_default();
        let _ = checkpoint::verify_tlog_proof(&p, common::verifier_key(), &leaf);
    }
});
