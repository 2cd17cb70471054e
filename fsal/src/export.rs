//! The module (registration, `STRATA { }` configuration, the shared engine) and the export
//! operations.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use strata_engine::{EngineConfig, Filesystem, Handle};
use strata_ganesha_conf::params::PARAMS;

use crate::ffi;
use crate::handle::{fill_attrs, new_handle};
use crate::log::GLevel;
use crate::{eng, guard, st, FResult};

/// The name Ganesha knows us by (`FSAL { Name = STRATA; }` loads `libfsalstrata.so`).
pub(crate) const FSAL_NAME: &CStr = c"STRATA";
/// Largest READ/WRITE (MaxRead/MaxWrite of the shipped profiles).
pub(crate) const MAX_IO: u64 = 1 << 20;

/// Ganesha's module struct for this FSAL. Ganesha keeps a pointer to it from registration to
/// unload; only Ganesha's config/load thread touches it outside its own locks.
static mut MODULE: ffi::fsal_module = unsafe { std::mem::zeroed() };

/// What `init_config` concluded from the `STRATA { }` block: an engine configuration, or
/// the errors (`FILE:LINE: REASON`) that make us refuse every export.
static SETTINGS: Mutex<Option<Result<EngineConfig, Vec<String>>>> = Mutex::new(None);

/// The one engine of this process, shared by all exports (opened at the first export).
static FS: RwLock<Option<Arc<Filesystem>>> = RwLock::new(None);

/// `Mgmt_Socket` of the validated STRATA block (set with [`SETTINGS`]).
static MGMT_SOCKET: Mutex<Option<PathBuf>> = Mutex::new(None);
/// The management API server, started with the engine and stopped before it.
static MGMT: Mutex<Option<strata_engine::mgmt::MgmtServer>> = Mutex::new(None);

/// The shared engine; SERVERFAULT when no export opened it (cannot happen for a live
/// handle, since handles only exist below an export).
pub(crate) fn fs() -> FResult<Arc<Filesystem>> {
    FS.read()
        .clone()
        .ok_or(st(ffi::ERR_FSAL_SERVERFAULT, libc::EIO))
}

/// Installs `fs` as the process's engine (unit tests: there is no Ganesha to create an export).
#[cfg(test)]
pub(crate) fn tests_install_engine(fs: Arc<Filesystem>) {
    *FS.write() = Some(fs);
}

/// Our export: Ganesha's `fsal_export` first, then a reference on the engine.
#[repr(C)]
pub(crate) struct StrataExport {
    /// Ganesha's part; must stay first.
    pub exp: ffi::fsal_export,
    /// Keeps the engine alive while the export exists.
    pub fs: Option<Arc<Filesystem>>,
}

/// Registers the FSAL (called from the ELF constructor during Ganesha's dlopen).
pub(crate) fn module_init() {
    crate::log::install();
    // SAFETY: we run inside dlopen on Ganesha's loading thread; MODULE is ours and nothing
    // else references it yet. register_fsal memcpy's the default ops into m_ops, so our
    // overrides come after it.
    unsafe {
        let m = &raw mut MODULE;
        let rc = ffi::register_fsal(
            m,
            FSAL_NAME.as_ptr(),
            ffi::FSAL_MAJOR_VERSION,
            ffi::FSAL_MINOR_VERSION,
            ffi::FSAL_ID_NO_PNFS as u8,
        );
        if rc != 0 {
            crate::log::log(GLevel::Crit, &format!("register_fsal failed: {rc}"));
            return;
        }
        (*m).m_ops.init_config = Some(init_config);
        (*m).m_ops.create_export = Some(create_export);
        if let Some(default_unload) = (*m).m_ops.unload {
            let _ = DEFAULT_UNLOAD.set(default_unload);
            (*m).m_ops.unload = Some(unload);
        }
        set_fs_info(&mut (*m).fs_info);
    }
    crate::ops::init_obj_ops();
    install_panic_hook();
}

/// Ganesha's default `unload` (it dlcloses us), called after our own shutdown.
type UnloadFn = unsafe extern "C" fn(*mut ffi::fsal_module) -> c_int;
static DEFAULT_UNLOAD: OnceLock<UnloadFn> = OnceLock::new();

