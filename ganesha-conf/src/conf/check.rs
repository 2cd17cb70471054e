//! What `strata conf check` and the FSAL check: the syntax, the modelled Ganesha parameters,
//! the `STRATA { }` block (validated with the parameter table), unique Export_Id and Pseudo.

use super::read::{one, one_u16};
use super::{ConfError, GaneshaConf};
use crate::params::{RawSetting, StrataSettings};
use crate::parse::{self, Node};
use std::path::Path;

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

pub(super) fn read(path: &Path) -> Result<String, Vec<ConfError>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![ConfError {
            file: path.to_path_buf(),
            line: 0,
            reason: format!("cannot read the file: {e}"),
        }]
    })
}

pub(super) fn to_conf_errors(file: &Path, es: Vec<parse::SyntaxError>) -> Vec<ConfError> {
    es.into_iter()
        .map(|e| ConfError {
            file: file.to_path_buf(),
            line: e.line,
            reason: e.reason,
        })
        .collect()
}

/// Finds the one STRATA block of a parsed document and validates it.
pub(super) fn strata_settings_of(
    doc: &[Node],
    file: &Path,
) -> Result<StrataSettings, Vec<ConfError>> {
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
