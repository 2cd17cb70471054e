//! The content hash of a cluster: 16 bytes of digest and the algorithm that made them.
//!
//! Clusters written by this build carry **BLAKE3** truncated to 128 bits; clusters written before
//! carry **MD5**, and keep it: every stored hash says which algorithm made it (a TLog entry's
//! field *d*, the top byte of a MetaDataStore or checkpoint location's cluster index), so a
//! volume written by both builds verifies each cluster with its own. BLAKE3 hashes a 4 KiB
//! cluster about 7x faster than MD5 on this project's machines (MD5 was two thirds of the CPU
//! of a 1 MiB sequential write) and, unlike MD5, resists deliberate collisions. Byte layouts:
//! `engine/FORMATS.md`, "Cluster hashes".

/// The algorithm of a [`ClusterHash`], as stored (one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// MD5 (RFC 1321): clusters written before BLAKE3. Code 0.
    Md5,
    /// BLAKE3, the first 16 bytes of its output. Code 1.
    Blake3,
}

impl HashAlg {
    /// The algorithm of new clusters: BLAKE3.
    pub(crate) fn current() -> HashAlg {
        #[cfg(test)]
        if AS_OLDER_BUILD.with(std::cell::Cell::get) {
            return HashAlg::Md5;
        }
        HashAlg::Blake3
    }
    /// Its stored code.
    pub(crate) fn code(self) -> u8 {
        match self {
            HashAlg::Md5 => 0,
            HashAlg::Blake3 => 1,
        }
    }

    /// The algorithm a stored code names, if any.
    pub(crate) fn from_code(code: u32) -> Option<HashAlg> {
        match code {
            0 => Some(HashAlg::Md5),
            1 => Some(HashAlg::Blake3),
            _ => None,
        }
    }
}

/// A cluster's content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterHash {
    alg: HashAlg,
    digest: [u8; 16],
}

impl ClusterHash {
    /// The hash new clusters carry (BLAKE3).
    pub fn of(data: &[u8]) -> ClusterHash {
        ClusterHash::with(HashAlg::current(), data)
    }

    /// The hash of `data` by `alg`.
    pub fn with(alg: HashAlg, data: &[u8]) -> ClusterHash {
        let mut digest = [0u8; 16];
        match alg {
            HashAlg::Md5 => {
                use md5::Digest;
                digest = md5::Md5::digest(data).into();
            }
            HashAlg::Blake3 => digest.copy_from_slice(&blake3::hash(data).as_bytes()[..16]),
        }
        ClusterHash { alg, digest }
    }

    /// Whether `data` hashes to this (by this hash's own algorithm).
    pub fn matches(&self, data: &[u8]) -> bool {
        ClusterHash::with(self.alg, data) == *self
    }

    /// A stored hash.
    pub(crate) fn from_parts(alg: HashAlg, digest: [u8; 16]) -> ClusterHash {
        ClusterHash { alg, digest }
    }

    /// Its algorithm.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Its 16 bytes.
    pub fn digest(&self) -> &[u8; 16] {
        &self.digest
    }
}

#[cfg(test)]
thread_local! {
    /// Test knob: [`ClusterHash::of`] hashes with MD5 on this thread, as builds before BLAKE3
    /// did.
    static AS_OLDER_BUILD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test knob: new clusters written on this thread carry MD5 (`on`), as before BLAKE3.
#[cfg(test)]
pub(crate) fn hash_as_older_build(on: bool) {
    AS_OLDER_BUILD.with(|c| c.set(on));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_of_both_algorithms() {
        // RFC 1321's test vector and BLAKE3's published hash of the empty input.
        let md5 = ClusterHash::with(HashAlg::Md5, b"abc");
        assert_eq!(
            md5.digest(),
            &[
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
        let b3 = ClusterHash::of(b"");
        assert_eq!(b3.alg(), HashAlg::Blake3);
        assert_eq!(
            b3.digest(),
            &[
                0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc,
                0xc9, 0x49
            ]
        );
    }

    #[test]
    fn a_hash_matches_only_by_its_own_algorithm() {
        let c = vec![7u8; 4096];
        let m = ClusterHash::with(HashAlg::Md5, &c);
        let b = ClusterHash::of(&c);
        assert!(m.matches(&c) && b.matches(&c));
        assert!(!ClusterHash::from_parts(HashAlg::Blake3, *m.digest()).matches(&c));
        assert!(!ClusterHash::from_parts(HashAlg::Md5, *b.digest()).matches(&c));
        assert!(!b.matches(&[0u8; 4096]));
    }
}
