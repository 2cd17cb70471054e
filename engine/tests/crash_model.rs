//! Random namespace and data operations against the engine and an in-memory model, with random
//! crash points. redb sits on [`CrashDisk`], which loses every byte not covered by a
//! `sync_data`; the backend is a MemStore (puts durable when they return) shared across crashes
//! behind a FaultyStore that dies with the "machine"; the extent cache is wiped at reopen.
//! The file journal lives on the volumes' simulated disk. After a crash between operations the
//! namespace is exactly as committed and every committed byte is there; a byte of an unstable
//! write may be there too (the journal's group commit and the uploader may have kept it): each
//! byte is the committed one or one an unstable write since put there. After a crash inside an
//! operation the namespace shows it entirely or not at all, and file bytes follow the same rule
//! with the operation's own effect as a third choice.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use strata_backend::{FaultyStore, MemStore, ObjectStore};
use strata_engine::*;

mod support;
use support::crash_disk::CrashDisk;

// ---------- the harness: an engine that can crash and come back ----------

struct Harness {
    _dir: tempfile::TempDir,
    config: EngineConfig,
    disk: CrashDisk,
    mem: Arc<MemStore>,
    volumes: volume::SimFs,
    fs: Option<Filesystem>,
    no_sync: bool,
}

impl Harness {
    fn new(no_sync: bool) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EngineConfig::new(dir.path());
        config.extent_cache_size = 64 << 20;
        let mut h = Harness {
            _dir: dir,
            config,
            disk: CrashDisk::default(),
            mem: Arc::new(MemStore::new()),
            volumes: volume::SimFs::new(),
            fs: None,
            no_sync,
        };
        h.open();
        h
    }

    fn open(&mut self) {
        let store = Arc::new(FaultyStore::new(self.mem.clone()));
        self.disk.revive(Some(store.clone()), &self.volumes);
        let opts = OpenOptions {
            store: Some(store as Arc<dyn ObjectStore>),
            metadata_backend: Some(Box::new(self.disk.clone())),
            volume_fs: Some(Arc::new(self.volumes.clone())),
        };
        let fs = Filesystem::open_with(self.config.clone(), opts).expect("open after crash");
        fs.set_unsafe_no_sync(self.no_sync);
        self.fs = Some(fs);
    }

    fn fs(&self) -> &Filesystem {
        self.fs.as_ref().expect("engine open")
    }

    /// The machine dies now: unsynced metadata is lost, the store refuses everything.
    fn crash_and_reopen(&mut self) {
        self.disk.crash();
        if let Some(fs) = self.fs.take() {
            fs.crash();
        }
        self.open();
    }
}

// ---------- the model ----------

#[derive(Debug, Clone, PartialEq, Eq)]
enum MObj {
    Dir {
        parent: Handle,
    },
    File {
        cur: Vec<u8>,
        dur: Vec<u8>,
        nlink: u32,
    },
    Symlink {
        target: Vec<u8>,
        nlink: u32,
    },
    /// A FIFO (`rdev` none) or a character device.
    Special {
        rdev: Option<DeviceId>,
        nlink: u32,
    },
}

#[derive(Debug, Clone)]
struct Model {
    root: Handle,
    objs: BTreeMap<Handle, MObj>,
    entries: BTreeMap<(Handle, String), Handle>,
    /// Open counts (NFSv4 OPEN state); an open file with no links stays until the last close.
    opens: BTreeMap<Handle, u32>,
    /// Permission bits set by chmod (others have their creation mode).
    modes: BTreeMap<Handle, u32>,
    /// Per file (by ino): unstable writes since its content was last made durable. A crash may
    /// keep any of them (the file journal's group commit makes other files' records durable
    /// too, and the uploader may have sent them): each byte after a crash is the durable one
    /// or one a pending write put there.
    pending: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
    /// Extended attributes (name index -> value) of files and directories.
    xattrs: BTreeMap<Handle, BTreeMap<u8, Vec<u8>>>,
}

type MResult = Result<(), &'static str>;

fn code(e: &Error) -> &'static str {
    match e {
        Error::NotFound => "NotFound",
        Error::Exists => "Exists",
        Error::NotDir => "NotDir",
        Error::IsDir => "IsDir",
        Error::NotEmpty => "NotEmpty",
        Error::NameTooLong => "NameTooLong",
        Error::Invalid(_) => "Invalid",
        Error::Stale => "Stale",
        Error::NoSpace => "NoSpace",
        Error::Delay => "Delay",
        Error::ReadOnly(_) => "ReadOnly",
        Error::NotSupported(_) => "NotSupported",
        Error::Io(_) | Error::Format(_) | Error::Backend { .. } => "Io",
        Error::NotOwner(_) => "NotOwner",
        Error::NoXattr => "NoXattr",
        Error::XattrTooBig => "XattrTooBig",
    }
}

