//! C2SP tlog-tiles resource paths: `checkpoint`, `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, with `N` written in groups of three digits (`x001/x234/067`).
//!
//! Written here rather than taken from `tlog_tiles::Tile`: that type implements the Go sumdb
//! form `tile/<H>/<L>/<N>` (the tile height in the path, `data` instead of `entries`), which is
//! not the C2SP form, and its constructor panics on out-of-range input where a path parser
//! facing the network must return an error.

use super::LogError;

/// Entries per full entry bundle and hashes per full hash tile (tile height 8).
pub const TILE_WIDTH: u64 = 256;

/// The tile height: a hash tile at level `L` holds hashes of tree level `8 L`.
pub const TILE_HEIGHT: u32 = 8;

/// Highest tile level the spec allows.
pub const MAX_TILE_LEVEL: u8 = 63;

/// The longest leaf an entry bundle can frame (its length is a big-endian `u16`).
pub const MAX_LEAF_LEN: usize = u16::MAX as usize;

/// A resource of the tlog-tiles read API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `checkpoint`: the latest signed checkpoint note.
    Checkpoint,
    /// `tile/<level>/<index>[.p/<width>]`: `width` hashes of tree level `8 level`.
    Tile {
        /// Tile level (0 = leaf hashes).
        level: u8,
        /// Tile number within the level.
        index: u64,
        /// Hashes in the tile, 1..=256 (256 = full, no `.p` suffix).
        width: u16,
    },
    /// `tile/entries/<index>[.p/<width>]`: `width` length-prefixed leaves.
    Bundle {
        /// Bundle number: leaves `256 index ..`.
        index: u64,
        /// Leaves in the bundle, 1..=256.
        width: u16,
    },
}

/// Writes `N` as the spec does: three-digit groups, all but the last prefixed with `x`.
fn fmt_index(mut n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    n /= 1000;
    while n > 0 {
        s = format!("x{:03}/{s}", n % 1000);
        n /= 1000;
    }
    s
}

