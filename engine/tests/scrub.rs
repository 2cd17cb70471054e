//! Scrubbing through the facade (issue 17): the background scrubber runs every
//! `Scrub_Interval` by itself and reclaims what overwrites left, keeping a clone's view;
//! `Filesystem::scrub_with` on demand; the totals in `volume_stats`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::*;

fn config(dir: &Path, interval: u64) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.sco_size = 64 << 10;
    c.scrub_interval = Duration::from_secs(interval);
    c.gc_grace = Duration::ZERO;
    c
}

use support::{pattern, read_all};

#[test]
fn the_background_scrubber_reclaims_overwrites_by_itself_and_keeps_a_clones_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(config(dir.path(), 1)).expect("open");
    let h = support::create_in_root(&fs, "disk-flat.vmdk")
        .expect("create")
        .attr
        .handle;
    let len = 2 << 20;
    for seed in 1..=3 {
        fs.write(h, 0, &pattern(len, seed), false).expect("write");
    }
    fs.commit(h).expect("commit");
    fs.volume_clone(h, None, fs.root(), b"clone-flat.vmdk")
        .expect("clone");
    fs.write(h, 0, &pattern(len, 9), false).expect("write");
    fs.commit(h).expect("commit");
    fs.flush_to_backend().expect("flush");
    // Passes run every second: wait (bounded) until one has compacted something and ended
    // (a pass records each compaction and deletion as it goes, and counts itself at its end).
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let s = fs.volume_stats(h).expect("stats").scrub;
        if s.scos_compacted > 0 && s.objects_deleted > 0 && s.passes >= 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no background pass reclaimed anything: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(info.passes >= 1, "{info:?}");
    assert_eq!(read_all(&fs, h), pattern(len, 9));
    let c = fs
        .lookup(fs.root(), b"clone-flat.vmdk")
        .expect("clone")
        .handle;
    assert_eq!(read_all(&fs, c), pattern(len, 3));
    // On demand, over every volume: nothing left to do.
    let r = fs.scrub_with(None, &NoProgress).expect("scrub");
    assert_eq!(r.scos_compacted, 0, "{r:?}");
}

#[test]
fn without_an_interval_nothing_runs_in_the_background_and_a_pass_on_demand_does_the_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("open");
    let h = support::create_in_root(&fs, "disk-flat.vmdk")
        .expect("create")
        .attr
        .handle;
    for seed in 1..=3 {
        fs.write(h, 0, &pattern(1 << 20, seed), false)
            .expect("write");
    }
    fs.commit(h).expect("commit");
    fs.flush_to_backend().expect("flush");
    assert_eq!(fs.volume_stats(h).expect("stats").scrub.passes, 0);
    let r = fs.scrub_with(Some(h), &NoProgress).expect("scrub");
    assert!(
        r.scos_compacted > 0 && r.objects_deleted > 0,
        "{r:?} {:?}",
        fs.volume_stats(h).expect("stats")
    );
    let s = fs.volume_stats(h).expect("stats").scrub;
    assert_eq!(s.passes, 1);
    assert_eq!(s.scos_compacted, r.scos_compacted);
    assert_eq!(read_all(&fs, h), pattern(1 << 20, 3));
    // A directory is not a volume.
    assert!(fs.scrub_with(Some(fs.root()), &NoProgress).is_err());
}

