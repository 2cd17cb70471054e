//! Reading a ganesha.conf back into a [`GaneshaConf`] (tolerantly: blocks and parameters the
//! model does not cover are ignored), with file, line and reason in every error.

use super::check::to_conf_errors;
use super::{ConfError, CoreParams, Export, FsalBlock, GaneshaConf, LogParams, Nfsv4Params, MIB};
use crate::parse::{self, Node, Statement};
use std::path::{Path, PathBuf};

impl GaneshaConf {
    /// Parses ganesha.conf text into the model. Tolerant: blocks and parameters that the model
    /// does not cover are ignored (Ganesha itself judges those); values of covered parameters
    /// are checked. `file` only names the source in errors. The `STRATA` block is kept raw here;
    /// [`check_file`](crate::check_file) / [`load_strata_settings`](crate::load_strata_settings) validate it.
    pub fn parse(text: &str, file: &Path) -> Result<GaneshaConf, Vec<ConfError>> {
        let doc = parse::parse(text).map_err(|es| to_conf_errors(file, es))?;
        let mut errs = Vec::new();
        let mut conf = GaneshaConf {
            core: CoreParams {
                nfs_port: 2049,
                mnt_port: 0,
                protocols: vec![3, 4],
                plugins_dir: None,
                enable_nlm: true,
                enable_rquota: true,
            },
            nfsv4: Nfsv4Params {
                graceless: false,
                lease_lifetime: None,
                grace_period: None,
                recovery_root: None,
                server_owner: None,
                server_scope: None,
                minor_versions: Vec::new(),
            },
            log: LogParams {
                default_level: "EVENT".to_string(),
            },
            strata: None,
            exports: Vec::new(),
        };
        let mut mem_inode_size = None;
        let mut err = |line: u32, reason: String| {
            errs.push(ConfError {
                file: file.to_path_buf(),
                line,
                reason,
            })
        };
        for node in &doc {
            let Node::Block(block) = node else {
                let Node::Stmt(s) = node else { continue };
                err(
                    s.line,
                    format!(
                        "`{}` outside any block; parameters belong inside a block",
                        s.name
                    ),
                );
                continue;
            };
            let name = block.name.to_ascii_uppercase();
            match name.as_str() {
                "NFS_CORE_PARAM" => {
                    for s in block.statements() {
                        let r = match s.name.to_ascii_lowercase().as_str() {
                            "nfs_port" => one_u16(s).map(|v| conf.core.nfs_port = v),
                            "mnt_port" => one_u16(s).map(|v| conf.core.mnt_port = v),
                            "protocols" | "nfs_protocols" => {
                                protocols(s).map(|v| conf.core.protocols = v)
                            }
                            "plugins_dir" => {
                                one(s).map(|v| conf.core.plugins_dir = Some(PathBuf::from(v)))
                            }
                            "enable_nlm" => one_bool(s).map(|v| conf.core.enable_nlm = v),
                            "enable_rquota" => one_bool(s).map(|v| conf.core.enable_rquota = v),
                            _ => Ok(()),
                        };
                        if let Err(reason) = r {
                            err(s.line, reason);
                        }
                    }
                }
                "NFSV4" => {
                    for s in block.statements() {
                        let v4 = &mut conf.nfsv4;
                        let r = match s.name.to_ascii_lowercase().as_str() {
                            "graceless" => one_bool(s).map(|v| v4.graceless = v),
                            "lease_lifetime" => {
                                one_u32_upto(s, 180).map(|v| v4.lease_lifetime = Some(v))
                            }
                            "grace_period" => {
                                one_u32_upto(s, 270).map(|v| v4.grace_period = Some(v))
                            }
                            "recoveryroot" => {
                                one(s).map(|v| v4.recovery_root = Some(PathBuf::from(v)))
                            }
                            "server_owner" => one(s).map(|v| v4.server_owner = Some(v.into())),
                            "server_scope" => one(s).map(|v| v4.server_scope = Some(v.into())),
                            "minor_versions" => minor_versions(s).map(|v| v4.minor_versions = v),
                            _ => Ok(()),
                        };
                        if let Err(reason) = r {
                            err(s.line, reason);
                        }
                    }
                }
                "LOG" => {
                    for s in block.statements() {
                        if s.name.eq_ignore_ascii_case("Default_Log_Level") {
                            match one(s) {
                                Ok(v) => conf.log.default_level = v.to_string(),
                                Err(reason) => err(s.line, reason),
                            }
                        }
                    }
                }
                "STRATA" => {
                    if conf.strata.is_some() {
                        err(
                            block.line,
                            "a second STRATA block; write only one".to_string(),
                        );
                        continue;
                    }
                    let pairs = block
                        .statements()
                        .map(|s| (s.name.clone(), s.values.join(", ")))
                        .collect();
                    conf.strata = Some(pairs);
                }
                "MEM" => {
                    for s in block.statements() {
                        if s.name.eq_ignore_ascii_case("Inode_Size") {
                            match one_u64(s) {
                                Ok(v) => mem_inode_size = Some(v),
                                Err(reason) => err(s.line, reason),
                            }
                        }
                    }
                }
                "EXPORT" => match parse_export(block) {
                    Ok(e) => conf.exports.push(e),
                    Err(es) => {
                        for (line, reason) in es {
                            err(line, reason);
                        }
                    }
                },
                _ => {}
            }
        }
        // Ganesha's one MEM Inode_Size applies to every MEM export (default 0).
        for e in &mut conf.exports {
            if let FsalBlock::Mem { inode_size } = &mut e.fsal {
                *inode_size = mem_inode_size.unwrap_or(*inode_size);
            }
        }
        if errs.is_empty() {
            Ok(conf)
        } else {
            Err(errs)
        }
    }
}

