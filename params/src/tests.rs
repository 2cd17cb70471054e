//! The table, value parsing and whole-block validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::value::check_value;

fn settings(pairs: &[(&str, &str)]) -> Result<StrataSettings, Vec<ParamError>> {
    let raw: Vec<RawSetting> = std::iter::once(RawSetting::new("Data_Dir", "/d", 2))
        .chain(
            pairs
                .iter()
                .enumerate()
                .map(|(i, (n, v))| RawSetting::new(n, v, 3 + i as u32)),
        )
        .collect();
    StrataSettings::from_pairs(&raw, 1)
}

fn one_error(pairs: &[(&str, &str)]) -> ParamError {
    let errs = settings(pairs).expect_err("should be refused");
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn size_parsing() {
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4k"), Ok(4096));
    assert_eq!(parse_size("4K"), Ok(4096));
    assert_eq!(parse_size("4M"), Ok(4 << 20));
    assert_eq!(parse_size(" 8G "), Ok(8 << 30));
    assert_eq!(parse_size("2T"), Ok(2 << 40));
    for bad in [
        "", "M", "4MB", "1.5G", "-1", "4 M", "0x10", "four", "4Q", "1e9",
    ] {
        let e = parse_size(bad).expect_err(bad);
        assert!(e.contains("not a size"), "{bad}: {e}");
    }
    assert!(parse_size("18446744073709551615").is_ok());
    assert!(parse_size("18446744073709551616")
        .unwrap_err()
        .contains("too large"));
    assert!(parse_size("16777216T").unwrap_err().contains("too large"));
    assert_eq!(format_size(64 * KIB), "64K");
    assert_eq!(format_size(3 * MIB + 1), (3 * MIB + 1).to_string());
}

#[test]
fn defaults() {
    let s = StrataSettings::with_data_dir(Path::new("/var/lib/strata")).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/strata"));
    assert_eq!(s.backend, BackendKind::Local);
    assert_eq!(s.backend_dir, PathBuf::from("/var/lib/strata/backend"));
    assert_eq!(s.mgmt_socket, PathBuf::from("/var/lib/strata/mgmt.sock"));
    assert_eq!(s.s3_region, "us-east-1");
    assert_eq!(s.s3_prefix, "");
    assert_eq!(s.s3_endpoint, None);
    assert_eq!(
        s.volume_suffixes,
        vec![
            "-flat.vmdk",
            "-delta.vmdk",
            "-sesparse.vmdk",
            ".vswp",
            ".raw",
            ".img",
            ".qcow2"
        ]
    );
    assert_eq!(s.extent_cache_size, GIB);
    assert_eq!(s.sco_size, 4 * MIB);
    assert_eq!(s.tlog_scos, 16);
    assert_eq!(s.sco_max_age, Duration::from_secs(60));
    assert_eq!(s.sco_cache_size, 8 * GIB);
    assert_eq!(s.write_buffer_size, GIB);
    assert_eq!(s.cluster_cache_size, GIB);
    assert_eq!(s.metadata_cache_size, 64 * MIB);
}

#[test]
fn every_default_is_valid_for_its_type() {
    for p in PARAMS {
        if p.default.is_empty() || p.default.starts_with('<') {
            continue;
        }
        check_value(p, p.default).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    }
}

#[test]
fn all_values_set_and_names_case_insensitive() {
    // S3 parameters are read and checked whatever the backend.
    let s = settings(&[
        ("backend", "local"),
        ("BACKEND_DIR", "/b"),
        ("S3_Endpoint", "http://127.0.0.1:8333"),
        ("S3_Region", "eu-west-1"),
        ("S3_Bucket", "vm-store.1"),
        ("S3_Prefix", "gw1/"),
        ("S3_Credentials_File", "/etc/strata/s3"),
        ("Volume_Suffixes", " .raw ,-flat.vmdk,, "),
        ("Extent_Cache_Size", "32M"),
        ("sco_size", "64K"),
        ("TLog_SCOs", "1"),
        ("SCO_Max_Age", "5s"),
        ("SCO_Cache_Size", "64M"),
        ("Write_Buffer_Size", "16M"),
        ("Cluster_Cache_Size", "0"),
        ("Metadata_Cache_Size", "1M"),
        ("Mgmt_Socket", "/run/strata.sock"),
    ])
    .unwrap();
    assert_eq!(s.backend, BackendKind::Local);
    assert_eq!(s.backend_dir, PathBuf::from("/b"));
    assert_eq!(s.s3_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(s.s3_region, "eu-west-1");
    assert_eq!(s.s3_bucket.as_deref(), Some("vm-store.1"));
    assert_eq!(s.s3_prefix, "gw1/");
    assert_eq!(s.s3_credentials_file, Some(PathBuf::from("/etc/strata/s3")));
    assert_eq!(s.volume_suffixes, vec![".raw", "-flat.vmdk"]);
    assert_eq!(s.extent_cache_size, 32 * MIB);
    assert_eq!(s.sco_size, 64 * KIB);
    assert_eq!(s.tlog_scos, 1);
    assert_eq!(s.sco_max_age, Duration::from_secs(5));
    assert_eq!(s.sco_cache_size, 64 * MIB);
    assert_eq!(s.write_buffer_size, 16 * MIB);
    assert_eq!(s.cluster_cache_size, 0);
    assert_eq!(s.metadata_cache_size, MIB);
    assert_eq!(s.mgmt_socket, PathBuf::from("/run/strata.sock"));
    assert!(settings(&[("Volume_Suffixes", "")])
        .unwrap()
        .volume_suffixes
        .is_empty());
}

#[test]
fn every_bounded_parameter_refuses_below_and_above_its_range() {
    for p in PARAMS {
        let (min, max, fmt): (u64, u64, fn(u64) -> String) = match p.ty {
            ParamType::Size { min, max } => (min, max, |n| n.to_string()),
            ParamType::Count { min, max } => (min, max, |n| n.to_string()),
            ParamType::Seconds { min, max } => (min, max, |n| format!("{n}s")),
            _ => continue,
        };
        // The bounds themselves are accepted by the value check.
        check_value(p, &fmt(min)).unwrap_or_else(|e| panic!("{} min: {e}", p.name));
        check_value(p, &fmt(max)).unwrap_or_else(|e| panic!("{} max: {e}", p.name));
        if min > 0 {
            let e = one_error(&[(p.name, &fmt(min - 1))]);
            assert_eq!(e.line, 3, "{}", p.name);
            assert!(
                e.reason.contains("out of range"),
                "{}: {}",
                p.name,
                e.reason
            );
            assert!(e.reason.starts_with(p.name), "{}", e.reason);
        }
        let e = one_error(&[(p.name, &fmt(max + 1))]);
        assert_eq!(e.line, 3);
        assert!(
            e.reason.contains("out of range"),
            "{}: {}",
            p.name,
            e.reason
        );
        let e = one_error(&[(p.name, "lots")]);
        assert!(e.reason.contains("lots"), "{}: {}", p.name, e.reason);
    }
}

#[test]
fn enum_path_and_list_errors() {
    let e = one_error(&[("Backend", "NFS")]);
    assert!(e.reason.contains("not one of LOCAL, S3"), "{}", e.reason);
    for p in ["Backend_Dir", "S3_Credentials_File", "Mgmt_Socket"] {
        let e = one_error(&[(p, "relative/dir")]);
        assert!(e.reason.contains("not an absolute path"), "{}", e.reason);
        let e = one_error(&[(p, "")]);
        assert!(e.reason.contains("is empty"), "{}", e.reason);
    }
    let e = one_error(&[("Volume_Suffixes", ".raw, a/b")]);
    assert!(e.reason.contains("a/b"), "{}", e.reason);
    let errs =
        StrataSettings::from_pairs(&[RawSetting::new("Data_Dir", "var/x", 4)], 3).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 4);
    assert!(errs[0].reason.contains("not an absolute path"), "{errs:?}");
}

#[test]
fn sco_size_alignment_and_cross_checks() {
    let e = one_error(&[("SCO_Size", "65537")]);
    assert!(e.reason.contains("multiple of 4K"), "{}", e.reason);
    let e = one_error(&[("SCO_Size", "256M"), ("SCO_Cache_Size", "512M")]);
    assert_eq!(e.line, 4);
    assert!(e.reason.contains("at least 4 SCOs"), "{}", e.reason);
    let e = one_error(&[("SCO_Size", "32M"), ("Write_Buffer_Size", "16M")]);
    assert_eq!(e.line, 4);
    assert!(e.reason.contains("at least one SCO"), "{}", e.reason);
}

#[test]
fn unknown_duplicate_and_missing() {
    let e = one_error(&[("SCO_Szie", "4M")]);
    assert_eq!(e.line, 3);
    assert!(
        e.reason.contains("unknown parameter SCO_Szie"),
        "{}",
        e.reason
    );
    assert!(e.reason.contains("did you mean SCO_Size?"), "{}", e.reason);
    let e = one_error(&[("Frobnicate", "1")]);
    assert!(!e.reason.contains("did you mean"), "{}", e.reason);
    let e = one_error(&[("TLog_SCOs", "8"), ("tlog_scos", "9")]);
    assert_eq!(e.line, 4);
    assert!(e.reason.contains("already set on line 3"), "{}", e.reason);
    let errs = StrataSettings::from_pairs(&[], 7).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 7);
    assert!(errs[0].reason.contains("Data_Dir is required"));
}

