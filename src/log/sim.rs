//! A file system in memory that keeps only what was synced: the power-cut model the log's
//! durability tests run against.
//!
//! Every file has the bytes the process sees and the bytes that would survive a power cut.
//! [`LogFile::sync_data`] makes the first the second. Names (create, rename, remove) survive
//! only once [`LogFs::sync_dir`] of their directory ran. At a power cut
//! ([`PowerCutFs::power_cut`], or armed with [`PowerCutFs::cut_after`] to strike at the N-th
//! mutating call from now) every call from then on fails, from every thread and every open
//! handle, as if the process had died. [`PowerCutFs::reboot`] then decides what the disk kept:
//! for every file a random prefix of its unsynced writes, the last one kept torn at any byte; for
//! every directory a random prefix of its unsynced name changes. Files no name points to are
//! gone. Handles opened before the cut stay dead.
//!
//! This is stricter than most disks in one way (nothing unsynced is promised) and kinder in
//! another (unsynced writes are kept in order, as a prefix). The log's record checksums do not
//! rely on the order, but the order keeps failures reproducible from a seed.
//!
//! [`PowerCutFs::set_full`] models a full volume: while set, a write or `set_len` that would grow
//! a file fails with [`io::ErrorKind::StorageFull`]; writes inside a file's current length still
//! succeed, as they do on a real file system for blocks already allocated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::io::{LockGuard, LogFile, LogFs, OpenMode};

/// One unsynced change to a file's bytes.
#[derive(Debug, Clone)]
enum DataOp {
    /// `pwrite(data, offset)`.
    Write {
        /// Where the write starts.
        offset: u64,
        /// The bytes written.
        data: Vec<u8>,
    },
    /// `ftruncate(len)`.
    SetLen(u64),
}

/// One unsynced change to a directory's listing.
#[derive(Debug, Clone)]
enum DirOp {
    /// A new name for an inode (file creation).
    Link(PathBuf, u64),
    /// A name removed.
    Unlink(PathBuf),
    /// A name moved over another (atomic replace).
    Rename(PathBuf, PathBuf),
}

/// A file's contents.
#[derive(Debug, Default)]
struct Inode {
    /// What reads see now.
    current: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<DataOp>,
}

/// Applies one data change to a byte vector.
fn apply(bytes: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { offset, data } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(data.len());
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(data);
        }
        DataOp::SetLen(len) => bytes.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

/// Applies one name change to a listing.
fn apply_dir(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Link(name, inode) => {
            names.insert(name.clone(), *inode);
        }
        DirOp::Unlink(name) => {
            names.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(inode) = names.remove(from) {
                names.insert(to.clone(), inode);
            }
        }
    }
}

/// Everything the simulated disk holds, behind one mutex.
#[derive(Debug, Default)]
struct State {
    /// Bumped at every reboot; handles from an older epoch are dead.
    epoch: u64,
    /// False between a power cut and the reboot.
    off: bool,
    /// Mutating calls still allowed before the armed cut strikes.
    cut_in: Option<u64>,
    /// File syncs still allowed before the armed cut strikes.
    cut_at_sync: Option<u64>,
    /// Whether growing a file fails with `StorageFull`.
    full: bool,
    /// Mutating calls since creation (for tests that want to spread cuts).
    mutations: u64,
    /// Next inode number.
    next_inode: u64,
    /// File contents by inode.
    inodes: HashMap<u64, Inode>,
    /// The listing the process sees.
    names: BTreeMap<PathBuf, u64>,
    /// The listing that survives a power cut.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Unsynced name changes per directory, oldest first.
    dir_ops: HashMap<PathBuf, Vec<DirOp>>,
    /// Paths locked now.
    locks: HashSet<PathBuf>,
}

/// The error every call returns once the power is off.
fn power_off() -> io::Error {
    io::Error::other("power cut")
}

/// The directory a path's name lives in.
fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl State {
    /// Fails if the power is off or the handle is from before a reboot.
    fn alive(&self, epoch: u64) -> io::Result<()> {
        if self.off || epoch != self.epoch {
            return Err(power_off());
        }
        Ok(())
    }

    /// Counts a file sync for [`PowerCutFs::cut_at_sync`], then as a mutating call.
    fn sync(&mut self, epoch: u64) -> io::Result<()> {
        self.alive(epoch)?;
        if let Some(left) = self.cut_at_sync {
            if left == 0 {
                self.off = true;
                self.cut_at_sync = None;
                return Err(power_off());
            }
            self.cut_at_sync = Some(left - 1);
        }
        self.mutate(epoch)
    }

    /// Counts a mutating call, cutting the power if the armed cut is due.
    fn mutate(&mut self, epoch: u64) -> io::Result<()> {
        self.alive(epoch)?;
        if let Some(left) = self.cut_in {
            if left == 0 {
                self.off = true;
                self.cut_in = None;
                self.cut_at_sync = None;
                return Err(power_off());
            }
            self.cut_in = Some(left - 1);
        }
        self.mutations += 1;
        Ok(())
    }

    /// The inode behind a live handle.
    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "inode gone"))
    }
}

