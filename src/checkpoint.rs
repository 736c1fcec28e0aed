//! Signed checkpoints, log verifier keys and tlog-proof receipts: the texts an auditor or a
//! consumer holds to check the log without trusting the operator.
//!
//! - A **checkpoint** is the log's signed tree head, in the c2sp.org/tlog-checkpoint format
//!   (`origin`, decimal size, base64 root, one per line), signed as a c2sp.org/signed-note with
//!   the Ed25519 log key. The log publishes them at an interval; the anchorer puts them on chain.
//! - A **verifier key** is the standard signed-note public key string
//!   `name+<8 hex key ID>+base64(0x01 || pubkey)`, with key ID = first 4 bytes of
//!   SHA-256(name || 0x0A || 0x01 || pubkey). It is the one thing a verifier must obtain out of
//!   band.
//! - A **receipt** is a c2sp.org/tlog-proof: the entry's index, its inclusion proof and the
//!   signed checkpoint it is proven against, with the leaf bytes on the `extra` line. It verifies
//!   offline against the verifier key alone.
//!
//! Standard crates carry the formats: `signed_note` parses, signs and verifies notes (the log
//! key is plugged in through its `Signer` trait), and `tlog_tiles::checkpoint::Checkpoint` parses
//! checkpoint bodies. The tlog-proof format has no crate, so it is written here. Every input is
//! bounded before it is parsed.

use base64::prelude::*;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, NoteError, StandardVerifier, VerifierList};
use thiserror::Error;
use tlog_tiles::checkpoint::Checkpoint as CheckpointBody;

use crate::merkle::{self, Hash, MerkleError};

/// The largest signed checkpoint note accepted. A checkpoint body with a sensible origin and a
/// dozen signatures is well under 2 KiB; the bound keeps a hostile note cheap to refuse.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// The most signature lines a note may carry: the log's own plus witness cosignatures.
pub const MAX_NOTE_SIGNATURES: usize = 16;

/// The most inclusion proof lines a tlog-proof may carry: a tree of `u64` size has at most 64
/// levels (see [`merkle::MAX_INCLUSION_PROOF_LEN`]).
pub const MAX_PROOF_HASHES: usize = merkle::MAX_INCLUSION_PROOF_LEN;

/// The largest `extra` payload (decoded) a tlog-proof may carry. It holds one leaf, and leaves are
/// built from size-limited requests far below this.
pub const MAX_EXTRA_BYTES: usize = 64 * 1024;

/// The largest tlog-proof text accepted: room for the largest `extra` line, the longest proof and
/// the largest note.
pub const MAX_TLOG_PROOF_BYTES: usize = 128 * 1024;

/// The first line of every c2sp.org/tlog-proof, naming the format and its version.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The largest verifier key string accepted (a name plus 8 hex digits plus 44 base64 characters).
const MAX_VERIFIER_KEY_BYTES: usize = 1024;

/// The signed-note signature type byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Length in base64 of one SHA-256 hash.
const HASH_BASE64_LEN: usize = 44;