#[test]
fn s3_requirements() {
    let errs = settings(&[("Backend", "S3")]).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|e| e.line == 3));
    assert!(errs[0].reason.contains("requires S3_Endpoint"));
    assert!(errs[1].reason.contains("requires S3_Bucket"));
    // Complete S3 settings are accepted, with the S3 defaults.
    let s = settings(&[
        ("Backend", "S3"),
        ("S3_Endpoint", "http://127.0.0.1:9000"),
        ("S3_Bucket", "vms"),
    ])
    .expect("complete S3 settings");
    assert_eq!(s.backend, BackendKind::S3);
    assert!(!s.s3_virtual_host && !s.s3_unsafe_single_writer);
    assert_eq!(s.s3_request_timeout, Duration::from_secs(120));
    let s = settings(&[
        ("Backend", "s3"),
        ("S3_Endpoint", "https://s3.example"),
        ("S3_Bucket", "vms"),
        ("S3_Addressing", "virtual_host"),
        ("S3_Unsafe_Single_Writer", "TRUE"),
        ("S3_Request_Timeout", "30"),
    ])
    .expect("S3 options");
    assert!(s.s3_virtual_host && s.s3_unsafe_single_writer);
    assert_eq!(s.s3_request_timeout, Duration::from_secs(30));
    let e = one_error(&[("S3_Unsafe_Single_Writer", "maybe")]);
    assert!(e.reason.contains("S3_Unsafe_Single_Writer"), "{}", e.reason);
    let e = one_error(&[("S3_Endpoint", "127.0.0.1:9000")]);
    assert!(e.reason.contains("not an http"), "{}", e.reason);
    for bad in ["/gw", "a//b", "../x", "a/./", "gw/../", "gw1//"] {
        let e = one_error(&[("S3_Prefix", bad)]);
        assert!(e.reason.contains("not a key prefix"), "{bad}: {}", e.reason);
    }
    for good in ["gw1", "gw1/", "a/b/c/"] {
        settings(&[("S3_Prefix", good)]).unwrap_or_else(|e| panic!("{good}: {e:?}"));
    }
    let e = one_error(&[("S3_Endpoint", "http://key:secret@s3.example")]);
    assert!(
        e.reason.contains("must not carry credentials") && !e.reason.contains("secret@"),
        "{}",
        e.reason
    );
    let e = one_error(&[("S3_Bucket", "Upper_Case")]);
    assert!(e.reason.contains("not a bucket name"), "{}", e.reason);
    // S3 settings without Backend = S3 are accepted (ready for a switch).
    settings(&[("S3_Bucket", "abc")]).unwrap();
}