pub(super) fn parse_export(block: &parse::Block) -> Result<Export, Vec<(u32, String)>> {
    let mut errs = Vec::new();
    let mut id = None;
    let mut path = None;
    let mut pseudo = None;
    let mut protos = vec![3, 4];
    let mut max_read = MIB;
    let mut max_write = MIB;
    let mut fsal = None;
    for node in &block.body {
        match node {
            Node::Stmt(s) => {
                let r = match s.name.to_ascii_lowercase().as_str() {
                    "export_id" => one_u16(s).map(|v| id = Some(v)),
                    "path" => one(s).map(|v| path = Some(v.to_string())),
                    "pseudo" => one(s).map(|v| pseudo = Some(v.to_string())),
                    "protocols" => protocols(s).map(|v| protos = v),
                    "maxread" => one_u64(s).map(|v| max_read = v),
                    "maxwrite" => one_u64(s).map(|v| max_write = v),
                    _ => Ok(()),
                };
                if let Err(reason) = r {
                    errs.push((s.line, reason));
                }
            }
            Node::Block(b) if b.name.eq_ignore_ascii_case("FSAL") => {
                let mut name = None;
                let mut inode_size = None;
                for s in b.statements() {
                    let r = match s.name.to_ascii_lowercase().as_str() {
                        "name" => one(s).map(|v| name = Some((v.to_ascii_uppercase(), s.line))),
                        "inode_size" => one_u64(s).map(|v| inode_size = Some(v)),
                        _ => Ok(()),
                    };
                    if let Err(reason) = r {
                        errs.push((s.line, reason));
                    }
                }
                fsal = match name {
                    Some((n, _)) if n == "STRATA" => Some(FsalBlock::Strata),
                    Some((n, _)) if n == "VFS" => Some(FsalBlock::Vfs),
                    Some((n, _)) if n == "MEM" => Some(FsalBlock::Mem {
                        inode_size: inode_size.unwrap_or(0),
                    }),
                    Some((n, line)) => {
                        errs.push((
                            line,
                            format!("FSAL {n} is not one this model knows (STRATA, VFS, MEM)"),
                        ));
                        None
                    }
                    None => {
                        errs.push((b.line, "FSAL block without Name".to_string()));
                        None
                    }
                };
            }
            Node::Block(_) => {}
        }
    }
    let need = |what: &str| (block.line, format!("EXPORT without {what}"));
    if id.is_none() {
        errs.push(need("Export_Id"));
    }
    if path.is_none() {
        errs.push(need("Path"));
    }
    if fsal.is_none() && !errs.iter().any(|(_, r)| r.contains("FSAL")) {
        errs.push(need("an FSAL { Name = ...; } block"));
    }
    match (id, path, fsal) {
        (Some(export_id), Some(path), Some(fsal)) if errs.is_empty() => Ok(Export {
            export_id,
            pseudo: pseudo.unwrap_or_else(|| path.clone()),
            path,
            protocols: protos,
            max_read,
            max_write,
            fsal,
        }),
        _ => Err(errs),
    }
}

/// The single value of a statement.
pub(super) fn one(s: &Statement) -> Result<&str, String> {
    match s.values.as_slice() {
        [v] => Ok(v.as_str()),
        [] => Err(format!("{} has no value", s.name)),
        _ => Err(format!(
            "{} takes one value, got {}",
            s.name,
            s.values.len()
        )),
    }
}

pub(super) fn one_u16(s: &Statement) -> Result<u16, String> {
    let v = one(s)?;
    parse_uint(v)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("{}: `{v}` is not a number in 0..=65535", s.name))
}

/// A number in `0..=max` (Ganesha's bounds for that parameter).
pub(super) fn one_u32_upto(s: &Statement, max: u32) -> Result<u32, String> {
    let v = one(s)?;
    parse_uint(v)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{}: `{v}` is not a number of seconds in 0..={max}", s.name))
}

pub(super) fn one_u64(s: &Statement) -> Result<u64, String> {
    let v = one(s)?;
    parse_uint(v).ok_or_else(|| format!("{}: `{v}` is not a whole number", s.name))
}

pub(super) fn one_bool(s: &Statement) -> Result<bool, String> {
    let v = one(s)?;
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{}: `{v}` is not a boolean (true/false)", s.name)),
    }
}

/// Ganesha's numbers: decimal, 0x hex or 0-prefixed octal.
pub(super) fn parse_uint(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if v.len() > 1 && v.starts_with('0') {
        u64::from_str_radix(&v[1..], 8).ok()
    } else {
        v.parse().ok()
    }
}

pub(super) fn protocols(s: &Statement) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for v in &s.values {
        let p = match v.to_ascii_uppercase().as_str() {
            "3" | "V3" | "NFS3" | "NFSV3" => 3,
            "4" | "V4" | "NFS4" | "NFSV4" => 4,
            "9P" => continue,
            _ => return Err(format!("{}: `{v}` is not an NFS version (3, 4)", s.name)),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no NFS version (3, 4) given", s.name));
    }
    Ok(out)
}

pub(super) fn minor_versions(s: &Statement) -> Result<Vec<u8>, String> {
    s.values
        .iter()
        .map(|v| match v.as_str() {
            "0" => Ok(0),
            "1" => Ok(1),
            "2" => Ok(2),
            _ => Err(format!(
                "{}: `{v}` is not an NFSv4 minor version (0, 1, 2)",
                s.name
            )),
        })
        .collect()
}

pub(super) fn line(out: &mut String, depth: usize, name: &str, value: &str) {
    for _ in 0..depth {
        out.push_str("    ");
    }
    out.push_str(name);
    out.push_str(" = ");
    out.push_str(value);
    out.push_str(";\n");
}
