//! The workloads: `qemu-img bench` runs over `nfs://` and the project's own client's random
//! I/O, with what each measures.

use super::{Settings, COMMIT_EVERY, MIB};

/// A `qemu-img bench` workload.
pub(crate) struct QemuWork {
    pub(super) id: &'static str,
    pub(super) write: bool,
    pub(super) bs: u64,
    pub(super) depth: u32,
    pub(super) flush_every: u64,
    /// Bytes moved per run; on MEM the same requests wrap inside its 2 MiB image.
    pub(super) bytes: u64,
}

pub(super) fn qemu_workloads(s: &Settings) -> Vec<QemuWork> {
    let w = |id, write, bs, depth, flush_every, bytes| QemuWork {
        id,
        write,
        bs,
        depth,
        flush_every,
        bytes,
    };
    let image = s.image_size;
    // 4 KiB runs: long enough for qemu-img's millisecond timer, short enough for --quick.
    let small = if s.quick { 16 * MIB } else { 32 * MIB };
    vec![
        // The image was filled (untimed) first: these write rows overwrite data.
        w("qemu seq write 1M qd8", true, MIB, 8, 0, image),
        w("qemu seq read 1M qd8", false, MIB, 8, 0, image),
        w("qemu seq write 64K qd16", true, 64 << 10, 16, 0, image / 2),
        w("qemu seq read 64K qd16", false, 64 << 10, 16, 0, image / 2),
        w("qemu seq write 4K qd1", true, 4096, 1, 0, small),
        w("qemu seq write 4K qd16", true, 4096, 16, 0, 4 * small),
        w("qemu seq read 4K qd1", false, 4096, 1, 0, small),
        w("qemu seq read 4K qd16", false, 4096, 16, 0, 4 * small),
        w(
            "qemu seq write 4K qd16 flush/16",
            true,
            4096,
            16,
            COMMIT_EVERY,
            small / 4,
        ),
    ]
}

/// A random I/O workload of our libnfs client.
pub(super) struct RandWork {
    pub(super) id: &'static str,
    pub(super) write: bool,
    pub(super) qd: u32,
    pub(super) commit_every: u64,
}

pub(super) fn rand_workloads() -> Vec<RandWork> {
    let w = |id, write, qd, commit_every| RandWork {
        id,
        write,
        qd,
        commit_every,
    };
    vec![
        w("rand read 4K qd1", false, 1, 0),
        w("rand read 4K qd16", false, 16, 0),
        w("rand write 4K qd1", true, 1, 0),
        w("rand write 4K qd16", true, 16, 0),
        w("rand write 4K qd1 commit/1", true, 1, 1),
        w("rand write 4K qd1 commit/16", true, 1, COMMIT_EVERY),
        w("rand write 4K qd16 commit/16", true, 16, COMMIT_EVERY),
    ]
}