/// Everything that can make a checkpoint, a verifier key or a receipt unacceptable, one variant
/// per reason so that a user sees why a receipt failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The signed note is longer than [`MAX_NOTE_BYTES`].
    #[error("signed note is {len} bytes, more than {max}")]
    NoteTooLarge {
        /// Length of the note.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The signed note carries more than [`MAX_NOTE_SIGNATURES`] signature lines.
    #[error("signed note has {count} signature lines, more than {max}")]
    TooManySignatures {
        /// Number of signature lines.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The text is not a well-formed c2sp.org/signed-note.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The signed text is not a well-formed c2sp.org/tlog-checkpoint body.
    #[error("malformed checkpoint body")]
    MalformedCheckpoint,
    /// The origin cannot be a signed-note key name (empty, or holds a space, control character or
    /// `+`), so
    /// no checkpoint can be signed or verified for it.
    #[error("origin {0:?} is not a valid key name")]
    InvalidOrigin(String),
    /// The verifier key string is not `name+<8 hex>+<base64>` with a well-formed Ed25519 key in
    /// canonical form.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// The verifier key names a signature algorithm other than Ed25519 (0x01).
    #[error("unsupported verifier key algorithm {0:#04x}")]
    UnsupportedKeyAlgorithm(u8),
    /// The key ID in the verifier key is not the one its name and public key imply.
    #[error("verifier key ID does not match its name and public key")]
    KeyIdMismatch,
    /// The public key is a small-order point, under which signatures prove nothing.
    #[error("verifier key is a weak (small-order) Ed25519 key")]
    WeakKey,
    /// The note has no signature by the log key (unsigned, or signed by other keys only).
    #[error("no signature by log key {name}")]
    MissingSignature {
        /// The log key's name.
        name: String,
    },
    /// The note carries a signature by the log key that does not verify: the text or the
    /// signature was altered.
    #[error("signature by log key {name} does not verify")]
    BadSignature {
        /// The log key's name.
        name: String,
    },
    /// The checkpoint is validly signed but names another log than the verifier key does.
    #[error("checkpoint origin {origin:?} is not the log key name {key_name:?}")]
    OriginMismatch {
        /// Origin line of the checkpoint.
        origin: String,
        /// Name in the verifier key.
        key_name: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The tlog-proof text is longer than [`MAX_TLOG_PROOF_BYTES`].
    #[error("tlog-proof is {len} bytes, more than {max}")]
    ProofTooLarge {
        /// Length of the text.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The tlog-proof text does not follow c2sp.org/tlog-proof.
    #[error("malformed tlog-proof: {0}")]
    MalformedProof(String),
    /// The tlog-proof has more than [`MAX_PROOF_HASHES`] proof lines.
    #[error("tlog-proof has more than {max} proof lines")]
    TooManyProofLines {
        /// The bound.
        max: usize,
    },
    /// The tlog-proof's `extra` data is not the leaf being verified.
    #[error("tlog-proof extra data is not the leaf being verified")]
    ExtraMismatch,
    /// The inclusion proof does not place the leaf in the checkpoint's tree.
    #[error("inclusion proof rejected: {0}")]
    Inclusion(#[from] MerkleError),
    /// A split-view evidence file does not show a split view.
    #[error("not a split view: {0}")]
    NotASplitView(String),
}

/// A tree head: what a checkpoint commits to. Auditors compare it with the tree they rebuild; the
/// anchorer sends `size` and `root` on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, which is also the name of the log key: it stops a checkpoint of one log
    /// from passing as another's.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// Returns the c2sp.org/tlog-checkpoint body `origin\n<size>\n<base64 root>\n`, the exact
    /// bytes the log key signs. No extension lines are emitted.
    pub fn body_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64_STANDARD.encode(self.root)
        )
    }
}

/// Adapts an `ed25519_dalek::SigningKey` to `signed_note`'s `Signer`. The crate's own
/// `StandardSigner` is built only from an encoded `PRIVATE+KEY+...` string; the log key is held as
/// a `SigningKey`, and formatting a secret into a string to parse it back is avoided.
struct NoteSigner<'a> {
    /// Key name, the checkpoint origin.
    name: &'a str,
    /// signed-note key ID of (name, key).
    id: u32,
    /// The log key.
    key: &'a SigningKey,
}

impl<'a> NoteSigner<'a> {
    fn new(name: &'a str, key: &'a SigningKey) -> Self {
        Self {
            name,
            id: key_id(name, &key.verifying_key()),
            key,
        }
    }
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Whether `name` can name a log key: a signed-note key name (non-empty, no Unicode space, no
/// `+`) that also holds no control character, since a note may hold none.
pub(crate) fn is_valid_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name) && !name.chars().any(char::is_control)
}

/// signed-note key ID: first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey), big-endian.
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &encoded_key(key))
}

/// `0x01 || pubkey`, the signed-note encoding of an Ed25519 public key.
fn encoded_key(key: &VerifyingKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(ALG_ED25519);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Returns the verifier key string `origin+<8 hex key ID>+base64(0x01 || pubkey)` that the log
/// publishes so anyone can check its checkpoints. `origin` must be a valid key name (no spaces,
/// no `+`) for the result to parse back; [`sign_checkpoint`] enforces that.
pub fn verifier_key(origin: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(origin, key)
}

/// Parses a verifier key string into its name and Ed25519 public key. Strict: exactly the
/// canonical form [`verifier_key`] produces (lower-case hex, canonical base64), algorithm 0x01,
/// a key ID that matches, a valid curve point, and not a weak (small-order) key. A verifier key is
/// the root of trust of every receipt, so anything unusual is refused rather than repaired.
pub fn parse_verifier_key(s: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    parse_ed25519_key(s, ALG_ED25519)
}

/// Parses a signed-note key string `name+<8 hex key ID>+base64(alg || pubkey)` of an Ed25519
/// key of signature type `alg` (0x01 for log keys, 0x04 for witness cosigner keys), with the
/// strictness of [`parse_verifier_key`]; the key ID hashes the type byte with the key.
pub(crate) fn parse_ed25519_key(
    s: &str,
    alg: u8,
) -> Result<(String, VerifyingKey), CheckpointError> {
    use CheckpointError::MalformedVerifierKey as Bad;
    if s.len() > MAX_VERIFIER_KEY_BYTES {
        return Err(Bad("too long"));
    }
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad("want name+keyid+key"));
    };
    if !is_valid_name(name) {
        return Err(Bad("invalid name"));
    }
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Bad("key ID must be 8 lower-case hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| Bad("key ID is not hex"))?;
    let raw = BASE64_STANDARD
        .decode(key_b64)
        .map_err(|_| Bad("key is not canonical base64"))?;
    let (&found, key) = raw.split_first().ok_or(Bad("empty key"))?;
    if found != alg {
        return Err(CheckpointError::UnsupportedKeyAlgorithm(found));
    }
    let key: &[u8; 32] = key
        .try_into()
        .map_err(|_| Bad("Ed25519 key must be 32 bytes"))?;
    if signed_note::key_id(name, &raw) != id {
        return Err(CheckpointError::KeyIdMismatch);
    }
    let key = VerifyingKey::from_bytes(key).map_err(|_| Bad("not a curve point"))?;
    if key.is_weak() {
        return Err(CheckpointError::WeakKey);
    }
    if format!("{name}+{id_hex}+{}", BASE64_STANDARD.encode(&raw)) != s {
        return Err(Bad("not in canonical form"));
    }
    Ok((name.to_owned(), key))
}

