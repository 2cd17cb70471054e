//! One value: parsing sizes, counts and seconds, and checking a value against its parameter.

use std::path::PathBuf;

use crate::table::{Param, ParamType};
use crate::{GIB, KIB, MIB, TIB};

/// Parses a byte size: a whole number with an optional K, M, G or T suffix (1024-based, either
/// case). Rejects garbage, fractions and overflow with a reason.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], KIB),
        Some('m' | 'M') => (&t[..t.len() - 1], MIB),
        Some('g' | 'G') => (&t[..t.len() - 1], GIB),
        Some('t' | 'T') => (&t[..t.len() - 1], TIB),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a size (a whole number with an optional K, M, G or T suffix, e.g. 4M)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a byte count with the largest exact K/M/G/T suffix.
pub fn format_size(bytes: u64) -> String {
    for (unit, m) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

pub(crate) fn parse_whole(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A typed value of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Path(PathBuf),
    Text(String),
    Number(u64),
    List(Vec<String>),
}

/// Checks one value against its parameter's type and range.
pub(crate) fn check_value(p: &Param, raw: &str) -> Result<Value, String> {
    let name = p.name;
    match p.ty {
        ParamType::Path => {
            if raw.is_empty() {
                Err(format!("{name} is empty; give an absolute path"))
            } else if !raw.starts_with('/') {
                Err(format!("{name} = \"{raw}\" is not an absolute path"))
            } else if raw.contains('\0') {
                Err(format!("{name} contains a NUL byte"))
            } else {
                Ok(Value::Path(PathBuf::from(raw)))
            }
        }
        ParamType::Text => Ok(Value::Text(raw.to_string())),
        ParamType::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(raw.trim()))
            .map(|w| Value::Text(w.to_string()))
            .ok_or_else(|| format!("{name} = \"{raw}\" is not one of {}", words.join(", "))),
        ParamType::Size { min, max } => {
            let n = parse_size(raw).map_err(|e| format!("{name}: {e}"))?;
            if n < min || n > max {
                return Err(format!(
                    "{name} = {raw} is out of range {} .. {}",
                    format_size(min),
                    format_size(max)
                ));
            }
            Ok(Value::Number(n))
        }
        ParamType::Count { min, max } => {
            let n =
                parse_whole(raw).ok_or_else(|| format!("{name}: `{raw}` is not a whole number"))?;
            if n < min || n > max {
                return Err(format!("{name} = {raw} is out of range {min} .. {max}"));
            }
            Ok(Value::Number(n))
        }
        ParamType::Seconds { min, max } => {
            let t = raw.trim();
            let t = t.strip_suffix(['s', 'S']).unwrap_or(t);
            let n = parse_whole(t).ok_or_else(|| {
                format!("{name}: `{raw}` is not a number of seconds (e.g. 60 or 60s)")
            })?;
            if n < min || n > max {
                return Err(format!("{name} = {raw} is out of range {min} .. {max} s"));
            }
            Ok(Value::Number(n))
        }
        ParamType::List => {
            let items: Vec<String> = raw
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = items.iter().find(|s| s.contains('/') || s.contains(' ')) {
                return Err(format!(
                    "{name}: `{bad}` cannot be a name suffix (no `/` or spaces)"
                ));
            }
            Ok(Value::List(items))
        }
    }
}
