//! The parameter table of the `STRATA { }` block (DESIGN §7): the one place for every
//! parameter's name, type, default, bounds and documentation. `strata conf check`, the FSAL's
//! Ganesha config items and the engine's defaults are all built from it.
//!
//! In ganesha.conf every parameter takes exactly one value. Ganesha's lexer splits bare words
//! such as `4M` or `-flat.vmdk`, so sizes with a suffix, suffix lists and paths are written
//! quoted: `SCO_Size = "4M"; Volume_Suffixes = "-flat.vmdk, .raw";`. Names are
//! case-insensitive, as everywhere in Ganesha. For the FSAL: declare every name of [`PARAMS`] as
//! a string item of the `STRATA` block, then take the validated values from
//! `strata_ganesha_conf::load_strata_settings`.
//!
//! - `table`: [`PARAMS`] and the parameter types; [`number`] gives a numeric parameter's
//!   default and bounds as numbers (what the engine takes its defaults from).
//! - `value`: parsing and checking one value (sizes with K/M/G/T suffixes, counts, seconds).
//! - `settings`: [`StrataSettings`], a whole validated `STRATA { }` block, with every rule
//!   that involves more than one parameter.

mod settings;
mod table;
#[cfg(test)]
mod tests;
mod value;

pub use self::settings::{BackendKind, ParamError, RawSetting, StrataSettings};
pub use self::table::{
    find_param, number, params_markdown, Number, Param, ParamType, DEFAULT_VOLUME_SUFFIXES,
    MAX_SOCKET_PATH, PARAMS,
};
pub use self::value::{format_size, parse_size};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
