//! A request body as the write path receives it: DSSE decoding, then (for what decodes) the
//! strict signature check and the payload of the kind the envelope names. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsledger::dsse;
use pointsledger::payload::Payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = dsse::parse(data) {
        let _ = env.verify();
        let _ = Payload::parse(env.kind(), env.payload());
        // What decodes must encode to something that decodes to the same envelope.
        let again = dsse::parse(&env.to_json_bytes()).expect("re-encoded envelope decodes");
        assert_eq!(again.payload(), env.payload());
        assert_eq!(again.kind(), env.kind());
    }
});