/// Signs a checkpoint with the log key and returns the whole signed note (body, blank line,
/// signature line), ready to publish or to embed in a receipt. The key name is the origin, so the
/// note verifies under `verifier_key(&cp.origin, &key.verifying_key())`.
pub fn sign_checkpoint(cp: &Checkpoint, key: &SigningKey) -> Result<String, CheckpointError> {
    if !is_valid_name(&cp.origin) {
        return Err(CheckpointError::InvalidOrigin(cp.origin.clone()));
    }
    let text = cp.body_text();
    if text.len() > MAX_NOTE_BYTES {
        return Err(CheckpointError::NoteTooLarge {
            len: text.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    let mut note = Note::new(text.as_bytes(), &[])
        .map_err(|e| CheckpointError::MalformedNote(e.to_string()))?;
    let signer = NoteSigner::new(&cp.origin, key);
    note.add_sigs(&[&signer])
        .map_err(|e| CheckpointError::Signing(e.to_string()))?;
    let bytes = note.to_bytes();
    if bytes.len() > MAX_NOTE_BYTES {
        return Err(CheckpointError::NoteTooLarge {
            len: bytes.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| CheckpointError::Signing(e.to_string()))
}

/// Opens a signed checkpoint: bounds the input, parses the note, requires a valid signature by
/// the log key named in `verifier_key` (other signatures, such as witness cosignatures, are
/// ignored), parses the body and requires its origin to be the key's name. Returns the tree head.
/// Extension lines after the root are signed and accepted, but carry no meaning for this ledger
/// and are not returned.
pub fn open_checkpoint(note: &str, verifier_key: &str) -> Result<Checkpoint, CheckpointError> {
    open_checkpoint_note(note, verifier_key).map(|(cp, _)| cp)
}

/// [`open_checkpoint`], also returning the note with the log key's verified signature alone
/// (other lines dropped): what a witness keeps and adds its cosignature to.
pub(crate) fn open_checkpoint_note(
    note: &str,
    verifier_key: &str,
) -> Result<(Checkpoint, Note), CheckpointError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(CheckpointError::NoteTooLarge {
            len: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    let (name, _key) = parse_verifier_key(verifier_key)?;
    let Some((_, sig_block)) = note.rsplit_once("\n\n") else {
        return Err(CheckpointError::MalformedNote(
            "no blank line before the signatures".into(),
        ));
    };
    let count = sig_block.split('\n').filter(|l| !l.is_empty()).count();
    if count > MAX_NOTE_SIGNATURES {
        return Err(CheckpointError::TooManySignatures {
            count,
            max: MAX_NOTE_SIGNATURES,
        });
    }
    let parsed = Note::from_bytes(note.as_bytes())
        .map_err(|e| CheckpointError::MalformedNote(e.to_string()))?;
    let verifier = StandardVerifier::new(verifier_key)
        .map_err(|_| CheckpointError::MalformedVerifierKey("refused by signed_note"))?;
    let known = VerifierList::new(vec![Box::new(verifier)]);
    let verified = match parsed.verify(&known) {
        Ok((verified, _)) => verified,
        Err(NoteError::UnverifiedNote) => return Err(CheckpointError::MissingSignature { name }),
        Err(NoteError::InvalidSignature { .. }) => {
            return Err(CheckpointError::BadSignature { name })
        }
        Err(e) => return Err(CheckpointError::MalformedNote(e.to_string())),
    };
    let body = CheckpointBody::from_bytes(parsed.text())
        .map_err(|_| CheckpointError::MalformedCheckpoint)?;
    if body.origin() != name {
        return Err(CheckpointError::OriginMismatch {
            origin: body.origin().to_owned(),
            key_name: name,
        });
    }
    let logs_only = Note::new(parsed.text(), &verified)
        .map_err(|e| CheckpointError::MalformedNote(e.to_string()))?;
    Ok((
        Checkpoint {
            origin: name,
            size: body.size(),
            root: body.hash().0,
        },
        logs_only,
    ))
}

/// A c2sp.org/tlog-proof: an offline-verifiable receipt that one leaf is in the log. Consumers
/// keep it; anyone with the log's verifier key can check it with [`verify_tlog_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque data carried alongside the proof; in a ledger receipt, the leaf bytes, so the
    /// receipt is self-contained. Not authenticated by itself: it counts only because
    /// [`verify_tlog_proof`] requires it to be the leaf that is proven.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the leaf in the log.
    pub index: u64,
    /// RFC 6962 inclusion proof of the leaf in the checkpoint's tree, leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim, that the proof is against.
    pub checkpoint: String,
}

impl TlogProof {
    /// Returns the c2sp.org/tlog-proof text: header line, optional `extra <base64>` line,
    /// `index <decimal>` line, one base64 hash per line, an empty line, then the checkpoint note.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(
            64 + self.extra.as_ref().map_or(0, |e| e.len() * 4 / 3 + 8)
                + self.proof.len() * (HASH_BASE64_LEN + 1)
                + self.checkpoint.len(),
        );
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&BASE64_STANDARD.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&BASE64_STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a c2sp.org/tlog-proof text. Strict: the exact header, at most one `extra` line in
    /// second position, a decimal index without leading zeros, at most [`MAX_PROOF_HASHES`]
    /// proof lines of exactly one canonical base64 SHA-256 hash each, an empty line, and a
    /// non-empty checkpoint note within [`MAX_NOTE_BYTES`]. The checkpoint is not verified here;
    /// [`verify_tlog_proof`] does that.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::MalformedProof(m.to_owned());
        if text.len() > MAX_TLOG_PROOF_BYTES {
            return Err(CheckpointError::ProofTooLarge {
                len: text.len(),
                max: MAX_TLOG_PROOF_BYTES,
            });
        }
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("missing index line"))?;
        let extra = match line.strip_prefix("extra ") {
            Some(b64) => {
                if b64.len() > MAX_EXTRA_BYTES.div_ceil(3) * 4 {
                    return Err(bad("extra data too large"));
                }
                let data = BASE64_STANDARD
                    .decode(b64)
                    .map_err(|_| bad("extra is not canonical base64"))?;
                line = lines.next().ok_or_else(|| bad("missing index line"))?;
                Some(data)
            }
            None => None,
        };
        let digits = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("missing index line"))?;
        let index = parse_decimal(digits).ok_or_else(|| bad("index is not a decimal u64"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(CheckpointError::TooManyProofLines {
                    max: MAX_PROOF_HASHES,
                });
            }
            if line.len() != HASH_BASE64_LEN {
                return Err(bad("proof line is not one base64 SHA-256 hash"));
            }
            let raw = BASE64_STANDARD
                .decode(line)
                .map_err(|_| bad("proof line is not canonical base64"))?;
            proof.push(
                merkle::hash_from_slice(&raw)
                    .map_err(|_| bad("proof line is not one base64 SHA-256 hash"))?,
            );
        }
        if checkpoint.is_empty() {
            return Err(bad("missing checkpoint"));
        }
        if checkpoint.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::NoteTooLarge {
                len: checkpoint.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// Parses an ASCII decimal with no sign and no leading zeros (except `0` itself).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Verifies a receipt for `leaf` (the leaf bytes, not its hash): the checkpoint must be signed by
/// the log key in `verifier_key` and name that log, `extra`, if present, must be exactly `leaf`,
/// and the proof must place `leaf_hash(leaf)` at `index` in the checkpoint's tree. Returns the
/// checkpoint the leaf is proven in, so the caller can go on to check its anchor.
pub fn verify_tlog_proof(
    p: &TlogProof,
    verifier_key: &str,
    leaf: &[u8],
) -> Result<Checkpoint, CheckpointError> {
    let cp = open_checkpoint(&p.checkpoint, verifier_key)?;
    if let Some(extra) = &p.extra {
        if extra.as_slice() != leaf {
            return Err(CheckpointError::ExtraMismatch);
        }
    }
    merkle::verify_inclusion(
        p.index,
        cp.size,
        &merkle::leaf_hash(leaf),
        &p.proof,
        &cp.root,
    )?;
    Ok(cp)
}

/// Evidence that a log signed two checkpoints that are not of one tree (a split view), as
/// `pointsledger audit` writes it and `pointsledger split-view` checks it: the two signed
/// notes, and a consistency proof, computed from the newer one's tree, from the older size to
/// the newer: the proof reproduces the newer signed root and gives, for the older size, a root
/// other than the older note signs. Anyone holding the log's verifier key can check it; no
/// other data and no trust in whoever wrote the file is needed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitView {
    /// The older checkpoint (the smaller or equal size), a signed note.
    pub older: String,
    /// The newer checkpoint, a signed note.
    pub newer: String,
    /// The root of the newer tree's first `older`-size leaves, base64.
    pub older_size_root_in_newer: String,
    /// The consistency proof from the older size to the newer in the newer tree, base64
    /// hashes (empty when the sizes are equal).
    pub proof: Vec<String>,
}

impl SplitView {
    /// Two notes of the same size: the second's root is its tree's at that size, and no proof
    /// is needed.
    pub fn same_size(older: String, newer: String, newer_root: &Hash) -> SplitView {
        SplitView {
            older,
            newer,
            older_size_root_in_newer: crate::wire::encode_hash(newer_root),
            proof: Vec::new(),
        }
    }
}

/// Checks split-view evidence against the log's verifier key: both notes carry the log's
/// signature, the proof takes `older_size_root_in_newer` to the newer note's root, and that
/// root differs from the older note's. Returns both checkpoints and the newer tree's root at
/// the older size.
pub fn check_split_view(
    evidence: &SplitView,
    verifier_key: &str,
) -> Result<(Checkpoint, Checkpoint, Hash), CheckpointError> {
    let not = |why: String| CheckpointError::NotASplitView(why);
    let bad_hash =
        |e: crate::wire::BadHash| not(format!("{} is not a base64 hash: {}", e.what, e.value));
    let older = open_checkpoint(&evidence.older, verifier_key)?;
    let newer = open_checkpoint(&evidence.newer, verifier_key)?;
    let proof = crate::wire::decode_hashes("proof", &evidence.proof).map_err(bad_hash)?;
    let in_newer = crate::wire::decode_hash(
        "older_size_root_in_newer",
        &evidence.older_size_root_in_newer,
    )
    .map_err(bad_hash)?;
    if older.size == 0 {
        return Err(not("the older checkpoint is of the empty tree".into()));
    }
    merkle::verify_consistency(older.size, newer.size, &in_newer, &newer.root, &proof).map_err(
        |e| {
            not(format!(
                "the proof does not take size {} to the newer checkpoint: {e}",
                older.size
            ))
        },
    )?;
    if in_newer == older.root {
        return Err(not(format!(
            "the newer tree has the older checkpoint's root at size {}",
            older.size
        )));
    }
    Ok((older, newer, in_newer))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::merkle::MemoryHashes;

    const ORIGIN: &str = "example.com/pointsledger";

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[1u8; 32])
    }

    fn other_key() -> SigningKey {
        SigningKey::from_bytes(&[2u8; 32])
    }

    fn vkey() -> String {
        verifier_key(ORIGIN, &log_key().verifying_key())
    }

    /// The 8-leaf tree of tests/vectors/README.md.
    fn eight_leaf_checkpoint() -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size: 8,
            root: hex::decode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
                .unwrap()
                .try_into()
                .unwrap(),
        }
    }

    /// Signs an arbitrary text as a note under an arbitrary key name, to build notes that
    /// [`sign_checkpoint`] would never produce.
    fn sign_raw(text: &str, name: &str, key: &SigningKey) -> String {
        let mut note = Note::new(text.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&NoteSigner::new(name, key)]).unwrap();
        String::from_utf8(note.to_bytes()).unwrap()
    }

    // Pinned answers for seed = 32 bytes of 0x01 and the 8-leaf tree of tests/vectors/README.md.
    // Ed25519 is deterministic; OpenSSL's Ed25519 gives the same key ID and signature bytes.
    const KNOWN_VKEY: &str =
        "example.com/pointsledger+e01fdb77+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c";
    const KNOWN_NOTE: &str = "example.com/pointsledger\n\
        8\n\
        XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\
        \n\
        — example.com/pointsledger \
        4B/bd9fCJWP4+G1UkAI2E+AZl0OyY4btCw/lWAe1/JRtJDYt148GyiLlNBn5H385QSGPyCT8NA5vUU/tIyQBaHM9hQ8=\n";

    #[test]
    fn split_views_are_shown_only_by_notes_of_two_trees() {
        // Two trees that agree on nothing: 6 and 9 leaves of different bytes.
        let tree = |tag: u8, n: u8| {
            let mut t = MemoryHashes::new();
            for i in 0..n {
                t.append(&merkle::leaf_hash(&[tag, i])).unwrap();
            }
            t
        };
        let (a, b) = (tree(1, 9), tree(2, 9));
        let note = |t: &MemoryHashes, size: u64, key: &SigningKey| {
            let root = merkle::root(size, t).unwrap();
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root,
            };
            sign_checkpoint(&cp, key).unwrap()
        };
        let evidence = |older: String, newer: &MemoryHashes, from: u64| SplitView {
            older,
            newer: note(newer, 9, &log_key()),
            older_size_root_in_newer: crate::wire::encode_hash(&merkle::root(from, newer).unwrap()),
            proof: crate::wire::encode_hashes(&merkle::prove_consistency(from, 9, newer).unwrap()),
        };
        // Size 6 of one tree against size 9 of the other; and the same size, two roots.
        let shown = evidence(note(&a, 6, &log_key()), &b, 6);
        let (older, newer, in_newer) = check_split_view(&shown, &vkey()).unwrap();
        assert_eq!((older.size, newer.size), (6, 9));
        assert_eq!(in_newer, merkle::root(6, &b).unwrap());
        check_split_view(&evidence(note(&a, 9, &log_key()), &b, 9), &vkey()).unwrap();
        // An older size that is a power of two: its root is the proof's seed, and still must
        // lead to the newer root.
        check_split_view(&evidence(note(&a, 4, &log_key()), &b, 4), &vkey()).unwrap();
        let mut seed_of_a = evidence(note(&a, 4, &log_key()), &b, 4);
        seed_of_a.older_size_root_in_newer =
            crate::wire::encode_hash(&merkle::root(4, &a).unwrap());
        assert!(check_split_view(&seed_of_a, &vkey()).is_err());
        // The "older" note of a larger size than the newer is refused.
        let backwards = SplitView {
            older: note(&a, 9, &log_key()),
            newer: note(&b, 6, &log_key()),
            ..shown.clone()
        };
        assert!(matches!(
            check_split_view(&backwards, &vkey()),
            Err(CheckpointError::NotASplitView(_))
        ));
        // One tree is no split view; nor is a note the log key did not sign, nor a proof for
        // another root.
        let one_tree = evidence(note(&b, 6, &log_key()), &b, 6);
        assert!(matches!(
            check_split_view(&one_tree, &vkey()),
            Err(CheckpointError::NotASplitView(_))
        ));
        let unsigned = evidence(note(&a, 6, &other_key()), &b, 6);
        assert!(matches!(
            check_split_view(&unsigned, &vkey()),
            Err(CheckpointError::MissingSignature { .. })
        ));
        let mut wrong_root = shown.clone();
        wrong_root.older_size_root_in_newer =
            crate::wire::encode_hash(&merkle::root(6, &a).unwrap());
        assert!(matches!(
            check_split_view(&wrong_root, &vkey()),
            Err(CheckpointError::NotASplitView(_))
        ));
    }

    #[test]
    fn known_answer() {
        let key = log_key();
        assert_eq!(vkey(), KNOWN_VKEY);
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &key).unwrap();
        assert_eq!(note, KNOWN_NOTE);
        assert_eq!(
            open_checkpoint(KNOWN_NOTE, KNOWN_VKEY).unwrap(),
            eight_leaf_checkpoint()
        );
    }

    #[test]
    fn body_text_matches_tlog_tiles() {
        let cp = eight_leaf_checkpoint();
        let body =
            CheckpointBody::new(&cp.origin, cp.size, tlog_tiles::tlog::Hash(cp.root), "").unwrap();
        assert_eq!(body.to_bytes(), cp.body_text().into_bytes());
    }

    #[test]
    fn round_trips() {
        let key = log_key();
        for size in [0u64, 1, 8, 1 << 53, u64::MAX] {
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root: merkle::leaf_hash(&size.to_be_bytes()),
            };
            let note = sign_checkpoint(&cp, &key).unwrap();
            assert_eq!(open_checkpoint(&note, &vkey()).unwrap(), cp);
        }
        let (name, vk) = parse_verifier_key(&vkey()).unwrap();
        assert_eq!(name, ORIGIN);
        assert_eq!(vk, log_key().verifying_key());
    }

    #[test]
    fn tampered_body_is_rejected() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
        let tampered = note.replacen("\n8\n", "\n9\n", 1);
        assert_ne!(tampered, note);
        assert_eq!(
            open_checkpoint(&tampered, &vkey()),
            Err(CheckpointError::BadSignature {
                name: ORIGIN.into()
            })
        );
        let other_root = sign_checkpoint(
            &Checkpoint {
                root: [7; 32],
                ..eight_leaf_checkpoint()
            },
            &log_key(),
        )
        .unwrap();
        // Body of one note with the signature of another.
        let (body, _) = other_root.split_once("\n\n").unwrap();
        let (_, sig) = note.split_once("\n\n").unwrap();
        let spliced = format!("{body}\n\n{sig}");
        assert!(matches!(
            open_checkpoint(&spliced, &vkey()),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn wrong_key_is_rejected() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &other_key()).unwrap();
        assert_eq!(
            open_checkpoint(&note, &vkey()),
            Err(CheckpointError::MissingSignature {
                name: ORIGIN.into()
            })
        );
    }

    #[test]
    fn wrong_origin_is_rejected() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
        // Same public key, published under another log's name.
        let other_name = verifier_key("other.example/log", &log_key().verifying_key());
        assert!(matches!(
            open_checkpoint(&note, &other_name),
            Err(CheckpointError::MissingSignature { .. })
        ));
        // Validly signed by the log key, but the body names another log.
        let body = Checkpoint {
            origin: "other.example/log".into(),
            ..eight_leaf_checkpoint()
        }
        .body_text();
        let note = sign_raw(&body, ORIGIN, &log_key());
        assert_eq!(
            open_checkpoint(&note, &vkey()),
            Err(CheckpointError::OriginMismatch {
                origin: "other.example/log".into(),
                key_name: ORIGIN.into()
            })
        );
        assert!(matches!(
            sign_checkpoint(
                &Checkpoint {
                    origin: "has space".into(),
                    ..eight_leaf_checkpoint()
                },
                &log_key()
            ),
            Err(CheckpointError::InvalidOrigin(_))
        ));
        for origin in ["", "a+b", "a\nb", "a\u{1}b"] {
            assert!(matches!(
                sign_checkpoint(
                    &Checkpoint {
                        origin: origin.into(),
                        ..eight_leaf_checkpoint()
                    },
                    &log_key()
                ),
                Err(CheckpointError::InvalidOrigin(_))
            ));
        }
    }

    #[test]
    fn truncated_signature_is_rejected() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
        let line_start = note.rfind("— ").unwrap();
        let (_, b64) = note[line_start..].trim_end().rsplit_once(' ').unwrap();
        let mut raw = BASE64_STANDARD.decode(b64).unwrap();
        raw.truncate(raw.len() - 3);
        let short = format!(
            "{}{}\n",
            &note[..note.len() - b64.len() - 1],
            BASE64_STANDARD.encode(&raw)
        );
        assert!(matches!(
            open_checkpoint(&short, &vkey()),
            Err(CheckpointError::BadSignature { .. })
        ));
        for cut in [1, 5, 30, note.len() - 10] {
            assert!(open_checkpoint(&note[..note.len() - cut], &vkey()).is_err());
        }
    }

    #[test]
    fn extension_lines_are_accepted_and_dropped() {
        let cp = eight_leaf_checkpoint();
        let text = format!("{}extension line\n", cp.body_text());
        let note = sign_raw(&text, ORIGIN, &log_key());
        assert_eq!(open_checkpoint(&note, &vkey()).unwrap(), cp);
    }

    #[test]
    fn witness_signatures_are_ignored() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
        let mut parsed = Note::from_bytes(note.as_bytes()).unwrap();
        parsed
            .add_sigs(&[&NoteSigner::new("witness.example", &other_key())])
            .unwrap();
        let cosigned = String::from_utf8(parsed.to_bytes()).unwrap();
        assert_eq!(
            open_checkpoint(&cosigned, &vkey()).unwrap(),
            eight_leaf_checkpoint()
        );
    }

    #[test]
    fn input_bounds() {
        let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
        let (_, sig) = note.split_once("\n\n").unwrap();
        let many = format!("{note}{}", sig.repeat(MAX_NOTE_SIGNATURES));
        assert!(matches!(
            open_checkpoint(&many, &vkey()),
            Err(CheckpointError::TooManySignatures { count: 17, .. })
        ));
        let exactly = format!("{note}{}", sig.repeat(MAX_NOTE_SIGNATURES - 1));
        assert!(open_checkpoint(&exactly, &vkey()).is_ok());
        let big = format!("{}{note}", "x".repeat(MAX_NOTE_BYTES));
        assert!(matches!(
            open_checkpoint(&big, &vkey()),
            Err(CheckpointError::NoteTooLarge { .. })
        ));
        let long_origin = Checkpoint {
            origin: "o".repeat(MAX_NOTE_BYTES),
            ..eight_leaf_checkpoint()
        };
        assert!(matches!(
            sign_checkpoint(&long_origin, &log_key()),
            Err(CheckpointError::NoteTooLarge { .. })
        ));
    }

    #[test]
    fn malformed_verifier_keys_are_rejected() {
        let good = vkey();
        let (name, rest) = good.split_once('+').unwrap();
        let (id, b64) = rest.split_once('+').unwrap();
        let raw = BASE64_STANDARD.decode(b64).unwrap();
        let with_key = |n: &str, raw: &[u8]| {
            format!(
                "{n}+{:08x}+{}",
                signed_note::key_id(n, raw),
                BASE64_STANDARD.encode(raw)
            )
        };
        let mut alg2 = raw.clone();
        alg2[0] = 2;
        let mut weak = vec![ALG_ED25519, 1];
        weak.resize(33, 0); // compressed identity point: small order
        let cases: Vec<(String, CheckpointError)> = vec![
            (
                String::new(),
                CheckpointError::MalformedVerifierKey("want name+keyid+key"),
            ),
            (
                format!("{name}+{id}"),
                CheckpointError::MalformedVerifierKey("want name+keyid+key"),
            ),
            (
                format!("+{id}+{b64}"),
                CheckpointError::MalformedVerifierKey("invalid name"),
            ),
            (
                format!("{name}+{}+{b64}", id.to_uppercase()),
                CheckpointError::MalformedVerifierKey("key ID must be 8 lower-case hex digits"),
            ),
            (
                format!("{name}+0{id}+{b64}"),
                CheckpointError::MalformedVerifierKey("key ID must be 8 lower-case hex digits"),
            ),
            (
                format!("{name}+00000000+{b64}"),
                CheckpointError::KeyIdMismatch,
            ),
            (
                format!("{name}+{id}+{}", b64.replace('/', "_")),
                CheckpointError::MalformedVerifierKey("key is not canonical base64"),
            ),
            (
                with_key(name, &alg2),
                CheckpointError::UnsupportedKeyAlgorithm(2),
            ),
            (
                with_key(name, &raw[..32]),
                CheckpointError::MalformedVerifierKey("Ed25519 key must be 32 bytes"),
            ),
            (with_key(name, &weak), CheckpointError::WeakKey),
            (
                format!("{good}x"),
                CheckpointError::MalformedVerifierKey("key is not canonical base64"),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(parse_verifier_key(&key).map(|_| ()), Err(want), "{key:?}");
            let note = sign_checkpoint(&eight_leaf_checkpoint(), &log_key()).unwrap();
            assert!(open_checkpoint(&note, &key).is_err());
        }
    }

    /// A log of `n` leaves, its signed checkpoint and a receipt for leaf `index`.
    fn receipt(n: u64, index: u64) -> (Vec<Vec<u8>>, TlogProof) {
        let leaves: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("{{\"index\":{i}}}").into_bytes())
            .collect();
        let mut t = MemoryHashes::new();
        for l in &leaves {
            t.append(&merkle::leaf_hash(l)).unwrap();
        }
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: n,
            root: t.root().unwrap(),
        };
        let p = TlogProof {
            extra: Some(leaves[index as usize].clone()),
            index,
            proof: merkle::prove_inclusion(n, index, &t).unwrap(),
            checkpoint: sign_checkpoint(&cp, &log_key()).unwrap(),
        };
        (leaves, p)
    }

    #[test]
    fn tlog_proof_round_trip() {
        for (n, i) in [(1, 0), (2, 1), (7, 3), (100, 64)] {
            let (leaves, p) = receipt(n, i);
            let text = p.to_text();
            assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
            let parsed = TlogProof::parse(&text).unwrap();
            assert_eq!(parsed, p);
            assert_eq!(parsed.to_text(), text);
            let cp = verify_tlog_proof(&parsed, &vkey(), &leaves[i as usize]).unwrap();
            assert_eq!(cp.size, n);
            let bare = TlogProof { extra: None, ..p };
            let text = bare.to_text();
            assert!(text.starts_with(&format!("c2sp.org/tlog-proof@v1\nindex {i}\n")));
            assert_eq!(TlogProof::parse(&text).unwrap(), bare);
            verify_tlog_proof(&bare, &vkey(), &leaves[i as usize]).unwrap();
        }
    }

    #[test]
    fn tlog_proof_tampering_is_rejected() {
        let (leaves, p) = receipt(100, 37);
        let leaf = &leaves[37];
        for k in 0..p.proof.len() {
            let mut bad = p.clone();
            bad.proof[k][5] ^= 0x10;
            assert_eq!(
                verify_tlog_proof(&bad, &vkey(), leaf),
                Err(CheckpointError::Inclusion(MerkleError::RootMismatch))
            );
        }
        let wrong_index = TlogProof {
            index: 36,
            ..p.clone()
        };
        assert!(matches!(
            verify_tlog_proof(&wrong_index, &vkey(), leaf),
            Err(CheckpointError::Inclusion(_))
        ));
        let wrong_extra = TlogProof {
            extra: Some(leaves[36].clone()),
            ..p.clone()
        };
        assert_eq!(
            verify_tlog_proof(&wrong_extra, &vkey(), leaf),
            Err(CheckpointError::ExtraMismatch)
        );
        // The right proof, presented for another leaf.
        assert!(verify_tlog_proof(
            &TlogProof {
                extra: None,
                ..p.clone()
            },
            &vkey(),
            &leaves[36]
        )
        .is_err());
        let other_key = verifier_key(ORIGIN, &other_key().verifying_key());
        assert!(matches!(
            verify_tlog_proof(&p, &other_key, leaf),
            Err(CheckpointError::MissingSignature { .. })
        ));
    }

    #[test]
    fn tlog_proof_parse_is_strict() {
        let (_, p) = receipt(10, 3);
        let good = p.to_text();
        assert!(TlogProof::parse(&good).is_ok());
        let hash_line = BASE64_STANDARD.encode([9u8; 32]);
        let (head, cp) = good.split_once("\n\n").unwrap();
        let bad_texts = [
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            good.replacen("index 3", "index 03", 1),
            good.replacen("index 3", "index +3", 1),
            good.replacen("index 3", "index  3", 1),
            good.replacen("index 3", "index 18446744073709551616", 1),
            good.replacen("index 3", "idx 3", 1),
            good.replacen("extra ", "extra  ", 1),
            good.replace('\n', "\r\n"),
            format!("{head}\n{}\n\n{cp}", hash_line.trim_end_matches('=')),
            format!("{head}\n{hash_line}=\n\n{cp}"),
            format!("{head}\n\n"),
            head.to_owned(),
            format!("{TLOG_PROOF_HEADER}\n\n{cp}"),
            format!("{TLOG_PROOF_HEADER}\nindex 3\nextra AA==\n\n{cp}"),
        ];
        for t in &bad_texts {
            assert!(
                matches!(TlogProof::parse(t), Err(CheckpointError::MalformedProof(_))),
                "{t:?} -> {:?}",
                TlogProof::parse(t)
            );
        }
        let long = format!(
            "{TLOG_PROOF_HEADER}\nindex 3\n{}\n{cp}",
            format!("{hash_line}\n").repeat(MAX_PROOF_HASHES + 1)
        );
        assert_eq!(
            TlogProof::parse(&long),
            Err(CheckpointError::TooManyProofLines {
                max: MAX_PROOF_HASHES
            })
        );
        let max = format!(
            "{TLOG_PROOF_HEADER}\nindex 3\n{}\n{cp}",
            format!("{hash_line}\n").repeat(MAX_PROOF_HASHES)
        );
        assert_eq!(
            TlogProof::parse(&max).unwrap().proof.len(),
            MAX_PROOF_HASHES
        );
        let huge = format!("{good}{}", " ".repeat(MAX_TLOG_PROOF_BYTES));
        assert!(matches!(
            TlogProof::parse(&huge),
            Err(CheckpointError::ProofTooLarge { .. })
        ));
    }
}
