//! Everything about Ganesha outside the FSAL: the parameter table of the `STRATA { }` block,
//! a typed model of the ganesha.conf parts we write and read (render, parse, validate with
//! file, line and reason), the shipped profiles, and the launcher that runs rpcbind and
//! ganesha.nfsd.

#![warn(missing_docs)]

pub mod conf;
pub mod launcher;
pub use strata_params as params;
pub mod parse;

pub use conf::{
    check_file, check_text, load_strata_settings, ConfError, CoreParams, Export, FsalBlock,
    GaneshaConf, LogParams, Nfsv4Params, PROFILES,
};
pub use params::{BackendKind, Param, ParamType, StrataSettings, PARAMS};