/// Stops the management API, then syncs and closes the engine (its runtime threads stop
/// here, while Ganesha is still whole).
fn shutdown_engine() {
    // The server holds the engine: stop it (and remove its socket) first.
    if let Some(server) = MGMT.lock().take() {
        server.stop();
    }
    if let Some(fs) = FS.write().take() {
        if let Err(e) = fs.sync_all() {
            crate::log::log(GLevel::Crit, &format!("final sync failed: {e}"));
        }
        drop(fs);
        glog!(GLevel::Event, "engine closed");
    }
}

/// fsal_ops.unload: Ganesha's shutdown (after every export was released). The library is
/// linked `-z nodelete`, so the dlclose inside the default unload never unmaps the code we
/// return into.
unsafe extern "C" fn unload(m: *mut ffi::fsal_module) -> c_int {
    crate::guard_with("unload", (), shutdown_engine);
    match DEFAULT_UNLOAD.get() {
        // SAFETY: the default unload Ganesha installed for this module, with its own pointer.
        Some(f) => unsafe { f(m) },
        None => 0,
    }
}

/// ELF destructor (at process exit, since the library is never unmapped): unregisters. The
/// engine was closed by `unload`; if Ganesha exited without unloading us it is left alone,
/// because its runtime cannot run while the process tears its threads down.
pub(crate) fn module_fini() {
    if let Some(server) = MGMT.lock().take() {
        std::mem::forget(server);
    }
    if let Some(fs) = FS.write().take() {
        std::mem::forget(fs);
    }
    // SAFETY: MODULE was registered in module_init; Ganesha no longer uses it at exit.
    unsafe { ffi::unregister_fsal(&raw mut MODULE) };
}

/// Panics are caught at every entry point; the hook only makes sure their location reaches
/// Ganesha's log rather than a stderr nobody reads.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::log::log(GLevel::Crit, &format!("panic at {loc}"));
    }));
}

/// Static filesystem facts Ganesha's default export ops report (fs_supports, fs_maxread...).
fn set_fs_info(i: &mut ffi::fsal_staticfsinfo_t) {
    i.maxfilesize = crate::ops::MAX_FILE_SIZE;
    i.maxlink = u32::MAX;
    i.maxnamelen = 255;
    i.maxpathlen = 4096;
    i.no_trunc = true;
    i.chown_restricted = true;
    i.case_insensitive = false;
    i.case_preserving = true;
    i.link_support = true;
    i.symlink_support = true;
    // No FSAL byte-range locks: Ganesha's SAL enforces locks itself (one gateway).
    i.lock_support = false;
    i.lock_support_async_block = false;
    i.named_attr = false;
    i.unique_handles = true;
    i.acl_support = 0;
    i.cansettime = true;
    i.homogenous = true;
    i.supported_attrs = crate::handle::supported_attrs();
    i.maxread = MAX_IO;
    i.maxwrite = MAX_IO;
    i.umask = 0;
    i.auth_exportpath_xdev = false;
    i.delegations = 0;
    i.pnfs_mds = false;
    i.pnfs_ds = false;
    i.fsal_trace = false;
    i.fsal_grace = false;
    i.link_supports_permission_checks = false;
    i.rename_changes_key = false;
    i.compute_readdir_cookie = false;
    i.whence_is_name = false;
    i.readdir_plus = false;
    i.compliant_eof_behavior = true;
    i.xattr_support = true;
    i.expire_time_parent = -1;
}

/// Validates the configuration file with ganesha-conf (which knows file, line and reason).
pub(crate) fn settings_from_file(path: &Path) -> Result<EngineConfig, Vec<String>> {
    match strata_ganesha_conf::load_strata_settings(path) {
        Ok(s) => {
            *MGMT_SOCKET.lock() = Some(s.mgmt_socket.clone());
            Ok(EngineConfig::from_settings(&s))
        }
        Err(errs) => Err(errs.iter().map(|e| e.to_string()).collect()),
    }
}

