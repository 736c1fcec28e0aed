//! An account's lots in drawing order, held in shared chunks.
//!
//! Lots are never dropped when they are spent (a refund gives points back to the lots a
//! redemption drew from), only when they expire, so a regular customer's account holds one lot
//! per purchase for a whole validity period: thousands of them. Every entry that touches the
//! account copies it (the engine works on a copy, which is what lets a refused entry leave
//! nothing behind), the writer compares it with what it was, and the state writer diffs its lots
//! to write only the ones that changed. With a plain vector each of those steps costs time in
//! the number of lots, with an allocation per lot copied; here the lots sit in chunks of up to
//! [`CHUNK`] behind `Arc`s, so a copy shares every chunk, a change copies only the chunk it
//! touches, and comparisons and diffs skip the chunks both sides share. Each chunk also keeps
//! the sum of its lots' remaining points, so the account's holding is a sum over chunks and a
//! redemption skips the spent ones.

use super::state::Lot;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Lots per chunk once a chunk is split; a chunk splits in two when it reaches twice that.
/// A change copies one chunk (three strings a lot) and the vector of chunk pointers, so small
/// chunks win even for accounts of thousands of lots: at 16 rather than 64, seeding a demo of
/// 300 consumers with 500 lots each ran 11–21 % faster (docs/PERFORMANCE.md).
const CHUNK: usize = 16;

/// Lots in drawing order, with their points sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotChunk {
    lots: Vec<Lot>,
    /// Σ remaining over `lots`.
    remaining: u128,
}

impl LotChunk {
    fn new(lots: Vec<Lot>) -> Arc<LotChunk> {
        let remaining = lots.iter().map(|l| u128::from(l.remaining)).sum();
        Arc::new(LotChunk { lots, remaining })
    }
}

/// Where a lot is in its [`Lots`], valid until the lots are next inserted into or swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotPos {
    chunk: usize,
    at: usize,
}

/// An account's lots, ordered by `(expires_at, id)`: the order redemptions draw in.
#[derive(Clone, Default)]
pub struct Lots {
    /// None empty; every lot of a chunk sorts before every lot of the next.
    chunks: Vec<Arc<LotChunk>>,
}