#[test]
fn a_parent_restored_from_the_backend_learns_its_clones_again_before_anything_is_compacted() {
    // The clone's snapshot is deleted: only the parent's reader point protects what the clone
    // reads. A backend restart of the parent loses the points it recorded; the pass takes them
    // from the namespace again before it decides anything.
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 2 << 20;
    let (p_ino, c) = {
        let fs = Filesystem::open(config(dir.path(), 0)).expect("open");
        let h = support::create_in_root(&fs, "disk-flat.vmdk")
            .expect("create")
            .attr
            .handle;
        fs.write(h, 0, &pattern(len, 1), false).expect("write");
        fs.commit(h).expect("commit");
        let (c, snap) = fs
            .volume_clone(h, None, fs.root(), b"clone-flat.vmdk")
            .expect("clone");
        fs.snapshot_delete(h, &snap.name)
            .expect("delete the clone's snapshot");
        for seed in 2..=3 {
            fs.write(h, 0, &pattern(len, seed), false).expect("write");
        }
        fs.commit(h).expect("commit");
        fs.flush_to_backend().expect("flush");
        (h.ino, c.handle)
    };
    std::fs::remove_dir_all(dir.path().join(VOLUMES_DIR).join(format!("{p_ino:016x}")))
        .expect("drop the parent's local state");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("reopen");
    let h = fs
        .lookup(fs.root(), b"disk-flat.vmdk")
        .expect("parent")
        .handle;
    assert_eq!(read_all(&fs, h), pattern(len, 3), "restored");
    let r = fs.scrub_with(Some(h), &NoProgress).expect("scrub");
    assert!(r.scos_compacted > 0, "{r:?}");
    assert_eq!(read_all(&fs, c), pattern(len, 1), "the clone's view");
    assert_eq!(read_all(&fs, h), pattern(len, 3));
}

/// The names under the local backend's `files/` (regular files' extent objects).
fn file_objects(dir: &Path) -> std::collections::BTreeSet<String> {
    let files = dir.join("backend").join(FILES_PREFIX);
    match std::fs::read_dir(&files) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => panic!("listing {}: {e}", files.display()),
    }
}

/// Puts an object straight into the local backend's `files/` (what an older build, a lost
/// journal or a crash the journal does not cover leaves behind).
fn plant(dir: &Path, name: &str) {
    let path = dir.join("backend").join(FILES_PREFIX).join(name);
    std::fs::write(&path, b"orphan").expect("plant");
}

/// A generation from the range of the run with owner epoch `epoch`.
fn gen_of(epoch: u64, counter: u64) -> u64 {
    (epoch << 40) | counter
}

fn file_config(dir: &Path, grace: u64) -> EngineConfig {
    let mut c = config(dir, 0);
    c.gc_grace = Duration::from_secs(grace);
    c
}

#[test]
fn extent_objects_no_map_names_are_swept_after_their_grace_and_live_ones_never_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (a, b) = {
        let fs = Filesystem::open(file_config(d, 0)).expect("open");
        let a = support::create_in_root(&fs, "a").expect("a").attr.handle;
        let b = support::create_in_root(&fs, "b").expect("b").attr.handle;
        fs.write(a, 0, &pattern(3 << 20, 1), false)
            .expect("write a");
        fs.write(b, 0, &pattern(3 << 19, 2), false)
            .expect("write b");
        fs.commit(a).expect("commit");
        fs.commit(b).expect("commit");
        fs.flush_to_backend().expect("flush");
        (a, b)
    };
    let live = file_objects(d);
    assert_eq!(live.len(), 5, "3 + 2 extents: {live:?}");
    // Left by an earlier run: a version of a live extent no map names, an extent past the
    // file's end, a whole file that is gone (a name from before generations), and a key
    // that is no extent name at all.
    let first = Filesystem::open(file_config(d, 3600)).expect("open");
    let old = first.owner().epoch - 1;
    let orphans = [
        strata_filedriver::extent_key(a.ino, 0, gen_of(old, 0xabc)),
        strata_filedriver::extent_key(a.ino, 7, gen_of(old, 0xabd)),
        strata_filedriver::extent_key(999_999, 2, 0),
    ];
    for o in &orphans {
        plant(d, o);
    }
    plant(d, "notes.txt");
    // This run's range: maybe an upload between its PUT and its record; never swept by
    // this run.
    let this_run = strata_filedriver::extent_key(b.ino, 9, gen_of(first.owner().epoch, 0xfffff));
    plant(d, &this_run);
    first.scrub_with(None, &NoProgress).expect("scrub");
    assert_eq!(
        first.unnamed_extents().expect("marks"),
        3,
        "marked, in grace"
    );
    assert!(
        orphans.iter().all(|o| file_objects(d).contains(o)),
        "kept for GC_Grace"
    );
    drop(first);

    // A later run with no grace: everything of earlier runs that no map names goes (the
    // object planted under the previous run's epoch too), nothing live, nothing foreign.
    let fs = Filesystem::open(file_config(d, 0)).expect("reopen");
    let now = strata_filedriver::extent_key(b.ino, 9, gen_of(fs.owner().epoch, 0xfffff));
    plant(d, &now);
    let r = fs.scrub_with(None, &NoProgress).expect("scrub");
    assert_eq!(r.objects_deleted, 4, "{r:?}");
    let mut want = live.clone();
    want.insert("notes.txt".into());
    want.insert(now);
    assert_eq!(file_objects(d), want);
    assert_eq!(fs.unnamed_extents().expect("marks"), 0);
    assert_eq!(read_all(&fs, a), pattern(3 << 20, 1));
    assert_eq!(read_all(&fs, b), pattern(3 << 19, 2));
}

