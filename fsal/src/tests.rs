//! Unit tests: the ABI check against Debian's installed binaries, and the FSAL's pure logic.

use std::mem::{offset_of, size_of};
use std::process::Command;

use crate::ffi;

const GANESHA_LIB: &str = "/usr/lib/ganesha/libganesha_nfsd.so.4.3";
const MEM_FSAL: &str = "/usr/lib/x86_64-linux-gnu/ganesha/libfsalmem.so";

/// A missing system component fails under CI=true, and skips loudly otherwise.
fn require(path: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{path} is missing (CI=true: a missing component is a failure)");
    }
    eprintln!("SKIP: {path} is missing");
    false
}

/// (a) The installed package is nfs-ganesha 4.3: the version our headers and config.h are for.
#[test]
fn abi_installed_ganesha_is_4_3() {
    if !require(GANESHA_LIB) {
        return;
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "nfs-ganesha"])
        .output()
        .expect("dpkg-query runs");
    assert!(
        out.status.success(),
        "dpkg-query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        v.starts_with("4.3-") || v == "4.3",
        "installed nfs-ganesha is {v:?}; this FSAL is for 4.3 (a new release is a port)"
    );
}

/// (b) Debian built Ganesha without DEBUG_SAL (which changes state_t's layout): the string
/// only compiled under DEBUG_SAL is absent, while a string always present is found (so the
/// scan really read the library).
#[test]
fn abi_ganesha_built_without_debug_sal() {
    if !require(GANESHA_LIB) {
        return;
    }
    let bytes = std::fs::read(GANESHA_LIB).expect("read libganesha_nfsd");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"Enable_NLM"),
        "sanity: Enable_NLM not found in {GANESHA_LIB}"
    );
    assert!(
        !has(b" =State List= "),
        "{GANESHA_LIB} was built with DEBUG_SAL: state_t layout differs from our bindings"
    );
}

/// (c) Our bindgen layout equals the offsets recorded from Debian's libfsalmem.so.
#[test]
fn abi_offsets_match_recorded_debian_facts() {
    let m_ops = offset_of!(ffi::fsal_module, m_ops);
    assert_eq!(m_ops + offset_of!(ffi::fsal_ops, init_config), 0x60);
    assert_eq!(m_ops + offset_of!(ffi::fsal_ops, create_export), 0x70);
    assert_eq!(size_of::<ffi::fsal_module>(), 0x160);
    assert_eq!(size_of::<ffi::fsal_obj_ops>(), 424);
    assert_eq!(offset_of!(ffi::fsal_obj_ops, handle_to_wire), 0xe8);
    assert_eq!(offset_of!(ffi::fsal_obj_ops, handle_to_key), 0xf0);
    // ganesha-fsal.md §1 records "lock_op2/close2 = 400/408" from the 16-byte store at 0x190
    // in mem_handle_ops_init; that store holds setattr2 (low) and close2 (high), and
    // lock_op2 sits at 0x180 (see abi_ops_slots_read_from_debian_libfsalmem, which reads the
    // symbols stored into each slot from the binary).
    assert_eq!(offset_of!(ffi::fsal_obj_ops, lock_op2), 0x180);
    assert_eq!(offset_of!(ffi::fsal_obj_ops, setattr2), 0x190);
    assert_eq!(offset_of!(ffi::fsal_obj_ops, close2), 0x198);
    // Other sizes checked by the probe (ganesha-fsal.md §1).
    assert_eq!(size_of::<ffi::fsal_export>(), 360);
    assert_eq!(size_of::<ffi::fsal_obj_handle>(), 144);
    assert_eq!(size_of::<ffi::fsal_attrlist>(), 248);
    assert_eq!(size_of::<ffi::req_op_context>(), 232);
    assert_eq!(offset_of!(ffi::req_op_context, fsal_export), 152);
    assert_eq!(size_of::<ffi::export_ops>(), 272);
}