impl Lots {
    /// Lots held.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.lots.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The lots in drawing order.
    pub fn iter(&self) -> LotsIter<'_> {
        let lots: fn(&Arc<LotChunk>) -> &[Lot] = |c| &c.lots;
        self.chunks.iter().flat_map(lots)
    }

    /// The lots in drawing order with their positions, skipping whole chunks with nothing left
    /// (spent lots in other chunks are still yielded); what a redemption walks.
    pub fn with_points(&self) -> impl Iterator<Item = (LotPos, &Lot)> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.remaining > 0)
            .flat_map(|(chunk, c)| {
                c.lots
                    .iter()
                    .enumerate()
                    .map(move |(at, lot)| (LotPos { chunk, at }, lot))
            })
    }

    /// Σ remaining over all lots, exact whatever they hold.
    pub fn held(&self) -> u128 {
        self.chunks.iter().map(|c| c.remaining).sum()
    }

    /// The position of the lot with id `id`.
    pub fn find(&self, id: &str) -> Option<LotPos> {
        self.chunks.iter().enumerate().find_map(|(chunk, c)| {
            c.lots
                .iter()
                .position(|l| l.id == id)
                .map(|at| LotPos { chunk, at })
        })
    }

    /// Changes the lot at `pos` (copying its chunk if another account value shares it); `None`
    /// if `pos` is not a lot's position. `f` may change what a lot holds, never its id or
    /// expiry: those place it in drawing order and in its state store key.
    pub fn update<R>(&mut self, pos: LotPos, f: impl FnOnce(&mut Lot) -> R) -> Option<R> {
        let shared = self.chunks.get_mut(pos.chunk)?;
        if pos.at >= shared.lots.len() {
            return None;
        }
        let chunk = Arc::make_mut(shared);
        let lot = chunk.lots.get_mut(pos.at)?;
        let before = u128::from(lot.remaining);
        let r = f(lot);
        chunk.remaining = chunk.remaining - before + u128::from(lot.remaining);
        Some(r)
    }

    /// Inserts `lot` at its place in drawing order (after lots that sort equal), where `key`
    /// gives a lot's sort key.
    pub fn insert_by_key<K: Ord>(&mut self, lot: Lot, key: impl Fn(&Lot) -> K) {
        let k = key(&lot);
        // The first chunk whose last lot sorts after the new one; the last chunk if none does.
        let i = self
            .chunks
            .partition_point(|c| c.lots.last().is_some_and(|l| key(l) <= k))
            .min(self.chunks.len().saturating_sub(1));
        if self.chunks.is_empty() {
            self.chunks.push(LotChunk::new(vec![lot]));
            return;
        }
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        let at = chunk.lots.partition_point(|l| key(l) <= k);
        chunk.remaining += u128::from(lot.remaining);
        chunk.lots.insert(at, lot);
        if chunk.lots.len() >= 2 * CHUNK {
            let upper = chunk.lots.split_off(CHUNK);
            chunk.remaining = chunk.lots.iter().map(|l| u128::from(l.remaining)).sum();
            self.chunks.insert(i + 1, LotChunk::new(upper));
        }
    }

    /// Removes and returns the lots that sort before the first one `keep` accepts: with lots
    /// in drawing order and `keep` testing expiry, the expired ones.
    pub fn take_while_not(&mut self, keep: impl Fn(&Lot) -> bool) -> Vec<Lot> {
        let mut taken = Vec::new();
        while let Some(first) = self.chunks.first_mut() {
            let n = first.lots.iter().take_while(|l| !keep(l)).count();
            if n == 0 {
                break;
            }
            if n == first.lots.len() {
                let whole = self.chunks.remove(0);
                taken.extend(Arc::unwrap_or_clone(whole).lots);
                continue;
            }
            let chunk = Arc::make_mut(first);
            taken.extend(chunk.lots.drain(..n));
            chunk.remaining = chunk.lots.iter().map(|l| u128::from(l.remaining)).sum();
            break;
        }
        taken
    }

    /// The lots that must be written and removed to turn `base` into these lots: lots new or
    /// changed here, and lots of `base` no longer here. Chunks both share are skipped unread.
    pub fn changes_from<'a>(&'a self, base: &'a Lots) -> (Vec<&'a Lot>, Vec<&'a Lot>) {
        let ours: HashSet<*const LotChunk> = self.chunks.iter().map(Arc::as_ptr).collect();
        let theirs: HashSet<*const LotChunk> = base.chunks.iter().map(Arc::as_ptr).collect();
        let mut before: HashMap<&str, &Lot> = base
            .chunks
            .iter()
            .filter(|c| !ours.contains(&Arc::as_ptr(c)))
            .flat_map(|c| c.lots.iter())
            .map(|l| (l.id.as_str(), l))
            .collect();
        let mut written = Vec::new();
        for c in self
            .chunks
            .iter()
            .filter(|c| !theirs.contains(&Arc::as_ptr(c)))
        {
            for lot in &c.lots {
                if before.remove(lot.id.as_str()) != Some(lot) {
                    written.push(lot);
                }
            }
        }
        (written, before.into_values().collect())
    }

    /// The lots as a vector, in drawing order.
    pub fn into_vec(self) -> Vec<Lot> {
        self.chunks
            .into_iter()
            .flat_map(|c| Arc::unwrap_or_clone(c).lots)
            .collect()
    }
}

impl From<Vec<Lot>> for Lots {
    /// Lots already in drawing order.
    fn from(lots: Vec<Lot>) -> Lots {
        let mut chunks = Vec::with_capacity(lots.len().div_ceil(CHUNK));
        let mut rest = lots.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(LotChunk::new(rest.by_ref().take(CHUNK).collect()));
        }
        Lots { chunks }
    }
}

/// The lots of a [`Lots`] in drawing order.
pub type LotsIter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<LotChunk>>,
    &'a [Lot],
    fn(&'a Arc<LotChunk>) -> &'a [Lot],
>;

impl<'a> IntoIterator for &'a Lots {
    type Item = &'a Lot;
    type IntoIter = LotsIter<'a>;
    fn into_iter(self) -> LotsIter<'a> {
        self.iter()
    }
}

impl PartialEq for Lots {
    /// The same lots in the same order, however they are chunked; chunks both share are equal
    /// without being read.
    fn eq(&self, other: &Lots) -> bool {
        let aligned = self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| a.lots.len() == b.lots.len());
        if aligned {
            return self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b) || a.lots == b.lots);
        }
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Lots {}

