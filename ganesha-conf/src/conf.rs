//! A typed model of the parts of ganesha.conf that Strata writes and reads: NFS_CORE_PARAM,
//! NFSV4, LOG, the `STRATA { }` module block and EXPORT blocks with their FSAL sub-block.
//!
//! [`GaneshaConf::render`] produces a complete, readable ganesha.conf; [`GaneshaConf::parse`]
//! reads one back (tolerantly: blocks and parameters we do not model are ignored), and
//! [`load_strata_settings`] / [`check_file`] validate the `STRATA { }` block with file, line and
//! reason in every error.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::params::{RawSetting, StrataSettings};
use crate::parse::{self, Node, Statement};

/// 1 MiB, the default MaxRead/MaxWrite of our exports (the FileDriver's extent size).
pub const MIB: u64 = 1 << 20;

/// The names of the shipped profiles, in the order `strata conf render --profile` lists them.
pub const PROFILES: &[&str] = &["default", "esxi", "kvm"];

/// A ganesha.conf, as far as Strata writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaneshaConf {
    /// `NFS_CORE_PARAM { }`.
    pub core: CoreParams,
    /// `NFSV4 { }`.
    pub nfsv4: Nfsv4Params,
    /// `LOG { }`.
    pub log: LogParams,
    /// Raw (name, value) pairs of the `STRATA { }` module block, in order; None = no block.
    pub strata: Option<Vec<(String, String)>>,
    /// The `EXPORT { }` blocks, in order.
    pub exports: Vec<Export>,
}

/// `NFS_CORE_PARAM { }`. `Mount_Path_Pseudo = true` is always rendered, so NFSv3 and NFSv4
/// clients mount the same path (the export's Pseudo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreParams {
    /// `NFS_Port`.
    pub nfs_port: u16,
    /// `MNT_Port`.
    pub mnt_port: u16,
    /// `Protocols` (NFS major versions, 3 and/or 4).
    pub protocols: Vec<u8>,
    /// `Plugins_Dir`: the directory holding `libfsalstrata.so`; None = Ganesha's default.
    pub plugins_dir: Option<PathBuf>,
    /// `Enable_NLM` (NFSv3 byte-range locks; ESXi does not use them).
    pub enable_nlm: bool,
    /// `Enable_RQUOTA`.
    pub enable_rquota: bool,
}

/// `NFSV4 { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nfsv4Params {
    /// `Graceless`: skip the grace period at start (tests, `strata up`).
    pub graceless: bool,
    /// `RecoveryRoot`: where Ganesha keeps NFSv4 client recovery records; None = its default.
    pub recovery_root: Option<PathBuf>,
    /// `Server_Owner` (NFSv4.1 server identity); None = Ganesha's default (host name).
    pub server_owner: Option<String>,
    /// `Server_Scope`; None = Ganesha's default.
    pub server_scope: Option<String>,
    /// `Minor_Versions`; empty = Ganesha's default (all).
    pub minor_versions: Vec<u8>,
}

/// `LOG { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogParams {
    /// `Default_Log_Level`, e.g. "EVENT".
    pub default_level: String,
}

/// One `EXPORT { }` block. `Access_Type = RW`, `Squash = No_Root_Squash`, `Transports = TCP`
/// and `SecType = sys` are always rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `Export_Id` (unique, 1..=65535 for our purposes).
    pub export_id: u16,
    /// `Path`: for STRATA, a directory inside the Strata namespace (`/` is its root).
    pub path: String,
    /// `Pseudo`: the path clients mount.
    pub pseudo: String,
    /// `Protocols` (3 and/or 4).
    pub protocols: Vec<u8>,
    /// `MaxRead`, bytes.
    pub max_read: u64,
    /// `MaxWrite`, bytes.
    pub max_write: u64,
    /// The `FSAL { }` sub-block.
    pub fsal: FsalBlock,
}

/// The `FSAL { }` sub-block of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsalBlock {
    /// `Name = STRATA;` (ours).
    Strata,
    /// `Name = VFS;` (Ganesha's, for benchmarks).
    Vfs,
    /// `Name = MEM;` (Ganesha's, for benchmarks). Ganesha reads `Inode_Size` from the
    /// top-level `MEM { }` block (one value for the whole process, at most 2 MiB), so the
    /// renderer writes it there, taking the largest of all MEM exports.
    Mem {
        /// `Inode_Size`, bytes: data kept per file; writes beyond it are acknowledged and
        /// dropped, reads beyond it return filler bytes.
        inode_size: u64,
    },
}