/// The child process's environment: `<data dir>:<steps>` (see [`StepBudget`]).
const CHILD_ENV: &str = "STRATA_SCRUB_SWEEP_CHILD";

/// Kills the process (SIGKILL) once the put or delete of a regular file's extent numbered
/// `budget` (from 1) came back from the store: a crash right after that step landed (with
/// whatever else was in flight). `budget` 0 kills before the first step.
#[derive(Debug)]
struct StepBudget {
    budget: u64,
    taken: std::sync::atomic::AtomicU64,
}

fn is_step(call: &strata_backend::Call<'_>) -> bool {
    use strata_backend::Call;
    matches!(call, Call::Put { .. } | Call::Delete { .. }) && call.key().starts_with(FILES_PREFIX)
}

fn kill_myself() {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

#[async_trait::async_trait]
impl strata_backend::Hook for StepBudget {
    async fn before(&self, call: &strata_backend::Call<'_>) -> strata_backend::Result<()> {
        if self.budget == 0 && is_step(call) {
            kill_myself();
        }
        Ok(())
    }

    async fn after(&self, call: &strata_backend::Call<'_>) {
        if is_step(call)
            && self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= self.budget
        {
            kill_myself();
        }
    }
}

/// Overwrites, removes, creates and truncates files, uploading between the changes (failed
/// uploads are left to the next run), and prints a word once each change is acknowledged.
fn file_workload(fs: &Filesystem) {
    let a = fs.lookup(fs.root(), b"a").expect("a").handle;
    fs.write(a, 0, &pattern(2 << 20, 3), false)
        .expect("overwrite");
    fs.commit(a).expect("commit");
    println!("OVERWRITTEN");
    let _ = fs.flush_to_backend();
    fs.unlink(fs.root(), b"b").expect("remove");
    println!("REMOVED");
    let c = support::create_in_root(fs, "c").expect("c").attr.handle;
    fs.write(c, 0, &pattern(2 << 20, 5), false)
        .expect("write c");
    fs.commit(c).expect("commit");
    println!("CREATED");
    let _ = fs.flush_to_backend();
    let set = SetAttr {
        size: Some(5 << 19),
        ..SetAttr::default()
    };
    if fs.setattr(a, &set).is_ok() {
        println!("TRUNCATED");
    }
    let _ = fs.flush_to_backend();
}

#[test]
fn sweep_child_entry() {
    // Only does something when re-executed by the test below.
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, budget) = arg.rsplit_once(':').expect("dir:steps");
    let d = Path::new(dir);
    let store = Arc::new(strata_backend::HookedStore::new(
        Arc::new(strata_backend::LocalStore::open(d.join("backend")).expect("store")),
        StepBudget {
            budget: budget.parse().expect("steps"),
            taken: Default::default(),
        },
    ));
    let fs = Filesystem::open_with(
        file_config(d, 0),
        OpenOptions {
            store: Some(store.clone()),
            ..OpenOptions::default()
        },
    )
    .expect("open");
    file_workload(&fs);
    fs.crash();
    println!(
        "STEPS {}",
        store.hook().taken.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// Runs the workload in a child process killed after `budget` steps; returns the changes it
/// acknowledged and, when it was not killed, how many steps it took.
fn run_child(d: &Path, budget: u64) -> (Vec<String>, Option<u64>) {
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "sweep_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{budget}", d.display()))
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints its own words before ours on the first line.
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let acked = ["OVERWRITTEN", "REMOVED", "CREATED", "TRUNCATED"]
        .into_iter()
        .filter(|w| words.contains(w))
        .map(str::to_owned)
        .collect();
    let steps = words
        .windows(2)
        .find(|w| w[0] == "STEPS")
        .map(|w| w[1].parse().expect("steps"));
    use std::os::unix::process::ExitStatusExt;
    assert!(
        steps.is_some() || out.status.signal() == Some(9),
        "the child neither finished nor was killed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (acked, steps)
}

/// A crash right after each put and delete of an extent: after the restart, a flush and a
/// pass, every acknowledged change reads back and the backend holds exactly one object per
/// extent with data. Objects a crash cut off from their record (a round's first extents
/// landed, its record not persisted) are found twice: the journal's upload records make them
/// garbage at the restart, and the sweep finds them unnamed (the test fails with both taken
/// out, and passes with either).
#[test]
fn a_crash_at_every_backend_step_of_file_uploads_leaves_nothing_a_sweep_does_not_collect() {
    // The steps: every put and delete of an extent object the workload makes.
    let setup = |d: &Path| {
        let fs = Filesystem::open(file_config(d, 0)).expect("open");
        for (name, len, seed) in [("a", 3 << 20, 1), ("b", 2 << 20, 2)] {
            let h = support::create_in_root(&fs, name)
                .expect("create")
                .attr
                .handle;
            fs.write(h, 0, &pattern(len, seed), false).expect("write");
            fs.commit(h).expect("commit");
        }
        fs.flush_to_backend().expect("flush");
    };
    let whole = {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path());
        let (acked, steps) = run_child(dir.path(), u64::MAX);
        assert_eq!(acked.len(), 4, "{acked:?}");
        steps.expect("the whole workload's steps")
    };
    assert!(whole >= 6, "the workload's steps: {whole}");
    for budget in 0..=whole {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        setup(d);
        let (acked, steps) = run_child(d, budget);
        let acked = |w: &str| acked.iter().any(|a| a == w);
        assert_eq!(steps, None, "killed at step {budget}");
        let fs = Filesystem::open(file_config(d, 0)).expect("restart");
        fs.flush_to_backend().expect("flush");
        fs.scrub_with(None, &NoProgress).expect("scrub");
        // Every acknowledged change is there...
        let mut whole_a = pattern(3 << 20, 1);
        whole_a[..2 << 20].copy_from_slice(&pattern(2 << 20, 3));
        let a = fs.lookup(fs.root(), b"a").expect("a").handle;
        let a_now = read_all(&fs, a);
        if acked("TRUNCATED") {
            assert_eq!(a_now, whole_a[..5 << 19], "a, step {budget}");
        } else if acked("OVERWRITTEN") {
            assert!(whole_a.starts_with(&a_now), "a, step {budget}");
        }
        let b = fs.lookup(fs.root(), b"b").ok();
        if acked("REMOVED") {
            assert!(b.is_none(), "b removed, step {budget}");
        }
        let c = fs.lookup(fs.root(), b"c").ok();
        if acked("CREATED") {
            let c = c.as_ref().expect("c created");
            assert_eq!(
                read_all(&fs, c.handle),
                pattern(2 << 20, 5),
                "c, step {budget}"
            );
        }
        // ... and the backend holds one object for each extent with data of a file that
        // exists, and nothing else.
        let mut want = std::collections::BTreeSet::new();
        let mut may = std::collections::BTreeSet::new();
        for h in [Some(a), b.map(|b| b.handle), c.map(|c| c.handle)]
            .into_iter()
            .flatten()
        {
            for (i, chunk) in read_all(&fs, h).chunks(1 << 20).enumerate() {
                let name = format!("{:016x}.{i:08x}", h.ino);
                if chunk.iter().any(|&x| x != 0) {
                    want.insert(name.clone());
                }
                may.insert(name);
            }
        }
        let have: std::collections::BTreeSet<String> = file_objects(d)
            .iter()
            .map(|k| k.rsplit_once('.').map_or(k.clone(), |(e, _)| e.to_owned()))
            .collect();
        assert!(
            want.is_subset(&have) && have.is_subset(&may),
            "extents on the backend after a crash at step {budget}: {have:?}, want {want:?}"
        );
        assert_eq!(
            file_objects(d).len(),
            have.len(),
            "one version each, step {budget}"
        );
    }
}

