//! Writing a [`GaneshaConf`] as a complete, readable ganesha.conf.

use super::read::line;
use super::{FsalBlock, GaneshaConf};

impl GaneshaConf {
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
        if let Some(s) = v4.lease_lifetime {
            line(&mut out, 1, "Lease_Lifetime", &s.to_string());
        }
        if let Some(s) = v4.grace_period {
            line(&mut out, 1, "Grace_Period", &s.to_string());
        }
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
}

pub(super) fn list(items: &[u8]) -> String {
    items
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A double-quoted Ganesha string (backslash escapes `"` and `\`).
pub(super) fn quote(s: &str) -> String {
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
