//! The RFC 6962 proof verifiers on arbitrary input (they must return errors, never panic),
//! and on a real tree built from the input: every honest proof verifies, and a proof with one
//! hash flipped does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsledger::merkle::{self, Hash, MemoryHashes};

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary: two numbers, two roots, then the proof's hashes.
    let (a, b) = (u64_at(data, 0), u64_at(data, 8));
    let hashes: Vec<Hash> = data
        .get(16..)
        .unwrap_or_default()
        .chunks_exact(32)
        .map(|c| merkle::hash_from_slice(c).expect("32 bytes"))
        .collect();
    if let [r1, r2, proof @ ..] = hashes.as_slice() {
        let _ = merkle::verify_inclusion(a, b, r1, proof, r2);
        let _ = merkle::verify_consistency(a, b, r1, r2, proof);
    }

    // A real tree of up to 300 leaves, and proofs between points the input picks.
    let size = (a % 300) + 1;
    let mut tree = MemoryHashes::new();
    for i in 0..size {
        tree.append(&merkle::leaf_hash(&i.to_be_bytes()))
            .expect("append");
    }
    let root = merkle::root(size, &tree).expect("root");
    let index = b % size;
    let leaf = merkle::leaf_hash(&index.to_be_bytes());
    let mut proof = merkle::prove_inclusion(size, index, &tree).expect("prove inclusion");
    merkle::verify_inclusion(index, size, &leaf, &proof, &root).expect("honest inclusion proof");
    if let Some(h) = proof.first_mut() {
        h[0] ^= 1;
        assert!(merkle::verify_inclusion(index, size, &leaf, &proof, &root).is_err());
    }
    let old = (b % size) + 1;
    let old_root = merkle::root(old, &tree).expect("old root");
    let mut proof = merkle::prove_consistency(old, size, &tree).expect("prove consistency");
    merkle::verify_consistency(old, size, &old_root, &root, &proof)
        .expect("honest consistency proof");
    if let Some(h) = proof.last_mut() {
        h[31] ^= 0x80;
        assert!(merkle::verify_consistency(old, size, &old_root, &root, &proof).is_err());
    }
});
