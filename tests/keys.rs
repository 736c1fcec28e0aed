//! Key files on disk: permissions, no overwrite, strict content.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pointsledger::keys::{self, KeyError};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn written_key_reads_back_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/merchant.key");
    let key = keys::generate();
    keys::write_key_file(&path, &key).unwrap();

    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);

    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content, format!("{}\n", hex::encode(key.to_bytes())));

    let read = keys::read_key_file(&path).unwrap();
    assert_eq!(read.to_bytes(), key.to_bytes());
}

#[test]
fn existing_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let first = keys::generate();
    keys::write_key_file(&path, &first).unwrap();
    let err = keys::write_key_file(&path, &keys::generate()).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        keys::read_key_file(&path).unwrap().to_bytes(),
        first.to_bytes()
    );
}

#[test]
fn file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    keys::write_key_file(&path, &keys::generate()).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o601] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = keys::read_key_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode, .. } if mode == bad),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("{bad:04o}")), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(keys::read_key_file(&path).is_ok());
}

#[test]
fn malformed_content_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = hex::encode([0x5au8; 32]);
    let cases = [
        String::new(),
        secret.clone(),
        format!("{secret}\n\n"),
        format!("{secret}\r\n"),
        format!("{}\n", secret.to_uppercase()),
        format!("{}\n", &secret[..62]),
        format!("{}zz\n", &secret[..62]),
        format!(" {}\n", &secret[..63]),
        "x".repeat(10_000),
    ];
    for (i, content) in cases.iter().enumerate() {
        let path = dir.path().join(format!("k{i}"));
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = keys::read_key_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::MalformedKeyFile { .. }),
            "{i}: {err}"
        );
        let msg = format!("{err} {err:?}");
        assert!(!msg.to_lowercase().contains(&secret[..16]), "{msg}");
    }
}

#[test]
fn missing_file_and_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = keys::read_key_file(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }), "{err}");

    let sub = dir.path().join("d");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    let err = keys::read_key_file(&sub).unwrap_err();
    assert!(matches!(err, KeyError::NotARegularFile { .. }), "{err}");
}

#[test]
fn public_ids_are_canonical_lowercase() {
    let key = keys::generate().verifying_key();
    let id = keys::public_id(&key);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(keys::parse_public_id(&id).unwrap(), key);
    assert!(matches!(
        keys::parse_public_id(&id.to_uppercase()),
        Err(KeyError::MalformedPublicId { .. })
    ));
    let identity = "0100000000000000000000000000000000000000000000000000000000000000";
    let err = keys::parse_public_id(identity).unwrap_err();
    assert!(matches!(err, KeyError::WeakPublicKey { .. }), "{err}");
    assert!(err.to_string().contains(identity));
}
