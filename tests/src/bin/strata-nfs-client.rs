//! `strata-nfs-client`: the test-only NFS client on libnfs (DESIGN §8) for what `nfs-ls`,
//! `nfs-cp` and qemu cannot do: rename, links, symlinks, MKNOD, truncate, GUARDED and EXCLUSIVE
//! create, file handle capture, unlink-while-open, pattern writes and verified reads.
//! The client itself is C (`csrc/nfs_client.c`); run it without arguments for its usage.

use std::ffi::{c_char, c_int, CString};
use std::os::unix::ffi::OsStringExt;

// The C code is compiled by build.rs into the strata-tests library; this links it in.
use strata_tests as _;

extern "C" {
    fn strata_nfs_client_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
}

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| {
            CString::new(a.into_vec()).unwrap_or_else(|_| {
                eprintln!("strata-nfs-client: argument with a NUL byte");
                std::process::exit(2)
            })
        })
        .collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    argv.push(std::ptr::null_mut());
    let argc = c_int::try_from(args.len()).unwrap_or(c_int::MAX);
    // SAFETY: argv holds argc valid NUL-terminated strings (kept alive by `args`) and a final
    // NULL, as a C main expects; the C code does not write through them.
    let rc = unsafe { strata_nfs_client_main(argc, argv.as_mut_ptr()) };
    std::process::exit(rc);
}
