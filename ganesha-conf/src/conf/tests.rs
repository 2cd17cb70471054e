//! The ganesha.conf model: render, read back, check.

use std::path::Path;

use super::*;
use crate::params::BackendKind;

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn shipped_profiles_equal_the_renderer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for name in PROFILES {
        let file = dir.join(format!("{name}.conf"));
        let on_disk =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let rendered = GaneshaConf::render_profile(name, p("/var/lib/strata")).unwrap();
        assert_eq!(
            on_disk,
            rendered,
            "{} differs from the renderer; regenerate with \
             `strata conf render --profile {name} > {}`",
            file.display(),
            file.display()
        );
        // And each one passes the checker.
        let (conf, settings) = check_file(&file).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            conf,
            GaneshaConf::profile(name, p("/var/lib/strata")).unwrap()
        );
        assert_eq!(settings.unwrap().data_dir, PathBuf::from("/var/lib/strata"));
    }
    assert!(GaneshaConf::profile("nope", p("/x")).is_none());
}

#[test]
fn profiles_say_what_the_design_says() {
    let d = GaneshaConf::strata_default(p("/d"));
    assert_eq!((d.core.nfs_port, d.core.mnt_port), (2049, 20048));
    assert!(!d.core.enable_nlm && !d.core.enable_rquota);
    assert_eq!(d.exports, vec![Export::strata(1, "/", "/strata", &[3, 4])]);
    assert_eq!(d.exports[0].max_read, MIB);
    let text = d.render();
    for needle in [
        "Mount_Path_Pseudo = true;",
        "Data_Dir = \"/d\";",
        "Access_Type = RW;",
        "Squash = No_Root_Squash;",
        "Transports = TCP;",
        "SecType = sys;",
        "MaxWrite = 1048576;",
        "FSAL {\n        Name = STRATA;\n    }",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    let e = GaneshaConf::esxi(p("/d"));
    assert!(!e.core.enable_nlm);
    assert_eq!(e.nfsv4.server_owner.as_deref(), Some("strata"));
    assert_eq!(e.nfsv4.server_scope.as_deref(), Some("strata"));
    let shares: Vec<(&str, &[u8])> = e
        .exports
        .iter()
        .map(|x| (x.pseudo.as_str(), x.protocols.as_slice()))
        .collect();
    assert_eq!(
        shares,
        vec![("/strata-v3", &[3u8][..]), ("/strata-v41", &[4u8][..])]
    );
    assert!(GaneshaConf::kvm(p("/d")).core.enable_nlm);
}

#[test]
fn round_trip_of_every_field() {
    let conf = GaneshaConf {
        core: CoreParams {
            nfs_port: 20490,
            mnt_port: 20049,
            protocols: vec![4],
            plugins_dir: Some(PathBuf::from("/work/target/debug")),
            enable_nlm: true,
            enable_rquota: false,
        },
        nfsv4: Nfsv4Params {
            graceless: true,
            lease_lifetime: Some(7),
            grace_period: Some(0o20),
            recovery_root: Some(PathBuf::from("/tmp/rec dir")),
            server_owner: Some("own\"er".into()),
            server_scope: Some("sc\\ope".into()),
            minor_versions: vec![1, 2],
        },
        log: LogParams {
            default_level: "DEBUG".into(),
        },
        strata: Some(vec![
            ("Data_Dir".into(), "/var/lib/strata".into()),
            ("SCO_Size".into(), "8M".into()),
            ("Volume_Suffixes".into(), "-flat.vmdk, .raw".into()),
        ]),
        exports: vec![
            Export::strata(3, "/vms", "/strata", &[3, 4]),
            Export {
                export_id: 4,
                path: "/srv/vfs".into(),
                pseudo: "/vfs".into(),
                protocols: vec![3],
                max_read: 65536,
                max_write: 131072,
                fsal: FsalBlock::Vfs,
            },
            Export {
                export_id: 5,
                path: "/mem".into(),
                pseudo: "/mem".into(),
                protocols: vec![4],
                max_read: MIB,
                max_write: MIB,
                fsal: FsalBlock::Mem {
                    inode_size: 2 * MIB,
                },
            },
        ],
    };
    let text = conf.render();
    let back = GaneshaConf::parse(&text, p("x.conf")).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(back, conf);
    let (_, settings) = check_text(&text, p("x.conf")).unwrap();
    let s = settings.unwrap();
    assert_eq!(s.sco_size, 8 * MIB);
    assert_eq!(s.volume_suffixes, vec!["-flat.vmdk", ".raw"]);
    // No STRATA block at all also round-trips.
    let mut plain = conf.clone();
    plain.strata = None;
    plain.exports.remove(0);
    assert_eq!(GaneshaConf::parse(&plain.render(), p("y")).unwrap(), plain);
    assert_eq!(check_text(&plain.render(), p("y")).unwrap().1, None);
}

/// Ganesha reads MEM's Inode_Size only from the top-level `MEM { }` block (it is not an
/// export parameter), so that is where it must be rendered.
#[test]
fn mem_inode_size_is_a_module_parameter() {
    let mut conf = GaneshaConf::strata_default(p("/d"));
    conf.strata = None;
    conf.exports[0].fsal = FsalBlock::Mem {
        inode_size: 2 * MIB,
    };
    let text = conf.render();
    assert!(
        text.contains("MEM {\n    Inode_Size = 2097152;\n}\n"),
        "{text}"
    );
    assert!(
        text.contains("    FSAL {\n        Name = MEM;\n    }"),
        "{text}"
    );
    assert_eq!(text.matches("Inode_Size").count(), 1, "{text}");
    assert_eq!(GaneshaConf::parse(&text, p("m")).unwrap(), conf);
}

fn errors(text: &str) -> Vec<ConfError> {
    check_text(text, p("/etc/ganesha/g.conf")).expect_err("should be refused")
}

#[test]
fn a_bad_value_on_line_n_is_reported_on_line_n() {
    let base = GaneshaConf::strata_default(p("/var/lib/strata")).render();
    // Insert a bad setting at the end of the STRATA block and find its line number.
    let mut lines: Vec<&str> = base.lines().collect();
    let open = lines.iter().position(|l| *l == "STRATA {").unwrap();
    let at = open + lines[open..].iter().position(|l| *l == "}").unwrap();
    for (bad, why) in [
        ("    SCO_Size = \"3M1\";", "not a size"),
        ("    SCO_Size = \"512M\";", "out of range"),
        ("    Extent_Cache_Size = \"99999999999T\";", "too large"),
        ("    TLog_SCOs = 0;", "out of range"),
        ("    Backend = FTP;", "not one of"),
        ("    Nonsense = 1;", "unknown parameter Nonsense"),
        ("    Data_Dir = \"/other\";", "already set on line"),
        ("    SCO_Size = 4M;", "quote it"),
        (
            "    Volume_Suffixes = \".raw\", \".img\";",
            "exactly one value",
        ),
    ] {
        let mut l = lines.clone();
        l.insert(at, bad);
        let text = l.join("\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!(errs[0].line as usize, at + 1, "{bad}: {errs:?}");
        assert!(errs[0].reason.contains(why), "{bad}: {errs:?}");
        let shown = errs[0].to_string();
        assert!(
            shown.starts_with(&format!("/etc/ganesha/g.conf:{}: ", at + 1)),
            "{shown}"
        );
    }
    lines.clear();
}

#[test]
fn missing_strata_block_and_required_settings() {
    let mut conf = GaneshaConf::strata_default(p("/d"));
    conf.strata = None;
    let errs = errors(&conf.render());
    assert!(errs[0].reason.contains("no STRATA { } block"), "{errs:?}");
    conf.strata = Some(vec![]);
    let text = conf.render();
    let errs = errors(&text);
    let block_line = text.lines().position(|l| l == "STRATA {").unwrap() as u32 + 1;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, block_line);
    assert!(errs[0].reason.contains("Data_Dir is required"));
    let errs = load_strata_settings(p("/nonexistent/ganesha.conf")).unwrap_err();
    assert!(errs[0].reason.contains("cannot read"), "{errs:?}");
}

#[test]
fn load_strata_settings_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("g.conf");
    std::fs::write(
        &f,
        "# mine\nstrata {\n  data_dir = /srv/strata;\n  backend = local;\n  \
         S3_Endpoint = \"https://s3.example\";\n  S3_Bucket = vms;\n}\n",
    )
    .unwrap();
    let s = load_strata_settings(&f).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/srv/strata"));
    assert_eq!(s.backend, BackendKind::Local);
    assert_eq!(s.s3_bucket.as_deref(), Some("vms"));
    std::fs::write(
        &f,
        "STRATA {\n Data_Dir = /x;\n}\nSTRATA {\n Data_Dir = /y;\n}\n",
    )
    .unwrap();
    let errs = load_strata_settings(&f).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 4);
    assert!(errs[0].reason.contains("second STRATA block"));
}

