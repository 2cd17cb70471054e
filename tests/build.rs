//! Builds the test-only NFS client (C over libnfs, libnfs-dev) linked into the
//! `strata-nfs-client` binary.

fn main() {
    println!("cargo:rerun-if-changed=csrc/nfs_client.c");
    if !std::path::Path::new("/usr/include/nfsc/libnfs.h").exists() {
        panic!(
            "\n\n/usr/include/nfsc/libnfs.h is missing: install libnfs-dev (scripts/setup does it).\n\n"
        );
    }
    cc::Build::new()
        .file("csrc/nfs_client.c")
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .compile("strata_nfs_client");
    println!("cargo:rustc-link-lib=dylib=nfs");
}
