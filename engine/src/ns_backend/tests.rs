//! The namespace's side of the backend against an in-memory store: the high-water mark, the
//! images and the head, the garbage they release, and a gateway that lost the head.

use super::*;
use crate::types::{CreateMode, Cred, Handle, Kind};
use strata_backend::MemStore;

struct Setup {
    _dir: tempfile::TempDir,
    ns: Arc<Namespace>,
    store: Arc<MemStore>,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("ns.redb")).expect("db");
    Setup {
        ns: Arc::new(Namespace::open(db).expect("open")),
        _dir: dir,
        store: Arc::new(MemStore::new()),
        rt: crate::runtime::build().expect("runtime"),
    }
}

impl Setup {
    fn open(&self, epoch: u64) -> Result<Arc<NsBackend>> {
        NsBackend::open(
            self.ns.clone(),
            self.store.clone(),
            self.rt.handle().clone(),
            epoch,
            Duration::from_secs(3600),
        )
    }

    fn head(&self) -> Head {
        self.rt
            .block_on(read_head(&*self.store))
            .expect("read")
            .expect("a head")
            .0
    }

    fn keys(&self) -> Vec<String> {
        let page = self
            .rt
            .block_on(self.store.list("", None, 100))
            .expect("list");
        page.objects.into_iter().map(|o| o.key).collect()
    }

    fn create(&self, name: &[u8]) -> Result<Ino> {
        let root = Handle {
            ino: crate::namespace::ROOT,
            generation: self.ns.fsid(),
        };
        let node = crate::namespace::NewNode {
            kind: Kind::File,
            mode: 0o644,
            cred: Cred::default(),
            target: vec![],
            rdev: crate::types::DeviceId::default(),
        };
        Ok(self.ns.create(root, name, node, CreateMode::Unchecked)?.0)
    }
}

#[test]
fn the_mark_is_ahead_of_every_inode_handed_out_and_creates_wait_at_it() {
    let s = setup();
    let b = s.open(1).expect("open");
    let next = s.ns.next_ino().expect("next");
    assert_eq!(s.head().ino_hwm, next + INO_BLOCK, "written at open");
    assert_eq!(s.head().image, None);
    // The namespace hands out numbers only below the mark the backend holds.
    s.ns.set_ino_limit(next + 1);
    s.create(b"a").expect("below the mark");
    assert!(matches!(s.create(b"b"), Err(Error::Delay)), "at the mark");
    // A round raises the mark when less than half a block is left.
    b.step(false).expect("step");
    s.create(b"b").expect("the limit follows the head");
    drop(b);
    // A start with the mark far enough ahead leaves the head alone.
    let before = s.head();
    let _b = s.open(2).expect("reopen");
    assert_eq!(s.head(), before);
}

#[test]
fn changes_go_up_as_logs_until_an_image_is_due_and_garbage_waits_for_them() {
    let s = setup();
    let b = s.open(3).expect("open");
    b.step(false)
        .expect("the first image of a run is taken at once");
    let first = s.head().image.expect("an image");
    assert_eq!((first.epoch, first.seq, first.log_last), (3, 1, 1));
    // Garbage recorded now is named by the image on the backend (it was a map's before):
    // nothing may go until what the head names was read after it.
    s.ns.add_garbage(&[(9, 0, 5)]).expect("garbage");
    s.create(b"a").expect("create");
    assert!(b.take_deletable().is_empty());
    b.step(false).expect("not due: the interval has not passed");
    assert_eq!(s.head().image, Some(first));
    let covering = b.want_image();
    b.step(false).expect("wanted: due");
    // A log of the change, after the same image.
    let logged = s.head().image.expect("an image");
    assert_eq!((logged.seq, logged.log_last), (1, 2), "{logged:?}");
    assert_eq!(b.take_deletable(), vec![(9, 0, 5)]);
    s.ns.forget_garbage(&[(9, 0, 5)]).expect("collected");
    assert!(s.rt.block_on(b.wait_for_image(covering)));
    let keys = s.keys();
    for k in b.named_keys() {
        assert!(keys.contains(&k), "{k} named and there: {keys:?}");
    }
    // Unchanged: forced or not, nothing new.
    b.step(true).expect("step");
    assert_eq!(s.head().image, Some(logged));
    // More changes: logs until they weigh half the image, then a new image, and the old
    // image and its logs go.
    let mut n = 0;
    let rotated = loop {
        n += 1;
        s.create(format!("f{n}").as_bytes()).expect("create");
        b.want_image();
        b.step(false).expect("step");
        let h = s.head().image.expect("an image");
        if h.seq != first.seq {
            break h;
        }
        assert!(n < 50, "no new image after {n} logs");
    };
    assert_eq!(rotated.log_last, rotated.seq);
    assert!(rotated.seq > logged.log_last, "{rotated:?}");
    let keys = s.keys();
    let named = b.named_keys();
    let ns_keys: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("namespace/"))
        .collect();
    assert_eq!(
        ns_keys.len(),
        named.len() + 1,
        "the head and what it names: {keys:?}"
    );
    assert!(!keys.contains(&first.key()), "{keys:?}");
}

