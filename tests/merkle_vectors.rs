//! Runs every RFC 6962 inclusion and consistency vector under tests/vectors/rfc6962 (the test data
//! of transparency-dev/merkle) through the crate's verifiers, and checks that each is accepted or
//! rejected as its `wantErr` says. The folders are walked, not listed, and the number of vectors
//! run is checked against the number of files found, so a vector cannot be skipped silently.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use base64::prelude::*;
use pointsledger::merkle::{self, Hash};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionVector {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyVector {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

fn vectors_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/rfc6962")
        .join(kind)
}

/// Every file under `dir`, recursively, sorted, whatever its extension.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn decode(field: &str) -> Vec<u8> {
    BASE64_STANDARD
        .decode(field)
        .unwrap_or_else(|e| panic!("bad base64 {field:?}: {e}"))
}

/// Decodes a root or proof hash into a [`Hash`].
///
/// Some rejecting vectors (and one accepting one, "sizes are equal (one) and proof is empty")
/// carry roots or proof hashes that are not 32 bytes: garbage added to a proof hash, "don't care"
/// roots. The typed API cannot hold them, and refusing them at decoding would leave the verifier
/// untested on those vectors. A verifier only compares roots and only feeds proof hashes into
/// SHA-256, so such a field is mapped to SHA-256 of a tag and its bytes: equal fields stay equal,
/// different fields stay different, and none equals a real tree hash. The verdict is then the one
/// the raw bytes get from the reference verifier.
fn hash(field: &str) -> Hash {
    let bytes = decode(field);
    match merkle::hash_from_slice(&bytes) {
        Ok(h) => h,
        Err(_) => {
            let mut h = Sha256::new();
            h.update(b"not a 32-byte hash:");
            h.update(&bytes);
            h.finalize().into()
        }
    }
}

/// Decodes a leaf hash. Unlike a root, its length is an input check of the verifier (the
/// reference refuses "leafHash has unexpected size"); here the parameter type is a 32-byte hash,
/// so a leaf hash of any other length is refused at decoding, before the verifier is called.
fn leaf_hash(field: &str) -> Result<Hash, merkle::MerkleError> {
    merkle::hash_from_slice(&decode(field))
}

fn proof(p: &Option<Vec<String>>) -> Vec<Hash> {
    p.iter().flatten().map(|s| hash(s)).collect()
}

fn run_inclusion(path: &Path) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: InclusionVector = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let got = leaf_hash(&v.leaf_hash).and_then(|leaf| {
        merkle::verify_inclusion(
            v.leaf_idx,
            v.tree_size,
            &leaf,
            &proof(&v.proof),
            &hash(&v.root),
        )
    });
    if got.is_err() == v.want_err {
        Ok(())
    } else {
        Err(format!("{}: wantErr={} got {got:?}", v.desc, v.want_err))
    }
}

fn run_consistency(path: &Path) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: ConsistencyVector = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let got = merkle::verify_consistency(
        v.size1,
        v.size2,
        &hash(&v.root1),
        &hash(&v.root2),
        &proof(&v.proof),
    );
    if got.is_err() == v.want_err {
        Ok(())
    } else {
        Err(format!("{}: wantErr={} got {got:?}", v.desc, v.want_err))
    }
}

fn run_all(kind: &str, run: fn(&Path) -> Result<(), String>) -> usize {
    let files = walk(&vectors_dir(kind));
    assert!(!files.is_empty(), "no {kind} vectors found");
    let mut ran = 0;
    let mut failures = Vec::new();
    for f in &files {
        assert_eq!(
            f.extension().and_then(|e| e.to_str()),
            Some("json"),
            "unexpected file {}",
            f.display()
        );
        if let Err(e) = run(f) {
            failures.push(format!("{}: {e}", f.display()));
        }
        ran += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(ran, files.len());
    ran
}

#[test]
fn inclusion_vectors() {
    let n = run_all("inclusion", run_inclusion);
    println!("{n} inclusion vectors");
}

#[test]
fn consistency_vectors() {
    let n = run_all("consistency", run_consistency);
    println!("{n} consistency vectors");
}

#[test]
fn every_vector_file_is_run() {
    let total = walk(&vectors_dir("")).len();
    let parts = walk(&vectors_dir("inclusion")).len() + walk(&vectors_dir("consistency")).len();
    assert!(total > 0);
    assert_eq!(
        total, parts,
        "vector files outside inclusion/ and consistency/"
    );
}

/// The crate verifies with its own RFC 9162 code; this records how `tlog_tiles`' verifiers
/// (`check_record`, `check_tree`) judge the same vectors, so a difference is known, not guessed.
#[test]
fn tlog_tiles_verdicts_on_the_vectors() {
    use tlog_tiles::tlog;
    let th = |s: &str| tlog::Hash(hash(s));
    let mut disagree = Vec::new();
    for f in walk(&vectors_dir("inclusion")) {
        let v: InclusionVector = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let p: Vec<tlog::Hash> = proof(&v.proof).into_iter().map(tlog::Hash).collect();
        let got = std::panic::catch_unwind(|| match leaf_hash(&v.leaf_hash) {
            Ok(leaf) => {
                tlog::check_record(&p, v.tree_size, th(&v.root), v.leaf_idx, tlog::Hash(leaf))
                    .is_err()
            }
            Err(_) => true,
        });
        if got.as_ref().ok() != Some(&v.want_err) {
            disagree.push(format!("{} {got:?}", f.display()));
        }
    }
    for f in walk(&vectors_dir("consistency")) {
        let v: ConsistencyVector = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let p: Vec<tlog::Hash> = proof(&v.proof).into_iter().map(tlog::Hash).collect();
        let got = std::panic::catch_unwind(|| {
            tlog::check_tree(&p, v.size2, th(&v.root2), v.size1, th(&v.root1)).is_err()
        });
        if got.as_ref().ok() != Some(&v.want_err) {
            disagree.push(format!("{} {got:?}", f.display()));
        }
    }
    assert!(
        disagree.is_empty(),
        "tlog_tiles disagrees:\n{}",
        disagree.join("\n")
    );
}