/// The simulated file system. Cheap to clone; clones share the disk.
#[derive(Debug, Clone, Default)]
pub struct PowerCutFs {
    /// The disk.
    state: Arc<Mutex<State>>,
}

impl PowerCutFs {
    /// An empty disk, powered on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state; a panic while holding it poisons nothing worth keeping.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms a power cut: the `n`-th mutating call from now (0 = the next one) fails and the power
    /// goes off.
    pub fn cut_after(&self, n: u64) {
        self.lock().cut_in = Some(n);
    }

    /// Arms a power cut at the `n`-th file sync from now (0 = the next one): the sync fails
    /// and the power goes off, leaving the writes before it unsynced. Cuts there are the ones
    /// that tear records, so tests aim some of their cuts with it.
    pub fn cut_at_sync(&self, n: u64) {
        self.lock().cut_at_sync = Some(n);
    }

    /// Cuts the power now.
    pub fn power_cut(&self) {
        let mut s = self.lock();
        s.off = true;
        s.cut_in = None;
        s.cut_at_sync = None;
    }

    /// Whether the power is off (a cut happened and no reboot yet).
    pub fn is_off(&self) -> bool {
        self.lock().off
    }

    /// Mutating calls made so far (writes, syncs, truncates, renames, removes, creations).
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// Sets or clears the full-volume condition.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// The length of the file at `path` as the process sees it, if it exists.
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        let s = self.lock();
        let id = s.names.get(path)?;
        s.inodes.get(id).map(|i| i.current.len() as u64)
    }

    /// Decides what survived the cut (see the module doc), powers on and kills every handle
    /// opened before. Calling it without a cut first models a cut at this instant.
    pub fn reboot<R: Rng>(&self, rng: &mut R) {
        let mut s = self.lock();
        let s = &mut *s;
        for inode in s.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            let keep = rng.gen_range(0..=pending.len());
            for op in &pending[..keep] {
                apply(&mut inode.durable, op);
            }
            if let Some(DataOp::Write { offset, data }) = pending.get(keep) {
                let torn = rng.gen_range(0..=data.len());
                if torn > 0 {
                    let op = DataOp::Write {
                        offset: *offset,
                        data: data[..torn].to_vec(),
                    };
                    apply(&mut inode.durable, &op);
                }
            }
            inode.current = inode.durable.clone();
        }
        let mut dirs: Vec<_> = s.dir_ops.drain().collect();
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, ops) in dirs {
            let keep = rng.gen_range(0..=ops.len());
            for op in &ops[..keep] {
                apply_dir(&mut s.durable_names, op);
            }
        }
        s.names = s.durable_names.clone();
        let live: HashSet<u64> = s.names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        s.locks.clear();
        s.off = false;
        s.cut_in = None;
        s.cut_at_sync = None;
        s.full = false;
        s.epoch += 1;
    }

    /// Records a name change for its directory and applies it to the visible listing.
    fn dir_op(s: &mut State, dir: PathBuf, op: DirOp) {
        apply_dir(&mut s.names, &op);
        s.dir_ops.entry(dir).or_default().push(op);
    }
}

/// An open file on the simulated disk.
#[derive(Debug)]
struct SimFile {
    /// The disk.
    fs: PowerCutFs,
    /// The file's inode.
    inode: u64,
    /// The epoch the handle was opened in.
    epoch: u64,
}

impl LogFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.alive(self.epoch)?;
        let inode = s.inode(self.inode)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match inode.current.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            )),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.mutate(self.epoch)?;
        let full = s.full;
        let inode = s.inode(self.inode)?;
        if full && offset.saturating_add(buf.len() as u64) > inode.current.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let op = DataOp::Write {
            offset,
            data: buf.to_vec(),
        };
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.sync(self.epoch)?;
        let inode = s.inode(self.inode)?;
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }

    fn length(&self) -> io::Result<u64> {
        let mut s = self.fs.lock();
        s.alive(self.epoch)?;
        Ok(s.inode(self.inode)?.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.mutate(self.epoch)?;
        let full = s.full;
        let inode = s.inode(self.inode)?;
        if full && len > inode.current.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let op = DataOp::SetLen(len);
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }
}

/// A held lock on the simulated disk.
#[derive(Debug)]
struct SimLock {
    /// The disk.
    fs: PowerCutFs,
    /// The locked path.
    path: PathBuf,
    /// The epoch it was taken in (a reboot releases every lock).
    epoch: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if s.epoch == self.epoch {
            s.locks.remove(&self.path);
        }
    }
}