impl FsalBlock {
    /// The FSAL name as written in `Name = ...;`.
    pub fn name(&self) -> &'static str {
        match self {
            FsalBlock::Strata => "STRATA",
            FsalBlock::Vfs => "VFS",
            FsalBlock::Mem { .. } => "MEM",
        }
    }
}

/// One error in a configuration file. Displays as `FILE:LINE: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (the line of the block when the error concerns a whole block).
    pub line: u32,
    /// What is wrong, and where possible how to fix it.
    pub reason: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

impl std::error::Error for ConfError {}

impl Export {
    /// An export of the Strata namespace with Protocols 3,4 and 1 MiB MaxRead/MaxWrite.
    pub fn strata(export_id: u16, path: &str, pseudo: &str, protocols: &[u8]) -> Export {
        Export {
            export_id,
            path: path.to_string(),
            pseudo: pseudo.to_string(),
            protocols: protocols.to_vec(),
            max_read: MIB,
            max_write: MIB,
            fsal: FsalBlock::Strata,
        }
    }
}

impl GaneshaConf {
    /// The default profile: STRATA block with Data_Dir = data_dir, export Path "/" Pseudo
    /// "/strata", Protocols 3,4, MaxRead/MaxWrite 1 MiB, NFS_Port 2049, MNT_Port 20048,
    /// NLM/RQUOTA off.
    pub fn strata_default(data_dir: &Path) -> GaneshaConf {
        GaneshaConf {
            core: CoreParams {
                nfs_port: 2049,
                mnt_port: 20048,
                protocols: vec![3, 4],
                plugins_dir: None,
                enable_nlm: false,
                enable_rquota: false,
            },
            nfsv4: Nfsv4Params {
                graceless: false,
                recovery_root: None,
                server_owner: None,
                server_scope: None,
                minor_versions: vec![0, 1, 2],
            },
            log: LogParams {
                default_level: "EVENT".to_string(),
            },
            strata: Some(vec![(
                "Data_Dir".to_string(),
                data_dir.display().to_string(),
            )]),
            exports: vec![Export::strata(1, "/", "/strata", &[3, 4])],
        }
    }

    /// The ESXi profile: separate NFSv3 (`/strata-v3`, Protocols 3) and NFSv4.1
    /// (`/strata-v41`, Protocols 4) exports, because ESXi must never mount one share with both
    /// (their locking schemes differ); stable Server_Owner/Server_Scope so that the 4.1 identity
    /// survives restarts (and can be shared by gateways later); NLM off (ESXi locks with
    /// `.lck` files, not NLM).
    pub fn esxi(data_dir: &Path) -> GaneshaConf {
        let mut conf = GaneshaConf::strata_default(data_dir);
        conf.nfsv4.server_owner = Some("strata".to_string());
        conf.nfsv4.server_scope = Some("strata".to_string());
        conf.exports = vec![
            Export::strata(1, "/", "/strata-v3", &[3]),
            Export::strata(2, "/", "/strata-v41", &[4]),
        ];
        conf
    }

    /// The KVM profile: one export `/strata` over NFSv3 and NFSv4.0-4.2, with NLM on so that
    /// NFSv3 clients can take QEMU's image locks without `nolock` (Ganesha keeps the locks).
    pub fn kvm(data_dir: &Path) -> GaneshaConf {
        let mut conf = GaneshaConf::strata_default(data_dir);
        conf.core.enable_nlm = true;
        conf
    }

    /// The named profile (see [`PROFILES`]), or None for an unknown name.
    pub fn profile(name: &str, data_dir: &Path) -> Option<GaneshaConf> {
        match name {
            "default" => Some(GaneshaConf::strata_default(data_dir)),
            "esxi" => Some(GaneshaConf::esxi(data_dir)),
            "kvm" => Some(GaneshaConf::kvm(data_dir)),
            _ => None,
        }
    }