/// The disassembly of one function of a shared object, as text lines.
fn disassemble(lib: &str, func: &str) -> Vec<String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", lib])
        .output()
        .expect("objdump runs (binutils)");
    assert!(out.status.success(), "objdump failed on {lib}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let header = format!("<{func}@@Base>:");
    let mut lines = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        if l.contains(&header) {
            inside = true;
            continue;
        }
        if inside {
            if l.trim().is_empty() {
                break;
            }
            lines.push(l.to_string());
        }
    }
    assert!(!lines.is_empty(), "function {func} not found in {lib}");
    lines
}

/// Displacements `0xNN(%rbx)` of the instructions in `lines` whose text matches `pred`.
fn rbx_displacements(lines: &[String], pred: impl Fn(&str) -> bool) -> Vec<u64> {
    let mut v = Vec::new();
    for l in lines {
        if !pred(l) {
            continue;
        }
        if let Some(end) = l.find("(%rbx)") {
            let start = l[..end].rfind("0x").map(|s| s + 2);
            if let Some(s) = start {
                if let Ok(n) = u64::from_str_radix(&l[s..end], 16) {
                    v.push(n);
                }
            }
        }
    }
    v
}

/// (c, from the binary itself) Reads the layout facts out of Debian's compiled libfsalmem.so:
/// its constructor stores init_config and create_export into `MEM.fsal.m_ops`, passes
/// `&MEM.handle_ops` (= sizeof(fsal_module)) to mem_handle_ops_init and initialises
/// `MEM.mem_exports` right after the ops vector; mem_handle_ops_init stores pairs of pointers
/// at handle_to_wire and lock_op2.
#[test]
fn abi_offsets_read_from_debian_libfsalmem() {
    if !require(MEM_FSAL) {
        return;
    }
    let init = disassemble(MEM_FSAL, "init");
    // `lea 0x160(%rbx),%rdi` right before the tail call to mem_handle_ops_init.
    let call = init
        .iter()
        .position(|l| l.contains("mem_handle_ops_init"))
        .expect("init calls mem_handle_ops_init");
    let arg = rbx_displacements(&init[..call], |l| l.contains("lea") && l.contains("%rdi"));
    assert_eq!(
        arg.last().copied(),
        Some(size_of::<ffi::fsal_module>() as u64),
        "sizeof(fsal_module) differs from Debian's"
    );
    // `lea 0x308(%rbx),%rax`: &MEM.mem_exports = sizeof(fsal_module) + sizeof(fsal_obj_ops).
    let leas = rbx_displacements(&init, |l| l.contains("lea") && l.contains("%rax"));
    let expect_exports = (size_of::<ffi::fsal_module>() + size_of::<ffi::fsal_obj_ops>()) as u64;
    assert!(
        leas.contains(&expect_exports),
        "mem_exports offset {expect_exports:#x} not in {leas:x?}: sizeof(fsal_obj_ops) differs"
    );
    // Stores into m_ops after register_fsal.
    let reg = init
        .iter()
        .position(|l| l.contains("register_fsal"))
        .expect("init calls register_fsal");
    let stores = rbx_displacements(&init[reg..], |l| l.contains("mov") && l.contains(",0x"));
    let m_ops = offset_of!(ffi::fsal_module, m_ops);
    let init_config = (m_ops + offset_of!(ffi::fsal_ops, init_config)) as u64;
    let create_export = (m_ops + offset_of!(ffi::fsal_ops, create_export)) as u64;
    assert!(
        stores.contains(&init_config),
        "init_config at {init_config:#x} not stored by Debian's init: {stores:x?}"
    );
    assert!(
        stores.contains(&create_export),
        "create_export at {create_export:#x} not stored by Debian's init: {stores:x?}"
    );

    let ops = disassemble(MEM_FSAL, "mem_handle_ops_init");
    let pairs = rbx_displacements(&ops, |l| l.contains("movups"));
    let h2w = offset_of!(ffi::fsal_obj_ops, handle_to_wire) as u64;
    assert!(pairs.contains(&h2w), "handle_to_wire at {h2w:#x} is not a store target of Debian's mem_handle_ops_init: {pairs:x?}");
    assert!(pairs
        .iter()
        .all(|&o| o + 16 <= size_of::<ffi::fsal_obj_ops>() as u64));
}

