//! The names of SCO and TLog files (and objects): sequence numbers as 16 lowercase hex
//! digits.

/// The object name of SCO `seq` inside a volume's namespace: `sco/<seq as 16 hex>`.
pub(crate) fn sco_name(seq: u64) -> String {
    format!("{seq:016x}")
}

/// The local name of the header stub being written for SCO `seq` while it is evicted
/// (`<seq as 16 hex>.evicting`), renamed over the SCO once durable. One left behind by a crash
/// holds nothing and is removed at restart.
pub(crate) fn sco_stub_name(seq: u64) -> String {
    format!("{seq:016x}{SCO_STUB_SUFFIX}")
}

/// The suffix of [`sco_stub_name`].
pub(crate) const SCO_STUB_SUFFIX: &str = ".evicting";

/// The object name of TLog `seq` inside a volume's namespace: `tlog/<seq as 16 hex>`.
pub(crate) fn tlog_name(seq: u64) -> String {
    format!("{seq:016x}")
}

/// Parses a SCO or TLog file name (16 lowercase hex digits) back into its sequence number.
pub(crate) fn parse_seq_name(name: &str) -> Option<u64> {
    if name.len() != 16
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}
