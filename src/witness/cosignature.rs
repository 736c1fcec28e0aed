//! c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1`: a witness's statement that a checkpoint
//! is the largest consistent tree head it has seen for that log, as of a time.
//!
//! - A cosigner key is a signed-note verifier key with signature type 0x04:
//!   `name+<8 hex key ID>+base64(0x04 || pubkey)`, key ID = the first 4 bytes of
//!   SHA-256(name || 0x0A || 0x04 || pubkey).
//! - A cosignature is a note signature line `— name base64(key ID || timestamp || signature)`,
//!   with a big-endian `u64` POSIX timestamp and an Ed25519 signature over
//!   `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint body.
//!
//! The signature lines are parsed and checked by `signed_note`, with the cosigner key plugged in
//! through its `Signer` and `Verifier` traits, so a cosigned checkpoint is one note that carries
//! the log's signature and the witnesses'.

use base64::prelude::*;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, NoteError, VerifierList};
use thiserror::Error;

/// The signed-note signature type byte of an Ed25519 `cosignature/v1` key.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp a cosignature may carry (the spec's bound, 2^63 - 1).
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Length of a cosignature after its key ID: timestamp and Ed25519 signature.
const TIMESTAMPED_LEN: usize = 8 + 64;

/// Why a cosigner key or a set of cosignatures is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CosignatureError {
    /// The cosigner key string is not `name+<8 hex>+<base64>` in canonical form.
    #[error("malformed witness key: {0}")]
    MalformedKey(&'static str),
    /// The key names a signature type other than `cosignature/v1` (0x04).
    #[error("witness key has signature type {0:#04x}, not cosignature/v1 (0x04)")]
    UnsupportedAlgorithm(u8),
    /// The key ID in the key string is not the one its name and public key imply.
    #[error("witness key ID does not match its name and public key")]
    KeyIdMismatch,
    /// The public key is a small-order point, under which signatures prove nothing.
    #[error("witness key is a weak (small-order) Ed25519 key")]
    WeakKey,
    /// The cosigner name is not a valid signed-note key name.
    #[error("witness name {0:?} is not a valid key name")]
    InvalidName(String),
    /// The note is not a well-formed signed note.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The same public key was given twice (under one name or two): one witness counted twice
    /// would let a single cosignature stand for two in a quorum.
    #[error("witness key {0} is given more than once: each witness counts once toward a quorum")]
    DuplicateKey(String),
    /// Fewer valid cosignatures than the quorum asks for.
    #[error(
        "{valid} valid witness cosignatures, {quorum} required (missing: {missing}; bad: {bad})",
        missing = list(.missing),
        bad = list(.bad)
    )]
    NoQuorum {
        /// Cosignatures that verified.
        valid: usize,
        /// Cosignatures required.
        quorum: usize,
        /// Witnesses with no cosignature on the note.
        missing: Vec<String>,
        /// Witnesses whose cosignature line is there but does not verify.
        bad: Vec<String>,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A witness's public identity: its name and Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    /// The cosigner name, by convention a schema-less URL.
    pub name: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl CosignerKey {
    /// `0x04 || pubkey`, the key as the key ID hashes it.
    fn encoded(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = ALG_COSIGNATURE_V1;
        out[1..].copy_from_slice(self.key.as_bytes());
        out
    }

    /// The signed-note key ID of a `cosignature/v1` key.
    pub fn key_id(&self) -> u32 {
        signed_note::key_id(&self.name, &self.encoded())
    }

    /// The key string `name+<8 hex key ID>+base64(0x04 || pubkey)`.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id(),
            BASE64_STANDARD.encode(self.encoded())
        )
    }

    /// Parses a key string strictly: exactly the canonical form [`CosignerKey::vkey`] produces,
    /// signature type 0x04, a matching key ID, a valid curve point, and not a weak key (the
    /// rules of [`crate::checkpoint::parse_verifier_key`], for another type byte).
    pub fn parse(s: &str) -> Result<CosignerKey, CosignatureError> {
        use crate::checkpoint::CheckpointError as E;
        let (name, key) =
            crate::checkpoint::parse_ed25519_key(s, ALG_COSIGNATURE_V1).map_err(|e| match e {
                E::UnsupportedKeyAlgorithm(alg) => CosignatureError::UnsupportedAlgorithm(alg),
                E::KeyIdMismatch => CosignatureError::KeyIdMismatch,
                E::WeakKey => CosignatureError::WeakKey,
                E::MalformedVerifierKey(why) => CosignatureError::MalformedKey(why),
                _ => CosignatureError::MalformedKey("not a key"),
            })?;
        Ok(CosignerKey { name, key })
    }
}

