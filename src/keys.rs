//! Ed25519 keys: secret keys in files on disk, public keys as hex ids.
//!
//! Every actor in the ledger (consumer, merchant, operator, log) is an Ed25519 key. This module is
//! the one place that turns bytes from outside into keys, so the checks live here:
//!
//! - **Key files** hold the 32-byte secret seed as 64 lowercase hex characters and a newline. They
//!   are created with mode `0600` from the first byte (never chmod-ed after the fact, so there is no
//!   window where another user can read them), never overwritten, and refused when group or others
//!   may access them, as ssh does with private keys.
//! - **Public ids** are the 32-byte compressed public key as 64 lowercase hex characters. Exactly one
//!   string names each key (lowercase only, canonical point encoding only), so ids can be compared as
//!   strings, used as index keys and matched against the `keyid` of a DSSE signature.
//! - **Weak keys** (points of small order, which "verify" forged signatures for many messages) are
//!   refused wherever a key comes in, with an error distinct from a malformed id.
//!
//! Errors never contain secret material: they name the file and what is wrong with it, not its
//! content.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey, PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH};
use rand::rngs::OsRng;

/// Length of a key file: 64 hex characters for the seed and one newline.
pub const KEY_FILE_LEN: usize = 2 * SECRET_KEY_LENGTH + 1;

/// Length of a public id: 64 hex characters.
pub const PUBLIC_ID_LEN: usize = 2 * PUBLIC_KEY_LENGTH;

/// How much of a rejected id an error message repeats, so a huge input cannot make a huge message.
const ID_ECHO_CHARS: usize = 80;

/// Why a key could not be read, written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file already exists. Keys are never overwritten: losing a key loses the points or
    /// the authority it holds.
    #[error(
        "key file {} already exists; refusing to overwrite a key (move it away first if you \
         really mean to replace it)",
        path.display()
    )]
    AlreadyExists {
        /// The file that is already there.
        path: PathBuf,
    },

    /// The operating system refused an operation on the key file or its directory.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create key file".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The key file can be accessed by group or others, so the secret may already have leaked.
    #[error(
        "key file {} has mode {mode:04o}, so group or others can access it; \
         run `chmod 600 {}` (and consider the key compromised if others could read it)",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file is not a regular file (a directory, a device, a fifo...).
    #[error("key file {} is not a regular file", path.display())]
    NotARegularFile {
        /// The path that was given.
        path: PathBuf,
    },

    /// The key file's content is not 64 lowercase hex characters and a newline.
    #[error(
        "key file {} is malformed ({reason}); a key file holds 64 lowercase hex characters \
         and a newline",
        path.display()
    )]
    MalformedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without repeating the content.
        reason: &'static str,
    },

    /// The seed in the key file gives a weak (small-order) public key. Ed25519 key derivation
    /// cannot produce one, so the file was not made by this program; generate a new key.
    #[error("key file {} holds a seed whose public key is weak; generate a new key", path.display())]
    WeakKeyFile {
        /// The key file.
        path: PathBuf,
    },

    /// A public id is not the canonical encoding of a point on the curve.
    #[error("public key id {id:?} is malformed: {reason}")]
    MalformedPublicId {
        /// The id as given (cut to its first 80 characters).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A public id names a weak key: a point of small order, for which signatures can be forged
    /// without any secret. Such keys are refused everywhere.
    #[error("public key id {id} is a weak (small-order) key and is refused")]
    WeakPublicKey {
        /// The id as given.
        id: String,
    },
}

/// Makes a fresh signing key from the operating system's random number generator.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

/// Writes `key` to a new key file at `path` with mode `0600`.
///
/// The file is created with its final mode in the same `open` call, so it is never readable by
/// others, even for an instant. An existing file is never replaced ([`KeyError::AlreadyExists`]).
/// Missing parent directories are created with mode `0700`. The file and its directory are
/// synced so that a key reported as written survives a crash.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io {
            action,
            path,
            source,
        }
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("create directory", dir))?;
        }
    }

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err("create key file", path)(source)
            }
        })?;

    let mut buf = [0u8; KEY_FILE_LEN];
    let written = encode_seed(key, &mut buf).and_then(|()| {
        file.write_all(&buf)?;
        file.sync_all()
    });
    wipe(&mut buf);
    if let Err(source) = written {
        drop(file);
        // A half-written key file would block the next attempt and be refused when read anyway.
        let _ = fs::remove_file(path);
        return Err(io_err("write key file", path)(source));
    }
    if let Some(dir) = parent {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))?;
    }
    Ok(())
}

