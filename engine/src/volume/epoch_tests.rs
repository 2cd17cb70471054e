//! Upload epochs: every run of a volume uploads under keys of its own, so that no data key is
//! ever written twice, and reads, restarts and backend restarts find each object under the key
//! of the run that uploaded it.

use std::collections::HashSet;
use std::sync::Arc;

use strata_backend::ObjectStore as _;

use super::tests::{dir, fail_puts, fill, fresh, keys, mt_rt, whole, FailPuts, VOL};
use super::*;

/// 64 KiB SCOs, 2 per TLog, a metadata checkpoint after every 2 TLogs.
fn opts() -> VolumeOptions {
    VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 2,
        checkpoint_tlogs: 2,
    }
}

/// Evicts every SCO on the backend, durably.
fn evict_all(vol: &Volume) {
    for c in vol.eviction_candidates() {
        vol.evict_sco(c.sco).expect("evict");
    }
    vol.sync_evictions().expect("evictions durable");
}

/// A backend restart onto a fresh simulated disk, in `epoch`.
fn restore(rt: &tokio::runtime::Runtime, store: &Arc<FailPuts>, epoch: u64) -> (SimFs, Volume) {
    let sim = SimFs::new();
    let lfs: Arc<dyn LocalFs> = Arc::new(sim.clone());
    let v = rt
        .block_on(Volume::restore(&**store, lfs, &dir(), VOL, opts()))
        .expect("backend restart");
    v.set_backend(store.clone(), rt.handle().clone(), epoch);
    (sim, v)
}

/// Epoch 1 uploads TLogs whose manifest PUT fails (they are on the backend, never named); the
/// local state is lost; epoch 2 restores and writes other data under the same sequence
/// numbers; epoch 3 restarts locally after a machine crash and writes more; epoch 4 restores
/// again. No data key is ever PUT twice, and every run reads every byte back, from evicted
/// SCOs of every epoch.
#[test]
fn every_run_uploads_under_its_own_keys_and_finds_each_object_again() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (_fs, _lfs, vol) = fresh(opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    fill(&vol, 6 * 65_536, 1);
    rt.block_on(vol.backup(&*store, true)).expect("epoch 1");
    fill(&vol, 6 * 65_536, 2);
    store.hook().fail_puts_under(Some("manifest"));
    rt.block_on(vol.backup(&*store, true))
        .expect_err("the manifest PUT fails");
    store.hook().fail_puts_under(None);
    drop(vol);

    let (sim, vol) = restore(&rt, &store, 2);
    let at_epoch1 = whole(&vol);
    assert_eq!(at_epoch1.len(), 6 * 65_536);
    // Past what epoch 1 wrote (whose SCOs are read back from its keys below), over the
    // sequence numbers of its unnamed uploads.
    vol.write(6 * 65_536, &[3u8; 6 * 65_536], false)
        .expect("write");
    let want = whole(&vol);
    assert_eq!(want[..6 * 65_536], at_epoch1[..]);
    rt.block_on(vol.backup(&*store, true)).expect("epoch 2");
    evict_all(&vol);
    assert_eq!(whole(&vol), want, "epoch 2, SCOs of epochs 1 and 2 evicted");
    drop(vol);
    // A machine crash: the epochs that find the evicted SCOs' keys were made durable.
    sim.crash(CrashMode::DropAll);
    let lfs: Arc<dyn LocalFs> = Arc::new(sim.clone());
    let vol = Volume::open(lfs, &dir(), VOL, opts()).expect("restart");
    vol.set_backend(store.clone(), rt.handle().clone(), 3);
    assert_eq!(whole(&vol), want, "epoch 3 reads what epoch 2 evicted");
    vol.write(65_536, &[7u8; 3 * 65_536], false).expect("write");
    let want = whole(&vol);
    rt.block_on(vol.backup(&*store, true)).expect("epoch 3");
    evict_all(&vol);
    assert_eq!(whole(&vol), want, "epoch 3, SCOs evicted");
    drop(vol);

    let (_, vol) = restore(&rt, &store, 4);
    assert_eq!(whole(&vol), want, "a backend restart in epoch 4");
    assert!(vol.verify().expect("verify").is_empty());

    let puts = store.hook().puts();
    let mut seen = HashSet::new();
    for k in &puts {
        assert!(seen.insert(k), "{k} was written twice: {puts:?}");
    }
    let all: Vec<String> = rt.block_on(keys(&*store, ""));
    for epoch in 1..=3u64 {
        for kind in ["sco/", "tlog/"] {
            let suffix = format!(".{epoch:016x}");
            assert!(
                all.iter()
                    .any(|k| k.starts_with(kind) && k.ends_with(&suffix)),
                "no {kind} key of epoch {epoch}: {all:?}"
            );
        }
    }
    assert!(
        all.iter()
            .any(|k| k.starts_with("mds/") && k.contains(".0000000000000003/")),
        "a checkpoint of epoch 3: {all:?}"
    );
}

