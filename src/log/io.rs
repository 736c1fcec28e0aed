//! The file operations the log needs, behind two small traits so that the same code runs on the
//! real file system ([`StdFs`]) and on the power-cut simulator ([`PowerCutFs`](super::sim::PowerCutFs)).
//!
//! The traits are deliberately narrow: positioned reads and writes, `fdatasync`, directory
//! `fsync`, `set_len`, rename, remove and an exclusive lock. Everything the durability argument
//! of the [module doc](super) relies on is one of these calls, so a test implementation that
//! keeps only what these calls made durable is a faithful model of a power cut. There is no
//! `sync_file_range` here on purpose: it is not a durability barrier.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How [`LogFs::open_file`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing; a missing file is `NotFound`.
    Existing,
    /// Open the file, creating it empty if it does not exist.
    Create,
    /// Create the file empty, truncating it if it exists (temporary files of atomic writes).
    Truncate,
}

/// One open file. Shared (`Arc`) between the writer and every reader, so all methods take
/// `&self`: positioned I/O needs no cursor and no lock.
pub trait LogFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`; fewer bytes available is `UnexpectedEof`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the file if needed. Not durable until
    /// [`sync_data`](LogFile::sync_data) returns.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every earlier write and the file's size durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The current length of the file.
    fn length(&self) -> io::Result<u64>;
    /// Sets the length of the file (truncating or extending with zeros). Not durable until
    /// [`sync_data`](LogFile::sync_data).
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Held while a directory is owned; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// The directory-level operations. Names (create, rename, remove) become durable only after
/// [`sync_dir`](LogFs::sync_dir) of the directory holding them.
pub trait LogFs: Send + Sync + Debug {
    /// Creates `dir` and its missing parents, syncing each parent whose listing changed.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens a file for positioned reads and writes.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>>;
    /// Whether a file exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Atomically replaces `to` with `from` (same directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's listing durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) without waiting; a lock held by
    /// anyone else is `WouldBlock`.
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Replaces `dir/name` with `bytes` atomically and durably: the temporary file `dir/tmp` is
/// written and synced, renamed over the target, and the directory synced. After a crash the
/// target holds the old bytes or the new ones, never a mix; once this returns, the new ones.
pub fn replace_file(
    fs: &dyn LogFs,
    dir: &Path,
    tmp: &str,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let tmp_path = dir.join(tmp);
    let f = fs.open_file(&tmp_path, OpenMode::Truncate)?;
    f.write_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    fs.rename(&tmp_path, &dir.join(name))?;
    fs.sync_dir(dir)
}

/// The whole of the file at `path`, or `None` if there is none; `limit` bounds what is read (a
/// longer file is `InvalidData`).
pub fn read_file(fs: &dyn LogFs, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    if !fs.exists(path)? {
        return Ok(None);
    }
    let f = fs.open_file(path, OpenMode::Existing)?;
    let len = f.length()?;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, over the {limit} expected"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_at(&mut buf, 0)?;
    Ok(Some(buf))
}

/// The real file system through `std::fs`: `pread`/`pwrite`, `fdatasync`, `fsync` of the
/// directory, `flock` through `fs2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

/// A `std::fs::File` as a [`LogFile`].
#[derive(Debug)]
struct StdFile(File);

impl LogFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn length(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// The lock file, kept open: the `flock` lives as long as the descriptor.
#[derive(Debug)]
struct StdLock(#[allow(dead_code)] File);

impl LockGuard for StdLock {}

impl LogFs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dir_all(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        }
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.sync_dir(parent),
            _ => self.sync_dir(Path::new(".")),
        }
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                o.create(true);
            }
            OpenMode::Truncate => {
                o.create(true).truncate(true);
            }
        }
        Ok(Arc::new(StdFile(o.open(path)?)))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        fs2::FileExt::try_lock_exclusive(&f).map_err(|e| {
            if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() {
                io::Error::new(io::ErrorKind::WouldBlock, "lock held")
            } else {
                e
            }
        })?;
        Ok(Box::new(StdLock(f)))
    }
}

/// Counts the sync calls made through an inner [`LogFs`], for the benchmark's syncs/s figure.
#[derive(Debug)]
pub struct CountingFs<F> {
    /// The file system doing the work.
    inner: F,
    /// `fdatasync` plus directory `fsync` calls so far, shared with every file opened.
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl<F: LogFs> CountingFs<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            syncs: Arc::default(),
        }
    }

    /// Number of sync calls (file data and directories) made so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A file whose `sync_data` calls are counted.
#[derive(Debug)]
struct CountingFile {
    /// The file doing the work.
    inner: Arc<dyn LogFile>,
    /// The counter of the [`CountingFs`] that opened it.
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl LogFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn length(&self) -> io::Result<u64> {
        self.inner.length()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl<F: LogFs> LogFs for CountingFs<F> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        Ok(Arc::new(CountingFile {
            inner: self.inner.open_file(path, mode)?,
            syncs: self.syncs.clone(),
        }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sync_dir(dir)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock_exclusive(path)
    }
}
