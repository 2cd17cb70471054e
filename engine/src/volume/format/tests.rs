//! Round trips and damage detection of the SCO and TLog formats.

use super::*;

#[test]
fn entries_round_trip_and_detect_flips() {
    let entries = [
        Entry::Cluster {
            address: 7,
            sco: 3,
            offset: 12,
            hash: ClusterHash::from_parts(HashAlg::Md5, [9; 16]),
        },
        Entry::ScoSealed {
            sco: 3,
            clusters: 1024,
            crc: 0xdead_beef,
        },
        Entry::Resize { size: 12345 },
        Entry::TlogClosed { crc: 42 },
        Entry::Remap {
            address: 9,
            sco: 2,
            offset: 5,
            hash: ClusterHash::from_parts(HashAlg::Blake3, [7; 16]),
        },
    ];
    for e in entries {
        let mut b = e.encode();
        assert_eq!(Entry::decode("e", &b), Ok(e));
        for i in 0..TLOG_ENTRY_LEN {
            b[i] ^= 0x10;
            assert!(
                Entry::decode("e", &b).is_err(),
                "flip at byte {i} undetected"
            );
            b[i] ^= 0x10;
        }
    }
    assert!(matches!(
        Entry::decode("e", &[0u8; TLOG_ENTRY_LEN]),
        Err(FormatError::Crc { .. })
    ));
    // A Cluster entry whose field d names no known hash algorithm is refused under a valid CRC.
    let mut b = entries[0].encode();
    b[40] = 2;
    let crc = crc32c::crc32c(&b[..44]);
    b[44..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        Entry::decode("e", &b),
        Err(FormatError::Inconsistent { reason, .. }) if reason.contains("unknown hash algorithm")
    ));
}

#[test]
fn headers_and_footer_round_trip_and_reject_garbage() {
    let v = VolumeId([5; 16]);
    let h = ScoHeader { volume: v, seq: 77 };
    assert_eq!(ScoHeader::decode("s", &h.encode()), Ok(h));
    let t = TlogHeader { volume: v, seq: 3 };
    let mut tb = t.encode();
    assert_eq!(TlogHeader::decode("t", &tb), Ok(t));
    tb[8] = 2;
    assert!(matches!(
        TlogHeader::decode("t", &tb),
        Err(FormatError::BadVersion { .. })
    ));
    tb[0] = b'X';
    assert!(matches!(
        TlogHeader::decode("t", &tb),
        Err(FormatError::BadMagic { .. })
    ));
    let f = ScoFooter {
        seq: 77,
        clusters: 3,
        data_crc: 99,
    };
    let mut fb = f.encode();
    assert_eq!(ScoFooter::decode("s", &fb), Ok(f));
    fb[17] ^= 1;
    assert!(matches!(
        ScoFooter::decode("s", &fb),
        Err(FormatError::Crc { .. })
    ));
}

#[test]
fn crc_and_md5_are_the_standard_ones() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(
        *ClusterHash::with(HashAlg::Md5, b"").digest(),
        [
            0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
            0x42, 0x7e
        ]
    );
}

#[test]
fn names_sort_in_sequence_order() {
    assert_eq!(sco_name(10), "000000000000000a");
    assert!(tlog_name(9) < tlog_name(10));
    assert_eq!(parse_seq_name(&tlog_name(0xabc)), Some(0xabc));
    assert_eq!(parse_seq_name("000000000000000A"), None);
    assert_eq!(parse_seq_name("tmp"), None);
}
