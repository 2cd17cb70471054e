//! [`SimFs`]: an in-memory local-file layer that remembers, per file and per directory, what is
//! durable and what is not, and simulates a machine crash that loses everything not fsynced.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{LocalFile, LocalFs};
use crate::volume::int::usize_of;

// ------------------------------------------------------------------------------------------------
// SimFs

/// How [`SimFs::crash`] treats writes that were not fsynced.
#[derive(Debug, Clone, Copy)]
pub enum CrashMode {
    /// Every unsynced write, truncation, creation and removal is lost.
    DropAll,
    /// Each unsynced file operation independently survives, is lost or (for writes) survives
    /// only as a prefix, and a prefix of each directory's unsynced operations survives, decided by
    /// a deterministic generator seeded with this value: what a page cache flushing some pages but
    /// not others, over a journaled directory, can leave behind.
    Random(u64),
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { off: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
    /// [`LocalFile::drop_cache`] calls (there is no page cache here: only counted).
    cache_drops: u64,
    /// [`LocalFile::start_writeback`] calls (a hint: only counted).
    writebacks: u64,
}

fn apply(v: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { off, data } => {
            let off = usize_of(*off);
            if v.len() < off + data.len() {
                v.resize(off + data.len(), 0);
            }
            v[off..off + data.len()].copy_from_slice(data);
        }
        FileOp::SetLen(l) => v.resize(usize_of(*l), 0),
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Add(String, u64),
    Remove(String),
}

#[derive(Debug, Default)]
struct Dir {
    durable: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Default)]
struct SimState {
    epoch: u64,
    next_ino: u64,
    inodes: HashMap<u64, Inode>,
    dirs: HashMap<PathBuf, Dir>,
    data_syncs: u64,
    dir_syncs: u64,
    /// Mutating operations left before a simulated power cut (None: no cut planned).
    power_left: Option<u64>,
    /// fsyncs (of data or of a directory) left before a simulated power cut.
    syncs_left: Option<u64>,
    /// Directory fsyncs left before a simulated power cut (of directories with this name only,
    /// when one is given).
    dir_syncs_left: Option<(u64, Option<String>)>,
    /// Directory fsyncs during whose wait another thread's `sync_data` took effect, left
    /// before a simulated power cut.
    concurrent_syncs_left: Option<u64>,
    /// The power is cut: every operation fails until [`SimFs::crash`].
    dead: bool,
    /// Mutating operations so far.
    ops: u64,
}

impl SimState {
    /// Accounts for one operation: fails once the power is cut.
    fn spend(&mut self, mutating: bool) -> io::Result<()> {
        if mutating {
            self.ops += 1;
        }
        if self.dead {
            return Err(io::Error::other("simulated power cut"));
        }
        if !self.dead && mutating {
            match self.power_left {
                Some(0) => self.dead = true,
                Some(n) => self.power_left = Some(n - 1),
                None => {}
            }
        }
        if self.dead {
            return Err(io::Error::other("simulated power cut"));
        }
        Ok(())
    }
}

/// A crash-simulating in-memory [`LocalFs`]. Cloning shares the same simulated disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
    /// How long each fsync of a file's data and of a directory takes (none by default): a real
    /// device's latency, so that other threads run while one waits for its fsync, as they do
    /// on a real machine.
    sync_latency: Arc<Mutex<Option<(std::time::Duration, std::time::Duration)>>>,
}

/// A small deterministic generator (splitmix64) for crash decisions and tests.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad file name"))?;
    Ok((parent.to_path_buf(), name.to_string()))
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", p.display()),
    )
}

