//! `strata-bench`: Strata against Ganesha's own VFS and MEM FSALs on the same machine, in one
//! run (issue 6). Each system is started by the launcher in a private namespace; the same
//! workloads run against each with real clients only (`qemu-img bench` over `nfs://`, and
//! this binary's own libnfs client, run inside the namespace as `strata-bench client ...`).

pub(crate) mod clones;
pub(crate) mod discard;
pub(crate) mod latency;
pub(crate) mod nfs;
pub(crate) mod report;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod scrub;
pub(crate) mod snapshots;
pub(crate) mod sustained;
