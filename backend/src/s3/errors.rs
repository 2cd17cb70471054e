//! How the SDK's errors become the stores' [`Error`]: by HTTP status and S3 error code, so
//! that "not found", "condition failed", "refused", "try again" and "no such bucket" stay
//! distinct. Messages carry the store's code and message, never a credential.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::Error;

/// Maps an SDK error on `key` (of `bucket`) to the stores' error.
pub(super) fn map<E>(bucket: &str, key: &str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let key = key.to_string();
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            from_status(bucket, key, status, &code, &message)
        }
        SdkError::TimeoutError(_) => Error::Unavailable {
            key,
            reason: "the request timed out".into(),
        },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Error::Unavailable {
            key,
            reason: format!("{}", DisplayErrorContext(&e)),
        },
        _ => Error::Protocol {
            key,
            reason: format!("{}", DisplayErrorContext(&e)),
        },
    }
}

/// The error of an answer with HTTP `status` and S3 error `code`.
pub(super) fn from_status(
    bucket: &str,
    key: String,
    status: u16,
    code: &str,
    message: &str,
) -> Error {
    let what = if code.is_empty() && message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}: {message}")
    };
    match status {
        404 if code == "NoSuchBucket" => Error::NoBucket {
            bucket: bucket.to_string(),
        },
        404 => Error::NotFound { key },
        412 => Error::ConditionFailed { key },
        // S3's "the socket was idle too long" and its kin: the request may succeed again.
        400 if matches!(
            code,
            "RequestTimeout" | "RequestTimeoutException" | "PriorRequestNotComplete"
        ) =>
        {
            Error::Unavailable { key, reason: what }
        }
        408 => Error::Unavailable { key, reason: what },
        401 | 403 => Error::Denied { key, message: what },
        // 409: a conditional write raced another one in progress (retry and see), or a bucket
        // operation in progress; 429 and 5xx: slow down or try later.
        409 | 429 | 500..=599 if status != 501 => Error::Unavailable { key, reason: what },
        _ => Error::Protocol { key, reason: what },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_distinct_errors() {
        let e = |status, code| from_status("b", "k".into(), status, code, "m");
        assert!(matches!(e(404, "NoSuchBucket"), Error::NoBucket { .. }));
        assert!(e(404, "NoSuchKey").is_not_found());
        assert!(e(412, "PreconditionFailed").is_condition_failed());
        assert!(matches!(
            e(403, "SignatureDoesNotMatch"),
            Error::Denied { .. }
        ));
        for transient in [409, 429, 500, 502, 503, 504] {
            assert!(e(transient, "").is_transient(), "{transient}");
        }
        assert!(e(400, "RequestTimeout").is_transient());
        assert!(e(408, "").is_transient());
        for final_ in [400, 405, 411, 416, 501] {
            assert!(matches!(e(final_, "x"), Error::Protocol { .. }), "{final_}");
        }
    }
}