/// The bytes a `cosignature/v1` signs: the header line, the time line and the checkpoint body
/// (with its final newline, without signature lines).
pub fn signed_message(body: &[u8], time: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(body);
    msg
}

/// A witness's signing identity.
pub struct Cosigner {
    name: String,
    key: SigningKey,
}

impl Cosigner {
    /// A cosigner named `name` (a valid key name) signing with `key`.
    pub fn new(name: &str, key: SigningKey) -> Result<Cosigner, CosignatureError> {
        if !crate::checkpoint::is_valid_name(name) {
            return Err(CosignatureError::InvalidName(name.to_owned()));
        }
        Ok(Cosigner {
            name: name.to_owned(),
            key,
        })
    }

    /// The public identity others verify with.
    pub fn public(&self) -> CosignerKey {
        CosignerKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Adds this cosigner's signature, timestamped `time`, to `note` (replacing an earlier one
    /// by the same key) and returns the new signature line, newline included.
    pub fn cosign(&self, note: &mut Note, time: u64) -> Result<String, CosignatureError> {
        let signer = Timed {
            cosigner: self,
            id: self.public().key_id(),
            time: time.min(MAX_TIMESTAMP),
        };
        note.add_sigs(&[&signer])
            .map_err(|e| CosignatureError::MalformedNote(e.to_string()))?;
        let text = String::from_utf8(note.to_bytes())
            .map_err(|e| CosignatureError::MalformedNote(e.to_string()))?;
        // `add_sigs` puts new signatures last.
        let line = text
            .trim_end_matches('\n')
            .rsplit('\n')
            .next()
            .unwrap_or("");
        Ok(format!("{line}\n"))
    }
}

/// A cosigner at a fixed time, as `signed_note` signs.
struct Timed<'a> {
    cosigner: &'a Cosigner,
    id: u32,
    time: u64,
}

impl signed_note::Signer for Timed<'_> {
    fn name(&self) -> &str {
        &self.cosigner.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let sig = self.cosigner.key.sign(&signed_message(msg, self.time));
        let mut out = Vec::with_capacity(TIMESTAMPED_LEN);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A cosigner key as `signed_note` verifies with.
struct CosignatureVerifier {
    key: CosignerKey,
    id: u32,
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.key.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = timestamped(sig) else {
            return false;
        };
        self.key
            .key
            .verify_strict(&signed_message(msg, time), &sig)
            .is_ok()
    }
}

/// Splits a cosignature (after its key ID) into its timestamp and signature.
fn timestamped(sig: &[u8]) -> Option<(u64, Signature)> {
    if sig.len() != TIMESTAMPED_LEN {
        return None;
    }
    let (time, sig) = sig.split_at(8);
    let time = u64::from_be_bytes(time.try_into().ok()?);
    if time > MAX_TIMESTAMP {
        return None;
    }
    Some((time, Signature::from_slice(sig).ok()?))
}

/// One witness's valid cosignature on a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness.
    pub name: String,
    /// When it cosigned (POSIX seconds).
    pub time: u64,
}

/// What one witness's line on a note says.
enum Finding {
    Valid(u64),
    Missing,
    Bad,
}