/// Ganesha config items for every parameter of the STRATA block, all as strings (so Ganesha
/// accepts the block; ganesha-conf validates the values). Leaked once: Ganesha may keep
/// pointers into them.
struct StrataBlock {
    block: ffi::config_block,
    slots: usize,
}

// SAFETY: the block only holds pointers to leaked, immutable data.
unsafe impl Send for StrataBlock {}
// SAFETY: as above; nothing mutates it after construction.
unsafe impl Sync for StrataBlock {}

fn strata_block() -> &'static StrataBlock {
    static BLOCK: OnceLock<StrataBlock> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut items: Vec<ffi::config_item> = Vec::with_capacity(PARAMS.len() + 1);
        for (i, p) in PARAMS.iter().enumerate() {
            let name = CString::new(p.name).unwrap_or_default().into_raw();
            // SAFETY: config_item is a C struct; all-zero is CONFIG_EOL / "no value".
            let mut it: ffi::config_item = unsafe { std::mem::zeroed() };
            it.name = name;
            it.type_ = ffi::CONFIG_STRING;
            it.u.str_ = ffi::config_item__bindgen_ty_1__bindgen_ty_2 {
                minsize: 0,
                maxsize: 4096,
                def: ptr::null(),
            };
            it.off = i * std::mem::size_of::<*mut c_char>();
            items.push(it);
        }
        // SAFETY: the zeroed terminator (CONFIG_EOL).
        items.push(unsafe { std::mem::zeroed() });
        let items: &'static mut [ffi::config_item] = items.leak();
        // SAFETY: config_block is a C struct; zero then fill like CONFIG_BLOCK descriptors.
        let mut block: ffi::config_block = unsafe { std::mem::zeroed() };
        block.dbus_interface_name = c"org.ganesha.nfsd.config.strata".as_ptr() as *mut c_char;
        block.blk_desc.name = c"STRATA".as_ptr() as *mut c_char;
        block.blk_desc.type_ = ffi::CONFIG_BLOCK;
        block.blk_desc.u.blk = ffi::config_item__bindgen_ty_1__bindgen_ty_13 {
            init: Some(ffi::noop_conf_init),
            params: items.as_mut_ptr(),
            commit: Some(ffi::noop_conf_commit),
            display: None,
            check: None,
        };
        StrataBlock {
            block,
            slots: PARAMS.len(),
        }
    })
}

/// The export's `FSAL { Name = STRATA; }` sub-block: only the name.
struct ExportBlock(ffi::config_block);
// SAFETY: pointers to static data only.
unsafe impl Send for ExportBlock {}
// SAFETY: as above.
unsafe impl Sync for ExportBlock {}

fn export_block() -> &'static ExportBlock {
    static BLOCK: OnceLock<ExportBlock> = OnceLock::new();
    BLOCK.get_or_init(|| {
        // SAFETY: zeroed C structs, filled like CONF_ITEM_NOOP("name") + CONFIG_EOL.
        let mut name_item: ffi::config_item = unsafe { std::mem::zeroed() };
        name_item.name = c"name".as_ptr() as *mut c_char;
        name_item.type_ = ffi::CONFIG_NULL;
        // SAFETY: as above (the terminator).
        let eol: ffi::config_item = unsafe { std::mem::zeroed() };
        let items: &'static mut [ffi::config_item] = vec![name_item, eol].leak();
        // SAFETY: zeroed C struct, filled below.
        let mut block: ffi::config_block = unsafe { std::mem::zeroed() };
        block.dbus_interface_name =
            c"org.ganesha.nfsd.config.fsal.strata-export%d".as_ptr() as *mut c_char;
        block.blk_desc.name = c"FSAL".as_ptr() as *mut c_char;
        block.blk_desc.type_ = ffi::CONFIG_BLOCK;
        block.blk_desc.u.blk = ffi::config_item__bindgen_ty_1__bindgen_ty_13 {
            init: Some(ffi::noop_conf_init),
            params: items.as_mut_ptr(),
            commit: Some(ffi::noop_conf_commit),
            display: None,
            check: None,
        };
        ExportBlock(block)
    })
}