impl SimFs {
    /// An empty simulated disk.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Simulates a machine crash: every handle opened before becomes unusable, and whatever was
    /// not fsynced is lost (or partly kept, per `mode`).
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.power_left = None;
        st.syncs_left = None;
        st.dir_syncs_left = None;
        st.concurrent_syncs_left = None;
        st.dead = false;
        let mut rng = match mode {
            CrashMode::DropAll => None,
            CrashMode::Random(seed) => Some(SimRng::new(seed)),
        };
        let mut inos: Vec<u64> = st.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(node) = st.inodes.get_mut(&ino) else {
                continue;
            };
            let mut v = std::mem::take(&mut node.durable);
            if let Some(r) = rng.as_mut() {
                for op in &node.pending {
                    match r.below(3) {
                        0 => {}
                        1 => apply(&mut v, op),
                        _ => match op {
                            FileOp::Write { off, data } => {
                                let keep = usize_of(r.below(data.len() as u64 + 1));
                                apply(
                                    &mut v,
                                    &FileOp::Write {
                                        off: *off,
                                        data: data[..keep].to_vec(),
                                    },
                                );
                            }
                            FileOp::SetLen(_) => apply(&mut v, op),
                        },
                    }
                }
            }
            node.pending.clear();
            node.current = v.clone();
            node.durable = v;
        }
        let mut dirs: Vec<PathBuf> = st.dirs.keys().cloned().collect();
        dirs.sort();
        for d in dirs {
            let Some(dir) = st.dirs.get_mut(&d) else {
                continue;
            };
            let mut m = std::mem::take(&mut dir.durable);
            if let Some(r) = rng.as_mut() {
                // Directory operations reach the disk in order (a journal commits them in
                // sequence): a prefix of them survives.
                let keep = usize_of(r.below(dir.pending.len() as u64 + 1));
                for op in &dir.pending[..keep] {
                    {
                        match op {
                            DirOp::Add(n, i) => {
                                m.insert(n.clone(), *i);
                            }
                            DirOp::Remove(n) => {
                                m.remove(n);
                            }
                        }
                    }
                }
            }
            dir.pending.clear();
            dir.current = m.clone();
            dir.durable = m;
        }
    }

    /// Simulates a crash of the process only (SIGKILL): every handle opened before becomes
    /// unusable, a planned or happened power cut is forgotten, and everything written so far
    /// stays as it is, synced or not (the page cache survives a process).
    pub fn restart_process(&self) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.power_left = None;
        st.syncs_left = None;
        st.dir_syncs_left = None;
        st.concurrent_syncs_left = None;
        st.dead = false;
    }

    /// Makes every later `sync_data` take `data` and every `sync_dir` take `dir` (a journal
    /// commit: usually longer), outside the disk's lock.
    pub fn set_sync_latency(&self, data: std::time::Duration, dir: std::time::Duration) {
        *self.sync_latency.lock() = Some((data, dir));
    }

    /// Waits out the simulated fsync latency, if one is set.
    fn sync_delay(&self, dir: bool) {
        let latency = *self.sync_latency.lock();
        if let Some((d, dd)) = latency {
            std::thread::sleep(if dir { dd } else { d });
        }
    }

    /// Mutating operations so far (writes, truncations, syncs, creations, removals).
    pub fn mutating_ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Plans a power cut at an fsync: the next `n` fsyncs (`sync_data` or `sync_dir`) succeed,
    /// then that one (it does not happen) and every later operation fail until
    /// [`SimFs::crash`].
    pub fn cut_power_at_sync(&self, n: u64) {
        self.state.lock().syncs_left = Some(n);
    }

    /// Plans a power cut at a directory fsync: the next `n` `sync_dir` calls (of directories
    /// named `named` only, when given) succeed, then that one (it does not happen) and every
    /// later operation fail until [`SimFs::crash`].
    pub fn cut_power_at_dir_sync(&self, n: u64, named: Option<&str>) {
        self.state.lock().dir_syncs_left = Some((n, named.map(str::to_string)));
    }

    /// Plans a power cut at a directory fsync during whose wait (its latency) another thread
    /// made a file's data durable: the `n`-th such `sync_dir` from now does not happen, and
    /// every later operation fails until [`SimFs::crash`]. Where two threads make things
    /// durable at once, the order in which their fsyncs land is what a crash tests.
    pub fn cut_power_at_concurrent_sync(&self, n: u64) {
        self.state.lock().concurrent_syncs_left = Some(n);
    }

    /// Accounts for an fsync (`dir`: of that directory): fails (the power is cut) when the
    /// planned one is reached.
    fn spend_sync(st: &mut SimState, dir: Option<&Path>) -> io::Result<()> {
        match st.syncs_left {
            Some(0) => {
                st.dead = true;
                st.syncs_left = None;
            }
            Some(n) => st.syncs_left = Some(n - 1),
            None => {}
        }
        if let (Some(d), Some((n, named))) = (dir, st.dir_syncs_left.as_mut()) {
            let counts = named
                .as_deref()
                .is_none_or(|want| d.file_name().and_then(|f| f.to_str()) == Some(want));
            if counts {
                if *n == 0 {
                    st.dead = true;
                    st.dir_syncs_left = None;
                } else {
                    *n -= 1;
                }
            }
        }
        st.spend(true)
    }

    /// Plans a power cut: the next `n` mutating operations (writes, truncations, syncs,
    /// creations, removals) succeed, then that one and every later operation fail until
    /// [`SimFs::crash`]. Simulates a machine dying in the middle of a call.
    pub fn cut_power_after(&self, n: u64) {
        self.state.lock().power_left = Some(n);
    }

    /// True once a planned power cut has happened.
    pub fn power_is_cut(&self) -> bool {
        self.state.lock().dead
    }

    /// Number of `sync_data` calls so far.
    pub fn data_syncs(&self) -> u64 {
        self.state.lock().data_syncs
    }

    /// Number of `sync_dir` calls so far.
    pub fn dir_syncs(&self) -> u64 {
        self.state.lock().dir_syncs
    }

    /// The inode the name `path` points at now.
    fn ino_at(st: &SimState, path: &Path) -> io::Result<u64> {
        let (d, n) = split(path)?;
        st.dirs
            .get(&d)
            .and_then(|dir| dir.current.get(&n))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    /// The current bytes of the file at `path` (tests use it to corrupt files on purpose).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let ino = SimFs::ino_at(&st, path)?;
        Ok(st
            .inodes
            .get(&ino)
            .map(|i| i.current.clone())
            .unwrap_or_default())
    }

    /// How many times the page cache of the file at `path` was dropped
    /// ([`LocalFile::drop_cache`]).
    pub fn cache_drops(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let ino = SimFs::ino_at(&st, path)?;
        Ok(st.inodes.get(&ino).map_or(0, |i| i.cache_drops))
    }

    /// How many times the writeback of the file at `path` was started
    /// ([`LocalFile::start_writeback`]).
    pub fn writebacks(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let ino = SimFs::ino_at(&st, path)?;
        Ok(st.inodes.get(&ino).map_or(0, |i| i.writebacks))
    }

    /// Replaces the file at `path` with `data`, durably (tests use it to corrupt files).
    pub fn overwrite_durably(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = SimFs::ino_at(&st, path)?;
        let node = st.inodes.entry(ino).or_default();
        node.durable = data.to_vec();
        node.current = data.to_vec();
        node.pending.clear();
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
    epoch: u64,
}