    /// The text of a shipped profile file: a comment header naming the profile, then
    /// [`GaneshaConf::render`]. `ganesha-conf/profiles/<name>.conf` is exactly this with
    /// data_dir `/var/lib/strata` (a unit test keeps them equal).
    pub fn render_profile(name: &str, data_dir: &Path) -> Option<String> {
        let conf = GaneshaConf::profile(name, data_dir)?;
        let about = match name {
            "default" => "one export /strata over NFSv3 and NFSv4 (Mount_Path_Pseudo: both mount /strata)",
            "esxi" => "ESXi: /strata-v3 (NFSv3 only) and /strata-v41 (NFSv4.1 only); never mount one share with both",
            "kvm" => "KVM/QEMU/libvirt: one export /strata over NFSv3 and NFSv4, NLM on for QEMU image locks",
            _ => "",
        };
        Some(format!(
            "# Strata profile \"{name}\": {about}.\n\
             # Generated by `strata conf render --profile {name}`; check edits with `strata conf check FILE`.\n\n{}",
            conf.render()
        ))
    }

    /// The complete ganesha.conf text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.core;
        out.push_str("NFS_CORE_PARAM {\n");
        line(&mut out, 1, "NFS_Port", &c.nfs_port.to_string());
        line(&mut out, 1, "MNT_Port", &c.mnt_port.to_string());
        line(&mut out, 1, "Protocols", &list(&c.protocols));
        line(&mut out, 1, "Enable_NLM", &c.enable_nlm.to_string());
        line(&mut out, 1, "Enable_RQUOTA", &c.enable_rquota.to_string());
        line(&mut out, 1, "Mount_Path_Pseudo", "true");
        if let Some(dir) = &c.plugins_dir {
            line(
                &mut out,
                1,
                "Plugins_Dir",
                &quote(&dir.display().to_string()),
            );
        }
        out.push_str("}\n\n");

        let v4 = &self.nfsv4;
        out.push_str("NFSV4 {\n");
        line(&mut out, 1, "Graceless", &v4.graceless.to_string());
        if let Some(dir) = &v4.recovery_root {
            line(
                &mut out,
                1,
                "RecoveryRoot",
                &quote(&dir.display().to_string()),
            );
        }
        if let Some(owner) = &v4.server_owner {
            line(&mut out, 1, "Server_Owner", &quote(owner));
        }
        if let Some(scope) = &v4.server_scope {
            line(&mut out, 1, "Server_Scope", &quote(scope));
        }
        if !v4.minor_versions.is_empty() {
            line(&mut out, 1, "Minor_Versions", &list(&v4.minor_versions));
        }
        out.push_str("}\n\n");

        out.push_str("LOG {\n");
        line(&mut out, 1, "Default_Log_Level", &self.log.default_level);
        out.push_str("}\n\n");

        // MEM's Inode_Size is a module parameter (`MEM { }`), not an export one.
        let mem_inode_size = self
            .exports
            .iter()
            .filter_map(|e| match e.fsal {
                FsalBlock::Mem { inode_size } => Some(inode_size),
                _ => None,
            })
            .max();
        if let Some(size) = mem_inode_size {
            out.push_str("MEM {\n");
            line(&mut out, 1, "Inode_Size", &size.to_string());
            out.push_str("}\n\n");
        }

        if let Some(pairs) = &self.strata {
            out.push_str("STRATA {\n");
            for (name, value) in pairs {
                line(&mut out, 1, name, &quote(value));
            }
            out.push_str("}\n\n");
        }

        for (i, e) in self.exports.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("EXPORT {\n");
            line(&mut out, 1, "Export_Id", &e.export_id.to_string());
            line(&mut out, 1, "Path", &quote(&e.path));
            line(&mut out, 1, "Pseudo", &quote(&e.pseudo));
            line(&mut out, 1, "Access_Type", "RW");
            line(&mut out, 1, "Squash", "No_Root_Squash");
            line(&mut out, 1, "Protocols", &list(&e.protocols));
            line(&mut out, 1, "Transports", "TCP");
            line(&mut out, 1, "SecType", "sys");
            line(&mut out, 1, "MaxRead", &e.max_read.to_string());
            line(&mut out, 1, "MaxWrite", &e.max_write.to_string());
            out.push_str("    FSAL {\n");
            line(&mut out, 2, "Name", e.fsal.name());
            out.push_str("    }\n}\n");
        }
        out
    }

    /// Parses ganesha.conf text into the model. Tolerant: blocks and parameters that the model
    /// does not cover are ignored (Ganesha itself judges those); values of covered parameters
    /// are checked. `file` only names the source in errors. The `STRATA` block is kept raw here;
    /// [`check_file`] / [`load_strata_settings`] validate it.
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

