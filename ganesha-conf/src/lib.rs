//! Everything about Ganesha outside the FSAL: the parameter table of the `STRATA { }` block,
//! a typed model of the ganesha.conf parts we write and read (render, parse, validate with
//! file, line and reason), the shipped profiles, and the launcher that runs rpcbind and
//! ganesha.nfsd.

pub mod params;