fn find(note: &Note, witness: &CosignerKey) -> Result<Finding, CosignatureError> {
    let id = witness.key_id();
    let known = VerifierList::new(vec![Box::new(CosignatureVerifier {
        key: witness.clone(),
        id,
    })]);
    match note.verify(&known) {
        Ok((verified, _)) => {
            let time = verified
                .iter()
                .find_map(|s| timestamped(s.signature()))
                .map_or(0, |(t, _)| t);
            Ok(Finding::Valid(time))
        }
        Err(NoteError::UnverifiedNote) => Ok(Finding::Missing),
        Err(NoteError::InvalidSignature { .. }) => Ok(Finding::Bad),
        Err(e) => Err(CosignatureError::MalformedNote(e.to_string())),
    }
}

/// Checks one signature line (as a witness answers it) against `witness` over the body of
/// `note`, whatever other lines the note carries.
pub fn check_line(
    note: &str,
    line: &str,
    witness: &CosignerKey,
) -> Result<Cosigned, CosignatureError> {
    let malformed = |e: NoteError| CosignatureError::MalformedNote(e.to_string());
    let body = Note::from_bytes(note.as_bytes()).map_err(malformed)?;
    let sig = signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes())
        .map_err(malformed)?;
    let alone = Note::new(body.text(), &[sig]).map_err(malformed)?;
    match find(&alone, witness)? {
        Finding::Valid(time) => Ok(Cosigned {
            name: witness.name.clone(),
            time,
        }),
        Finding::Missing => Err(CosignatureError::NoQuorum {
            valid: 0,
            quorum: 1,
            missing: vec![witness.name.clone()],
            bad: vec![],
        }),
        Finding::Bad => Err(CosignatureError::NoQuorum {
            valid: 0,
            quorum: 1,
            missing: vec![],
            bad: vec![witness.name.clone()],
        }),
    }
}

/// Refuses a list of witnesses that names one public key twice, whatever the names: a quorum
/// counts witnesses, and a witness is its key.
pub fn check_distinct(witnesses: &[CosignerKey]) -> Result<(), CosignatureError> {
    let mut seen = std::collections::HashSet::new();
    match witnesses.iter().find(|w| !seen.insert(w.key.to_bytes())) {
        Some(twice) => Err(CosignatureError::DuplicateKey(twice.vkey())),
        None => Ok(()),
    }
}