impl Model {
    fn new(root: Handle) -> Model {
        let mut objs = BTreeMap::new();
        objs.insert(root, MObj::Dir { parent: root });
        Model {
            root,
            objs,
            entries: BTreeMap::new(),
            opens: BTreeMap::new(),
            modes: BTreeMap::new(),
            pending: BTreeMap::new(),
            xattrs: BTreeMap::new(),
        }
    }

    /// Directories sorted by path (root first).
    fn dirs(&self) -> Vec<(String, Handle)> {
        let mut out = vec![("/".to_string(), self.root)];
        let mut i = 0;
        while i < out.len() {
            let (path, h) = out[i].clone();
            for ((d, name), c) in &self.entries {
                if *d == h && matches!(self.objs.get(c), Some(MObj::Dir { .. })) {
                    out.push((format!("{}{}/", path, name), *c));
                }
            }
            i += 1;
        }
        out.sort();
        out
    }

    fn dir(&self, i: u8) -> Handle {
        let d = self.dirs();
        d[i as usize % d.len()].1
    }

    fn is_dir(&self, h: Handle) -> bool {
        matches!(self.objs.get(&h), Some(MObj::Dir { .. }))
    }

    fn empty(&self, h: Handle) -> bool {
        !self.entries.keys().any(|(d, _)| *d == h)
    }

    fn drop_link(&mut self, h: Handle) {
        match self.objs.get_mut(&h) {
            Some(MObj::Dir { .. }) => {
                self.objs.remove(&h);
            }
            Some(MObj::File { nlink, .. })
            | Some(MObj::Symlink { nlink, .. })
            | Some(MObj::Special { nlink, .. }) => {
                *nlink -= 1;
                if *nlink == 0 && !self.opens.contains_key(&h) {
                    self.objs.remove(&h);
                }
            }
            None => panic!("model: dangling entry"),
        }
    }

    fn mode(&self, h: Handle) -> u32 {
        let default = match self.objs.get(&h) {
            Some(MObj::Dir { .. }) => 0o755,
            Some(MObj::Symlink { .. }) => 0o777,
            _ => 0o644,
        };
        self.modes.get(&h).copied().unwrap_or(default)
    }

    fn crash(&mut self) {
        // Nothing is open after a restart; unlinked open files are gone.
        self.opens.clear();
        self.pending.clear();
        self.objs
            .retain(|_, o| !matches!(o, MObj::File { nlink: 0, .. }));
        for o in self.objs.values_mut() {
            if let MObj::File { cur, dur, .. } = o {
                *cur = dur.clone();
            }
        }
    }

    fn rename(&mut self, fd: Handle, from: &str, td: Handle, to: &str) -> MResult {
        let src = *self
            .entries
            .get(&(fd, from.to_string()))
            .ok_or("NotFound")?;
        let dst = self.entries.get(&(td, to.to_string())).copied();
        if dst == Some(src) {
            return Ok(());
        }
        let s_dir = self.is_dir(src);
        if s_dir && fd != td {
            let mut cur = td;
            loop {
                if cur == src {
                    return Err("Invalid");
                }
                if cur == self.root {
                    break;
                }
                cur = match self.objs.get(&cur) {
                    Some(MObj::Dir { parent }) => *parent,
                    _ => panic!("model: parent not a dir"),
                };
            }
        }
        if let Some(d) = dst {
            match (s_dir, self.is_dir(d)) {
                (true, false) => return Err("NotDir"),
                (false, true) => return Err("IsDir"),
                (true, true) if !self.empty(d) => return Err("NotEmpty"),
                _ => {}
            }
            self.entries.remove(&(td, to.to_string()));
            self.drop_link(d);
        }
        self.entries.remove(&(fd, from.to_string()));
        self.entries.insert((td, to.to_string()), src);
        if let Some(MObj::Dir { parent }) = self.objs.get_mut(&src) {
            *parent = td;
        }
        Ok(())
    }
}

/// What a crash-free comparison looks at: path -> (ino, kind, nlink, content). An object's
/// extended attributes are an entry `path#xattrs` of kind 'x', its "ino" a hash of them (so a
/// crash's before and after differ in shape when they do).
type Tree = BTreeMap<String, (u64, char, u32, Vec<u8>)>;

