//! The group record: the unit the segment is made of, one per appended group.
//!
//! ```text
//! offset size  field
//!      0    4  magic "PLG1"
//!      4    4  count: leaves in the group (u32 BE, >= 1)
//!      8    8  first: index of the group's first leaf (u64 BE)
//!     16    4  payload length in bytes (u32 BE)
//!     20    4  reserved, zero
//!     24   32  root of the tree after this group
//!     56   32  check = SHA-256("pointsledger log record v1" || previous record's check
//!                              || bytes 0..56 || leaf hash 0 || ... || leaf hash count-1)
//!     88    -  payload: count times (u16 BE length || leaf bytes), the entry-bundle framing
//! ```
//!
//! The check covers every byte of the record (the leaf hashes cover the payload) and chains to
//! the record before it, so a record is accepted on open only if it is whole and follows the
//! last accepted one: a torn write, zeros, or stale bytes left past a cut tail all fail it.

use sha2::{Digest, Sha256};

use crate::merkle::Hash;

use super::layout::MAX_LEAF_LEN;

/// The first four bytes of every record.
pub(crate) const MAGIC: [u8; 4] = *b"PLG1";

/// Length of the fixed header before the payload.
pub(crate) const HEADER_LEN: usize = 88;

/// The "previous check" of the first record.
pub(crate) const CHAIN_START: Hash = [0; 32];

/// The largest payload of one record (64 MiB): bounds what open reads for one record and what a
/// single append holds in memory.
pub const MAX_GROUP_BYTES: usize = 64 << 20;

/// Domain separation for the check.
const DOMAIN: &[u8] = b"pointsledger log record v1";

/// A decoded record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Leaves in the group.
    pub count: u32,
    /// Index of the first leaf.
    pub first: u64,
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// Tree root after the group.
    pub root: Hash,
    /// The chained check.
    pub check: Hash,
}

impl Header {
    /// Total record length.
    pub(super) fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Decodes a header, refusing anything a writer could not have written (wrong magic,
    /// reserved bits set, impossible lengths). It does not prove the record whole: that is
    /// [`check`]'s job once the payload is read.
    pub(super) fn decode(b: &[u8; HEADER_LEN]) -> Option<Header> {
        if b[0..4] != MAGIC || b[20..24] != [0; 4] {
            return None;
        }
        let count = u32::from_be_bytes(b[4..8].try_into().ok()?);
        let first = u64::from_be_bytes(b[8..16].try_into().ok()?);
        let payload_len = u32::from_be_bytes(b[16..20].try_into().ok()?);
        let min = u64::from(count) * 2;
        let max = u64::from(count) * (2 + MAX_LEAF_LEN as u64);
        if count == 0
            || u64::from(payload_len) < min
            || u64::from(payload_len) > max
            || payload_len as usize > MAX_GROUP_BYTES
        {
            return None;
        }
        Some(Header {
            count,
            first,
            payload_len,
            root: b[24..56].try_into().ok()?,
            check: b[56..88].try_into().ok()?,
        })
    }
}

/// Computes a record's chained check from the previous check, the header's first 56 bytes and
/// the group's leaf hashes.
pub(crate) fn check(prev: &Hash, header56: &[u8], leaf_hashes: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(header56);
    for lh in leaf_hashes {
        h.update(lh);
    }
    h.finalize().into()
}

/// Builds a whole record; returns its bytes and its check. The caller has checked every leaf
/// against [`MAX_LEAF_LEN`] and the payload against [`MAX_GROUP_BYTES`].
pub(crate) fn encode<L: AsRef<[u8]>>(
    first: u64,
    leaves: &[L],
    leaf_hashes: &[Hash],
    root: &Hash,
    prev: &Hash,
    payload_len: usize,
) -> (Vec<u8>, Hash) {
    let mut out = Vec::with_capacity(HEADER_LEN + payload_len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(leaves.len() as u32).to_be_bytes());
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&(payload_len as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(root);
    let c = check(prev, &out[..56], leaf_hashes);
    out.extend_from_slice(&c);
    for l in leaves {
        let l = l.as_ref();
        out.extend_from_slice(&(l.len() as u16).to_be_bytes());
        out.extend_from_slice(l);
    }
    (out, c)
}

/// Splits a payload into `(offset in payload, length)` of each leaf, requiring exactly `count`
/// leaves that fill the payload.
pub(crate) fn split_payload(payload: &[u8], count: u32) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut pos = 0usize;
    for _ in 0..count {
        let len_bytes = payload.get(pos..pos + 2)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let start = pos + 2;
        payload.get(start..start + len)?;
        out.push((start, len));
        pos = start + len;
    }
    (pos == payload.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn round_trip_and_every_byte_matters() {
        let leaves = [b"one".to_vec(), Vec::new(), vec![7u8; 300]];
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let payload_len = leaves.iter().map(|l| 2 + l.len()).sum();
        let prev = [9u8; 32];
        let (rec, c) = encode(41, &leaves, &hashes, &[5; 32], &prev, payload_len);
        let h = Header::decode(rec[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(h.count, 3);
        assert_eq!(h.first, 41);
        assert_eq!(h.check, c);
        assert_eq!(h.record_len() as usize, rec.len());
        let parts = split_payload(&rec[HEADER_LEN..], 3).unwrap();
        let payload = &rec[HEADER_LEN..];
        for ((off, len), leaf) in parts.iter().zip(&leaves) {
            assert_eq!(&payload[*off..off + len], &leaf[..]);
        }
        assert_eq!(check(&prev, &rec[..56], &hashes), c);
        assert_ne!(check(&[0; 32], &rec[..56], &hashes), c, "the chain binds");
        // Flip each bit of the record: the header refuses it, the framing refuses it, or the
        // check no longer matches.
        for i in 0..rec.len() {
            for bit in [0u8, 3, 7] {
                let mut r = rec.clone();
                r[i] ^= 1 << bit;
                let ok = Header::decode(r[..HEADER_LEN].try_into().unwrap())
                    .and_then(|h| {
                        let parts = split_payload(&r[HEADER_LEN..], h.count)?;
                        let lhs: Vec<Hash> = parts
                            .iter()
                            .map(|(o, l)| leaf_hash(&r[HEADER_LEN + o..HEADER_LEN + o + l]))
                            .collect();
                        (check(&prev, &r[..56], &lhs) == h.check).then_some(())
                    })
                    .is_some();
                assert!(!ok, "flip at byte {i} bit {bit} went unnoticed");
            }
        }
        assert!(Header::decode(&[0; HEADER_LEN]).is_none());
    }
}