/// GOT slot address -> symbol name, from the dynamic relocations of `lib`.
fn got_symbols(lib: &str) -> std::collections::HashMap<u64, String> {
    let out = Command::new("objdump")
        .args(["-R", lib])
        .output()
        .expect("objdump -R runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut m = std::collections::HashMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 && f[1] == "R_X86_64_GLOB_DAT" {
            if let Ok(a) = u64::from_str_radix(f[0], 16) {
                m.insert(a, f[2].trim_end_matches("@@Base").to_string());
            }
        }
    }
    m
}

/// Follows one function's register moves just far enough to tell which exported symbol it
/// stores at which displacement of its struct argument: loads of GOT slots into general or
/// SSE registers (movq/movhps/mov), spills to and from the stack, and stores (mov/movups).
fn stored_symbols(
    lines: &[String],
    got: &std::collections::HashMap<u64, String>,
) -> std::collections::HashMap<u64, String> {
    use std::collections::HashMap;
    type Pair = (Option<String>, Option<String>);
    let mut xmm: HashMap<String, Pair> = HashMap::new();
    let mut gp: HashMap<String, Option<String>> = HashMap::new();
    let mut stack: HashMap<String, Pair> = HashMap::new();
    let mut stores: HashMap<u64, String> = HashMap::new();
    let disp = |op: &str| -> Option<(u64, String)> {
        let open = op.find('(')?;
        let base = op[open + 1..].trim_end_matches(')').to_string();
        let d = op[..open].trim_start_matches("0x");
        let d = if d.is_empty() {
            0
        } else {
            u64::from_str_radix(d, 16).ok()?
        };
        Some((d, base))
    };
    for l in lines {
        // "    8dc4:\tmovq   0x61d4(%rip),%xmm0        # efa0 <...>"
        let body = match l.split_once(':') {
            Some((_, b)) => b.trim(),
            None => continue,
        };
        let (insn, comment) = match body.split_once('#') {
            Some((i, c)) => (i.trim(), Some(c.trim())),
            None => (body, None),
        };
        let Some((mn, ops)) = insn.split_once(char::is_whitespace) else {
            continue;
        };
        let ops: Vec<&str> = ops.trim().split(',').collect();
        if ops.len() != 2 {
            continue;
        }
        let (src, dst) = (ops[0].trim(), ops[1].trim());
        let got_sym = comment
            .and_then(|c| c.split_whitespace().next())
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .and_then(|a| got.get(&a).cloned());
        let is_rip = src.contains("(%rip)");
        match mn {
            "movq" | "movhps" | "mov" if is_rip => {
                if dst.starts_with("%xmm") {
                    let e = xmm.entry(dst.to_string()).or_default();
                    if mn == "movhps" {
                        e.1 = got_sym;
                    } else {
                        *e = (got_sym, None);
                    }
                } else {
                    gp.insert(dst.to_string(), got_sym);
                }
            }
            "movaps" | "movdqa" | "movups" | "movdqu" if src.starts_with("%xmm") => {
                if let Some((d, base)) = disp(dst) {
                    let v = xmm.get(src).cloned().unwrap_or_default();
                    if base == "%rsp" {
                        stack.insert(format!("{d:x}"), v);
                    } else if base != "%rip" {
                        if let Some(s) = v.0 {
                            stores.insert(d, s);
                        }
                        if let Some(s) = v.1 {
                            stores.insert(d + 8, s);
                        }
                    }
                }
            }
            "movaps" | "movdqa" | "movups" | "movdqu" if dst.starts_with("%xmm") => {
                let v = disp(src)
                    .filter(|(_, b)| b == "%rsp")
                    .and_then(|(d, _)| stack.get(&format!("{d:x}")).cloned());
                xmm.insert(dst.to_string(), v.unwrap_or_default());
            }
            "movq" if dst.starts_with("%xmm") && src.starts_with('%') => {
                let v = gp.get(src).cloned().flatten();
                xmm.insert(dst.to_string(), (v, None));
            }
            "punpcklqdq" => {
                let lo = xmm.get(src).and_then(|p| p.0.clone());
                xmm.entry(dst.to_string()).or_default().1 = lo;
            }
            "mov" if src.starts_with('%') && dst.contains('(') => {
                if let Some((d, base)) = disp(dst) {
                    if base != "%rsp" {
                        if let Some(Some(s)) = gp.get(src) {
                            stores.insert(d, s.clone());
                        }
                    }
                }
            }
            _ => {
                if dst.starts_with('%') {
                    gp.insert(dst.to_string(), None);
                    if dst.starts_with("%xmm") {
                        xmm.insert(dst.to_string(), (None, None));
                    }
                }
            }
        }
    }
    stores
}