impl std::fmt::Debug for Lots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Lots {
    /// As the sequence of lots, exactly as a vector of them.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // With its length first, as postcard needs it.
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for lot in self.iter() {
            seq.serialize_element(lot)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Lots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lots, D::Error> {
        Vec::<Lot>::deserialize(d).map(Lots::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::LotSource;

    fn lot(n: u64, remaining: u64) -> Lot {
        Lot {
            id: format!("{n}.0"),
            merchant: "m".into(),
            source: LotSource::Purchase,
            order_id: format!("o{n}"),
            points: 10,
            remaining,
            available_at: 0,
            expires_at: n,
        }
    }

    fn key(l: &Lot) -> u64 {
        l.expires_at
    }

    fn many(n: u64) -> Lots {
        let mut lots = Lots::default();
        // Out of order, so that inserts land in every chunk and split them.
        for i in (0..n).map(|i| (i * 7919) % n) {
            lots.insert_by_key(lot(i, i % 3), key);
        }
        lots
    }

    #[test]
    fn inserts_keep_drawing_order_and_the_sums() {
        let lots = many(1000);
        let order: Vec<u64> = lots.iter().map(|l| l.expires_at).collect();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
        assert!(lots.chunks.len() > 1000 / (2 * CHUNK));
        assert!(lots.chunks.iter().all(|c| c.lots.len() < 2 * CHUNK));
        let held: u128 = lots.iter().map(|l| u128::from(l.remaining)).sum();
        assert_eq!(lots.held(), held);
        assert!(lots
            .chunks
            .iter()
            .all(|c| c.remaining == c.lots.iter().map(|l| u128::from(l.remaining)).sum()));
    }

    #[test]
    fn a_copy_shares_chunks_until_one_changes() {
        let base = many(1000);
        let mut copy = base.clone();
        assert_eq!(copy, base);
        assert_eq!(copy.changes_from(&base), (vec![], vec![]));
        let pos = copy.find("500.0").expect("lot 500");
        copy.update(pos, |l| l.remaining = 9);
        assert_ne!(copy, base);
        let (written, removed) = copy.changes_from(&base);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].id, "500.0");
        assert!(removed.is_empty());
        let shared = copy
            .chunks
            .iter()
            .zip(&base.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, base.chunks.len() - 1);
        assert_eq!(copy.held(), base.held() - 2 + 9);
    }

    #[test]
    fn sweeping_a_prefix_and_diffing_across_chunkings() {
        let base = many(1000);
        let mut swept = base.clone();
        let gone = swept.take_while_not(|l| l.expires_at >= 300);
        assert_eq!(gone.len(), 300);
        assert_eq!(swept.iter().next().map(|l| l.expires_at), Some(300));
        swept.insert_by_key(lot(2000, 5), key);
        let (written, removed) = swept.changes_from(&base);
        assert_eq!(
            written.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["2000.0"]
        );
        let mut removed: Vec<u64> = removed.iter().map(|l| l.expires_at).collect();
        removed.sort_unstable();
        assert_eq!(removed, (0..300).collect::<Vec<_>>());
        // The same lots chunked differently are equal, with as many chunks or not.
        let rechunked = Lots::from(swept.iter().cloned().collect::<Vec<_>>());
        assert_eq!(rechunked, swept);
        // Two chunks (CHUNK and CHUNK + 2 lots); half of the first swept; read back as
        // chunks of CHUNK and CHUNK / 2 + 2.
        let mut split = many(2 * CHUNK as u64 + 2);
        assert_eq!(split.chunks.len(), 2);
        split.take_while_not(|l| l.expires_at >= CHUNK as u64 / 2);
        let read_back = Lots::from(split.iter().cloned().collect::<Vec<_>>());
        assert_eq!(read_back.chunks.len(), 2);
        assert_ne!(read_back.chunks[0].lots.len(), split.chunks[0].lots.len());
        assert_eq!(read_back, split);
        assert_eq!(split, read_back);
        assert_eq!(swept.held(), rechunked.held());
    }

    #[test]
    fn serializes_as_a_vector_of_lots() {
        let lots = many(200);
        let vec: Vec<Lot> = lots.iter().cloned().collect();
        assert_eq!(
            postcard::to_stdvec(&lots).ok(),
            postcard::to_stdvec(&vec).ok()
        );
        assert_eq!(
            serde_json::to_string(&lots).ok(),
            serde_json::to_string(&vec).ok()
        );
        let back: Lots = postcard::from_bytes(&postcard::to_stdvec(&vec).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(back, lots);
    }
}