fn config_path() -> Option<PathBuf> {
    // SAFETY: nfs_config_path is Ganesha's global config file name, set before FSALs load
    // and never freed while the server runs; we copy it.
    unsafe {
        let p = ffi::nfs_config_path;
        if p.is_null() {
            None
        } else {
            use std::os::unix::ffi::OsStrExt;
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                CStr::from_ptr(p).to_bytes(),
            )))
        }
    }
}

/// fsal_ops.init_config: accept the STRATA block in Ganesha's parser, then validate it with
/// ganesha-conf. Never fails: errors are logged and make every export refuse.
unsafe extern "C" fn init_config(
    _fsal_hdl: *mut ffi::fsal_module,
    config_struct: ffi::config_file_t,
    err_type: *mut ffi::config_error_type,
) -> ffi::fsal_status_t {
    guard("init_config", || {
        let b = strata_block();
        let mut slots: Vec<*mut c_char> = vec![ptr::null_mut(); b.slots];
        // SAFETY: config_struct and err_type come from Ganesha for this call; slots has one
        // pointer per CONFIG_STRING item at the offsets we declared; the block is 'static.
        unsafe {
            ffi::load_config_from_parse(
                config_struct,
                &b.block as *const ffi::config_block as *mut ffi::config_block,
                slots.as_mut_ptr() as *mut c_void,
                true,
                err_type,
            );
        }
        for p in slots {
            if !p.is_null() {
                // SAFETY: Ganesha gsh_strdup'ed (malloc) these values for us.
                unsafe { libc::free(p as *mut c_void) };
            }
        }
        let result = match config_path() {
            None => Err(vec![
                "Ganesha did not name its configuration file".to_string()
            ]),
            Some(path) => settings_from_file(&path),
        };
        match &result {
            Ok(c) => glog!(
                GLevel::Event,
                "configuration accepted: data dir {}",
                c.data_dir.display()
            ),
            Err(errs) => {
                for e in errs {
                    crate::log::log(GLevel::Crit, e);
                }
                crate::log::log(
                    GLevel::Crit,
                    "invalid STRATA configuration: every Strata export will be refused",
                );
            }
        }
        *SETTINGS.lock() = Some(result);
        Ok(())
    })
}