/// Checks the cosignatures on a signed note against `witnesses`: returns the valid ones when at
/// least `quorum` witnesses cosigned, and otherwise says which are missing and which are bad.
/// Lines by keys not in `witnesses` are ignored; a list that names a key twice is refused
/// ([`check_distinct`]). The note's other signatures (the log's) are checked by
/// [`crate::checkpoint::open_checkpoint`], not here.
pub fn check_quorum(
    note: &str,
    witnesses: &[CosignerKey],
    quorum: usize,
) -> Result<Vec<Cosigned>, CosignatureError> {
    check_distinct(witnesses)?;
    let parsed = Note::from_bytes(note.as_bytes())
        .map_err(|e| CosignatureError::MalformedNote(e.to_string()))?;
    let (mut valid, mut missing, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for w in witnesses {
        match find(&parsed, w)? {
            Finding::Valid(time) => valid.push(Cosigned {
                name: w.name.clone(),
                time,
            }),
            Finding::Missing => missing.push(w.name.clone()),
            Finding::Bad => bad.push(w.name.clone()),
        }
    }
    if valid.len() < quorum {
        return Err(CosignatureError::NoQuorum {
            valid: valid.len(),
            quorum,
            missing,
            bad,
        });
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "example.com/log\n5\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n";

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
    }

    fn note_with(cosigners: &[&Cosigner], time: u64) -> String {
        let mut note = Note::new(BODY.as_bytes(), &[]).expect("note");
        for c in cosigners {
            c.cosign(&mut note, time).expect("cosign");
        }
        String::from_utf8(note.to_bytes()).expect("utf-8")
    }

    /// A key published by a running witness and the key ID Go's
    /// `transparency-dev/formats/note` computes for it: the key ID hashes the 0x04 type byte.
    #[test]
    fn a_published_witness_key_parses_with_its_key_id() {
        let vkey = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let key = CosignerKey::parse(vkey).expect("parses");
        assert_eq!(key.name, "remora.n621.de");
        assert_eq!(key.key_id(), 0xda77ade7);
        assert_eq!(key.vkey(), vkey);
    }

    /// The timestamp sits big-endian after the key ID: the same bytes Go's `CoSigV1Timestamp`
    /// reads as 1727964367 in transparency-dev/formats' tests.
    #[test]
    fn the_timestamp_is_read_as_go_reads_it() {
        let line = BASE64_STANDARD
            .decode("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==")
            .expect("base64");
        let (time, _) = timestamped(&line[4..]).expect("a timestamped signature");
        assert_eq!(time, 1_727_964_367);
        // A signed-note Ed25519 signature (64 bytes after the key ID) is not a cosignature.
        let plain = BASE64_STANDARD
            .decode("eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY=")
            .expect("base64");
        assert!(timestamped(&plain[4..]).is_none());
    }

    /// The signed message is exactly the spec's: two header lines, then the body.
    #[test]
    fn the_signed_message_is_the_specs() {
        let msg = signed_message(b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1679315147);
        assert_eq!(
            String::from_utf8(msg).expect("utf-8"),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn cosignatures_verify_and_a_quorum_is_counted() {
        let (a, b, c) = (
            cosigner("w.example/a", 1),
            cosigner("w.example/b", 2),
            cosigner("w.example/c", 3),
        );
        let keys = [a.public(), b.public(), c.public()];
        let note = note_with(&[&a, &b], 1_700_000_000);
        let valid = check_quorum(&note, &keys, 2).expect("two of three");
        assert_eq!(
            valid,
            vec![
                Cosigned {
                    name: "w.example/a".into(),
                    time: 1_700_000_000
                },
                Cosigned {
                    name: "w.example/b".into(),
                    time: 1_700_000_000
                }
            ]
        );
        let err = check_quorum(&note, &keys, 3).expect_err("three of three");
        assert_eq!(
            err,
            CosignatureError::NoQuorum {
                valid: 2,
                quorum: 3,
                missing: vec!["w.example/c".into()],
                bad: vec![],
            }
        );
        // Each line is `— name base64(id || time || sig)`, 4 + 8 + 64 bytes.
        let line = note
            .lines()
            .find(|l| l.contains("w.example/a"))
            .expect("line");
        let raw = BASE64_STANDARD
            .decode(line.rsplit(' ').next().expect("b64"))
            .expect("base64");
        assert_eq!(raw.len(), 76);
        assert_eq!(&raw[..4], &a.public().key_id().to_be_bytes());
        assert_eq!(&raw[4..12], &1_700_000_000u64.to_be_bytes());
    }

    /// One witness named twice, under its own name or another, cannot make up a quorum of two
    /// with its one cosignature.
    #[test]
    fn a_key_given_twice_is_refused_rather_than_counted_twice() {
        let a = cosigner("w.example/a", 1);
        let note = note_with(&[&a], 1_700_000_000);
        let twice = [a.public(), a.public()];
        assert_eq!(
            check_quorum(&note, &twice, 2),
            Err(CosignatureError::DuplicateKey(a.public().vkey()))
        );
        let renamed = CosignerKey {
            name: "w.example/alias".into(),
            key: a.public().key,
        };
        let aliased = [a.public(), renamed];
        assert!(matches!(
            check_quorum(&note, &aliased, 2),
            Err(CosignatureError::DuplicateKey(_))
        ));
        assert!(check_distinct(&aliased[..1]).is_ok());
    }

    #[test]
    fn a_changed_body_or_time_or_key_is_a_bad_cosignature() {
        let a = cosigner("w.example/a", 1);
        let keys = [a.public()];
        let note = note_with(&[&a], 1_700_000_000);
        // Another body under the same line.
        let other = note.replacen("\n5\n", "\n6\n", 1);
        let err = check_quorum(&other, &keys, 1).expect_err("body changed");
        assert!(
            matches!(&err, CosignatureError::NoQuorum { bad, .. } if bad == &["w.example/a".to_string()]),
            "{err}"
        );
        // Another time under the same signature.
        let line = note
            .lines()
            .find(|l| l.contains("w.example/a"))
            .expect("line");
        let b64 = line.rsplit(' ').next().expect("b64");
        let mut raw = BASE64_STANDARD.decode(b64).expect("base64");
        raw[11] ^= 1;
        let moved = note.replace(b64, &BASE64_STANDARD.encode(&raw));
        assert!(check_quorum(&moved, &keys, 1).is_err());
        // A key of the same name, another secret: its ID differs, so the line is not its own.
        let impostor = cosigner("w.example/a", 9);
        let err = check_quorum(&note, &[impostor.public()], 1).expect_err("other key");
        assert!(
            matches!(&err, CosignatureError::NoQuorum { missing, .. } if missing.len() == 1),
            "{err}"
        );
        // A plain signed-note key of the same secret (type 0x01) does not verify a cosignature.
        let plain = crate::checkpoint::verifier_key("w.example/a", &a.public().key);
        assert_eq!(
            CosignerKey::parse(&plain),
            Err(CosignatureError::UnsupportedAlgorithm(0x01))
        );
    }

    /// A witness's answer is checked on its own: a valid line already on the note does not
    /// vouch for a bad one by the same key.
    #[test]
    fn a_line_is_checked_over_the_body_alone() {
        let a = cosigner("w.example/a", 1);
        let note = note_with(&[&a], 1_700_000_000);
        let line = note.lines().last().expect("line").to_owned();
        assert_eq!(
            check_line(&note, &line, &a.public()).expect("valid").time,
            1_700_000_000
        );
        let raw = line.rsplit(' ').next().expect("b64");
        let mut bytes = BASE64_STANDARD.decode(raw).expect("base64");
        bytes[20] ^= 1;
        let bent = line.replace(raw, &BASE64_STANDARD.encode(&bytes));
        assert!(
            check_line(&note, &bent, &a.public()).is_err(),
            "a bad line on a cosigned note"
        );
        let other = cosigner("w.example/b", 2);
        assert!(
            check_line(&note, &line, &other.public()).is_err(),
            "another witness's key"
        );
    }

    #[test]
    fn witness_keys_are_parsed_strictly() {
        let good = cosigner("w.example/a", 1).public().vkey();
        assert!(CosignerKey::parse(&good).is_ok());
        let (name, rest) = good.split_once('+').expect("plus");
        let (id, key) = rest.split_once('+').expect("plus");
        for (bad, why) in [
            (
                format!("{name}+{}+{key}", id.to_uppercase()),
                "upper-case id",
            ),
            (format!("{name}+00000000+{key}"), "wrong id"),
            (format!("{name}+{id}"), "no key"),
            (format!("a b+{id}+{key}"), "space in name"),
            (format!("{name}+{id}+{key}="), "not canonical base64"),
            ("x".repeat(2000), "too long"),
        ] {
            assert!(CosignerKey::parse(&bad).is_err(), "{why}: {bad}");
        }
        // The identity point is a weak key.
        let mut weak = [0u8; 33];
        weak[0] = ALG_COSIGNATURE_V1;
        weak[1] = 1;
        let weak_key = format!(
            "n+{:08x}+{}",
            signed_note::key_id("n", &weak),
            BASE64_STANDARD.encode(weak)
        );
        assert_eq!(
            CosignerKey::parse(&weak_key),
            Err(CosignatureError::WeakKey)
        );
    }
}