/// The `#xattrs` entry of a tree, if the object has any.
fn xattr_entry(x: &BTreeMap<u8, Vec<u8>>) -> Option<(u64, char, u32, Vec<u8>)> {
    use std::hash::{Hash, Hasher};
    if x.is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    for (n, v) in x {
        bytes.push(*n);
        bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
        bytes.extend_from_slice(v);
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some((hasher.finish(), 'x', 0, bytes))
}

/// The engine's extended attributes of `h`, as the model names them.
fn engine_xattrs(fs: &Filesystem, h: Handle) -> BTreeMap<u8, Vec<u8>> {
    let names = fs.listxattrs(h).expect("listxattrs");
    names
        .iter()
        .map(|n| {
            let i = XATTR_NAMES
                .iter()
                .position(|x| x.as_bytes() == n.as_slice())
                .expect("a name the model knows");
            (i as u8, fs.getxattr(h, n).expect("getxattr"))
        })
        .collect()
}

fn model_tree(m: &Model, durable: bool) -> Tree {
    let mut t = Tree::new();
    for (path, h) in m.dirs() {
        let subdirs = m
            .entries
            .iter()
            .filter(|((d, _), c)| *d == h && m.is_dir(**c))
            .count() as u32;
        t.insert(path.clone(), (h.ino, 'd', 2 + subdirs, Vec::new()));
        t.insert(
            format!("{path}#mode"),
            (m.mode(h) as u64, 'm', 0, Vec::new()),
        );
        if let Some(e) = m.xattrs.get(&h).and_then(xattr_entry) {
            t.insert(format!("{path}#xattrs"), e);
        }
        for ((d, name), c) in &m.entries {
            if *d != h {
                continue;
            }
            let p = format!("{path}{name}");
            if !m.is_dir(*c) {
                t.insert(format!("{p}#mode"), (m.mode(*c) as u64, 'm', 0, Vec::new()));
                if let Some(e) = m.xattrs.get(c).and_then(xattr_entry) {
                    t.insert(format!("{p}#xattrs"), e);
                }
            }
            match m.objs.get(c) {
                Some(MObj::File { cur, dur, nlink }) => {
                    t.insert(
                        p,
                        (
                            c.ino,
                            'f',
                            *nlink,
                            if durable { dur.clone() } else { cur.clone() },
                        ),
                    );
                }
                Some(MObj::Symlink { target, nlink }) => {
                    t.insert(p, (c.ino, 'l', *nlink, target.clone()));
                }
                Some(MObj::Special { rdev, nlink }) => {
                    let what = format!("{rdev:?}").into_bytes();
                    t.insert(p, (c.ino, 's', *nlink, what));
                }
                _ => {}
            }
        }
    }
    t
}

/// Compares trees, reporting differences compactly (file contents are large).
fn check(got: &Tree, want: &Tree, ctx: &str) {
    if got == want {
        return;
    }
    let mut report = Vec::new();
    for k in got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (got.get(k), want.get(k)) {
            (Some(g), Some(w)) if g == w => {}
            (Some(g), Some(w)) => {
                let first = g.3.iter().zip(&w.3).position(|(a, b)| a != b);
                report.push(format!(
                    "{k}: engine (ino {}, {}, nlink {}, len {}) model (ino {}, {}, nlink {}, len {}), first differing byte {first:?}",
                    g.0, g.1, g.2, g.3.len(), w.0, w.1, w.2, w.3.len()
                ));
            }
            (Some(g), None) => report.push(format!("{k}: only in engine ({}, {})", g.0, g.1)),
            (None, Some(w)) => report.push(format!("{k}: only in model ({}, {})", w.0, w.1)),
            (None, None) => {}
        }
    }
    panic!("{ctx}: trees differ:\n{}", report.join("\n"));
}

fn engine_tree(fs: &Filesystem) -> Tree {
    let mut t = Tree::new();
    let mut stack = vec![("/".to_string(), fs.root())];
    while let Some((path, dir)) = stack.pop() {
        let a = fs.getattr(dir).expect("getattr dir");
        t.insert(path.clone(), (dir.ino, 'd', a.nlink, Vec::new()));
        t.insert(format!("{path}#mode"), (a.mode as u64, 'm', 0, Vec::new()));
        if let Some(e) = xattr_entry(&engine_xattrs(fs, dir)) {
            t.insert(format!("{path}#xattrs"), e);
        }
        let mut cookie = 0;
        loop {
            let page = fs.readdir(dir, cookie, 3).expect("readdir");
            for e in &page.entries {
                cookie = e.cookie;
                let name = String::from_utf8(e.name.clone()).expect("utf8 name");
                let h = e.attr.handle;
                if e.attr.kind != Kind::Directory {
                    t.insert(
                        format!("{path}{name}#mode"),
                        (e.attr.mode as u64, 'm', 0, Vec::new()),
                    );
                    if e.attr.kind.is_regular() {
                        if let Some(x) = xattr_entry(&engine_xattrs(fs, h)) {
                            t.insert(format!("{path}{name}#xattrs"), x);
                        }
                    }
                }
                match e.attr.kind {
                    Kind::Directory => stack.push((format!("{path}{name}/"), h)),
                    Kind::Symlink => {
                        let target = fs.readlink(h).expect("readlink");
                        t.insert(format!("{path}{name}"), (h.ino, 'l', e.attr.nlink, target));
                    }
                    Kind::Fifo | Kind::CharDevice => {
                        let rdev = (e.attr.kind == Kind::CharDevice).then_some(e.attr.rdev);
                        let what = format!("{rdev:?}").into_bytes();
                        t.insert(format!("{path}{name}"), (h.ino, 's', e.attr.nlink, what));
                    }
                    Kind::Socket | Kind::BlockDevice => panic!("the model makes none"),
                    Kind::File | Kind::Volume => {
                        let mut buf = vec![0u8; e.attr.size as usize];
                        let (n, eof) = fs.read(h, 0, &mut buf).expect("read");
                        assert_eq!(n as u64, e.attr.size, "short read of {path}{name}");
                        assert!(eof || e.attr.size == 0);
                        t.insert(format!("{path}{name}"), (h.ino, 'f', e.attr.nlink, buf));
                    }
                }
            }
            if page.eof {
                break;
            }
        }
    }
    t
}

