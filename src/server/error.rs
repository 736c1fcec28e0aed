//! The service's one error type and how each error becomes an HTTP answer.
//!
//! Every error response has the body `{"error": CODE, "message": TEXT}`, where `CODE` is a stable
//! machine-readable string from the one table in [`crate::errors`], which also gives the status:
//! nothing here maps codes to statuses. Responses produced outside the handlers (unknown routes,
//! wrong methods, timeouts, bodies over the limit) are rewritten into the same shape by
//! [`json_errors`].

use crate::dsse::DsseError;
use crate::engine::EngineError;
use crate::errors::Code;
use crate::ledger::LedgerError;
use crate::merkle::MerkleError;
use crate::state::StoreError;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::wire::ErrorBody;

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
        code: Code,
        /// What is wrong, for people.
        message: String,
    },
    /// The entry, checkpoint, merchant or tree size asked for does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// The account versions asked for are no longer (or not yet) kept.
    #[error("{0}")]
    NotKept(String),
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
    #[error(transparent)]
    Config(#[from] crate::server::config::ConfigError),
    /// An I/O operation of the service itself (binding, serving) failed.
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
pub struct ErrorCode(pub Code);

impl ServerError {
    /// A refusal of the request with the given (400-class) code.
    pub fn bad_request(code: Code, message: impl Into<String>) -> ServerError {
        ServerError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with (the code's, from the table).
    pub fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    /// The error's code in the one table.
    pub fn code(&self) -> Code {
        match self {
            ServerError::Ledger(e) => e.code(),
            ServerError::BadRequest { code, .. } => *code,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::NotKept(_) => Code::NotKept,
            ServerError::TooLarge(_) => Code::TooLarge,
            ServerError::TooManyEntries { .. } => Code::TooManyEntries,
            ServerError::RateLimited { .. } => Code::RateLimited,
            ServerError::Unavailable(_) | ServerError::Io { .. } => Code::Unavailable,
            ServerError::Config(e) => e.code(),
        }
    }
}

/// The HTTP status of `code`, as the table gives it.
pub fn status_of(code: Code) -> StatusCode {
    code.status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
        ServerError::bad_request(Code::MalformedRequest, e.body_text())
    }
}

impl From<PathRejection> for ServerError {
    fn from(e: PathRejection) -> Self {
        ServerError::bad_request(Code::MalformedRequest, e.body_text())
    }
}

impl From<BytesRejection> for ServerError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::TooLarge("the request body is larger than this route accepts".into())
        } else {
            ServerError::bad_request(Code::MalformedRequest, e.body_text())
        }
    }
}

/// Builds the JSON error response for `status` and `code`.
pub fn error_response(code: Code, message: String) -> Response {
    let mut resp = (
        status_of(code),
        Json(ErrorBody {
            error: code.as_str().to_owned(),
            message,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let code = self.code();
        if status_of(code).is_server_error() {
            tracing::warn!(code = code.as_str(), error = %self, "request failed");
        }
        let mut resp = error_response(code, self.to_string());
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
        StatusCode::NOT_FOUND => (Code::NotFound, "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            Code::MethodNotAllowed,
            "this route does not take that method".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (Code::Timeout, Code::Timeout.meaning().replace('`', "")),
        StatusCode::PAYLOAD_TOO_LARGE => (
            Code::TooLarge,
            "the request body is larger than this route accepts".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => {
            (Code::Unavailable, "the service is unavailable".to_owned())
        }
        other if other.is_client_error() => (
            Code::MalformedRequest,
            other.canonical_reason().unwrap_or("bad request").to_owned(),
        ),
        other => (
            Code::Internal,
            other
                .canonical_reason()
                .unwrap_or("internal error")
                .to_owned(),
        ),
    };
    let (parts, _) = resp.into_parts();
    let mut out = error_response(code, message);
    // The table's status for the code, unless the layer that answered chose another one of
    // the same kind (a 4xx the table has no code for keeps its status).
    *out.status_mut() = status;
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
    fn statuses_come_from_the_table() {
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
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                (status, code),
                "{e}"
            );
        }
    }
}
