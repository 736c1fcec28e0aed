//! Signed checkpoint notes and verifier keys as an auditor receives them.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use pointsledger::checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = checkpoint::open_checkpoint(text, common::verifier_key());
    let _ = checkpoint::parse_verifier_key(text);
    // A note may also name its own key on its first line.
    if let Some((key, note)) = text.split_once('\n') {
        let _ = checkpoint::open_checkpoint(note, key);
    }
});
