//! Integer conversions between offsets and lengths (`u64`), buffer indices (`usize`) and counts
//! (`u32`), the only casts of the volume code (its truncating casts are denied by lint).
//!
//! The engine builds for 64-bit targets only (checked at compile time below), where `u64` to
//! `usize` is lossless. Counts converted to `u32` are bounded by the formats far below
//! `u32::MAX` (clusters in a SCO, entries in a checkpoint page).

const _: () = assert!(usize::BITS == u64::BITS, "the engine needs a 64-bit target");

/// `x` as a `usize`: lossless on the 64-bit targets the engine builds for.
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn usize_of(x: u64) -> usize {
    x as usize
}

/// `x` as a `u32`, for a count the formats bound below `u32::MAX`; saturates otherwise.
pub(crate) fn u32_of(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_their_values() {
        assert_eq!(usize_of(u64::MAX), usize::MAX);
        assert_eq!(usize_of(4096), 4096);
        assert_eq!(u32_of(65_536), 65_536);
        assert_eq!(u32_of(usize::MAX), u32::MAX);
    }
}