/// Opens the shared engine if no export did yet.
fn open_engine() -> FResult<Arc<Filesystem>> {
    if let Some(fs) = FS.read().clone() {
        return Ok(fs);
    }
    let mut slot = FS.write();
    if let Some(fs) = slot.clone() {
        return Ok(fs);
    }
    let settings = {
        let mut s = SETTINGS.lock();
        if s.is_none() {
            // init_config did not run (cannot happen with Ganesha 4.3): validate now.
            let r = match config_path() {
                None => Err(vec![
                    "Ganesha did not name its configuration file".to_string()
                ]),
                Some(p) => settings_from_file(&p),
            };
            if let Err(errs) = &r {
                for e in errs {
                    crate::log::log(GLevel::Crit, e);
                }
            }
            *s = Some(r);
        }
        s.clone()
            .unwrap_or_else(|| Err(vec!["no configuration".into()]))
    };
    let config = match settings {
        Ok(c) => c,
        Err(errs) => {
            crate::log::log(
                GLevel::Crit,
                &format!(
                    "export refused: invalid STRATA configuration ({} error(s) logged above)",
                    errs.len()
                ),
            );
            return Err(st(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
    };
    let fs = match Filesystem::open(config.clone()) {
        Ok(fs) => Arc::new(fs),
        Err(e) => {
            crate::log::log(
                GLevel::Crit,
                &format!(
                    "export refused: cannot open Strata at {}: {e}",
                    config.data_dir.display()
                ),
            );
            return Err(crate::map_err(&e));
        }
    };
    glog!(
        GLevel::Event,
        "engine opened at {}",
        config.data_dir.display()
    );
    fs.set_change_hook(crate::upcall::hook());
    *slot = Some(fs.clone());
    // The management API is no reason to refuse NFS service: failures are only logged.
    let sock = MGMT_SOCKET
        .lock()
        .clone()
        .unwrap_or_else(|| config.data_dir.join("mgmt.sock"));
    match strata_engine::mgmt::MgmtServer::start(&sock, fs.clone()) {
        Ok(server) => *MGMT.lock() = Some(server),
        Err(e) => crate::log::log(GLevel::Crit, &format!("management API not started: {e}")),
    }
    Ok(fs)
}

/// fsal_ops.create_export (ganesha-fsal.md §3 order).
unsafe extern "C" fn create_export(
    fsal_hdl: *mut ffi::fsal_module,
    parse_node: *mut c_void,
    err_type: *mut ffi::config_error_type,
    up_ops: *const ffi::fsal_up_vector,
) -> ffi::fsal_status_t {
    guard("create_export", || {
        let fs = open_engine()?;
        // SAFETY: fsal_export is a C struct; zeroed is what fsal_export_init expects.
        let b = Box::new(StrataExport {
            exp: unsafe { std::mem::zeroed() },
            fs: Some(fs),
        });
        let e = Box::into_raw(b);
        // SAFETY: e is a fresh StrataExport; Ganesha's calls get valid pointers; on failure
        // we undo exactly what succeeded and free the box.
        unsafe {
            let exp = &raw mut (*e).exp;
            ffi::fsal_export_init(exp);
            let ops = &mut (*exp).exp_ops;
            ops.release = Some(release);
            ops.lookup_path = Some(lookup_path);
            ops.wire_to_host = Some(wire_to_host);
            ops.host_to_key = Some(host_to_key);
            ops.create_handle = Some(create_handle);
            ops.get_fs_dynamic_info = Some(get_fs_dynamic_info);
            ops.alloc_state = Some(crate::state::alloc_state);
            ops.free_state = Some(crate::state::free_state);
            let blk = &export_block().0 as *const ffi::config_block as *mut ffi::config_block;
            if ffi::load_config_from_node(parse_node, blk, e as *mut c_void, true, err_type) != 0 {
                ffi::free_export_ops(exp);
                drop(Box::from_raw(e));
                crate::log::log(GLevel::Crit, "export refused: bad FSAL block");
                return Err(st(ffi::ERR_FSAL_INVAL, libc::EINVAL));
            }
            if ffi::fsal_attach_export(fsal_hdl, &raw mut (*exp).exports) != 0 {
                ffi::free_export_ops(exp);
                drop(Box::from_raw(e));
                return Err(st(ffi::ERR_FSAL_SERVERFAULT, libc::EIO));
            }
            (*exp).fsal = fsal_hdl;
            (*exp).up_ops = up_ops;
            crate::upcall::register(up_ops);
            let ctx = ffi::strata_get_op_ctx();
            if !ctx.is_null() {
                (*ctx).fsal_export = exp;
            }
        }
        glog!(GLevel::Event, "export created");
        Ok(())
    })
}

/// export_ops.release.
unsafe extern "C" fn release(exp: *mut ffi::fsal_export) {
    crate::guard_with("export release", (), || {
        // SAFETY: exp is the first field of a StrataExport we boxed in create_export; Ganesha
        // releases it once, after its last reference.
        unsafe {
            crate::upcall::unregister((*exp).up_ops);
            ffi::fsal_detach_export((*exp).fsal, &raw mut (*exp).exports);
            ffi::free_export_ops(exp);
            drop(Box::from_raw(exp as *mut StrataExport));
        }
    })
}

/// export_ops.lookup_path: the export's Path inside the Strata namespace.
unsafe extern "C" fn lookup_path(
    exp: *mut ffi::fsal_export,
    path: *const c_char,
    handle: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("lookup_path", || {
        let fs = fs()?;
        if path.is_null() || handle.is_null() {
            return Err(st(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        // SAFETY: path is a NUL-terminated string from Ganesha.
        let p = unsafe { CStr::from_ptr(path) }
            .to_string_lossy()
            .into_owned();
        let attr = eng("lookup_path", fs.lookup_path(&p))?;
        // SAFETY: exp is our live export; handle and attrs_out are Ganesha's out pointers.
        unsafe {
            *handle = new_handle(exp, &attr);
            fill_attrs(attrs_out, &attr);
        }
        Ok(())
    })
}

/// export_ops.wire_to_host: our wire handle is exactly the 16-byte engine handle.
unsafe extern "C" fn wire_to_host(
    _exp: *mut ffi::fsal_export,
    _in_type: ffi::fsal_digesttype_t,
    fh_desc: *mut ffi::gsh_buffdesc,
    _flags: c_int,
) -> ffi::fsal_status_t {
    guard("wire_to_host", || {
        // SAFETY: fh_desc is Ganesha's buffer descriptor for this call (or null).
        let len = if fh_desc.is_null() {
            0
        } else {
            unsafe { (*fh_desc).len }
        };
        if len != Handle::WIRE_LEN {
            glog!(GLevel::Debug, "wire handle of {len} bytes refused");
            return Err(st(ffi::ERR_FSAL_BADHANDLE, libc::EINVAL));
        }
        Ok(())
    })
}

/// export_ops.host_to_key: the key is the host handle itself.
unsafe extern "C" fn host_to_key(
    _exp: *mut ffi::fsal_export,
    fh_desc: *mut ffi::gsh_buffdesc,
) -> ffi::fsal_status_t {
    guard("host_to_key", || {
        // SAFETY: as in wire_to_host.
        let len = if fh_desc.is_null() {
            0
        } else {
            unsafe { (*fh_desc).len }
        };
        if len != Handle::WIRE_LEN {
            return Err(st(ffi::ERR_FSAL_BADHANDLE, libc::EINVAL));
        }
        Ok(())
    })
}

/// export_ops.create_handle: a handle from its key; STALE for objects that are gone.
unsafe extern "C" fn create_handle(
    exp: *mut ffi::fsal_export,
    fh_desc: *mut ffi::gsh_buffdesc,
    handle: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("create_handle", || {
        let fs = fs()?;
        if fh_desc.is_null() || handle.is_null() {
            return Err(st(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        // SAFETY: fh_desc describes `len` readable bytes at `addr` (Ganesha).
        let bytes = unsafe {
            let d = &*fh_desc;
            if d.addr.is_null() {
                return Err(st(ffi::ERR_FSAL_BADHANDLE, libc::EINVAL));
            }
            std::slice::from_raw_parts(d.addr as *const u8, d.len)
        };
        let h = Handle::from_bytes(bytes).map_err(|_| st(ffi::ERR_FSAL_BADHANDLE, libc::EINVAL))?;
        let attr = eng("create_handle", fs.getattr(h))?;
        if attr.handle != h {
            return Err(st(ffi::ERR_FSAL_STALE, libc::ESTALE));
        }
        // SAFETY: exp is our live export; out pointers from Ganesha.
        unsafe {
            *handle = new_handle(exp, &attr);
            fill_attrs(attrs_out, &attr);
        }
        Ok(())
    })
}

/// export_ops.get_fs_dynamic_info: real capacity from the engine.
unsafe extern "C" fn get_fs_dynamic_info(
    _exp: *mut ffi::fsal_export,
    _obj: *mut ffi::fsal_obj_handle,
    info: *mut ffi::fsal_dynamicfsinfo_t,
) -> ffi::fsal_status_t {
    guard("get_fs_dynamic_info", || {
        let fs = fs()?;
        if info.is_null() {
            return Err(st(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        let s = eng("statfs", fs.statfs())?;
        // SAFETY: info is Ganesha's out struct for this call.
        let i = unsafe { &mut *info };
        i.total_bytes = s.total_bytes;
        i.free_bytes = s.free_bytes;
        i.avail_bytes = s.avail_bytes;
        i.total_files = s.total_files;
        i.free_files = s.free_files;
        i.avail_files = s.avail_files;
        i.maxread = MAX_IO;
        i.maxwrite = MAX_IO;
        i.time_delta = ffi::timespec {
            tv_sec: 0,
            tv_nsec: 1,
        };
        Ok(())
    })
}

#[cfg(test)]
mod handle_tests;