#[test]
fn clones_made_and_read_while_their_parent_is_written_and_scrubbed_read_right_after_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("open");
    let h = support::create_in_root(&fs, "disk-flat.vmdk")
        .expect("create")
        .attr
        .handle;
    let len = 1usize << 20;
    for seed in 1..=4 {
        fs.write(h, 0, &pattern(len, seed), false).expect("write");
    }
    fs.commit(h).expect("commit");
    fs.flush_to_backend().expect("flush");
    // The parent's content, changed only under this lock (a write, then a commit).
    let head = std::sync::Mutex::new(pattern(len, 4));
    let clones = std::sync::Mutex::new(Vec::<(Handle, Vec<u8>)>::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let scrubber = s.spawn(|| {
            let passes = || -> Result<u64> {
                let mut compacted = 0;
                for _ in 0..6 {
                    fs.flush_to_backend()?;
                    compacted += fs.scrub_with(Some(h), &NoProgress)?.scos_compacted;
                }
                Ok(compacted)
            };
            let r = passes();
            // The reader stops whatever happened.
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        // Reads of the clones made so far race the passes.
        let reader = s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let made: Vec<_> = clones.lock().expect("clones").clone();
                for (c, want) in made {
                    assert!(read_all(&fs, c) == want, "a clone read wrong during a pass");
                }
            }
        });
        for i in 0..6u8 {
            {
                let mut cur = head.lock().expect("head");
                let off = ((usize::from(i) * 64) << 10) % len;
                let data = pattern(256 << 10, 10 + i);
                let end = (off + data.len()).min(len);
                fs.write(h, off as u64, &data[..end - off], false)
                    .expect("write");
                fs.commit(h).expect("commit");
                cur[off..end].copy_from_slice(&data[..end - off]);
            }
            let cur = head.lock().expect("head").clone();
            let name = format!("clone-{i}-flat.vmdk");
            let (c, _) = fs
                .volume_clone(h, None, fs.root(), name.as_bytes())
                .expect("clone");
            clones.lock().expect("clones").push((c.handle, cur));
        }
        let compacted = scrubber.join().expect("scrubber");
        reader.join().expect("reader");
        let compacted = compacted.expect("the scrub passes");
        assert!(compacted > 0, "the passes compacted nothing");
    });
    fs.flush_to_backend().expect("flush");
    fs.scrub_with(None, &NoProgress).expect("a last pass");
    assert!(
        read_all(&fs, h) == *head.lock().expect("head"),
        "the parent"
    );
    for (c, want) in clones.lock().expect("clones").iter() {
        assert!(read_all(&fs, *c) == *want, "a clone after both");
    }
    // And from the backend alone: a restart with no local state for the parent.
    let p_ino = h.ino;
    drop(fs);
    std::fs::remove_dir_all(dir.path().join(VOLUMES_DIR).join(format!("{p_ino:016x}")))
        .expect("drop the parent's local state");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("reopen");
    assert!(
        read_all(&fs, h) == *head.lock().expect("head"),
        "the parent, restored"
    );
    for (c, want) in clones.lock().expect("clones").iter() {
        assert!(read_all(&fs, *c) == *want, "a clone, its parent restored");
    }
}
