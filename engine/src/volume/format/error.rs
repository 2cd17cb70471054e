//! What a reader found wrong with a SCO, a TLog or another stored object.

use super::FORMAT_VERSION;

/// What a reader found wrong with a SCO or TLog. Each variant names what could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The object is shorter than its fixed-size part.
    #[error("{what}: truncated ({len} bytes, need {need})")]
    Truncated {
        /// Which object or part.
        what: String,
        /// Bytes found.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The magic bytes are wrong: this is not the expected kind of object.
    #[error("{what}: bad magic {found:02x?}")]
    BadMagic {
        /// Which object or part.
        what: String,
        /// The bytes found.
        found: [u8; 8],
    },
    /// A format version this build does not read.
    #[error("{what}: unsupported format version {found} (this build reads {FORMAT_VERSION})")]
    BadVersion {
        /// Which object.
        what: String,
        /// The version found.
        found: u16,
    },
    /// A CRC32C does not match the bytes it covers.
    #[error("{what}: CRC32C mismatch (stored {stored:08x}, computed {computed:08x})")]
    Crc {
        /// Which object or entry.
        what: String,
        /// The CRC stored in the object.
        stored: u32,
        /// The CRC computed over the bytes.
        computed: u32,
    },
    /// A field holds a value that contradicts the rest (wrong volume, sequence number, kind...).
    #[error("{what}: {reason}")]
    Inconsistent {
        /// Which object or entry.
        what: String,
        /// What is wrong.
        reason: String,
    },
}
