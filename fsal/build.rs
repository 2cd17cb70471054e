//! Generates the Ganesha 4.3 FFI bindings with bindgen, compiles the tiny C shim and links
//! against Debian's `libganesha_nfsd`.

use std::env;
use std::path::{Path, PathBuf};

/// Where Debian installs libganesha_nfsd.so (and where our RUNPATH points).
const GANESHA_LIB_DIR: &str = "/usr/lib/ganesha";
/// The one Ganesha release this FSAL is written for: a new release is a port, not a rebuild.
const GANESHA_LIB: &str = "/usr/lib/ganesha/libganesha_nfsd.so.4.3";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("fsal/ has a parent").to_path_buf();
    println!("cargo:rerun-if-env-changed=STRATA_GANESHA_SRC");
    let src = env::var_os("STRATA_GANESHA_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".cache/nfs-ganesha"));
    let include = src.join("src/include");
    if !include.join("fsal.h").is_file() {
        panic!(
            "\n\nThe Ganesha 4.3 headers are missing: {} does not exist.\n\
             Run `scripts/setup` (it unpacks the sources of the installed nfs-ganesha into \
             <repo>/.cache/nfs-ganesha), or point STRATA_GANESHA_SRC at an unpacked \
             nfs-ganesha 4.3 source tree.\n\n",
            include.join("fsal.h").display()
        );
    }
    if !Path::new(GANESHA_LIB).exists() {
        panic!(
            "\n\n{GANESHA_LIB} is missing: the Strata FSAL is built for Debian's nfs-ganesha 4.3 \
             only (apt-get install nfs-ganesha; scripts/setup does it).\n\n"
        );
    }
    let csrc = manifest.join("csrc");
    let urcu = Path::new("/usr/include/x86_64-linux-gnu");
    let ntirpc = Path::new("/usr/include/ntirpc");
    for f in ["config.h", "shim.c", "wrapper.h"] {
        println!("cargo:rerun-if-changed={}", csrc.join(f).display());
    }
    println!("cargo:rerun-if-changed={}", include.display());

    cc::Build::new()
        .file(csrc.join("shim.c"))
        .define("_GNU_SOURCE", None)
        .include(&csrc)
        .include(&include)
        .include(ntirpc)
        .include(urcu)
        .warnings(false)
        .compile("strata_shim");

    let bindings = bindgen::Builder::default()
        .header(csrc.join("wrapper.h").display().to_string())
        .clang_arg("-D_GNU_SOURCE")
        .clang_arg(format!("-I{}", csrc.display()))
        .clang_arg(format!("-I{}", include.display()))
        .clang_arg(format!("-I{}", ntirpc.display()))
        .clang_arg(format!("-I{}", urcu.display()))
        .allowlist_type(
            "fsal_module|fsal_export|fsal_obj_handle|fsal_ops|export_ops|fsal_obj_ops|\
             fsal_attrlist|fsal_status_t|fsal_errors_t|fsal_dynamicfsinfo_t|req_op_context|\
             config_block|config_item|config_error_type|config_type|fsal_up_vector|fsal_io_arg|\
             state_t|state_type|fsal_dir_result|fsal_create_mode|object_file_type|gsh_buffdesc|\
             fsal_digesttype_t|fsal_id|fsal_share|fsal_fd|fsal_staticfsinfo_t|user_cred|\
             fsal_fsid__|config_file_t|fsal_openflags_t|fsal_verifier_t|fsal_cookie_t|\
             fsal_readdir_cb|fsal_async_cb|log_components|log_levels|gsh_export|fsal_aclsupp_t|\
             fsal_accessflags_t",
        )
        .allowlist_function(
            "register_fsal|unregister_fsal|fsal_export_init|fsal_attach_export|\
             fsal_detach_export|fsal_obj_handle_init|fsal_obj_handle_fini|\
             fsal_default_obj_ops_init|free_export_ops|load_config_from_node|\
             load_config_from_parse|noop_conf_init|noop_conf_commit|DisplayLogComponentLevel|\
             posix2fsal_error|check_share_conflict|update_share_counters|merge_share|\
             strata_get_op_ctx|fsal_test_access",
        )
        .allowlist_var(
            "ATTR_.*|ATTR4_.*|ATTRS_POSIX|FSAL_MAJOR_VERSION|FSAL_MINOR_VERSION|FSAL_O_.*|\
             component_log_level|nfs_config_path|NIV_.*|COMPONENT_.*|CONFIG_.*|NFS4_VERIFIER_SIZE",
        )
        .prepend_enum_name(false)
        .layout_tests(true)
        .derive_default(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over the Ganesha 4.3 headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("ganesha.rs"))
        .expect("write bindings");

    // Same NEEDED/RUNPATH as Debian's own FSALs: libganesha_nfsd.so.4.3 from /usr/lib/ganesha.
    println!("cargo:rustc-link-search=native={GANESHA_LIB_DIR}");
    println!("cargo:rustc-link-lib=dylib=ganesha_nfsd");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{GANESHA_LIB_DIR}");
    // Never unmapped by dlclose: Rust thread-local destructors and the engine's threads may
    // outlive Ganesha's unload, and our unload hook returns after the default one dlcloses us.
    println!("cargo:rustc-link-arg=-Wl,-z,nodelete");
}