// ---------- operations ----------

const NAMES: [&str; 4] = ["a", "b", "c", "d.raw"];

/// The numbers of the character devices the model makes.
const DEV: DeviceId = DeviceId {
    major: 4,
    minor: 64,
};

/// Extended attribute names the model uses.
const XATTR_NAMES: [&str; 3] = ["user.a", "b", "origin.host"];

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Mkdir(u8, u8),
    Symlink(u8, u8),
    /// A FIFO, or (`true`) a character device.
    Mknod(u8, u8, bool),
    Unlink(u8, u8),
    Rmdir(u8, u8),
    Rename(u8, u8, u8, u8),
    Link(u8, u8, u8, u8),
    Write {
        pick: u8,
        offset: u32,
        len: u32,
        byte: u8,
        stable: bool,
    },
    Commit(u8),
    Truncate(u8, u32),
    /// DEALLOCATE: a hole punched, durable (with every write before it) when answered.
    Deallocate {
        pick: u8,
        offset: u32,
        len: u32,
    },
    Open(u8),
    Close(u8),
    Chmod(u8, u16),
    /// Open a file, then unlink the name it was found under (the NFSv4 "silly rename" case).
    OpenUnlink(u8),
    /// SETXATTR on any named object: 0 either, 1 create, 2 replace.
    SetXattr {
        pick: u8,
        name: u8,
        len: u16,
        byte: u8,
        how: u8,
    },
    RemoveXattr(u8, u8),
    Crash,
    CrashDuring(u8, Box<Op>),
}

fn base_op() -> impl Strategy<Value = Op> {
    let d = 0u8..6;
    let n = 0u8..4;
    prop_oneof![
        4 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Symlink(d, n)),
        1 => (d.clone(), n.clone(), any::<bool>()).prop_map(|(d, n, dev)| Op::Mknod(d, n, dev)),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Rmdir(d, n)),
        3 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        1 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        6 => (any::<u8>(), 0u32..(3 << 20), 1u32..70_000, any::<u8>(), any::<bool>()).prop_map(
            |(pick, offset, len, byte, stable)| Op::Write { pick, offset, len, byte, stable }
        ),
        2 => any::<u8>().prop_map(Op::Commit),
        1 => (any::<u8>(), 0u32..(3 << 20)).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => (any::<u8>(), 0u32..(3 << 20), 1u32..(2 << 20)).prop_map(
            |(pick, offset, len)| Op::Deallocate { pick, offset, len }
        ),
        2 => any::<u8>().prop_map(Op::Open),
        2 => any::<u8>().prop_map(Op::Close),
        1 => (any::<u8>(), 0u16..0o7777).prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => any::<u8>().prop_map(Op::OpenUnlink),
        2 => (any::<u8>(), 0u8..3, 0u16..3000, any::<u8>(), 0u8..3).prop_map(
            |(pick, name, len, byte, how)| Op::SetXattr { pick, name, len, byte, how }
        ),
        1 => (any::<u8>(), 0u8..3).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => base_op(),
        2 => Just(Op::Crash),
        4 => (1u8..3, base_op()).prop_map(|(k, o)| Op::CrashDuring(k, Box::new(o))),
    ]
}

fn same<T: std::fmt::Debug>(engine: Result<T>, model: MResult, what: &Op) -> Option<T> {
    match (engine, model) {
        (Ok(v), Ok(())) => Some(v),
        (Err(e), Err(m)) => {
            assert_eq!(code(&e), m, "{what:?}: engine error {e:?}, model {m}");
            None
        }
        (Ok(v), Err(m)) => panic!("{what:?}: engine Ok({v:?}), model {m}"),
        (Err(e), Ok(())) => panic!("{what:?}: engine {e:?}, model Ok"),
    }
}

