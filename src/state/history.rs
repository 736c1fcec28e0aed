//! An account's history in the state store: the leaf indexes of the entries that changed it,
//! packed so that an entry costs no key of its own.
//!
//! Every entry that changes an account rewrites the account's `A` key anyway, so its newest
//! indexes ride along at the end of that value, after the account (the *tail*, fewer than
//! [`SEAL`]); once the tail holds [`SEAL`] of them they move into a sealed chunk under `Y`
//! (account `/` first index, BE), which is never rewritten. A sled key costs about 15 µs and
//! 150 bytes of disk whatever it holds (docs/PERFORMANCE.md), so one key per [`SEAL`] entries
//! instead of one per entry is most of what the history costs gone.
//!
//! Both hold LEB128 varints of the gaps between consecutive indexes: a chunk the gaps after the
//! index in its key, a tail its first index and then the gaps. An earlier layout wrote one `Y`
//! key per entry with an empty value and no tail, which reads as chunks of one, so a store
//! written by it goes on working as it is. The state digest hashes the history one index at a
//! time in that earlier form ([`super::state_digest`]), so it does not depend on how the
//! indexes are packed, which differs between a replay in one go and one in many batches.

use super::StoreError;

/// How many indexes a tail holds before they are sealed into a chunk.
pub(super) const SEAL: usize = 32;

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.into(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The varints of `bytes`, in order; `key` names the value in errors.
fn varints(key: &[u8], mut bytes: &[u8]) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let (&b, rest) = bytes
                .split_first()
                .ok_or_else(|| corrupt(key, "a history varint is cut short"))?;
            bytes = rest;
            if shift > 63 || (shift == 63 && b > 1) {
                return Err(corrupt(key, "a history varint overflows"));
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        out.push(n);
    }
    Ok(out)
}

/// Indexes from `first` and the `gaps` after it; `key` names the value in errors.
fn undelta(key: &[u8], first: u64, gaps: &[u64]) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::with_capacity(1 + gaps.len());
    out.push(first);
    let mut at = first;
    for gap in gaps {
        at = at
            .checked_add(*gap)
            .filter(|_| *gap > 0)
            .ok_or_else(|| corrupt(key, "history indexes do not ascend"))?;
        out.push(at);
    }
    Ok(out)
}

fn gaps(out: &mut Vec<u8>, indexes: &[u64]) {
    for w in indexes.windows(2) {
        put_varint(out, w[1] - w[0]);
    }
}

/// The value of a sealed chunk whose first index, `indexes[0]`, is in its key.
pub(super) fn chunk_value(indexes: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    gaps(&mut out, indexes);
    out
}

/// The indexes of the chunk under `key`, whose first index is `first`.
pub(super) fn chunk_indexes(key: &[u8], first: u64, value: &[u8]) -> Result<Vec<u64>, StoreError> {
    undelta(key, first, &varints(key, value)?)
}

/// Appends the tail `indexes` (ascending, fewer than [`SEAL`]) to an account's value.
pub(super) fn put_tail(out: &mut Vec<u8>, indexes: &[u64]) {
    if let Some(first) = indexes.first() {
        put_varint(out, *first);
        gaps(out, indexes);
    }
}

/// The tail that follows the account in its value (`rest`, what the account left).
pub(super) fn tail(key: &[u8], rest: &[u8]) -> Result<Vec<u64>, StoreError> {
    let mut all = varints(key, rest)?;
    if all.is_empty() {
        return Ok(all);
    }
    let first = all.remove(0);
    undelta(key, first, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_tails_give_back_their_indexes() {
        let indexes = [0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX / 2, u64::MAX];
        let v = chunk_value(&indexes);
        assert_eq!(chunk_indexes(b"k", 0, &v).expect("chunk"), indexes);
        assert_eq!(chunk_indexes(b"k", 9, &[]).expect("one"), [9]);
        let mut t = b"account".to_vec();
        let at = t.len();
        put_tail(&mut t, &indexes[3..]);
        assert_eq!(tail(b"k", &t[at..]).expect("tail"), indexes[3..]);
        assert!(tail(b"k", &[]).expect("empty").is_empty());
    }

    #[test]
    fn damaged_values_are_refused() {
        assert!(chunk_indexes(b"k", 0, &[0x80]).is_err(), "cut short");
        assert!(chunk_indexes(b"k", 0, &[0]).is_err(), "a zero gap");
        assert!(chunk_indexes(b"k", u64::MAX, &[1]).is_err(), "past u64");
        let eleven = [0xff; 10].iter().chain(&[1u8]).copied().collect::<Vec<_>>();
        assert!(tail(b"k", &eleven).is_err(), "an overflowing varint");
    }
}