/// Parses a ganesha.conf and validates its STRATA block (file, line and reason per error).
pub fn load_strata_settings(conf_path: &Path) -> Result<StrataSettings, Vec<ConfError>> {
    let text = read(conf_path)?;
    let doc = parse::parse(&text).map_err(|es| to_conf_errors(conf_path, es))?;
    strata_settings_of(&doc, conf_path)
}

/// What `strata conf check` checks: the syntax, the values of the Ganesha parameters the model
/// covers, the STRATA block (when present, or when an export uses `FSAL { Name = STRATA; }`),
/// unique Export_Id and Pseudo. Returns the parsed model and the settings (None when the file
/// has no STRATA block and no STRATA export).
pub fn check_file(
    conf_path: &Path,
) -> Result<(GaneshaConf, Option<StrataSettings>), Vec<ConfError>> {
    let text = read(conf_path)?;
    check_text(&text, conf_path)
}

/// [`check_file`] on text already read; `file` only names the source in errors.
pub fn check_text(
    text: &str,
    file: &Path,
) -> Result<(GaneshaConf, Option<StrataSettings>), Vec<ConfError>> {
    let doc = parse::parse(text).map_err(|es| to_conf_errors(file, es))?;
    let mut errs = Vec::new();
    let conf = match GaneshaConf::parse(text, file) {
        Ok(c) => Some(c),
        Err(es) => {
            errs.extend(es);
            None
        }
    };
    let uses_strata = doc.iter().any(|n| match n {
        Node::Block(b) if b.name.eq_ignore_ascii_case("EXPORT") => b.blocks().any(|f| {
            f.name.eq_ignore_ascii_case("FSAL")
                && f.statements().any(|s| {
                    s.name.eq_ignore_ascii_case("Name")
                        && s.values.len() == 1
                        && s.values[0].eq_ignore_ascii_case("STRATA")
                })
        }),
        Node::Block(b) => b.name.eq_ignore_ascii_case("STRATA"),
        _ => false,
    });
    let settings = if uses_strata {
        match strata_settings_of(&doc, file) {
            Ok(s) => Some(s),
            Err(es) => {
                errs.extend(es);
                None
            }
        }
    } else {
        None
    };
    // Duplicate Export_Id / Pseudo: Ganesha refuses them; say so before it does.
    let mut ids: Vec<(u16, u32)> = Vec::new();
    let mut pseudos: Vec<(String, u32)> = Vec::new();
    for b in doc.iter().filter_map(|n| match n {
        Node::Block(b) if b.name.eq_ignore_ascii_case("EXPORT") => Some(b),
        _ => None,
    }) {
        for s in b.statements() {
            if s.name.eq_ignore_ascii_case("Export_Id") {
                if let Ok(id) = one_u16(s) {
                    if let Some((_, first)) = ids.iter().find(|(i, _)| *i == id) {
                        errs.push(ConfError {
                            file: file.to_path_buf(),
                            line: s.line,
                            reason: format!("Export_Id {id} is already used on line {first}"),
                        });
                    } else {
                        ids.push((id, s.line));
                    }
                }
            } else if s.name.eq_ignore_ascii_case("Pseudo") {
                if let Ok(p) = one(s) {
                    if let Some((_, first)) = pseudos.iter().find(|(q, _)| q == p) {
                        errs.push(ConfError {
                            file: file.to_path_buf(),
                            line: s.line,
                            reason: format!("Pseudo {p} is already used on line {first}"),
                        });
                    } else {
                        pseudos.push((p.to_string(), s.line));
                    }
                }
            }
        }
    }
    match conf {
        Some(conf) if errs.is_empty() => Ok((conf, settings)),
        _ => {
            errs.sort_by_key(|e| e.line);
            errs.dedup();
            Err(errs)
        }
    }
}

