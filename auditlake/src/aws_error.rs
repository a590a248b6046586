//! AWS SDK errors as one line for people, and whether retrying can help.
//!
//! The SDK's `Debug` (and `DisplayErrorContext`) print the whole response: headers,
//! body, `SdkBody {..}`. An operator needs the service's error code and message, the
//! operation and the resource; those come from the error metadata.
//! Docs: <https://docs.aws.amazon.com/sdk-for-rust/latest/dg/error-handling.html>

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// What one failed call comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFailure {
    /// `NoSuchBucket: The specified bucket does not exist`, `connection failed: ...`.
    pub line: String,
    pub retryable: bool,
}

/// Error codes that a retry cannot fix (the resource is missing, or we may not use it).
const NOT_RETRYABLE: &[&str] = &[
    "NoSuchBucket",
    "ResourceNotFoundException",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidArgumentException",
    "ValidationException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "KMSAccessDeniedException",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
];

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause of an error chain, on one line (a dispatch failure's own text is
/// only "dispatch failure"; the cause says "connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    squash(&cur.to_string())
}

pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let code = err.code().unwrap_or("UnknownError");
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            // only what is known not to heal stops the retries: throttling, 5xx, an
            // expired shard iterator, a request timeout, a clock skew all do heal
            let retryable = !NOT_RETRYABLE.contains(&code);
            let msg = err.message().map(squash).unwrap_or_default();
            let line = match (msg.is_empty(), status) {
                (true, 0) => code.to_string(),
                (true, s) => format!("{code} (HTTP {s})"),
                (false, _) => format!("{code}: {msg}"),
            };
            AwsFailure { line, retryable }
        }
        SdkError::TimeoutError(_) => AwsFailure {
            line: "timed out".into(),
            retryable: true,
        },
        SdkError::DispatchFailure(_) => AwsFailure {
            line: format!("request not sent: {}", root_cause(e)),
            retryable: true,
        },
        SdkError::ResponseError(_) => AwsFailure {
            line: format!("unreadable response: {}", root_cause(e)),
            retryable: true,
        },
        SdkError::ConstructionFailure(_) => AwsFailure {
            line: format!("request could not be built: {}", root_cause(e)),
            retryable: false,
        },
        _ => AwsFailure {
            line: root_cause(e),
            retryable: true,
        },
    }
}
