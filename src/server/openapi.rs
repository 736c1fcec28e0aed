//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes (their
//! bodies' schemas are in `schemas`), and the route that serves it.

use super::routes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;
use utoipa::OpenApi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pointsledger",
        description = "A verifiable points-and-rewards ledger: DSSE-signed requests appended to \
                       an RFC 6962 Merkle log with C2SP signed checkpoints. Every error answer \
                       is `{\"error\": CODE, \"message\": TEXT}`. Every hash and proof is \
                       standard base64; hex is for key ids and EVM values. The hex fields \
                       `leaf_hash`, `root` and `consistency_proof` are deprecated twins of \
                       `hash`, `root_hash` and `proof` and go in the next release \
                       (docs/PROTOCOL.md §12.1)."
    ),
    paths(
        routes::submit_entry,
        routes::submit_batch,
        routes::get_entry,
        routes::list_entries,
        routes::latest_checkpoint,
        routes::checkpoints,
        routes::checkpoint_at,
        routes::inclusion_proof,
        routes::consistency_proof,
        routes::receipt,
        routes::anchors,
        routes::account,
        routes::account_history,
        routes::merchant,
        routes::quote,
        routes::log_info,
        routes::healthz,
        routes::metrics,
        openapi_json,
        super::tiles::checkpoint,
        super::tiles::tile,
    ),
    tags(
        (name = "entries", description = "Appending and reading entries"),
        (name = "proofs", description = "Checkpoints, proofs and receipts"),
        (name = "accounts", description = "Accounts, merchants and quotes"),
        (name = "service", description = "The log and the service"),
        (name = "tiles", description = "The log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles)"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().unwrap_or_else(|e| {
        // Serializing a document built from literals does not fail; answer with a valid stub.
        serde_json::json!({"openapi": "3.1.0", "info": {"title": "pointsledger", "version": e.to_string()}, "paths": {}}).to_string()
    })
}

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(document);

/// The route that serves the document, to be merged among the reads. It reads no state, so it
/// fits any router's.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
)]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_schemas() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(doc["paths"].as_object().unwrap().len(), 20);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Receipt",
            "Envelope",
            "AccountView",
            "HistoryPage",
            "ErrorBody",
            "Quote",
            "AnchorsPage",
            "CheckpointsPage",
            "ReceiptAnchor",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}
