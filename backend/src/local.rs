//! [`LocalStore`]: objects as files under a directory.

use std::path::PathBuf;

/// An object store on a local directory (stub: filled by the foundation issue).
#[derive(Debug)]
pub struct LocalStore {
    #[allow(dead_code)]
    root: PathBuf,
}
