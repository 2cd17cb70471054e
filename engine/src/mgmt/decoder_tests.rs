//! Property tests of the management protocol's decoders: the server's framing (`read_line`)
//! and request parser, the client's answer parser. Random and mutated lines never panic and
//! never allocate beyond `decoder_bound` of the input (a line itself is bounded by
//! [`MAX_REQUEST`] / [`MAX_RESPONSE`]); what parses re-encodes to the same message.

use std::io::{BufReader, Cursor};

use proptest::prelude::*;

use super::conn::{parse_request, read_line, Line};
use super::*;
use crate::alloc_probe::{decoder_bound, largest_allocation};
use crate::volume::decoder_tests::{bounded, mutate, mutations};
use serde::Serialize;

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Status),
        any::<bool>().prop_map(|wait| Request::Sync { wait }),
        ".{0,40}".prop_map(|path| Request::VolumeInfo { path }),
        (
            ".{0,40}",
            ".{0,20}",
            prop::collection::vec((".{0,8}", ".{0,8}"), 0..3)
        )
            .prop_map(|(path, name, meta)| Request::SnapshotCreate { path, name, meta }),
        ".{0,40}".prop_map(|path| Request::SnapshotList { path }),
        any::<bool>().prop_map(|all| Request::VolumeList { all }),
        (".{0,40}", ".{0,40}", prop::option::of(".{0,20}")).prop_map(|(source, path, snapshot)| {
            Request::VolumeClone {
                source,
                path,
                snapshot,
            }
        }),
        (".{0,40}", any::<bool>()).prop_map(|(path, wait)| Request::VolumeFlatten { path, wait }),
        ".{0,40}".prop_map(|path| Request::VolumeTemplate { path }),
        (".{0,40}", any::<u64>()).prop_map(|(path, size)| Request::VolumeCreate { path, size }),
        (".{0,40}", ".{0,20}").prop_map(|(path, name)| Request::SnapshotInfo { path, name }),
        (".{0,40}", ".{0,20}").prop_map(|(path, name)| Request::SnapshotDelete { path, name }),
        (".{0,40}", ".{0,20}", any::<bool>(), any::<bool>()).prop_map(
            |(path, name, force, wait)| {
                Request::SnapshotRollback {
                    path,
                    name,
                    force,
                    wait,
                }
            }
        ),
        Just(Request::JobList),
        any::<u64>().prop_map(|id| Request::JobShow { id }),
        any::<u64>().prop_map(|id| Request::JobCancel { id }),
    ]
}

fn line(r: &impl Serialize) -> Vec<u8> {
    let mut b = serde_json::to_vec(r).expect("encode");
    b.push(b'\n');
    b
}

fn request_line(request: Request) -> Vec<u8> {
    line(&RequestLine {
        version: PROTOCOL_VERSION,
        request,
    })
}

fn response(r: Result<Reply, ErrorBody>) -> Vec<u8> {
    let (result, error) = match r {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    line(&ResponseLine {
        version: PROTOCOL_VERSION,
        result,
        error,
    })
}

/// What a request parser may answer with when it refuses.
fn refused_well(e: &ErrorBody) -> bool {
    matches!(e.kind.as_str(), "bad_request" | "unsupported_version")
}

proptest! {
    #[test]
    fn random_request_lines_are_refused(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        match bounded(&b, || parse_request(&b)) {
            Ok(r) => prop_assert!(false, "random bytes parsed as {:?}", r),
            Err(e) => prop_assert!(refused_well(&e), "{:?}", e),
        }
    }

    #[test]
    fn changed_request_lines_are_refused_or_consistent(r in request(), ms in mutations()) {
        let enc = request_line(r.clone());
        prop_assert_eq!(parse_request(&enc), Ok(r));
        let m = mutate(&enc, &ms);
        match bounded(&m, || parse_request(&m)) {
            Ok(got) => prop_assert_eq!(parse_request(&request_line(got.clone())), Ok(got)),
            Err(e) => prop_assert!(refused_well(&e), "{:?}", e),
        }
    }

    #[test]
    fn random_answers_are_protocol_errors(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        let r = bounded(&b, || parse_response(&b));
        prop_assert!(matches!(r, Err(ClientError::Protocol(_))), "{:?}", r);
    }

    #[test]
    fn changed_answers_are_refused_or_consistent(
        waited in any::<bool>(), elapsed_ms in any::<u64>(), kind in "[a-z_]{1,12}",
        message in ".{0,40}", is_error in any::<bool>(), ms in mutations()
    ) {
        // Random kinds: mostly unknown to this client, which decodes them as `Unknown`.
        let kind: ErrorKind = serde_json::from_value(serde_json::Value::String(kind))
            .expect("any kind string decodes");
        let answer = if is_error {
            Err(ErrorBody { kind, message })
        } else {
            Ok(Reply::Sync(SyncReport { waited, elapsed_ms, job: waited.then_some(elapsed_ms) }))
        };
        let enc = response(answer.clone());
        let m = mutate(&enc, &ms);
        match bounded(&m, || parse_response(&m)) {
            Ok(got) => prop_assert!(matches!(parse_response(&response(Ok(got.clone()))),
                Ok(ref again) if *again == got)),
            Err(ClientError::Server(e)) => {
                let again = parse_response(&response(Err(e.clone())));
                prop_assert!(matches!(again, Err(ClientError::Server(ref x)) if *x == e));
            }
            Err(e) => prop_assert!(matches!(e, ClientError::Protocol(_)), "{:?}", e),
        }
    }

    /// The server's framing: a line up to MAX_REQUEST bytes (newline included) is handed on
    /// whole, a longer one is TooLarge; reading never buffers much more than MAX_REQUEST.
    #[test]
    fn request_framing_is_bounded(
        first in 0usize..3 * MAX_REQUEST, newline in any::<bool>(), fill in any::<u8>()
    ) {
        let fill = if fill == b'\n' { b'x' } else { fill };
        let mut stream = vec![fill; first];
        if newline {
            stream.extend_from_slice(b"\n{}\n");
        }
        let mut r = BufReader::new(Cursor::new(&stream));
        let (got, largest) = largest_allocation(|| read_line(&mut r));
        prop_assert!(largest <= decoder_bound(MAX_REQUEST), "allocated {}", largest);
        let whole = first + usize::from(newline);
        match got.expect("read") {
            Line::Eof => prop_assert_eq!(stream.len(), 0),
            Line::TooLarge => prop_assert!(whole > MAX_REQUEST || (!newline && first == MAX_REQUEST)),
            Line::Request(b) => {
                prop_assert!(whole <= MAX_REQUEST);
                prop_assert_eq!(b.len(), whole);
            }
        }
    }
}
