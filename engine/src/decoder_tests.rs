//! Property tests of the namespace's decoders: inode records read back from redb and object
//! handles from the network. Neither has a checksum: whatever decodes must encode back to the
//! very same bytes, anything else is an error; never a panic, never an allocation beyond
//! `decoder_bound` of the input.

use proptest::prelude::*;

use crate::namespace::Inode;
use crate::volume::decoder_tests::{bounded, mutate, mutations};
use crate::{DeviceId, Handle, Kind, Timestamp};

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nsecs)| Timestamp { secs, nsecs })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Directory),
        Just(Kind::File),
        Just(Kind::Volume),
        Just(Kind::Symlink),
        Just(Kind::Fifo),
        Just(Kind::Socket),
        Just(Kind::CharDevice),
        Just(Kind::BlockDevice)
    ]
}

fn inode() -> impl Strategy<Value = Inode> {
    (
        (
            kind(),
            any::<[u32; 3]>(),
            any::<u64>(),
            timestamp(),
            timestamp(),
        ),
        (timestamp(), any::<u32>(), any::<[u64; 5]>()),
        (
            prop::option::of(any::<[u8; 8]>()),
            prop::collection::vec(any::<u8>(), 0..300),
            any::<[u32; 2]>(),
        ),
    )
        .prop_map(
            |(
                (kind, [mode, uid, gid], size, atime, mtime),
                (ctime, nlink, n),
                (verifier, target, [major, minor]),
            )| {
                // A device carries its numbers where others carry a target.
                let (target, rdev) = if kind.is_device() {
                    (Vec::new(), DeviceId { major, minor })
                } else if kind.is_special() {
                    (Vec::new(), DeviceId::default())
                } else {
                    (target, DeviceId::default())
                };
                Inode {
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    atime,
                    mtime,
                    ctime,
                    nlink,
                    generation: n[0],
                    change: n[1],
                    parent: n[2],
                    next_cookie: n[3],
                    nextents: n[4],
                    verifier,
                    target,
                    rdev,
                }
            },
        )
}

/// An inode record decodes to a value that encodes to exactly `b`, or is an error.
fn decodes_exactly_or_fails(b: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(i) = bounded(b, || Inode::decode(b)) {
        prop_assert_eq!(i.encode(), b.to_vec());
    }
    Ok(())
}

proptest! {
    #[test]
    fn inode_records_from_random_bytes_fail_or_are_exact(
        b in prop::collection::vec(any::<u8>(), 0..400), version_and_kind in any::<bool>()
    ) {
        // Half the inputs start like a record, so the later fields are reached too.
        let mut b = b;
        if version_and_kind && b.len() >= 2 {
            b[0] = 1;
            b[1] = 1 + b[1] % 8;
        }
        decodes_exactly_or_fails(&b)?;
    }

    #[test]
    fn changed_inode_records_fail_or_are_exact(i in inode(), ms in mutations()) {
        let enc = i.encode();
        prop_assert_eq!(Inode::decode(&enc).ok(), Some(i));
        decodes_exactly_or_fails(&mutate(&enc, &ms))?;
    }

    #[test]
    fn handles_of_any_other_length_are_invalid(b in prop::collection::vec(any::<u8>(), 0..64)) {
        match bounded(&b, || Handle::from_bytes(&b)) {
            Ok(h) => prop_assert_eq!(h.to_bytes().to_vec(), b),
            Err(e) => {
                prop_assert!(b.len() != Handle::WIRE_LEN);
                prop_assert!(matches!(e, crate::Error::Invalid(_)), "{:?}", e);
            }
        }
    }
}
