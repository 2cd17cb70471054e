//! Error answers: a stable machine-readable kind and a sentence for people.

use serde::{Deserialize, Serialize};

/// The kind of an error answer, as a stable snake_case string on the wire. Kinds this client
/// does not know (a newer gateway) decode as [`ErrorKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request line is not a valid request.
    BadRequest,
    /// The request line is longer than [`crate::MAX_REQUEST`].
    TooLarge,
    /// The request speaks another protocol version.
    UnsupportedVersion,
    /// Too many requests in progress; try again.
    Busy,
    /// The handler failed unexpectedly (a panic); see the gateway log.
    Internal,
    /// The path names something that is not a volume.
    NotAVolume,
    /// No such file or directory.
    NotFound,
    /// It exists already.
    Exists,
    /// A path component is not a directory.
    NotDir,
    /// It is a directory.
    IsDir,
    /// The directory is not empty.
    NotEmpty,
    /// A name is too long.
    NameTooLong,
    /// An invalid argument.
    Invalid,
    /// A stale handle.
    Stale,
    /// No space left.
    NoSpace,
    /// Not now: retry later (the backend is unreachable or stuck).
    Delay,
    /// The volume is read-only (a template).
    ReadOnly,
    /// Not supported.
    NotSupported,
    /// An I/O error (local disk, a format check, the backend).
    Io,
    /// Another gateway owns the backend.
    NotOwner,
    /// A kind this client does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The kind's wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
            ErrorKind::NotAVolume => "not_a_volume",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::NotDir => "not_dir",
            ErrorKind::IsDir => "is_dir",
            ErrorKind::NotEmpty => "not_empty",
            ErrorKind::NameTooLong => "name_too_long",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Stale => "stale",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::Delay => "delay",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::Io => "io",
            ErrorKind::NotOwner => "not_owner",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error answer: a stable machine-readable `kind` and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of error (its wire string is stable).
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_its_wire_string_and_unknown_kinds_decode() {
        let all = [
            ErrorKind::BadRequest,
            ErrorKind::TooLarge,
            ErrorKind::UnsupportedVersion,
            ErrorKind::Busy,
            ErrorKind::Internal,
            ErrorKind::NotAVolume,
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::NotDir,
            ErrorKind::IsDir,
            ErrorKind::NotEmpty,
            ErrorKind::NameTooLong,
            ErrorKind::Invalid,
            ErrorKind::Stale,
            ErrorKind::NoSpace,
            ErrorKind::Delay,
            ErrorKind::ReadOnly,
            ErrorKind::NotSupported,
            ErrorKind::Io,
            ErrorKind::NotOwner,
            ErrorKind::Unknown,
        ];
        for k in all {
            let wire = serde_json::to_string(&k).expect("encode");
            assert_eq!(wire, format!("\"{}\"", k.as_str()));
            let back: ErrorKind = serde_json::from_str(&wire).expect("decode");
            assert_eq!(back, k);
        }
        let newer: ErrorKind = serde_json::from_str("\"quota_exceeded\"").expect("decode");
        assert_eq!(newer, ErrorKind::Unknown);
    }
}
