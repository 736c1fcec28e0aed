//! Payload decoding for every kind: the first byte picks the kind, the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsledger::payload::{Payload, KINDS};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(pick) % KINDS.len()];
    if let Ok(p) = Payload::parse(kind, bytes) {
        assert_eq!(p.kind(), kind);
        let _ = p.required_signers();
    }
});