/// A checkpoint object of epoch 1 (`rest` is its key after `mds/`) as a build before epochs
/// wrote it: named by its TLog alone, and so are the checkpoints its index names.
fn legacy_checkpoint_object(rest: &str, body: &[u8]) -> Vec<u8> {
    use super::mds::checkpoint as ck;
    let (dir, name) = rest.split_once('/').expect("mds/<dir>/<name>");
    let n = u64::from_str_radix(&dir[..16], 16).expect("N");
    let cid = ck::checkpoint_id(n, 1).expect("id");
    if let Some(p) = name.strip_prefix("page-") {
        let p = u64::from_str_radix(p, 16).expect("page");
        let entries = ck::decode_page("p", body, VOL, cid, p).expect("page");
        ck::encode_page(VOL, n, p, &entries)
    } else if name == "scos" {
        ck::encode_scos(VOL, n, &ck::decode_scos("s", body, VOL, cid).expect("scos"))
    } else {
        let mut ix = ck::decode_index("i", body, VOL, cid).expect("index");
        for (_, c) in &mut ix.pages {
            *c = ck::id_tlog(*c);
        }
        ck::encode_index(VOL, n, &ix)
    }
}

/// A backend written before epochs (format 1 manifest, keys without an epoch, a checkpoint
/// named by its TLog alone) restores, reads, and takes new uploads under epoch keys beside the
/// old ones; a second backend restart reads both.
#[test]
fn a_backend_from_before_epochs_restores_and_goes_on_with_epochs() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (_fs, _lfs, vol) = fresh(opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    let mut want = fill(&vol, 6 * 65_536, 1);
    rt.block_on(vol.backup(&*store, true)).expect("upload");
    drop(vol);
    // Rewrite it as a build before epochs left it.
    let suffix = ".0000000000000001";
    let old: Vec<String> = rt.block_on(keys(&*store, ""));
    for k in &old {
        let (body, _) = rt.block_on(store.get(k)).expect("get");
        let body = if k == "manifest.xml" {
            let text = String::from_utf8(body.to_vec()).expect("utf8");
            let text: String = text
                .lines()
                .filter(|l| !l.contains("<epoch "))
                .map(|l| l.replace(" epoch=\"1\"", "") + "\n")
                .collect::<String>()
                .replace("format=\"2\"", "format=\"1\"");
            assert!(text.contains("<checkpoint tlog="), "{text}");
            bytes::Bytes::from(text)
        } else if let Some(rest) = k.strip_prefix("mds/") {
            bytes::Bytes::from(legacy_checkpoint_object(rest, &body))
        } else {
            body
        };
        let legacy = k.replace(suffix, "");
        rt.block_on(store.delete(k)).expect("delete");
        rt.block_on(store.put(&legacy, body)).expect("put");
    }
    assert!(!old.iter().all(|k| !k.contains(suffix)), "{old:?}");

    // Restored SCOs are read from the backend (a restore downloads none).
    let (_, vol) = restore(&rt, &store, 2);
    assert_eq!(whole(&vol), want, "read from keys without an epoch");
    vol.write(0, &[9u8; 2 * 65_536], false).expect("write");
    want[..2 * 65_536].fill(9);
    rt.block_on(vol.backup(&*store, true)).expect("epoch 2");
    drop(vol);
    let (_, vol) = restore(&rt, &store, 3);
    assert_eq!(whole(&vol), want, "old and new keys together");
}