#[test]
fn a_gateway_that_lost_the_head_uploads_and_releases_nothing_more() {
    let s = setup();
    let b = s.open(4).expect("open");
    b.step(false).expect("image");
    let mine = s.head();
    // Another gateway (a restore with --take-over) writes the head.
    let theirs = Head {
        gateway: 99,
        epoch: 5,
        ..mine
    };
    s.rt.block_on(s.store.put(HEAD_KEY, theirs.encode().into()))
        .expect("put");
    s.create(b"x").expect("create");
    s.ns.add_garbage(&[(9, 0, 6)]).expect("garbage");
    let e = b.step(true).expect_err("fenced");
    assert!(matches!(e, Error::NotOwner(_)), "{e}");
    assert_eq!(s.head(), theirs, "the new owner's head stays");
    assert!(b.take_deletable().is_empty(), "nothing released");
    assert!(
        !s.rt.block_on(b.wait_for_image(u64::MAX)),
        "what waits for an image learns it will not come"
    );
    let images: Vec<String> = s
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("namespace/image."))
        .collect();
    assert_eq!(
        images,
        vec![mine.image.expect("image").key()],
        "its own new image removed"
    );
    assert!(matches!(b.step(true), Err(Error::NotOwner(_))), "for good");
}

#[test]
fn a_head_of_another_namespace_is_refused_at_open() {
    let s = setup();
    let other = Head {
        fsid: s.ns.fsid() ^ 1,
        gateway: 1,
        epoch: 1,
        ino_hwm: 10,
        image: None,
        beat: 0,
    };
    s.rt.block_on(s.store.put(HEAD_KEY, other.encode().into()))
        .expect("put");
    assert!(matches!(s.open(1), Err(Error::NotOwner(_))));
    assert_eq!(s.head(), other, "untouched");
}

#[test]
fn a_garbage_backlog_drains_batch_by_batch_on_an_idle_namespace() {
    let s = setup();
    let b = s.open(1).expect("open");
    b.step(false).expect("first image");
    let rows: Vec<(Ino, u64, u64)> = (0..1500).map(|i| (7, i, 1)).collect();
    s.ns.add_garbage(&rows).expect("garbage");
    let mut released = 0;
    for _ in 0..4 {
        b.want_image();
        b.step(false).expect("step");
        let batch = b.take_deletable();
        released += batch.len();
        s.ns.forget_garbage(&batch).expect("collected");
    }
    assert_eq!(released, 1500, "every row released, 1000 at a time");
}

#[test]
fn a_head_write_whose_answer_was_lost_is_taken_for_what_it_was() {
    let s = setup();
    let b = s.open(1).expect("open");
    b.step(false).expect("image");
    // The next write (the heartbeat, or any) lands but its answer is lost: the head on the
    // backend is what the gateway sends, under another ETag.
    let h = s.head();
    let next = Head {
        beat: h.beat + 1,
        ..h
    };
    s.rt.block_on(s.store.put(HEAD_KEY, next.encode().into()))
        .expect("put");
    b.fence().expect("its own write: not a take-over");
    assert_eq!(s.head(), next, "adopted as this gateway's own");
    b.step(true).expect("goes on");
}