/// (c, from the binary itself, by name) Which of Debian's exported MEM functions its compiled
/// code stores into which slot of `fsal_obj_ops`, `fsal_module` and `export_ops`, compared
/// with our bindgen offsets.
#[test]
fn abi_ops_slots_read_from_debian_libfsalmem() {
    if !require(MEM_FSAL) {
        return;
    }
    let got = got_symbols(MEM_FSAL);
    assert!(
        got.values().any(|s| s == "mem_close2"),
        "no GOT entry for mem_close2: {got:?}"
    );
    let obj = stored_symbols(&disassemble(MEM_FSAL, "mem_handle_ops_init"), &got);
    let expect_obj = [
        ("mem_close", offset_of!(ffi::fsal_obj_ops, close)),
        ("mem_link", offset_of!(ffi::fsal_obj_ops, link)),
        ("mem_open2", offset_of!(ffi::fsal_obj_ops, open2)),
        ("mem_reopen2", offset_of!(ffi::fsal_obj_ops, reopen2)),
        ("mem_read2", offset_of!(ffi::fsal_obj_ops, read2)),
        ("mem_write2", offset_of!(ffi::fsal_obj_ops, write2)),
        ("mem_commit2", offset_of!(ffi::fsal_obj_ops, commit2)),
        ("mem_lock_op2", offset_of!(ffi::fsal_obj_ops, lock_op2)),
        ("mem_setattr2", offset_of!(ffi::fsal_obj_ops, setattr2)),
        ("mem_close2", offset_of!(ffi::fsal_obj_ops, close2)),
    ];
    for (sym, off) in expect_obj {
        assert_eq!(obj.get(&(off as u64)).map(String::as_str), Some(sym), "fsal_obj_ops slot {off:#x}: Debian stores {:?}, our bindings say {sym}; all stores: {obj:x?}", obj.get(&(off as u64)));
    }
    let module = stored_symbols(&disassemble(MEM_FSAL, "init"), &got);
    let m_ops = offset_of!(ffi::fsal_module, m_ops);
    for (sym, off) in [
        (
            "mem_create_export",
            m_ops + offset_of!(ffi::fsal_ops, create_export),
        ),
        (
            "mem_update_export",
            m_ops + offset_of!(ffi::fsal_ops, update_export),
        ),
    ] {
        assert_eq!(
            module.get(&(off as u64)).map(String::as_str),
            Some(sym),
            "fsal_module slot {off:#x}; all stores: {module:x?}"
        );
    }
    let exp = stored_symbols(&disassemble(MEM_FSAL, "mem_export_ops_init"), &got);
    for (sym, off) in [
        ("mem_lookup_path", offset_of!(ffi::export_ops, lookup_path)),
        (
            "mem_create_handle",
            offset_of!(ffi::export_ops, create_handle),
        ),
    ] {
        assert_eq!(
            exp.get(&(off as u64)).map(String::as_str),
            Some(sym),
            "export_ops slot {off:#x}; all stores: {exp:x?}"
        );
    }
}

