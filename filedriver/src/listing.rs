//! Listing the extent objects on the backend, for a collector that looks for objects no map
//! names (the driver itself never lists: its caller keeps the maps).

use crate::{Error, FileDriver, FileId, Result};

/// One page of [`FileDriver::list_versions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Extent objects as `(file, extent index, generation)`, in key order.
    pub versions: Vec<(FileId, u64, u64)>,
    /// Keys in the files' namespace that are not extent names (left alone, counted).
    pub foreign: u64,
    /// Token for the next page; `None` after the last one.
    pub next: Option<String>,
}

/// The `(file, extent index, generation)` an object name stands for (see
/// [`crate::extent_key`]); `None` for any other name. Only the exact spelling `extent_key`
/// produces is accepted (lowercase hex of fixed widths), so a name parsed here names the
/// same object when built again.
pub fn parse_extent_key(key: &str) -> Option<(FileId, u64, u64)> {
    let mut parts = key.split('.');
    let file = hex_field(parts.next()?, 16)?;
    let index = hex_field(parts.next()?, 8)?;
    let gen = match parts.next() {
        None => 0,
        Some(g) => {
            let g = hex_field(g, 16)?;
            // Generation 0 has only the short name.
            if g == 0 {
                return None;
            }
            g
        }
    };
    if parts.next().is_some() {
        return None;
    }
    Some((file, index, gen))
}

fn hex_field(s: &str, width: usize) -> Option<u64> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if s.len() != width || !s.bytes().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl FileDriver {
    /// One page (at most `max` keys) of the extent objects on the backend, from `token` (a
    /// previous page's `next`; `None`: from the start).
    pub fn list_versions(&self, token: Option<&str>, max: usize) -> Result<VersionPage> {
        self.check_context()?;
        let store = self.store.clone();
        let token = token.map(str::to_owned);
        let page = self
            .rt
            .block_on(async move { store.list("", token.as_deref(), max).await })
            .map_err(Error::from)?;
        let mut out = VersionPage {
            next: page.next,
            ..VersionPage::default()
        };
        for o in page.objects {
            match parse_extent_key(&o.key) {
                Some(v) => out.versions.push(v),
                None => out.foreign += 1,
            }
        }
        Ok(out)
    }

    /// The first generation this run hands out: every lower one is an earlier run's.
    pub fn first_gen(&self) -> u64 {
        self.config.first_gen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extent_key;

    #[test]
    fn names_parse_back_to_what_built_them_and_nothing_else_parses() {
        for v in [
            (0x2a, 3, 0x0000_0100_0000_0005),
            (7, 0, 0),
            (u64::MAX, 0xffff_ffff, 1),
        ] {
            assert_eq!(parse_extent_key(&extent_key(v.0, v.1, v.2)), Some(v));
        }
        for bad in [
            "",
            "README",
            "000000000000002a",
            "000000000000002a.00000003.0000000000000000",
            "000000000000002A.00000003",
            "000000000000002a.0000003",
            "000000000000002a.00000003.00000100000000050",
            "000000000000002a.00000003.0000010000000005.x",
            "+00000000000002a.00000003",
        ] {
            assert_eq!(parse_extent_key(bad), None, "{bad:?}");
        }
    }
}
