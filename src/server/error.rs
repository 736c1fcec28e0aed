//! The service's one error type and how each error becomes an HTTP answer.
//!
//! Every error response has the body `{"error": CODE, "message": TEXT}`, where `CODE` is a stable
//! machine-readable string. Ledger refusals keep the codes the core gives them
//! ([`crate::engine::EngineError::code`]) and get their status from their class:
//!
//! | status | codes |
//! |---|---|
//! | 400 | `malformed_envelope`, `malformed_payload`, `malformed_json`, `malformed_request`, `malformed_id`, `out_of_range` |
//! | 401 | `bad_signature` |
//! | 403 | `wrong_signers`, `not_operator` |
//! | 404 | `not_found` |
//! | 405 | `method_not_allowed` |
//! | 408 | `timeout` |
//! | 409 | `nonce_reused`, `order_exists`, `merchant_exists`, `address_linked` |
//! | 413 | `too_large`, `too_many_entries` |
//! | 429 | `rate_limited` (with `Retry-After`: consumer-signed writes over the per-address rate) |
//! | 422 | every other engine code (`insufficient_points`, `unknown_merchant`, ...) |
//! | 503 | `storage_full` (the data volume is below its free-space reserve; reads go on), `unavailable` (the store or the writer cannot take the request) |
//!
//! Responses produced outside the handlers (unknown routes, wrong methods, timeouts, bodies over
//! the limit) are rewritten into the same shape by [`json_errors`].

use crate::dsse::DsseError;
use crate::engine::{EngineError, ErrorClass};
use crate::ledger::LedgerError;
use crate::merkle::MerkleError;
use crate::store::StoreError;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::wire::ErrorBody;

/// Why the service refused or failed a request, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The ledger refused an entry, or the store failed underneath a read or a write.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The request is malformed; `code` says how.
    #[error("{message}")]
    BadRequest {
        /// The error code (`malformed_json`, `malformed_request`, `malformed_id`, ...).
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The entry, checkpoint, merchant or tree size asked for does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than the route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// A batch holds more envelopes than `max_batch`.
    #[error("a batch holds at most {max} envelopes; this one has {count}")]
    TooManyEntries {
        /// Envelopes in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The client's address has used up its allowance of writes no merchant or operator signs
    /// (`account.link_evm`, `referral.accept`; see `--consumer-writes-per-minute`).
    #[error("too many consumer-signed writes from this address; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until the next write is allowed (sent as `Retry-After`).
        retry_after: u64,
    },
    /// The writer has stopped or a read task failed: the service cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    /// The settings are unusable.
    #[error("invalid settings: {0}")]
    Config(String),
    /// An I/O operation of the service itself (binding, serving, reading the config) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The code of an error response, kept in the response's extensions so that metrics can count
/// errors by code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl ServerError {
    /// A 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ServerError {
        ServerError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ServerError::Ledger(e) => ledger_status(e),
            ServerError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ServerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServerError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ServerError::TooManyEntries { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_many_entries")
            }
            ServerError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ServerError::Unavailable(_) | ServerError::Io { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ServerError::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "config"),
        }
    }
}

/// The status and code of a ledger error: the core's class decides, except that a signature
/// that does not verify is 401 and an oversized envelope or payload is 413.
pub fn ledger_status(e: &LedgerError) -> (StatusCode, &'static str) {
    match e {
        LedgerError::Envelope(DsseError::BadSignature { .. }) => {
            (StatusCode::UNAUTHORIZED, "bad_signature")
        }
        LedgerError::Envelope(DsseError::TooLarge { .. } | DsseError::PayloadTooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        LedgerError::Envelope(_) => (StatusCode::BAD_REQUEST, "malformed_envelope"),
        LedgerError::Engine(e) => match e.class() {
            ErrorClass::Malformed => (StatusCode::BAD_REQUEST, e.code()),
            ErrorClass::Forbidden => (StatusCode::FORBIDDEN, e.code()),
            ErrorClass::Conflict => (StatusCode::CONFLICT, e.code()),
            ErrorClass::Rule => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            ErrorClass::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        },
        LedgerError::StorageFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
        // Store, key, tree and checkpoint failures, corrupt leaves and a missing leaf behind a
        // recorded digest all mean the store cannot serve the request.
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Ledger(LedgerError::Store(e))
    }
}

impl From<MerkleError> for ServerError {
    fn from(e: MerkleError) -> Self {
        ServerError::Ledger(LedgerError::Merkle(e))
    }
}

impl From<EngineError> for ServerError {
    fn from(e: EngineError) -> Self {
        ServerError::Ledger(LedgerError::Engine(e))
    }
}

impl From<DsseError> for ServerError {
    fn from(e: DsseError) -> Self {
        ServerError::Ledger(LedgerError::Envelope(e))
    }
}

impl From<QueryRejection> for ServerError {
    fn from(e: QueryRejection) -> Self {
        ServerError::bad_request("malformed_request", e.body_text())
    }
}

impl From<PathRejection> for ServerError {
    fn from(e: PathRejection) -> Self {
        ServerError::bad_request("malformed_request", e.body_text())
    }
}

impl From<BytesRejection> for ServerError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::TooLarge("the request body is larger than this route accepts".into())
        } else {
            ServerError::bad_request("malformed_request", e.body_text())
        }
    }
}

/// Builds the JSON error response for `status` and `code`.
pub fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut resp = (
        status,
        Json(ErrorBody {
            error: code.to_owned(),
            message,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let mut resp = error_response(status, code, self.to_string());
        if let ServerError::RateLimited { retry_after } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}

/// Rewrites error responses that did not come from a handler (unknown route, wrong method,
/// timeout, body over the limit) into the `{"error", "message"}` shape.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<ErrorCode>().is_some()
    {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not take that method".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request took longer than the request timeout; an entry may still have been \
             appended: resubmit the identical envelope to get its receipt"
                .to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            "the request body is larger than this route accepts".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable".into()),
        other => (
            "error",
            other.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let (parts, _) = resp.into_parts();
    let mut out = error_response(status, code, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error_classes() {
        let cases: Vec<(ServerError, u16, &str)> = vec![
            (
                EngineError::InsufficientPoints {
                    available: 1,
                    requested: 2,
                }
                .into(),
                422,
                "insufficient_points",
            ),
            (
                EngineError::MerchantExists("m".into()).into(),
                409,
                "merchant_exists",
            ),
            (
                EngineError::NotOperator("o".into()).into(),
                403,
                "not_operator",
            ),
            (
                EngineError::Storage("disk".into()).into(),
                503,
                "unavailable",
            ),
            (
                DsseError::BadSignature {
                    keyid: "k".into(),
                    position: 0,
                }
                .into(),
                401,
                "bad_signature",
            ),
            (
                DsseError::Malformed("x".into()).into(),
                400,
                "malformed_envelope",
            ),
            (
                ServerError::TooManyEntries { count: 3, max: 2 },
                413,
                "too_many_entries",
            ),
            (
                ServerError::Unavailable("stopped".into()),
                503,
                "unavailable",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e}");
        }
    }
}