/// Reads a signing key from a key file written by [`write_key_file`].
///
/// Refuses a file that group or others may access (like ssh), a file that is not exactly 64
/// lowercase hex characters and a newline, and a seed whose public key is weak. The secret bytes
/// read are wiped from memory once the key is built.
pub fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let io_err = |action: &'static str| {
        move |source| KeyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = File::open(path).map_err(io_err("open key file"))?;
    // Check the file that was opened, not the path again, so a swap in between does not matter.
    let meta = file.metadata().map_err(io_err("inspect key file"))?;
    if !meta.is_file() {
        return Err(KeyError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }

    // One byte more than a valid file, so an over-long file is detected without reading it all.
    let mut buf = [0u8; KEY_FILE_LEN + 1];
    let read = read_up_to(&mut file, &mut buf);
    let result = read
        .map_err(io_err("read key file"))
        .and_then(|n| decode_seed(path, &buf[..n]));
    wipe(&mut buf);
    result
}

/// The public id of a key: its 32-byte compressed point as 64 lowercase hex characters.
pub fn public_id(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a public id into a verifying key.
///
/// Accepts lowercase hex only, and only the canonical encoding of the point, so that every key has
/// exactly one id string and ids can be compared as strings. Returns
/// [`KeyError::MalformedPublicId`] for anything that is not such an encoding of a curve point,
/// and [`KeyError::WeakPublicKey`] for a small-order point.
pub fn parse_public_id(s: &str) -> Result<VerifyingKey, KeyError> {
    let malformed = |reason| KeyError::MalformedPublicId {
        id: s.chars().take(ID_ECHO_CHARS).collect(),
        reason,
    };
    if s.len() != PUBLIC_ID_LEN {
        return Err(malformed("expected 64 lowercase hex characters"));
    }
    if !s.bytes().all(is_lower_hex) {
        return Err(malformed("expected lowercase hex characters only"));
    }
    let mut bytes = [0u8; PUBLIC_KEY_LENGTH];
    hex::decode_to_slice(s, &mut bytes).map_err(|_| malformed("not hex"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| malformed("not a curve point"))?;
    if key.to_edwards().compress().as_bytes() != &bytes {
        return Err(malformed("not the canonical encoding of its point"));
    }
    if key.is_weak() {
        return Err(KeyError::WeakPublicKey { id: s.to_owned() });
    }
    Ok(key)
}

/// The accepted ids a thread remembers, each with what a caller needs of it, up to a bound
/// (the memory is bounded because anyone can send requests naming keys); full, it starts over.
struct Accepted<V> {
    ids: std::collections::HashMap<[u8; PUBLIC_KEY_LENGTH], V>,
    max: usize,
}

impl<V: Copy> Accepted<V> {
    fn new(max: usize) -> Self {
        Accepted {
            ids: std::collections::HashMap::new(),
            max,
        }
    }

    /// `s` checked with [`parse_public_id`], or remembered as accepted; `keep` is what is
    /// remembered of an accepted key. Only ids accepted in their exact lowercase text are
    /// remembered, so what is refused is refused every time.
    fn check(
        memo: &'static std::thread::LocalKey<std::cell::RefCell<Self>>,
        s: &str,
        keep: fn(VerifyingKey) -> V,
    ) -> Result<V, KeyError> {
        let mut bytes = [0u8; PUBLIC_KEY_LENGTH];
        let lower_hex = s.len() == PUBLIC_ID_LEN
            && s.bytes().all(is_lower_hex)
            && hex::decode_to_slice(s, &mut bytes).is_ok();
        if lower_hex {
            if let Some(v) = memo.with(|m| m.borrow().ids.get(&bytes).copied()) {
                return Ok(v);
            }
        }
        let v = keep(parse_public_id(s)?);
        if lower_hex {
            memo.with(|m| {
                let mut m = m.borrow_mut();
                if m.ids.len() >= m.max {
                    m.ids.clear();
                }
                m.ids.insert(bytes, v);
            });
        }
        Ok(v)
    }
}

thread_local! {
    /// Signers' keys: 8,192 of about 200 bytes each.
    static KEYS: std::cell::RefCell<Accepted<VerifyingKey>> =
        std::cell::RefCell::new(Accepted::new(8_192));
    /// Ids named in payloads: 65,536 of 32 bytes.
    static IDS: std::cell::RefCell<Accepted<()>> = std::cell::RefCell::new(Accepted::new(65_536));
}

/// [`parse_public_id`], remembering per thread the ids it accepted and their keys: the full
/// check decompresses a curve point, re-encodes it and tests it for small order, which a
/// profile of the HTTP ingest put at 5 % of the server's time (every envelope names its
/// signers' keys), while the same merchants and consumers sign again and again.
pub fn public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    Accepted::check(&KEYS, s, |k| k)
}

/// [`parse_public_id`] without the key, remembering per thread the ids it accepted: a profile
/// of `bench` put the full check at a tenth of the writer's time per entry, where payloads name
/// the same merchants and consumers again and again.
pub fn check_public_id(s: &str) -> Result<(), KeyError> {
    Accepted::check(&IDS, s, |_| ())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Writes the key file content (hex seed and newline) into `buf`.
fn encode_seed(key: &SigningKey, buf: &mut [u8; KEY_FILE_LEN]) -> io::Result<()> {
    hex::encode_to_slice(key.as_bytes(), &mut buf[..KEY_FILE_LEN - 1])
        .map_err(|e| io::Error::other(e.to_string()))?;
    buf[KEY_FILE_LEN - 1] = b'\n';
    Ok(())
}

/// Builds the key from a key file's content. Error reasons never include the content.
fn decode_seed(path: &Path, content: &[u8]) -> Result<SigningKey, KeyError> {
    let malformed = |reason| KeyError::MalformedKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    if content.len() != KEY_FILE_LEN {
        return Err(malformed("wrong length"));
    }
    let (hex_part, newline) = content.split_at(KEY_FILE_LEN - 1);
    if newline != b"\n" {
        return Err(malformed("missing final newline"));
    }
    if !hex_part.iter().copied().all(is_lower_hex) {
        return Err(malformed("not lowercase hex"));
    }
    let mut seed = [0u8; SECRET_KEY_LENGTH];
    let decoded = hex::decode_to_slice(hex_part, &mut seed);
    // `SigningKey` wipes itself on drop; the local copy of the seed is wiped here.
    let key = decoded.map(|()| SigningKey::from_bytes(&seed));
    wipe(&mut seed);
    let key = key.map_err(|_| malformed("not lowercase hex"))?;
    if key.verifying_key().is_weak() {
        return Err(KeyError::WeakKeyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Reads until `buf` is full or the file ends; returns the number of bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Overwrites secret bytes. `black_box` keeps the compiler from dropping the writes as dead stores
/// (the crate forbids `unsafe`, so volatile writes are not available).
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_id_is_checked_the_same() {
        let good = public_id(&generate().verifying_key());
        let key = parse_public_id(&good).unwrap();
        for _ in 0..2 {
            assert_eq!(
                public_key(&good).unwrap(),
                key,
                "the remembered key is the id's"
            );
            assert!(check_public_id(&good).is_ok());
            assert!(check_public_id(&good.to_uppercase()).is_err(), "uppercase");
            assert!(check_public_id(&good[..63]).is_err(), "short");
        }
        // The identity point: a weak key, refused every time.
        let weak = format!("01{}", "00".repeat(31));
        for _ in 0..2 {
            assert!(matches!(
                check_public_id(&weak),
                Err(KeyError::WeakPublicKey { .. })
            ));
        }
    }

    #[test]
    fn public_id_round_trips() {
        let key = generate().verifying_key();
        let id = public_id(&key);
        assert_eq!(id.len(), 64);
        assert_eq!(parse_public_id(&id).unwrap(), key);
    }

    #[test]
    fn uppercase_id_is_refused() {
        let id = public_id(&generate().verifying_key()).to_uppercase();
        assert!(matches!(
            parse_public_id(&id),
            Err(KeyError::MalformedPublicId { .. })
        ));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for id in [
            "",
            "00",
            &"0".repeat(63),
            &"0".repeat(65),
            &"g".repeat(64),
            &"é".repeat(32),
        ] {
            assert!(
                matches!(parse_public_id(id), Err(KeyError::MalformedPublicId { .. })),
                "{id:?}"
            );
        }
    }

    #[test]
    fn non_point_is_refused() {
        // y = 2 is not the y coordinate of any curve point.
        let id = format!("02{}", "0".repeat(62));
        assert!(matches!(
            parse_public_id(&id),
            Err(KeyError::MalformedPublicId { .. })
        ));
    }

    #[test]
    fn non_canonical_encoding_is_refused() {
        // y = p + 1 (non-canonical) decodes to the identity point, y = 1.
        let id = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
        assert!(matches!(
            parse_public_id(id),
            Err(KeyError::MalformedPublicId { .. })
        ));
    }

    #[test]
    fn weak_keys_are_refused() {
        // Identity, the order-2 point, and an order-8 point.
        for id in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        ] {
            assert!(
                matches!(parse_public_id(id), Err(KeyError::WeakPublicKey { .. })),
                "{id}"
            );
        }
    }

    #[test]
    fn error_does_not_echo_huge_input() {
        let huge = "x".repeat(100_000);
        let msg = parse_public_id(&huge).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }
}