#[test]
fn socket_path_length() {
    let long = format!("/{}", "d".repeat(100));
    let errs = StrataSettings::from_pairs(&[RawSetting::new("Data_Dir", &long, 2)], 1).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 2);
    assert!(errs[0].reason.contains("set a shorter Mgmt_Socket"));
    StrataSettings::from_pairs(
        &[
            RawSetting::new("Data_Dir", &long, 2),
            RawSetting::new("Mgmt_Socket", "/run/s.sock", 3),
        ],
        1,
    )
    .unwrap();
}

#[test]
fn table_is_complete_and_unique() {
    let names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "Data_Dir",
            "Backend",
            "Backend_Dir",
            "S3_Endpoint",
            "S3_Region",
            "S3_Bucket",
            "S3_Prefix",
            "S3_Credentials_File",
            "S3_Addressing",
            "S3_Request_Timeout",
            "S3_Unsafe_Single_Writer",
            "Zero_Detect",
            "Volume_Suffixes",
            "Extent_Cache_Size",
            "SCO_Size",
            "TLog_SCOs",
            "Checkpoint_TLogs",
            "SCO_Max_Age",
            "SCO_Cache_Size",
            "Write_Buffer_Size",
            "File_Write_Buffer_Size",
            "File_Upload_Delay",
            "Namespace_Upload_Interval",
            "Write_Throttle_Start",
            "Backend_Stall_Timeout",
            "Cluster_Cache_Size",
            "Map_Cache_Size",
            "Scrub_Interval",
            "Scrub_Threshold",
            "Scrub_Bandwidth",
            "GC_Grace",
            "Metadata_Cache_Size",
            "Mgmt_Socket",
        ]
    );
    for p in PARAMS {
        assert!(!p.doc.is_empty());
        assert!(std::ptr::eq(find_param(&p.name.to_lowercase()).unwrap(), p));
    }
}

#[test]
fn params_md_is_in_sync() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("PARAMS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text.contains(&params_markdown()),
        "{} is out of date; paste the table printed by `strata conf params`:\n{}",
        path.display(),
        params_markdown()
    );
}

#[test]
fn every_numeric_parameter_has_its_default_and_bounds_as_numbers() {
    for p in PARAMS {
        let numeric = matches!(
            p.ty,
            ParamType::Size { .. } | ParamType::Count { .. } | ParamType::Seconds { .. }
        );
        let n = number(p.name);
        assert_eq!(n.is_some(), numeric, "{}", p.name);
        if let Some(n) = n {
            assert!(
                n.min <= n.default && n.default <= n.max,
                "{}: {n:?}",
                p.name
            );
        }
    }
    // The counts the settings hold as u32 fit.
    for name in ["TLog_SCOs", "Checkpoint_TLogs"] {
        let n = number(name).expect(name);
        assert!(u32::try_from(n.max).is_ok(), "{name}: {n:?}");
    }
    assert_eq!(number("Data_Dir"), None);
    assert_eq!(number("No_Such_Parameter"), None);
}