/// The FSAL API version we compile against is the one Ganesha 4.3 checks in register_fsal.
#[test]
fn fsal_api_version_is_11_0() {
    assert_eq!(ffi::FSAL_MAJOR_VERSION, 11);
    assert_eq!(ffi::FSAL_MINOR_VERSION, 0);
}

#[test]
fn engine_errors_map_to_nfs_statuses() {
    use strata_engine::Error;
    let cases = [
        (Error::NotFound, ffi::ERR_FSAL_NOENT),
        (Error::Exists, ffi::ERR_FSAL_EXIST),
        (Error::NotDir, ffi::ERR_FSAL_NOTDIR),
        (Error::IsDir, ffi::ERR_FSAL_ISDIR),
        (Error::NotEmpty, ffi::ERR_FSAL_NOTEMPTY),
        (Error::NameTooLong, ffi::ERR_FSAL_NAMETOOLONG),
        (Error::Invalid("x".into()), ffi::ERR_FSAL_INVAL),
        (Error::Stale, ffi::ERR_FSAL_STALE),
        (Error::NoSpace, ffi::ERR_FSAL_NOSPC),
        (Error::Delay, ffi::ERR_FSAL_DELAY),
        (Error::ReadOnly("x".into()), ffi::ERR_FSAL_ROFS),
        (Error::NotSupported("x".into()), ffi::ERR_FSAL_NOTSUPP),
        (Error::Io("x".into()), ffi::ERR_FSAL_IO),
        (Error::NotOwner("x".into()), ffi::ERR_FSAL_PERM),
    ];
    for (e, want) in cases {
        assert_eq!(crate::map_err(&e).major, want, "{e:?}");
    }
}

#[test]
fn a_panic_becomes_serverfault_and_the_next_call_works() {
    let s = crate::guard("test", || panic!("boom"));
    assert_eq!(s.major, ffi::ERR_FSAL_SERVERFAULT);
    let s = crate::guard("test", || Ok(()));
    assert_eq!(s.major, ffi::ERR_FSAL_NO_ERROR);
}

#[test]
fn share_reservations_are_per_inode_and_never_self_conflict() {
    use crate::state::{change_share, check_stateless, share_of};
    let o = |f: u32| f as ffi::fsal_openflags_t;
    let rw_deny_both = o(ffi::FSAL_O_RDWR | ffi::FSAL_O_DENY_READ | ffi::FSAL_O_DENY_WRITE);
    let ino = 0xdead_0001;
    // An ESXi-style open: ACCESS_BOTH + DENY_BOTH.
    change_share(ino, o(ffi::FSAL_O_CLOSED), rw_deny_both).expect("first open");
    // A second open for reading conflicts with DENY_READ.
    let e = change_share(ino, o(ffi::FSAL_O_CLOSED), o(ffi::FSAL_O_READ)).unwrap_err();
    assert_eq!(e.major, ffi::ERR_FSAL_SHARE_DENIED);
    // Stateless I/O (NFSv3, anonymous stateid) is denied too.
    assert_eq!(
        check_stateless(ino, o(ffi::FSAL_O_WRITE), false)
            .unwrap_err()
            .major,
        ffi::ERR_FSAL_SHARE_DENIED
    );
    // An upgrade by the holder is checked against every reservation, its own included
    // (RFC 7530 §16.16, pynfs OPEN21/25/30): READ access under its own DENY_READ is denied,
    // and nothing changes.
    let e = change_share(ino, rw_deny_both, rw_deny_both).unwrap_err();
    assert_eq!(e.major, ffi::ERR_FSAL_SHARE_DENIED);
    assert_eq!(
        share_of(ino).map(|s| (s.share_access_read, s.share_deny_read)),
        Some((1, 1))
    );
    // A downgrade only gives bits up and never conflicts with the state's own deny bits.
    change_share(ino, rw_deny_both, o(ffi::FSAL_O_READ)).expect("downgrade");
    // Now a reader may join; a DENY_READ open may not.
    change_share(ino, o(ffi::FSAL_O_CLOSED), o(ffi::FSAL_O_READ)).expect("second reader");
    assert!(change_share(
        ino,
        o(ffi::FSAL_O_CLOSED),
        o(ffi::FSAL_O_READ | ffi::FSAL_O_DENY_READ)
    )
    .is_err());
    // Another inode is unaffected.
    change_share(ino + 1, o(ffi::FSAL_O_CLOSED), rw_deny_both).expect("other inode");
    // Closing everything leaves no entry behind.
    change_share(ino, o(ffi::FSAL_O_READ), o(ffi::FSAL_O_CLOSED)).unwrap();
    change_share(ino, o(ffi::FSAL_O_READ), o(ffi::FSAL_O_CLOSED)).unwrap();
    change_share(ino + 1, rw_deny_both, o(ffi::FSAL_O_CLOSED)).unwrap();
    assert!(share_of(ino).is_none() && share_of(ino + 1).is_none());
    assert!(check_stateless(ino, o(ffi::FSAL_O_WRITE), false).is_ok());
}

