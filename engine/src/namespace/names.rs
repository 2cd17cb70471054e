//! Names and time: resolving `.` and `..`, the rules a new name must follow, the clock.

use super::NAME_MAX;
use crate::error::{Error, Result};
use crate::types::{SetTime, Timestamp};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time.
pub(crate) fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nsecs: d.subsec_nanos(),
        },
        Err(_) => Timestamp::default(),
    }
}

pub(super) fn resolve(t: SetTime) -> Timestamp {
    match t {
        SetTime::Now => now(),
        SetTime::At(t) => t,
    }
}

/// Checks a name that is about to be created (or renamed to / linked as).
pub(crate) fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if name == b"." || name == b".." {
        return Err(Error::Invalid(
            "\".\" and \"..\" cannot be created or removed".into(),
        ));
    }
    Ok(())
}

/// Checks a name component: length, no `/`, no NUL, not empty.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() {
        return Err(Error::Invalid("empty name".into()));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Error::Invalid("name contains '/' or NUL".into()));
    }
    Ok(())
}