#[test]
fn ganesha_values_are_checked_with_lines() {
    let text =
        "NFS_CORE_PARAM {\n NFS_Port = 70000;\n Protocols = 3, 5;\n Enable_NLM = maybe;\n}\n\
                EXPORT {\n Export_Id = 1;\n Path = /; Pseudo = /;\n FSAL { Name = VFS; }\n}\n\
                EXPORT {\n Export_Id = 1;\n Path = /b;\n Pseudo = /;\n FSAL { Name = CEPH; }\n}\n\
                EXPORT {\n Path = /c;\n}\n";
    let errs = errors(text);
    let got: Vec<(u32, &str)> = errs.iter().map(|e| (e.line, e.reason.as_str())).collect();
    let expect = [
        (2, "0..=65535"),
        (3, "not an NFS version"),
        (4, "not a boolean"),
        (12, "Export_Id 1 is already used on line 7"),
        (14, "Pseudo / is already used on line 8"),
        (15, "FSAL CEPH"),
        (17, "EXPORT without Export_Id"),
        (17, "EXPORT without an FSAL"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((l, r), (el, er)) in got.iter().zip(expect) {
        assert_eq!(*l, el, "{got:#?}");
        assert!(r.contains(er), "{r} !~ {er}");
    }
}

#[test]
fn unmodelled_blocks_and_parameters_are_tolerated() {
    let text = "NFS_CORE_PARAM { NFS_Port = 2049; Bind_Addr = 0.0.0.0; }\n\
                CACHEINODE { Entries_HWMark = 100000; }\n\
                EXPORT_DEFAULTS { Access_Type = RO; }\n\
                EXPORT { Export_Id = 9; Path = /tmp; Pseudo = /tmp; \
                  CLIENT { Clients = 10.0.0.0/8; Access_Type = RW; } \
                  FSAL { Name = vfs; } }\n";
    let (conf, settings) = check_text(text, p("t")).unwrap();
    assert_eq!(settings, None);
    assert_eq!(conf.exports[0].fsal, FsalBlock::Vfs);
    assert_eq!(conf.exports[0].pseudo, "/tmp");
}

#[test]
fn lease_and_grace_are_rendered_read_and_bounded() {
    let mut conf = GaneshaConf::strata_default(p("/d"));
    // Ganesha's defaults when unset: nothing rendered.
    let text = conf.render();
    assert!(!text.contains("Lease_Lifetime") && !text.contains("Grace_Period"));
    conf.nfsv4.lease_lifetime = Some(180);
    conf.nfsv4.grace_period = Some(270);
    let text = conf.render();
    assert!(
        text.contains("    Lease_Lifetime = 180;\n    Grace_Period = 270;\n"),
        "{text}"
    );
    assert_eq!(GaneshaConf::parse(&text, p("g")).unwrap(), conf);
    // Ganesha's bounds (nfs_read_conf.c: 0..=180 and 0..=270), each error on its line.
    let errs = errors(
        "NFSV4 {\n Lease_Lifetime = 181;\n Grace_Period = 271;\n}\n\
         NFSV4 {\n Lease_Lifetime = ten;\n Grace_Period = 5, 6;\n}\n",
    );
    let got: Vec<(u32, &str)> = errs.iter().map(|e| (e.line, e.reason.as_str())).collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    for ((l, r), (el, er)) in got.iter().zip([
        (
            2,
            "Lease_Lifetime: `181` is not a number of seconds in 0..=180",
        ),
        (
            3,
            "Grace_Period: `271` is not a number of seconds in 0..=270",
        ),
        (6, "Lease_Lifetime: `ten`"),
        (7, "takes one value"),
    ]) {
        assert_eq!(*l, el, "{got:#?}");
        assert!(r.contains(er), "{r} !~ {er}");
    }
    let (c, _) = check_text(
        "NFSV4 { Lease_Lifetime = 0; Grace_Period = 0x10; }\n",
        p("g"),
    )
    .unwrap();
    assert_eq!(
        (c.nfsv4.lease_lifetime, c.nfsv4.grace_period),
        (Some(0), Some(16))
    );
}