#[test]
fn setattr_translation_covers_mode_owner_size_and_times() {
    // SAFETY: all-zero is an empty attribute list.
    let mut a: ffi::fsal_attrlist = unsafe { std::mem::zeroed() };
    a.valid_mask = (ffi::ATTR_MODE
        | ffi::ATTR_OWNER
        | ffi::ATTR_SIZE
        | ffi::ATTR_ATIME_SERVER
        | ffi::ATTR_MTIME) as u64;
    a.mode = 0o100644;
    a.owner = 42;
    a.filesize = 7;
    a.mtime = ffi::timespec {
        tv_sec: 100,
        tv_nsec: 5,
    };
    let s = crate::ops::tests_setattr_of(&a);
    assert_eq!(s.mode, Some(0o644));
    assert_eq!(s.uid, Some(42));
    assert_eq!(s.gid, None);
    assert_eq!(s.size, Some(7));
    assert_eq!(s.atime, Some(strata_engine::SetTime::Now));
    assert_eq!(
        s.mtime,
        Some(strata_engine::SetTime::At(strata_engine::Timestamp {
            secs: 100,
            nsecs: 5
        }))
    );
}

#[test]
fn exclusive_verifier_uses_ganeshas_atime_mtime_convention() {
    let v = [1u8, 0, 0, 0, 2, 0, 0, 0];
    let (at, mt) = crate::ops::tests_verifier_times(&v);
    assert_eq!((at.secs, mt.secs), (1, 2));
}