/// The `.p/<W>` suffix of a partial resource, empty for a full one.
fn fmt_width(width: u16) -> String {
    if u64::from(width) >= TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

/// The path of a hash tile (`width` 256 = full).
pub fn tile_path(level: u8, index: u64, width: u16) -> String {
    format!("tile/{level}/{}{}", fmt_index(index), fmt_width(width))
}

/// The path of an entry bundle (`width` 256 = full).
pub fn bundle_path(index: u64, width: u16) -> String {
    format!("tile/entries/{}{}", fmt_index(index), fmt_width(width))
}

/// The leaves of an entry bundle's body: each behind its big-endian `u16` length. A torn
/// length or leaf is an error, not a shorter bundle.
pub fn unbundle(mut body: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
    let mut leaves = Vec::new();
    while !body.is_empty() {
        let torn = || LogError::Corrupt("an entry bundle ends inside a leaf".into());
        let len = match body {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => return Err(torn()),
        };
        let leaf = body.get(2..2 + len).ok_or_else(torn)?;
        leaves.push(leaf.to_vec());
        body = &body[2 + len..];
    }
    Ok(leaves)
}

impl Resource {
    /// The log size from which the resource exists: its last leaf plus one (0 for the
    /// checkpoint); `None` for a tile or bundle no log reaches (its leaves pass 2^64 - 1), or
    /// one of width 0 or over 256.
    pub fn needs_size(&self) -> Option<u64> {
        let (tree_level, index, width) = match *self {
            Resource::Checkpoint => return Some(0),
            Resource::Tile {
                level,
                index,
                width,
            } => (u32::from(level) * TILE_HEIGHT, index, width),
            Resource::Bundle { index, width } => (0, index, width),
        };
        let w = u64::from(width);
        if w == 0 || w > TILE_WIDTH || tree_level >= 64 {
            return None;
        }
        // (256 index + width) nodes of tree level `tree_level`, each 2^tree_level leaves.
        index
            .checked_mul(TILE_WIDTH)
            .and_then(|n| n.checked_add(w))
            .and_then(|n| n.checked_mul(1u64 << tree_level))
    }

    /// The resource's path, as a client requests it (without a leading `/`).
    pub fn path(&self) -> String {
        match *self {
            Resource::Checkpoint => "checkpoint".to_string(),
            Resource::Tile {
                level,
                index,
                width,
            } => tile_path(level, index, width),
            Resource::Bundle { index, width } => bundle_path(index, width),
        }
    }

    /// Parses a path strictly: exactly the form [`Resource::path`] writes, so that one
    /// resource has one path (caches and mirrors key on it). A leading `/` is accepted.
    pub fn parse(path: &str) -> Result<Resource, LogError> {
        let bad = || LogError::BadPath(path.chars().take(80).collect());
        let p = path.strip_prefix('/').unwrap_or(path);
        if p.len() > 80 {
            return Err(bad());
        }
        if p == "checkpoint" {
            return Ok(Resource::Checkpoint);
        }
        let rest = p.strip_prefix("tile/").ok_or_else(bad)?;
        let (kind, rest) = rest.split_once('/').ok_or_else(bad)?;
        let (digits, width) = match rest.split_once(".p/") {
            Some((d, w)) => {
                let width: u16 = w.parse().map_err(|_| bad())?;
                if width == 0 || u64::from(width) >= TILE_WIDTH {
                    return Err(bad());
                }
                (d, width)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let mut index: u64 = 0;
        let groups: Vec<&str> = digits.split('/').collect();
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let g = if last {
                *g
            } else {
                g.strip_prefix('x').ok_or_else(bad)?
            };
            if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let v: u64 = g.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(v))
                .ok_or_else(bad)?;
        }
        let r = if kind == "entries" {
            Resource::Bundle { index, width }
        } else {
            let level: u8 = kind.parse().map_err(|_| bad())?;
            if level > MAX_TILE_LEVEL {
                return Err(bad());
            }
            Resource::Tile {
                level,
                index,
                width,
            }
        };
        // One path per resource: "007" as a level, "x000/001" for 1, and so on are refused.
        if r.path() != p {
            return Err(bad());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_needs_all_its_leaves() {
        let tile = |level, index, width| Resource::Tile {
            level,
            index,
            width,
        };
        assert_eq!(Resource::Checkpoint.needs_size(), Some(0));
        assert_eq!(
            Resource::Bundle {
                index: 2,
                width: 89
            }
            .needs_size(),
            Some(601)
        );
        assert_eq!(tile(0, 0, 256).needs_size(), Some(256));
        assert_eq!(tile(1, 0, 2).needs_size(), Some(512));
        assert_eq!(tile(2, 1, 256).needs_size(), Some(512 * 65_536));
        assert_eq!(tile(8, 0, 1).needs_size(), None, "2^64 leaves");
        assert_eq!(tile(7, u64::MAX, 1).needs_size(), None);
        assert_eq!(tile(0, 0, 0).needs_size(), None);
        assert_eq!(
            Resource::Bundle {
                index: 0,
                width: 257
            }
            .needs_size(),
            None
        );
    }

    #[test]
    fn paths_as_the_spec_writes_them() {
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 1_234_067, 8), "tile/1/x001/x234/067.p/8");
        assert_eq!(
            bundle_path(1_234_067, 17),
            "tile/entries/x001/x234/067.p/17"
        );
        assert_eq!(bundle_path(0, 256), "tile/entries/000");
        assert_eq!(tile_path(3, 1000, 256), "tile/3/x001/000");
        for r in [
            Resource::Checkpoint,
            Resource::Tile {
                level: 63,
                index: u64::MAX,
                width: 255,
            },
            Resource::Bundle {
                index: 999,
                width: 1,
            },
            Resource::Bundle {
                index: 1000,
                width: 256,
            },
        ] {
            assert_eq!(Resource::parse(&r.path()).unwrap(), r);
            assert_eq!(Resource::parse(&format!("/{}", r.path())).unwrap(), r);
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for p in [
            "",
            "tile",
            "tile/0",
            "tile/0/",
            "tile/0/1",
            "tile/0/0001",
            "tile/00/000",
            "tile/64/000",
            "tile/0/x000/001",
            "tile/0/001/x002",
            "tile/0/x001x/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/017",
            "tile/0/000.p/",
            "tile/data/000",
            "tile/entries/000.p/-1",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "checkpoint/",
            "tile/entries/+00",
        ] {
            assert!(
                matches!(Resource::parse(p), Err(LogError::BadPath(_))),
                "{p:?} must be refused"
            );
        }
    }
}