impl LogFs for PowerCutFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit and always durable in this model: the log creates its
        // directory once, before its first file, and that step is not what is under test.
        let s = self.lock();
        s.alive(s.epoch)
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.alive(epoch)?;
        let existing = s.names.get(path).copied();
        let inode = match (existing, mode) {
            (Some(id), OpenMode::Existing | OpenMode::Create) => id,
            (Some(id), OpenMode::Truncate) => {
                s.mutate(epoch)?;
                let inode = s.inode(id)?;
                let op = DataOp::SetLen(0);
                apply(&mut inode.current, &op);
                inode.pending.push(op);
                id
            }
            (None, OpenMode::Existing) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
            }
            (None, OpenMode::Create | OpenMode::Truncate) => {
                s.mutate(epoch)?;
                let id = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(id, Inode::default());
                Self::dir_op(&mut s, dir_of(path), DirOp::Link(path.to_path_buf(), id));
                id
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            inode,
            epoch,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock();
        s.alive(s.epoch)?;
        Ok(s.names.contains_key(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        if dir_of(from) != dir_of(to) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "rename across directories",
            ));
        }
        if !s.names.contains_key(from) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        }
        s.mutate(epoch)?;
        Self::dir_op(
            &mut s,
            dir_of(to),
            DirOp::Rename(from.to_path_buf(), to.to_path_buf()),
        );
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        if !s.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        }
        s.mutate(epoch)?;
        Self::dir_op(&mut s, dir_of(path), DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.mutate(epoch)?;
        if let Some(ops) = s.dir_ops.remove(dir) {
            for op in &ops {
                apply_dir(&mut s.durable_names, op);
            }
        }
        Ok(())
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.alive(epoch)?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "lock held"));
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            epoch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn only_synced_bytes_and_names_survive() {
        let fs = PowerCutFs::new();
        let dir = Path::new("/d");
        let a = fs.open_file(&dir.join("a"), OpenMode::Create).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_at(b" world", 5).unwrap();
        let b = fs.open_file(&dir.join("b"), OpenMode::Create).unwrap();
        b.write_at(b"x", 0).unwrap();
        b.sync_data().unwrap();
        fs.power_cut();
        assert!(a.write_at(b"!", 0).is_err());
        let mut lens = HashSet::new();
        let mut b_seen = false;
        for seed in 0..64 {
            let copy = PowerCutFs::new();
            // Re-run the same history on a fresh disk for each seed.
            let a = copy.open_file(&dir.join("a"), OpenMode::Create).unwrap();
            a.write_at(b"hello", 0).unwrap();
            a.sync_data().unwrap();
            copy.sync_dir(dir).unwrap();
            a.write_at(b" world", 5).unwrap();
            let b = copy.open_file(&dir.join("b"), OpenMode::Create).unwrap();
            b.write_at(b"x", 0).unwrap();
            b.sync_data().unwrap();
            copy.reboot(&mut StdRng::seed_from_u64(seed));
            assert!(a.length().is_err(), "old handles are dead after a reboot");
            let a = copy.open_file(&dir.join("a"), OpenMode::Existing).unwrap();
            let len = a.length().unwrap() as usize;
            assert!((5..=11).contains(&len));
            let mut buf = vec![0; len];
            a.read_at(&mut buf, 0).unwrap();
            assert_eq!(&buf[..], &b"hello world"[..len]);
            lens.insert(len);
            // b's data was synced but its name never was: it may or may not be there.
            b_seen |= copy.exists(&dir.join("b")).unwrap();
        }
        assert!(lens.len() > 3, "tears land at many bytes: {lens:?}");
        assert!(lens.contains(&5) && lens.contains(&11));
        assert!(b_seen);
    }

    #[test]
    fn armed_cut_strikes_at_the_nth_mutation() {
        let fs = PowerCutFs::new();
        let f = fs.open_file(Path::new("/f"), OpenMode::Create).unwrap();
        fs.cut_after(2);
        f.write_at(b"a", 0).unwrap();
        f.write_at(b"b", 1).unwrap();
        assert!(f.write_at(b"c", 2).is_err());
        assert!(fs.is_off());
        let mut buf = [0u8; 1];
        assert!(f.read_at(&mut buf, 0).is_err(), "reads fail too");
    }

    #[test]
    fn full_volume_refuses_growth_only() {
        let fs = PowerCutFs::new();
        let f = fs.open_file(Path::new("/f"), OpenMode::Create).unwrap();
        f.write_at(&[0; 8], 0).unwrap();
        fs.set_full(true);
        f.write_at(b"inside", 1).unwrap();
        let e = f.write_at(b"grow", 6).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        fs.set_full(false);
        f.write_at(b"grow", 6).unwrap();
        assert_eq!(f.length().unwrap(), 10);
    }
}