/// Runs one (non-crash) op on both; when `check` is false the engine's result is not compared
/// (the machine may die under it) and the model applies the op whenever it predicts success
/// (create-like ops need the engine's handle, so they apply only if the engine succeeded).
fn apply(fs: &Filesystem, m: &mut Model, op: &Op, check: bool) {
    const ME: Cred = Cred { uid: 5, gid: 6 };
    let res = |engine: Result<()>, model: MResult| -> bool {
        if check {
            same(engine, model, op).is_some()
        } else {
            model.is_ok()
        }
    };
    match op {
        Op::Create(d, n) | Op::Mkdir(d, n) | Op::Symlink(d, n) | Op::Mknod(d, n, _) => {
            let dir = m.dir(*d);
            let name = NAMES[*n as usize];
            let exists = m.entries.contains_key(&(dir, name.to_string()));
            let r = match op {
                Op::Create(..) => fs
                    .create(dir, name.as_bytes(), 0o644, ME, CreateMode::Guarded)
                    .map(|c| c.attr),
                Op::Mkdir(..) => fs.mkdir(dir, name.as_bytes(), 0o755, ME),
                Op::Mknod(_, _, dev) => {
                    let kind = if *dev { Kind::CharDevice } else { Kind::Fifo };
                    fs.mknod(dir, name.as_bytes(), kind, 0o644, DEV, ME)
                }
                _ => fs.symlink(dir, name.as_bytes(), format!("/t/{name}").as_bytes(), ME),
            };
            let predicted = if exists { Err("Exists") } else { Ok(()) };
            let attr = if check {
                same(r, predicted, op)
            } else {
                r.ok().filter(|_| predicted.is_ok())
            };
            if let Some(a) = attr {
                let obj = match op {
                    Op::Create(..) => MObj::File {
                        cur: vec![],
                        dur: vec![],
                        nlink: 1,
                    },
                    Op::Mkdir(..) => MObj::Dir { parent: dir },
                    Op::Mknod(_, _, dev) => MObj::Special {
                        rdev: dev.then_some(DEV),
                        nlink: 1,
                    },
                    _ => MObj::Symlink {
                        target: format!("/t/{name}").into_bytes(),
                        nlink: 1,
                    },
                };
                m.objs.insert(a.handle, obj);
                m.entries.insert((dir, name.to_string()), a.handle);
            }
        }
        Op::Unlink(d, n) | Op::Rmdir(d, n) => {
            let dir = m.dir(*d);
            let name = NAMES[*n as usize];
            let want_dir = matches!(op, Op::Rmdir(..));
            let child = m.entries.get(&(dir, name.to_string())).copied();
            let predicted = match child {
                None => Err("NotFound"),
                Some(c) if want_dir && !m.is_dir(c) => Err("NotDir"),
                Some(c) if !want_dir && m.is_dir(c) => Err("IsDir"),
                Some(c) if want_dir && !m.empty(c) => Err("NotEmpty"),
                Some(_) => Ok(()),
            };
            let r = if want_dir {
                fs.rmdir(dir, name.as_bytes())
            } else {
                fs.unlink(dir, name.as_bytes())
            };
            if res(r, predicted) {
                let c = child.expect("predicted Ok");
                m.entries.remove(&(dir, name.to_string()));
                m.drop_link(c);
            }
        }
        Op::Rename(a, b, c, e) => {
            let (fd, td) = (m.dir(*a), m.dir(*c));
            let (from, to) = (NAMES[*b as usize], NAMES[*e as usize]);
            let mut after = m.clone();
            let predicted = after.rename(fd, from, td, to);
            if res(fs.rename(fd, from.as_bytes(), td, to.as_bytes()), predicted) {
                *m = after;
            }
        }
        Op::Link(a, b, c, e) => {
            let (sd, td) = (m.dir(*a), m.dir(*c));
            let (sname, tname) = (NAMES[*b as usize], NAMES[*e as usize]);
            let Some(src) = m.entries.get(&(sd, sname.to_string())).copied() else {
                if check {
                    assert!(matches!(
                        fs.lookup(sd, sname.as_bytes()),
                        Err(Error::NotFound)
                    ));
                }
                return;
            };
            let predicted = if m.is_dir(src) {
                Err("IsDir")
            } else if m.entries.contains_key(&(td, tname.to_string())) {
                Err("Exists")
            } else {
                Ok(())
            };
            if res(fs.link(src, td, tname.as_bytes()).map(|_| ()), predicted) {
                m.entries.insert((td, tname.to_string()), src);
                match m.objs.get_mut(&src) {
                    Some(MObj::File { nlink, .. })
                    | Some(MObj::Symlink { nlink, .. })
                    | Some(MObj::Special { nlink, .. }) => *nlink += 1,
                    _ => unreachable!(),
                }
            }
        }
        Op::Write { pick, .. }
        | Op::Commit(pick)
        | Op::Truncate(pick, _)
        | Op::Deallocate { pick, .. } => {
            // Data ops pick an existing entry, preferring files, so that most of them do work.
            let mut files: Vec<Handle> = m
                .entries
                .values()
                .copied()
                .filter(|h| !m.is_dir(*h))
                .collect();
            // Open files, linked or not, take writes too.
            files.extend(m.opens.keys().copied());
            let all: Vec<Handle> = m.entries.values().copied().collect();
            let h = match (*pick as usize % 8, files.is_empty(), all.is_empty()) {
                (_, _, true) => return,
                (0, _, false) | (_, true, false) => all[*pick as usize % all.len()],
                _ => files[*pick as usize % files.len()],
            };
            let kind_err = match m.objs.get(&h) {
                Some(MObj::Dir { .. }) => Some("IsDir"),
                Some(MObj::Symlink { .. }) | Some(MObj::Special { .. }) => Some("Invalid"),
                _ => None,
            };
            match op {
                Op::Write {
                    offset,
                    len,
                    byte,
                    stable,
                    ..
                } => {
                    let data = vec![*byte; *len as usize];
                    let r = fs.write(h, *offset as u64, &data, *stable).map(|_| ());
                    if res(r, kind_err.map_or(Ok(()), Err)) {
                        if let Some(MObj::File { cur, dur, .. }) = m.objs.get_mut(&h) {
                            let end = *offset as usize + data.len();
                            if cur.len() < end {
                                cur.resize(end, 0);
                            }
                            cur[*offset as usize..end].copy_from_slice(&data);
                            if *stable {
                                *dur = cur.clone();
                                m.pending.remove(&h.ino);
                            } else {
                                m.pending
                                    .entry(h.ino)
                                    .or_default()
                                    .push((*offset as usize, data));
                            }
                        }
                    }
                }
                Op::Commit(..) => {
                    if res(fs.commit(h), Ok(())) {
                        if let Some(MObj::File { cur, dur, .. }) = m.objs.get_mut(&h) {
                            *dur = cur.clone();
                        }
                        m.pending.remove(&h.ino);
                    }
                }
                Op::Truncate(_, size) => {
                    let set = SetAttr {
                        size: Some(*size as u64),
                        ..Default::default()
                    };
                    if res(
                        fs.setattr(h, &set).map(|_| ()),
                        kind_err.map_or(Ok(()), Err),
                    ) {
                        if let Some(MObj::File { cur, dur, .. }) = m.objs.get_mut(&h) {
                            cur.resize(*size as usize, 0);
                            *dur = cur.clone();
                        }
                        m.pending.remove(&h.ino);
                    }
                }
                Op::Deallocate { offset, len, .. } => {
                    let r = fs.deallocate(h, u64::from(*offset), u64::from(*len));
                    if res(r, kind_err.map_or(Ok(()), Err)) {
                        if let Some(MObj::File { cur, dur, .. }) = m.objs.get_mut(&h) {
                            let (off, end) = (*offset as usize, (*offset + *len) as usize);
                            if off < cur.len() {
                                let end = end.min(cur.len());
                                cur[off..end].fill(0);
                                if check {
                                    // Answered: the hole and everything before it durable.
                                    *dur = cur.clone();
                                    m.pending.remove(&h.ino);
                                } else {
                                    // The machine died under it: zeros, or what was there.
                                    m.pending
                                        .entry(h.ino)
                                        .or_default()
                                        .push((off, vec![0u8; end - off]));
                                }
                            }
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
        Op::Open(pick) => {
            let files: Vec<Handle> = m
                .entries
                .values()
                .copied()
                .filter(|h| matches!(m.objs.get(h), Some(MObj::File { .. })))
                .collect();
            if files.is_empty() {
                return;
            }
            let h = files[*pick as usize % files.len()];
            if res(fs.open_file(h), Ok(())) {
                *m.opens.entry(h).or_insert(0) += 1;
            }
        }
        Op::Chmod(pick, mode) => {
            // Any named object or open file, with pending writes or not.
            let mut all: Vec<Handle> = m.entries.values().copied().collect();
            all.extend(m.opens.keys().copied());
            if all.is_empty() {
                return;
            }
            let h = all[*pick as usize % all.len()];
            let set = SetAttr {
                mode: Some(*mode as u32),
                ..Default::default()
            };
            let r = fs.setattr(h, &set);
            if let (true, Ok(a)) = (check, &r) {
                assert_eq!(a.mode, *mode as u32, "setattr returns the new mode");
            }
            if res(r.map(|_| ()), Ok(())) {
                m.modes.insert(h, *mode as u32);
            }
        }
        Op::OpenUnlink(pick) => {
            let named: Vec<((Handle, String), Handle)> = m
                .entries
                .iter()
                .filter(|(_, h)| matches!(m.objs.get(h), Some(MObj::File { .. })))
                .map(|(k, h)| (k.clone(), *h))
                .collect();
            if named.is_empty() {
                return;
            }
            let ((dir, name), h) = named[*pick as usize % named.len()].clone();
            if !res(fs.open_file(h), Ok(())) {
                return;
            }
            *m.opens.entry(h).or_insert(0) += 1;
            if res(fs.unlink(dir, name.as_bytes()), Ok(())) {
                m.entries.remove(&(dir, name));
                m.drop_link(h);
            }
        }
        Op::SetXattr { pick, .. } | Op::RemoveXattr(pick, _) => {
            let mut all: Vec<Handle> = m.entries.values().copied().collect();
            all.extend(m.opens.keys().copied());
            all.push(m.root);
            let h = all[*pick as usize % all.len()];
            let carries = matches!(
                m.objs.get(&h),
                Some(MObj::File { .. }) | Some(MObj::Dir { .. })
            );
            let mut x = m.xattrs.get(&h).cloned().unwrap_or_default();
            let (r, predicted) = match op {
                Op::SetXattr {
                    name,
                    len,
                    byte,
                    how,
                    ..
                } => {
                    let value = vec![*byte; *len as usize];
                    let mode = [XattrMode::Either, XattrMode::Create, XattrMode::Replace]
                        [*how as usize % 3];
                    let present = x.contains_key(name);
                    let predicted = match (carries, mode, present) {
                        (false, ..) => Err("NotSupported"),
                        (_, XattrMode::Create, true) => Err("Exists"),
                        (_, XattrMode::Replace, false) => Err("NoXattr"),
                        _ => Ok(()),
                    };
                    x.insert(*name, value.clone());
                    let n = XATTR_NAMES[*name as usize].as_bytes();
                    (fs.setxattr(h, n, &value, mode), predicted)
                }
                Op::RemoveXattr(_, name) => {
                    let predicted = match (carries, x.remove(name)) {
                        (false, _) => Err("NotSupported"),
                        (_, None) => Err("NoXattr"),
                        (_, Some(_)) => Ok(()),
                    };
                    let n = XATTR_NAMES[*name as usize].as_bytes();
                    (fs.removexattr(h, n), predicted)
                }
                _ => unreachable!(),
            };
            if res(r, predicted) {
                m.xattrs.insert(h, x);
            }
        }
        Op::Close(pick) => {
            let open: Vec<Handle> = m.opens.keys().copied().collect();
            if open.is_empty() {
                return;
            }
            let h = open[*pick as usize % open.len()];
            if check {
                // Before the last close the object answers through its handle, linked or not.
                let want = match m.objs.get(&h) {
                    Some(MObj::File { cur, .. }) => cur.clone(),
                    other => panic!("model: open handle names {other:?}"),
                };
                let a = fs.getattr(h).expect("getattr of an open file");
                let mut buf = vec![0u8; a.size as usize];
                fs.read(h, 0, &mut buf).expect("read of an open file");
                assert!(buf == want, "open file {h:?} content differs");
            }
            if res(fs.close_file(h), Ok(())) {
                let n = m.opens.get_mut(&h).expect("open");
                *n -= 1;
                if *n == 0 {
                    m.opens.remove(&h);
                    if matches!(m.objs.get(&h), Some(MObj::File { nlink: 0, .. })) {
                        m.objs.remove(&h);
                        if check {
                            assert!(
                                matches!(fs.getattr(h), Err(Error::Stale)),
                                "closed unlinked file must be stale"
                            );
                        }
                    }
                }
            }
        }
        Op::Crash | Op::CrashDuring(..) => unreachable!(),
    }
}

/// After a crash inside an op: the namespace equals `before` or `after`; each file's bytes are
/// each the old durable or the new value. Returns the model that matches, with file contents
/// taken from the engine.
/// Unstable writes (by ino) a crash may have kept.
type PendingWrites = BTreeMap<u64, Vec<(usize, Vec<u8>)>>;

fn resolve(fs: &Filesystem, before: &Model, after: &Model, pending: &PendingWrites) -> Model {
    let got = engine_tree(fs);
    let shape = |t: &Tree| -> BTreeMap<String, (u64, char, u32)> {
        t.iter()
            .map(|(k, v)| (k.clone(), (v.0, v.1, v.2)))
            .collect()
    };
    let (tb, ta) = (model_tree(before, true), model_tree(after, true));
    let g = shape(&got);
    let chosen = if g == shape(&tb) {
        before
    } else if g == shape(&ta) {
        after
    } else {
        panic!(
            "after a crash the namespace is neither before nor after:\n got    {g:?}\n before {:?}\n after  {:?}",
            shape(&tb),
            shape(&ta)
        );
    };
    let mut m = chosen.clone();
    for (path, (ino, kind, _, data)) in &got {
        if *kind != 'f' {
            continue;
        }
        let old = tb
            .get(path)
            .filter(|v| v.0 == *ino)
            .map(|v| v.3.clone())
            .unwrap_or_default();
        let new = ta
            .get(path)
            .filter(|v| v.0 == *ino)
            .map(|v| v.3.clone())
            .unwrap_or_default();
        let writes = pending.get(ino).map(Vec::as_slice).unwrap_or_default();
        let longest = writes
            .iter()
            .map(|(off, d)| off + d.len())
            .chain([old.len(), new.len()])
            .max()
            .unwrap_or(0);
        assert!(
            data.len() >= old.len().min(new.len()) && data.len() <= longest,
            "{path}: size {} is not between {} and {longest} (old {}, new {})",
            data.len(),
            old.len().min(new.len()),
            old.len(),
            new.len()
        );
        for (i, b) in data.iter().enumerate() {
            let o = old.get(i).copied().unwrap_or(0);
            let n = new.get(i).copied().unwrap_or(0);
            let written = writes
                .iter()
                .any(|(off, d)| i >= *off && d.get(i - off) == Some(b));
            assert!(
                *b == o || *b == n || written,
                "{path}: byte {i} is {b}, neither old {o} nor new {n} nor an unstable write's"
            );
        }
        for (h, obj) in m.objs.iter_mut() {
            if h.ino == *ino {
                if let MObj::File { cur, dur, .. } = obj {
                    *cur = data.clone();
                    *dur = data.clone();
                }
            }
        }
    }
    m
}

fn run(ops: &[Op], no_sync: bool) {
    let mut h = Harness::new(no_sync);
    let mut m = Model::new(h.fs().root());
    for op in ops {
        match op {
            Op::Crash => {
                let orphans: Vec<Handle> = m
                    .objs
                    .iter()
                    .filter(|(_, o)| matches!(o, MObj::File { nlink: 0, .. }))
                    .map(|(h, _)| *h)
                    .collect();
                h.crash_and_reopen();
                let pending = m.pending.clone();
                m.crash();
                m = resolve(h.fs(), &m, &m, &pending);
                check(&engine_tree(h.fs()), &model_tree(&m, true), "after crash");
                for o in orphans {
                    assert!(
                        matches!(h.fs().getattr(o), Err(Error::Stale)),
                        "unlinked open file survives a restart"
                    );
                }
            }
            Op::CrashDuring(k, inner) => {
                let mut before = m.clone();
                before.crash();
                h.disk.arm(*k as u64);
                let mut after = m.clone();
                apply(h.fs(), &mut after, inner, false);
                let died = h.disk.is_dead();
                h.crash_and_reopen();
                let mut pending = m.pending.clone();
                for (ino, w) in &after.pending {
                    pending.entry(*ino).or_default().extend(w.iter().cloned());
                }
                after.crash();
                eprintln!("STAT crashduring died={died} op={inner:?}");
                if died {
                    m = resolve(h.fs(), &before, &after, &pending);
                } else {
                    m = resolve(h.fs(), &after, &after, &pending);
                    check(
                        &engine_tree(h.fs()),
                        &model_tree(&m, true),
                        &format!("after crash following {inner:?}"),
                    );
                }
            }
            _ => apply(h.fs(), &mut m, op, true),
        }
    }
    check(&engine_tree(h.fs()), &model_tree(&m, false), "final tree");
    h.crash_and_reopen();
    let pending = m.pending.clone();
    m.crash();
    m = resolve(h.fs(), &m, &m, &pending);
    check(
        &engine_tree(h.fs()),
        &model_tree(&m, true),
        "final tree after crash",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops, false);
    }
}

/// The crash layer must catch a commit path without fsync: with redb committing without
/// `sync_data`, a file created and written stably is gone after a crash.
#[test]
fn missing_fsync_is_detected() {
    let ops = vec![
        Op::Create(0, 0),
        Op::Write {
            pick: 1,
            offset: 0,
            len: 10,
            byte: 1,
            stable: true,
        },
        Op::Crash,
    ];
    run(&ops, false);
    let lost = std::panic::catch_unwind(|| run(&ops, true));
    assert!(lost.is_err(), "without fsync the crash test must fail");
}

/// Found by the proptest: an unstable write across an extent boundary, then a shrink.
#[test]
fn regression_unstable_write_then_shrink() {
    let ops = vec![
        Op::Create(0, 0),
        Op::Write {
            pick: 0,
            offset: 2096424,
            len: 729,
            byte: 1,
            stable: false,
        },
        Op::Truncate(0, 2096425),
    ];
    run(&ops, false);
}