/// A complete S3 block becomes the engine's S3 backend with every S3 parameter carried over;
/// an endpoint nobody answers on is refused at open with an error that names it.
#[test]
fn s3_settings_become_the_s3_backend_and_an_unreachable_endpoint_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("ganesha.conf");
    let creds = dir.path().join("creds");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AK\naws_secret_access_key = SECRET-never-shown\n",
    )
    .expect("write creds");
    std::fs::write(
        &conf,
        format!(
            "STRATA {{\n  Data_Dir = \"{}\";\n  Backend = S3;\n  S3_Endpoint = \"http://127.0.0.1:1\";\n  S3_Bucket = vms;\n  S3_Prefix = \"gw1/\";\n  S3_Region = eu-west-1;\n  S3_Credentials_File = \"{}\";\n  S3_Request_Timeout = 7;\n  S3_Unsafe_Single_Writer = true;\n}}\n",
            dir.path().join("d").display(),
            creds.display()
        ),
    )
    .expect("write conf");
    let config = crate::export::settings_from_file(&conf).expect("accepted");
    let strata_engine::BackendConfig::S3(s3) = &config.backend else {
        panic!("not S3: {:?}", config.backend);
    };
    assert_eq!(
        (
            s3.endpoint.as_str(),
            s3.bucket.as_str(),
            s3.prefix.as_str(),
            s3.region.as_str()
        ),
        ("http://127.0.0.1:1", "vms", "gw1/", "eu-west-1")
    );
    assert_eq!(s3.request_timeout, std::time::Duration::from_secs(7));
    assert!(s3.unsafe_single_writer && !s3.virtual_host);
    assert_eq!(
        s3.credentials,
        strata_engine::CredentialsSource::File(creds)
    );
    let err = match strata_engine::Filesystem::open(config) {
        Ok(_) => panic!("opened on an endpoint nobody answers on"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot reach http://127.0.0.1:1"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
}

#[test]
fn bad_values_are_refused_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("strata-fsal-unit-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ganesha.conf");
    std::fs::write(
        &conf,
        format!(
            "STRATA {{\n  Data_Dir = \"{}\";\n  Extent_Cache_Size = lots;\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let errs = crate::export::settings_from_file(&conf).expect_err("bad size accepted");
    let want = format!("{}:3:", conf.display());
    assert!(
        errs.iter().any(|e| e.starts_with(&want)),
        "{errs:?} lacks {want}"
    );
}

#[test]
fn create_with_a_size_beyond_off_t_is_fbig_and_creates_nothing() {
    use std::sync::Arc;
    use strata_engine::{EngineConfig, Error, Filesystem, Kind};

    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(Filesystem::open(EngineConfig::new(dir.path())).expect("engine"));
    crate::export::tests_install_engine(fs.clone());
    let root = fs.getattr(fs.root()).expect("root");
    let mut h = crate::handle::StrataHandle {
        // SAFETY: a plain C struct; open2 by name never reads Ganesha's part of the parent.
        obj: unsafe { std::mem::zeroed() },
        h: root.handle,
        key: root.handle.to_bytes(),
        kind: Kind::Directory,
    };
    // SAFETY: all-zero is an empty attribute list.
    let mut attrs: ffi::fsal_attrlist = unsafe { std::mem::zeroed() };
    attrs.valid_mask = (ffi::ATTR_MODE | ffi::ATTR_SIZE) as u64;
    attrs.mode = 0o644;
    attrs.filesize = u64::MAX;
    // SAFETY: h is a live directory handle of ours; attrs is valid.
    let st = unsafe {
        crate::ops::tests_open2_named(&mut h.obj, c"huge", ffi::FSAL_UNCHECKED, &mut attrs)
    };
    assert_eq!(
        st.major,
        ffi::ERR_FSAL_FBIG,
        "NFSv3 CREATE size 2^64-1 must be FBIG"
    );
    assert!(
        matches!(fs.lookup(root.handle, b"huge"), Err(Error::NotFound)),
        "a refused create must leave no file behind"
    );
}

/// Values of `p` that its type or range refuses.
fn refused_values(p: &strata_ganesha_conf::Param) -> Vec<String> {
    use strata_ganesha_conf::params::{format_size, ParamType};
    match p.ty {
        ParamType::Path => vec!["relative/path".into()],
        ParamType::Text => vec![],
        ParamType::Enum(_) => vec!["NOT_AN_OPTION".into()],
        ParamType::Size { min, max } => {
            let mut v = vec![
                "lots".to_string(),
                "1.5G".into(),
                format!("\"{}\"", format_size(max) + "0"),
            ];
            v.push(format!("\"{}\"", max + 1));
            if min > 0 {
                v.push(format!("\"{}\"", min - 1));
            }
            v
        }
        ParamType::Count { min, max } | ParamType::Seconds { min, max } => {
            let mut v = vec!["x".to_string(), (max + 1).to_string(), "-1".into()];
            if min > 0 {
                v.push((min - 1).to_string());
            }
            v
        }
        ParamType::List => vec!["\"-flat.vmdk, a/b\"".into()],
    }
}

/// Values of `p` at the edges of what its type and range accept.
fn accepted_values(p: &strata_ganesha_conf::Param) -> Vec<String> {
    use strata_ganesha_conf::params::ParamType;
    match p.ty {
        ParamType::Path | ParamType::Text => vec![],
        // Backend = S3 needs an endpoint and a bucket (tested apart).
        ParamType::Enum(words) => words
            .iter()
            .filter(|w| !w.eq_ignore_ascii_case("S3"))
            .map(|w| w.to_string())
            .collect(),
        ParamType::Size { min, max } => vec![format!("\"{min}\""), format!("\"{max}\"")],
        ParamType::Count { min, max } | ParamType::Seconds { min, max } => {
            vec![min.to_string(), max.to_string()]
        }
        ParamType::List => vec!["\"\"".into(), "\".raw\"".into()],
    }
}

/// One place for each parameter's bounds: `strata conf check` (ganesha-conf) and the FSAL
/// (its settings, then the engine opening with them) refuse the same configurations — every
/// refused value of every parameter, and `Backend = S3` without endpoint and bucket — and
/// accept the same: each parameter at its smallest and largest value, with which the engine
/// opens.
#[test]
fn conf_check_and_the_fsal_refuse_and_accept_the_same_configurations() {
    use strata_engine::Filesystem;
    use strata_ganesha_conf::params::PARAMS;

    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("ganesha.conf");
    let data = dir.path().join("d");
    let text_with = |name: &str, value: &str| {
        let mut t = format!("STRATA {{\n  Data_Dir = \"{}\";\n", data.display());
        if name != "Data_Dir" {
            t.push_str(&format!("  {name} = {value};\n"));
        }
        t.push_str("}\n");
        t
    };
    let verdicts = |text: &str| {
        std::fs::write(&conf, text).expect("write conf");
        let check = strata_ganesha_conf::check_text(text, &conf);
        let fsal = crate::export::settings_from_file(&conf);
        (check, fsal)
    };
    let (mut refused, mut accepted) = (0, 0);
    for p in PARAMS {
        for v in refused_values(p) {
            let text = if p.name == "Data_Dir" {
                format!("STRATA {{\n  Data_Dir = {v};\n}}\n")
            } else {
                text_with(p.name, &v)
            };
            let (check, fsal) = verdicts(&text);
            assert!(check.is_err(), "conf check accepts {} = {v}", p.name);
            assert!(fsal.is_err(), "the FSAL accepts {} = {v}", p.name);
            refused += 1;
        }
        for v in accepted_values(p) {
            let (check, fsal) = verdicts(&text_with(p.name, &v));
            assert!(
                check.is_ok(),
                "conf check refuses {} = {v}: {check:?}",
                p.name
            );
            let config = match fsal {
                Ok(c) => c,
                Err(e) => panic!("the FSAL refuses {} = {v}: {e:?}", p.name),
            };
            let _ = std::fs::remove_dir_all(&data);
            if let Err(e) = Filesystem::open(config) {
                panic!("the engine refuses {} = {v}: {e}", p.name);
            }
            accepted += 1;
        }
    }
    let (check, fsal) = verdicts(&text_with("Backend", "S3"));
    assert!(
        check.is_err() && fsal.is_err(),
        "Backend = S3 without endpoint and bucket accepted"
    );
    let s3 = text_with("Backend", "S3").replace(
        "}\n",
        "  S3_Endpoint = \"http://127.0.0.1:1\";\n  S3_Bucket = vms;\n}\n",
    );
    let (check, fsal) = verdicts(&s3);
    assert!(
        check.is_ok() && fsal.is_ok(),
        "complete S3 settings refused"
    );
    assert!(
        refused >= 30 && accepted >= 25,
        "{refused} refused, {accepted} accepted"
    );
}