fn read(path: &Path) -> Result<String, Vec<ConfError>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![ConfError {
            file: path.to_path_buf(),
            line: 0,
            reason: format!("cannot read the file: {e}"),
        }]
    })
}

fn to_conf_errors(file: &Path, es: Vec<parse::SyntaxError>) -> Vec<ConfError> {
    es.into_iter()
        .map(|e| ConfError {
            file: file.to_path_buf(),
            line: e.line,
            reason: e.reason,
        })
        .collect()
}

/// Finds the one STRATA block of a parsed document and validates it.
fn strata_settings_of(doc: &[Node], file: &Path) -> Result<StrataSettings, Vec<ConfError>> {
    let mk = |line: u32, reason: String| ConfError {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let blocks: Vec<_> = doc
        .iter()
        .filter_map(|n| match n {
            Node::Block(b) if b.name.eq_ignore_ascii_case("STRATA") => Some(b),
            _ => None,
        })
        .collect();
    let Some(block) = blocks.first() else {
        return Err(vec![mk(
            1,
            "no STRATA { } block; it needs at least Data_Dir = \"/path\";".to_string(),
        )]);
    };
    let mut errs: Vec<ConfError> = blocks[1..]
        .iter()
        .map(|b| {
            mk(
                b.line,
                format!(
                    "a second STRATA block (the first is on line {}); write only one",
                    block.line
                ),
            )
        })
        .collect();
    let mut raw = Vec::new();
    for node in &block.body {
        match node {
            Node::Stmt(s) => {
                if s.values.len() != 1 {
                    errs.push(mk(
                        s.line,
                        format!(
                            "{} takes exactly one value, got {}; write a list as one quoted string, e.g. \"-flat.vmdk, .raw\"",
                            s.name,
                            s.values.len()
                        ),
                    ));
                    continue;
                }
                raw.push(RawSetting {
                    name: s.name.clone(),
                    value: s.values[0].clone(),
                    line: s.line,
                });
            }
            Node::Block(b) => errs.push(mk(
                b.line,
                format!("unexpected block {} inside STRATA", b.name),
            )),
        }
    }
    match StrataSettings::from_pairs(&raw, block.line) {
        Ok(s) if errs.is_empty() => Ok(s),
        Ok(_) => Err(errs),
        Err(es) => {
            errs.extend(es.into_iter().map(|e| mk(e.line, e.reason)));
            errs.sort_by_key(|e| e.line);
            Err(errs)
        }
    }
}

fn parse_export(block: &parse::Block) -> Result<Export, Vec<(u32, String)>> {
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
fn one(s: &Statement) -> Result<&str, String> {
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

fn one_u16(s: &Statement) -> Result<u16, String> {
    let v = one(s)?;
    parse_uint(v)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("{}: `{v}` is not a number in 0..=65535", s.name))
}

fn one_u64(s: &Statement) -> Result<u64, String> {
    let v = one(s)?;
    parse_uint(v).ok_or_else(|| format!("{}: `{v}` is not a whole number", s.name))
}

fn one_bool(s: &Statement) -> Result<bool, String> {
    let v = one(s)?;
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{}: `{v}` is not a boolean (true/false)", s.name)),
    }
}

/// Ganesha's numbers: decimal, 0x hex or 0-prefixed octal.
fn parse_uint(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if v.len() > 1 && v.starts_with('0') {
        u64::from_str_radix(&v[1..], 8).ok()
    } else {
        v.parse().ok()
    }
}

fn protocols(s: &Statement) -> Result<Vec<u8>, String> {
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

fn minor_versions(s: &Statement) -> Result<Vec<u8>, String> {
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

fn line(out: &mut String, depth: usize, name: &str, value: &str) {
    for _ in 0..depth {
        out.push_str("    ");
    }
    out.push_str(name);
    out.push_str(" = ");
    out.push_str(value);
    out.push_str(";\n");
}

fn list(items: &[u8]) -> String {
    items
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A double-quoted Ganesha string (backslash escapes `"` and `\`).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
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
            let on_disk = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
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
        let back =
            GaneshaConf::parse(&text, p("x.conf")).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
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
        let text = "NFS_CORE_PARAM {\n NFS_Port = 70000;\n Protocols = 3, 5;\n Enable_NLM = maybe;\n}\n\
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
}