impl SimFile {
    fn with<R>(&self, mutating: bool, f: impl FnOnce(&mut SimState) -> R) -> io::Result<R> {
        let mut st = self.fs.state.lock();
        if st.epoch != self.epoch {
            return Err(io::Error::other("handle from before a simulated crash"));
        }
        st.spend(mutating)?;
        Ok(f(&mut st))
    }
}

impl LocalFile for SimFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let ino = self.ino;
        self.with(false, |st| {
            let Some(node) = st.inodes.get(&ino) else {
                return 0;
            };
            let cur = &node.current;
            if off >= cur.len() as u64 {
                return 0;
            }
            let off = usize_of(off);
            let n = buf.len().min(cur.len() - off);
            buf[..n].copy_from_slice(&cur[off..off + n]);
            n
        })
    }
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        let ino = self.ino;
        self.with(true, |st| {
            let node = st.inodes.entry(ino).or_default();
            let op = FileOp::Write {
                off,
                data: data.to_vec(),
            };
            apply(&mut node.current, &op);
            node.pending.push(op);
        })
    }
    fn file_len(&self) -> io::Result<u64> {
        let ino = self.ino;
        self.with(false, |st| {
            st.inodes
                .get(&ino)
                .map(|n| n.current.len() as u64)
                .unwrap_or(0)
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let ino = self.ino;
        self.with(true, |st| {
            let node = st.inodes.entry(ino).or_default();
            let op = FileOp::SetLen(len);
            apply(&mut node.current, &op);
            node.pending.push(op);
        })
    }
    fn sync_data(&self) -> io::Result<()> {
        let ino = self.ino;
        self.fs.sync_delay(false);
        let mut st = self.fs.state.lock();
        if st.epoch != self.epoch {
            return Err(io::Error::other("handle from before a simulated crash"));
        }
        SimFs::spend_sync(&mut st, None)?;
        st.data_syncs += 1;
        let node = st.inodes.entry(ino).or_default();
        node.durable = node.current.clone();
        node.pending.clear();
        Ok(())
    }
    fn drop_cache(&self) -> io::Result<()> {
        let ino = self.ino;
        self.with(false, |st| {
            st.inodes.entry(ino).or_default().cache_drops += 1;
        })
    }
    fn start_writeback(&self) -> io::Result<()> {
        let ino = self.ino;
        self.with(false, |st| {
            st.inodes.entry(ino).or_default().writebacks += 1;
        })
    }
}

impl LocalFs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Directories are made durable at once, like StdFs does.
        let mut st = self.state.lock();
        st.spend(true)?;
        for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            st.dirs.entry(d.to_path_buf()).or_default();
        }
        Ok(())
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>> {
        let (d, n) = split(path)?;
        let mut st = self.state.lock();
        st.spend(true)?;
        let ino = st.next_ino + 1;
        let dir = st.dirs.get_mut(&d).ok_or_else(|| not_found(&d))?;
        if dir.current.contains_key(&n) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        dir.current.insert(n.clone(), ino);
        dir.pending.push(DirOp::Add(n, ino));
        st.next_ino = ino;
        st.inodes.insert(ino, Inode::default());
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            epoch: st.epoch,
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>> {
        let (d, n) = split(path)?;
        let mut st = self.state.lock();
        st.spend(false)?;
        let ino = *st
            .dirs
            .get(&d)
            .and_then(|dir| dir.current.get(&n))
            .ok_or_else(|| not_found(path))?;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            epoch: st.epoch,
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.state.lock();
        st.spend(false)?;
        let d = st.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.current.keys().cloned().collect())
    }
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.state.lock();
        st.spend(false)?;
        if !st.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        Ok(st
            .dirs
            .keys()
            .filter(|d| d.parent() == Some(dir))
            .filter_map(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (d, n) = split(path)?;
        let mut st = self.state.lock();
        st.spend(true)?;
        let dir = st.dirs.get_mut(&d).ok_or_else(|| not_found(&d))?;
        if dir.current.remove(&n).is_none() {
            return Err(not_found(path));
        }
        dir.pending.push(DirOp::Remove(n));
        Ok(())
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        // Directories are made durable at once, like StdFs does.
        let mut st = self.state.lock();
        st.spend(true)?;
        let d = st.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        let has_subdirs = st.dirs.keys().any(|k| k.parent() == Some(dir));
        if !d.current.is_empty() || has_subdirs {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{}: not empty", dir.display()),
            ));
        }
        st.dirs.remove(dir);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (d, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if to_dir != d {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{} -> {}: renames across directories are not simulated",
                    from.display(),
                    to.display()
                ),
            ));
        }
        let mut st = self.state.lock();
        st.spend(true)?;
        let dir = st.dirs.get_mut(&d).ok_or_else(|| not_found(&d))?;
        let ino = dir
            .current
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        dir.current.insert(to_name.clone(), ino);
        // In the journal's order: the new name replaces the old file in one step, then the
        // old name goes. A crash keeps a prefix: the old state, both names on the renamed
        // file, or the new state — never a missing `to`.
        dir.pending.push(DirOp::Add(to_name, ino));
        dir.pending.push(DirOp::Remove(from_name));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let data_syncs_before = self.state.lock().data_syncs;
        self.sync_delay(true);
        let mut st = self.state.lock();
        if st.data_syncs > data_syncs_before && !st.dead {
            match st.concurrent_syncs_left {
                Some(0) => {
                    st.dead = true;
                    st.concurrent_syncs_left = None;
                }
                Some(n) => st.concurrent_syncs_left = Some(n - 1),
                None => {}
            }
        }
        SimFs::spend_sync(&mut st, Some(dir))?;
        st.dir_syncs += 1;
        let d = st.dirs.get_mut(dir).ok_or_else(|| not_found(dir))?;
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::localfs::StdFs;

    #[test]
    fn simfs_crash_drops_unsynced_bytes_and_names() {
        let fs = SimFs::new();
        let d = Path::new("/v");
        fs.create_dir_all(d).unwrap();
        let a = fs.create_new(&d.join("a")).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(d).unwrap();
        a.write_at(b"world", 5).unwrap();
        let b = fs.create_new(&d.join("b")).unwrap();
        b.write_at(b"x", 0).unwrap();
        b.sync_data().unwrap(); // data durable, but its name is not
        fs.crash(CrashMode::DropAll);
        assert!(
            a.read_at(&mut [0u8; 1], 0).is_err(),
            "old handles die with the crash"
        );
        assert_eq!(fs.read_file(&d.join("a")).unwrap(), b"hello");
        assert_eq!(fs.list(d).unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn stdfs_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let fs = StdFs;
        let d = t.path().join("x/y");
        fs.create_dir_all(&d).unwrap();
        let f = fs.create_new(&d.join("f")).unwrap();
        f.write_at(b"abc", 4).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&d).unwrap();
        let mut buf = [9u8; 10];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 7);
        assert_eq!(&buf[..7], b"\0\0\0\0abc");
        f.set_len(2).unwrap();
        assert_eq!(f.file_len().unwrap(), 2);
        assert_eq!(fs.list(&d).unwrap(), vec!["f".to_string()]);
        assert!(fs.create_new(&d.join("f")).is_err());
        fs.remove_file(&d.join("f")).unwrap();
        assert!(fs.open(&d.join("f")).is_err());
    }

    /// Both layers remove only empty directories, durably.
    #[test]
    fn remove_dir_refuses_what_is_not_empty_and_is_durable() {
        let t = tempfile::tempdir().unwrap();
        let sim = SimFs::new();
        let real = t.path().join("r");
        for (fs, root) in [
            (&sim as &dyn LocalFs, Path::new("/v").to_path_buf()),
            (&StdFs as &dyn LocalFs, real),
        ] {
            let sub = root.join("sco");
            fs.create_dir_all(&sub).unwrap();
            fs.create_new(&sub.join("f")).unwrap();
            fs.sync_dir(&sub).unwrap();
            let kind = |r: io::Result<()>| r.map_err(|e| e.kind());
            assert_eq!(
                kind(fs.remove_dir(&sub)),
                Err(io::ErrorKind::DirectoryNotEmpty)
            );
            assert_eq!(
                kind(fs.remove_dir(&root)),
                Err(io::ErrorKind::DirectoryNotEmpty)
            );
            fs.remove_file(&sub.join("f")).unwrap();
            fs.remove_dir(&sub).unwrap();
            fs.remove_dir(&root).unwrap();
            assert_eq!(kind(fs.remove_dir(&root)), Err(io::ErrorKind::NotFound));
        }
        sim.crash(CrashMode::DropAll);
        assert!(
            sim.list(Path::new("/v")).is_err(),
            "the removal was durable"
        );
    }
}
