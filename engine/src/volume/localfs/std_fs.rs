//! [`StdFs`]: the real local-file layer (std::fs, fdatasync, directory fsync).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LocalFile, LocalFs};

/// The real local filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl LocalFile for StdFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.0.write_all_at(data, off)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn start_writeback(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is owned by `self.0` and open for the duration of the call;
        // sync_file_range only reads its arguments.
        let r =
            unsafe { libc::sync_file_range(self.0.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn drop_cache(&self) -> io::Result<()> {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        // Whole file (length 0: to the end). Dirty pages are not dropped, only clean ones.
        posix_fadvise(&self.0, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
            .map_err(io::Error::from)
    }
}

/// Sets `O_NOATIME` on an open engine file: SCOs are read on every READ of a volume, and an
/// access time nobody reads must not dirty their inodes (a journal write for the first READ
/// after each write under `relatime`). Set after the open, not in it: the kernel checks the
/// flag after `O_CREAT | O_EXCL` made the file, and refuses it (`EPERM`) where the process
/// neither owns the file nor has `CAP_FOWNER`; such a file keeps its access times (the flag
/// only saves an inode write, so a refusal is not an error).
fn set_noatime(f: &File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(bits) = fcntl(f, FcntlArg::F_GETFL) {
        let _refused = fcntl(
            f,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(bits) | OFlag::O_NOATIME),
        );
    }
}

impl LocalFs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        // Make the new directories' names durable, up to the first ancestor that already existed
        // (fsyncing a few extra ancestors is harmless).
        let mut d = Some(dir);
        while let Some(p) = d {
            File::open(p)?.sync_all()?;
            d = p.parent().filter(|q| !q.as_os_str().is_empty());
        }
        Ok(())
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        set_noatime(&f);
        Ok(Arc::new(StdFile(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        set_noatime(&f);
        Ok(Arc::new(StdFile(f)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Ok(n) = e.file_name().into_string() {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                if let Ok(n) = e.file_name().into_string() {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir(dir)?;
        match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        Some(path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::FileTimes;
    use std::time::{Duration, SystemTime};

    /// Gives `path` an access time older than its modification (under relatime, this
    /// machine's mounts, the kernel would update it at the next read) and returns it.
    fn age_atime(path: &Path) -> SystemTime {
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_times(
                FileTimes::new()
                    .set_accessed(old)
                    .set_modified(SystemTime::now()),
            )
            .expect("set times");
        old
    }

    #[test]
    fn reading_an_engine_file_leaves_its_access_time_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        // One file opened, one created by the engine.
        let opened = dir.path().join("opened");
        std::fs::write(&opened, [7u8; 4096]).expect("write");
        let created = dir.path().join("created");
        let c = StdFs.create_new(&created).expect("create");
        c.write_at(&[7u8; 4096], 0).expect("write");
        let o = StdFs.open(&opened).expect("open");
        for (path, f) in [(&opened, &o), (&created, &c)] {
            let old = age_atime(path);
            let mut buf = [0u8; 4096];
            assert_eq!(f.read_at(&mut buf, 0).expect("read"), 4096);
            assert_eq!(buf, [7u8; 4096]);
            let atime = std::fs::metadata(path)
                .expect("stat")
                .accessed()
                .expect("atime");
            assert_eq!(
                atime,
                old,
                "{}: the read updated the access time",
                path.display()
            );
        }
    }

    /// Pages of the file at `path` in the OS page cache (mincore over a mapping of it).
    fn resident_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let f = File::open(path).expect("open");
        let len = usize::try_from(f.metadata().expect("stat").len()).expect("len");
        let page = 4096;
        // SAFETY: maps `len` bytes of a file open for reading, read-only and shared; nothing
        // dereferences the mapping; it is unmapped below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED, "mmap");
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `at` maps `len` bytes (page aligned, from mmap); `vec` has one byte per page.
        let r = unsafe { libc::mincore(at, len, vec.as_mut_ptr()) };
        // SAFETY: unmaps exactly the mapping made above.
        unsafe { libc::munmap(at, len) };
        assert_eq!(r, 0, "mincore");
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    #[test]
    fn dropping_the_cache_of_a_synced_file_leaves_none_of_its_pages_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sco");
        let f = StdFs.create_new(&path).expect("create");
        f.write_at(&[7u8; 64 * 4096], 0).expect("write");
        f.sync_data().expect("sync");
        assert_eq!(resident_pages(&path), 64, "written pages stay cached");
        f.drop_cache().expect("drop");
        assert_eq!(resident_pages(&path), 0, "no page left after the drop");
        let mut buf = [0u8; 4096];
        assert_eq!(f.read_at(&mut buf, 63 * 4096).expect("read"), 4096);
        assert_eq!(buf, [7u8; 4096], "the bytes are still on disk");
    }
}
