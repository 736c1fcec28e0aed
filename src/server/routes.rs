//! The routes: one handler per endpoint, the shared state they read and the layers around them.
//!
//! Writes go to the sequencer through a [`SequencerHandle`]; a handler waits for the group that
//! holds its entries to be durable. Reads go straight to a [`Store`] clone on the blocking pool,
//! so they never queue behind the writer and never stall the async workers.
//!
//! Layers, outermost first: tracing, metrics and JSON error bodies around every route; then,
//! per route, the body read (its own timeout and size limit, see [`edge::read_body`]), the
//! request timeout (408) and the concurrency limit of the route's class (writes, reads;
//! `/healthz` and `/metrics` have none), taken inside the timeout. The accept loop, connection
//! caps and timeouts are in [`super::edge`].

use super::edge::{self, BodyRule, Client, Slots};
use super::error::{json_errors, ErrorCode, ServerError};
use super::metrics::AnchorGauges;
use super::schemas as doc;
use super::state::AppState;
use crate::checkpoint::TlogProof;
use crate::dsse;
use crate::engine::{self, Quote, StateView};
use crate::errors::Code;
use crate::keys;
use crate::ledger::{LedgerError, Receipt};
use crate::merkle;
use crate::payload::MAX_SAFE_INT;
use crate::state::{NotKept, Store};
use crate::views::{self, AccountView};
use crate::wire::{
    self, AnchorView, AnchorsPage, BatchItem, BatchResponse, CheckpointsPage, ConsistencyProof,
    ErrorBody, Health, HistoryPage, InclusionProof, LeavesPage, LogInfo, MerchantInfo,
    QuoteRequest, ReceiptAnchor, ReceiptDocument, SignedCheckpoint, WitnessView,
};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::IntoParams;

/// Most leaves in one page of `GET /v1/entries`.
pub(super) const MAX_LEAVES_PAGE: u64 = 1000;
/// Most rows in one page of an account's history.
pub(super) const MAX_HISTORY_PAGE: usize = 1000;
/// Most anchors in one page of `GET /v1/anchors`.
pub(super) const MAX_ANCHORS_PAGE: usize = 1000;
/// Most checkpoints in one page of `GET /v1/checkpoints`.
pub(super) const MAX_CHECKPOINTS_PAGE: usize = 1000;
/// Checkpoints per page when `limit` is not given.
pub(super) const DEFAULT_CHECKPOINTS_PAGE: usize = 100;
/// Anchors per page when `limit` is not given.
pub(super) const DEFAULT_ANCHORS_PAGE: usize = 100;
/// History rows per page when `limit` is not given.
pub(super) const DEFAULT_HISTORY_PAGE: usize = 100;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

const APPLICATION_JSON: &str = "application/json";

/// Builds the router with every route and layer; `more_reads` (the OpenAPI document, the
/// explorer) are served as reads, under the read class's timeout and slots.
pub(super) fn router(state: AppState, more_reads: Router<AppState>) -> Router {
    let s = &state.settings;
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, s.request_timeout);
    let body = |limit| {
        middleware::from_fn_with_state(
            BodyRule {
                limit,
                timeout: s.body_timeout,
            },
            edge::read_body,
        )
    };
    let write_slots = Slots(Arc::new(Semaphore::new(s.max_concurrency)));
    let read_slots = Slots(Arc::new(Semaphore::new(s.max_read_concurrency)));
    // Outermost first: the body is read before the request timeout starts and before a slot is
    // taken, so a slow body holds neither.
    let write = |limit| {
        ServiceBuilder::new()
            .layer(body(limit))
            .layer(timeout)
            .layer(middleware::from_fn_with_state(
                write_slots.clone(),
                edge::take_slot,
            ))
    };
    let read = ServiceBuilder::new()
        .layer(timeout)
        .layer(middleware::from_fn_with_state(read_slots, edge::take_slot));
    let writes = Router::new()
        .route(
            "/v1/entries",
            post(submit_entry).layer(write(s.max_body_bytes)),
        )
        .route(
            "/v1/entries/batch",
            post(submit_batch).layer(write(s.max_batch_body_bytes)),
        );
    let reads = Router::new()
        .route("/v1/entries", get(list_entries))
        .route("/v1/entries/{index}", get(get_entry))
        .route("/v1/checkpoint", get(latest_checkpoint))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/checkpoints/{size}", get(checkpoint_at))
        .route("/v1/proofs/inclusion", get(inclusion_proof))
        .route("/v1/proofs/consistency", get(consistency_proof))
        .route("/v1/receipts/{index}", get(receipt))
        .route("/v1/anchors", get(anchors))
        .route("/v1/accounts/{id}", get(account))
        .route("/v1/accounts/{id}/history", get(account_history))
        .route("/v1/merchants/{id}", get(merchant))
        .route("/v1/log", get(log_info))
        .merge(more_reads)
        .route_layer(read.clone());
    let quotes = Router::new().route(
        "/v1/quote",
        post(quote).layer(
            ServiceBuilder::new()
                .layer(body(s.max_body_bytes))
                .layer(read),
        ),
    );
    let service = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route_layer(timeout);
    let layers = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::map_response(json_errors));
    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(quotes)
        .merge(service)
        .fallback(fallback)
        .layer(DefaultBodyLimit::disable())
        .layer(layers)
        .with_state(state)
}

/// Counts every answer by matched route, method and status, and errors by code.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    st.metrics
        .record_request(&route, method.as_str(), resp.status().as_u16());
    if let Some(ErrorCode(code)) = resp.extensions().get::<ErrorCode>() {
        st.metrics.record_error(*code);
    }
    resp
}

async fn fallback() -> ServerError {
    ServerError::NotFound("no such route".into())
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT_PLAIN)], body).into_response()
}

fn check_id(what: &str, id: &str) -> Result<(), ServerError> {
    keys::check_public_id(id).map_err(|e| {
        ServerError::bad_request(
            Code::MalformedId,
            format!("the {what} id must be a public key id (64 lowercase hex digits): {e}"),
        )
    })
}

fn latest_checkpoint_size(store: &Store) -> Result<Option<u64>, ServerError> {
    Ok(store.latest_checkpoint()?.map(|(size, _)| size))
}

fn b64_hashes(hashes: Vec<merkle::Hash>) -> Vec<String> {
    wire::encode_hashes(&hashes)
}

/// Append one entry.
///
/// The envelope is verified, sequenced and committed; the answer comes once it is durable. An
/// envelope identical to one already in the log gets that entry's receipt again.
#[utoipa::path(
    post, path = "/v1/entries", tag = "entries",
    request_body(content = doc::Envelope, description = "A DSSE envelope"),
    responses(
        (status = 200, description = "The entry is durable", body = doc::Receipt),
        (status = 400, description = "Malformed envelope or payload", body = ErrorBody),
        (status = 401, description = "A signature does not verify (`bad_signature`)", body = ErrorBody),
        (status = 403, description = "Wrong signers for the kind (`wrong_signers`, `not_operator`)", body = ErrorBody),
        (status = 409, description = "Conflict (`nonce_reused`, `order_exists`, `merchant_exists`, `address_linked`)", body = ErrorBody),
        (status = 408, description = "The body or the request took too long (`timeout`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "A ledger rule refuses it", body = ErrorBody),
        (status = 429, description = "A consumer-signed write over the per-address rate (`rate_limited`, with `Retry-After`)", body = ErrorBody),
        (status = 503, description = "The store cannot take writes (`unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn submit_entry(
    State(st): State<AppState>,
    client: Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, ServerError> {
    let envelope = dsse::parse(&body?)?;
    st.rate.check(client, envelope.kind())?;
    let result = st
        .submit(vec![envelope])
        .await?
        .pop()
        .ok_or_else(|| ServerError::Unavailable("the writer returned no result".into()))?;
    Ok(Json(result?))
}

/// Append several entries.
///
/// Each envelope is judged on its own, as if submitted alone, in order; the answer is 200 with
/// one result per envelope.
#[utoipa::path(
    post, path = "/v1/entries/batch", tag = "entries",
    request_body(content = Vec<doc::Envelope>, description = "A JSON array of DSSE envelopes"),
    responses(
        (status = 200, description = "One result per envelope, in order", body = BatchResponse),
        (status = 400, description = "The body is not a JSON array (`malformed_json`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`) or too many envelopes (`too_many_entries`)", body = ErrorBody),
        (status = 503, description = "The store cannot take writes (`unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn submit_batch(
    State(st): State<AppState>,
    client: Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResponse>, ServerError> {
    let body = body?;
    let raw: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&body).map_err(|e| {
        ServerError::bad_request(
            Code::MalformedJson,
            format!("the body must be a JSON array of DSSE envelopes: {e}"),
        )
    })?;
    if raw.len() > st.settings.max_batch {
        return Err(ServerError::TooManyEntries {
            count: raw.len(),
            max: st.settings.max_batch,
        });
    }
    let mut slots: Vec<Option<Result<Receipt, ServerError>>> = Vec::with_capacity(raw.len());
    let mut envelopes = Vec::with_capacity(raw.len());
    for r in raw {
        match dsse::parse(r.get().as_bytes()) {
            Ok(env) => match st.rate.check(client, env.kind()) {
                Ok(()) => {
                    envelopes.push(env);
                    slots.push(None);
                }
                Err(e) => slots.push(Some(Err(e))),
            },
            Err(e) => slots.push(Some(Err(e.into()))),
        }
    }
    let mut submitted = if envelopes.is_empty() {
        Vec::new()
    } else {
        st.submit(envelopes).await?
    }
    .into_iter();
    let results = slots
        .into_iter()
        .map(|slot| {
            let result = slot
                .or_else(|| submitted.next().map(|r| r.map_err(ServerError::from)))
                .unwrap_or_else(|| {
                    Err(LedgerError::Internal("the writer returned no result".into()).into())
                });
            match result {
                Ok(receipt) => BatchItem::Accepted { receipt },
                Err(e) => {
                    let code = e.code();
                    st.metrics.record_error(code);
                    BatchItem::Refused {
                        error: code.as_str().to_owned(),
                        message: e.to_string(),
                        status: super::error::status_of(code).as_u16(),
                    }
                }
            }
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

/// One leaf, verbatim.
#[utoipa::path(
    get, path = "/v1/entries/{index}", tag = "entries",
    params(("index" = u64, Path, description = "Leaf index")),
    responses(
        (status = 200, description = "The leaf bytes as stored", body = doc::Leaf, content_type = "application/json"),
        (status = 400, description = "Malformed index", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
    )
)]
pub(crate) async fn get_entry(
    State(st): State<AppState>,
    index: Result<Path<u64>, PathRejection>,
) -> Result<Response, ServerError> {
    let Path(index) = index?;
    let leaf = st
        .read(move |s| Ok(s.leaf(index)?))
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no entry at index {index}")))?;
    Ok(([(header::CONTENT_TYPE, APPLICATION_JSON)], leaf).into_response())
}

/// Query of `GET /v1/entries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LeavesQuery {
    /// First leaf index.
    start: u64,
    /// One past the last leaf wanted (default: the log's size); must be greater than `start`.
    end: Option<u64>,
}

/// A range of leaves.
///
/// At most 1000 leaves per page; when the range was clipped, `next` says where to continue.
/// A range past the end of the log gives an empty page.
#[utoipa::path(
    get, path = "/v1/entries", tag = "entries",
    params(LeavesQuery),
    responses(
        (status = 200, description = "Leaves `start..` (base64)", body = LeavesPage),
        (status = 400, description = "Malformed or empty range", body = ErrorBody),
    )
)]
pub(crate) async fn list_entries(
    State(st): State<AppState>,
    q: Result<Query<LeavesQuery>, QueryRejection>,
) -> Result<Json<LeavesPage>, ServerError> {
    let Query(LeavesQuery { start, end }) = q?;
    if end.is_some_and(|e| e <= start) {
        return Err(ServerError::bad_request(
            Code::OutOfRange,
            "end must be greater than start",
        ));
    }
    st.read(move |s| {
        let size = s.size()?;
        let stop = end.unwrap_or(size).min(size);
        let page_end = stop.min(start.saturating_add(MAX_LEAVES_PAGE));
        let leaves = if start < page_end {
            s.leaves(start, page_end)?
        } else {
            Vec::new()
        };
        Ok(LeavesPage {
            start,
            leaves: leaves.iter().map(|l| B64.encode(l)).collect(),
            next: (page_end < stop).then_some(page_end),
        })
    })
    .await
    .map(Json)
}

/// The latest signed checkpoint.
#[utoipa::path(
    get, path = "/v1/checkpoint", tag = "proofs",
    responses(
        (status = 200, description = "A C2SP signed checkpoint note", body = String, content_type = "text/plain"),
        (status = 404, description = "No checkpoint yet", body = ErrorBody),
    )
)]
pub(crate) async fn latest_checkpoint(State(st): State<AppState>) -> Result<Response, ServerError> {
    let (_, note) = st
        .read(|s| Ok(s.latest_checkpoint()?))
        .await?
        .ok_or_else(|| ServerError::NotFound("no checkpoint yet: the log is empty".into()))?;
    Ok(text(note))
}

/// The checkpoint signed at a tree size.
#[utoipa::path(
    get, path = "/v1/checkpoints/{size}", tag = "proofs",
    params(("size" = u64, Path, description = "Tree size")),
    responses(
        (status = 200, description = "A C2SP signed checkpoint note", body = String, content_type = "text/plain"),
        (status = 404, description = "No checkpoint was signed at that size", body = ErrorBody),
    )
)]
pub(crate) async fn checkpoint_at(
    State(st): State<AppState>,
    size: Result<Path<u64>, PathRejection>,
) -> Result<Response, ServerError> {
    let Path(size) = size?;
    let note = st
        .read(move |s| Ok(s.checkpoint(size)?))
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no checkpoint was signed at size {size}")))?;
    Ok(text(note))
}

/// Query of `GET /v1/checkpoints`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckpointsQuery {
    /// Only checkpoints of tree sizes from this on (default 0; the `next` of the previous page).
    from: Option<u64>,
    /// Most checkpoints in the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// Every checkpoint the log signed, oldest first, a page at a time.
///
/// The log signs a checkpoint whenever it grew during a checkpoint interval and keeps every
/// one. A monitor checks each one's signature and that each is consistent with the next, and
/// keeps the latest it saw: two signed checkpoints that are not of one tree are a split view.
#[utoipa::path(
    get, path = "/v1/checkpoints", tag = "proofs",
    params(CheckpointsQuery),
    responses(
        (status = 200, description = "A page of signed checkpoints", body = CheckpointsPage),
        (status = 400, description = "Malformed query (`malformed_request`)", body = ErrorBody),
    )
)]
pub(crate) async fn checkpoints(
    State(st): State<AppState>,
    query: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<Json<CheckpointsPage>, ServerError> {
    let Query(q) = query?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_CHECKPOINTS_PAGE)
        .clamp(1, MAX_CHECKPOINTS_PAGE);
    st.read(move |s| {
        let (page, after) = take_page(s.checkpoints_from(q.from.unwrap_or(0)), limit)?;
        Ok(Json(CheckpointsPage {
            checkpoints: page
                .into_iter()
                .map(|(size, note)| SignedCheckpoint { size, note })
                .collect(),
            next: after.map(|(size, _)| size),
        }))
    })
    .await
}

/// The first `limit` items, and the one after them if there is one (where the next page
/// starts, or that there is one).
fn take_page<T, E>(
    mut items: impl Iterator<Item = Result<T, E>>,
    limit: usize,
) -> Result<(Vec<T>, Option<T>), E> {
    let page = items.by_ref().take(limit).collect::<Result<Vec<T>, E>>()?;
    Ok((page, items.next().transpose()?))
}

/// Query of `GET /v1/proofs/inclusion`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionQuery {
    /// The leaf index.
    index: u64,
    /// The tree size to prove against: any size from `index + 1` to the log's current size
    /// (default: the latest checkpoint's size).
    size: Option<u64>,
}

/// An inclusion proof.
///
/// `hash` is the leaf hash in base64; `leaf_hash`, the same in hex, is deprecated and goes in
/// the next release.
///
/// `size` may be any tree size the log has reached, not only one with a checkpoint, so that a
/// client can prove against a root it computed itself; against a checkpoint's size the proof
/// checks against its signed root.
#[utoipa::path(
    get, path = "/v1/proofs/inclusion", tag = "proofs",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The audit path", body = InclusionProof),
        (status = 400, description = "index >= size (`out_of_range`)", body = ErrorBody),
        (status = 404, description = "No checkpoint yet, or size beyond the log", body = ErrorBody),
    )
)]
pub(crate) async fn inclusion_proof(
    State(st): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProof>, ServerError> {
    let Query(InclusionQuery { index, size }) = q?;
    st.read(move |s| {
        let tree = s.size()?;
        let size = match size {
            Some(n) => n,
            None => latest_checkpoint_size(s)?
                .ok_or_else(|| ServerError::NotFound("no checkpoint yet".into()))?,
        };
        if size > tree {
            return Err(ServerError::NotFound(format!(
                "the log has {tree} entries; no tree of size {size} yet"
            )));
        }
        if index >= size {
            return Err(ServerError::bad_request(
                Code::OutOfRange,
                format!("leaf {index} is not in the tree of size {size}"),
            ));
        }
        let leaf = s
            .leaf(index)?
            .ok_or_else(|| ServerError::Unavailable(format!("leaf {index} is missing")))?;
        let hash = merkle::leaf_hash(&leaf);
        Ok(InclusionProof {
            index,
            size,
            hash: wire::encode_hash(&hash),
            leaf_hash: hex::encode(hash),
            proof: b64_hashes(merkle::prove_inclusion(size, index, s)?),
        })
    })
    .await
    .map(Json)
}

/// Query of `GET /v1/proofs/consistency`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    /// The older tree size (at least 1).
    from: u64,
    /// The newer tree size, at most the log's size (default: the latest checkpoint's size).
    to: Option<u64>,
}

/// A consistency proof between two tree sizes.
#[utoipa::path(
    get, path = "/v1/proofs/consistency", tag = "proofs",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "from = 0 or from > to (`out_of_range`)", body = ErrorBody),
        (status = 404, description = "No checkpoint yet, or to beyond the log", body = ErrorBody),
    )
)]
pub(crate) async fn consistency_proof(
    State(st): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, ServerError> {
    let Query(ConsistencyQuery { from, to }) = q?;
    st.read(move |s| {
        let tree = s.size()?;
        let to = match to {
            Some(n) => n,
            None => latest_checkpoint_size(s)?
                .ok_or_else(|| ServerError::NotFound("no checkpoint yet".into()))?,
        };
        if from == 0 || from > to {
            return Err(ServerError::bad_request(
                Code::OutOfRange,
                format!("need 1 <= from <= to; got from={from}, to={to}"),
            ));
        }
        if to > tree {
            return Err(ServerError::NotFound(format!(
                "the log has {tree} entries; no tree of size {to} yet"
            )));
        }
        Ok(ConsistencyProof {
            from,
            to,
            proof: b64_hashes(merkle::prove_consistency(from, to, s)?),
        })
    })
    .await
    .map(Json)
}

/// Query of `GET /v1/receipts/{index}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReceiptQuery {
    /// The size of a stored checkpoint to prove against (default: the latest), e.g. the one a
    /// client saved earlier; the anchor then links it to the chain.
    checkpoint: Option<u64>,
}

/// An offline-verifiable receipt for one entry.
///
/// A c2sp.org/tlog-proof against the latest checkpoint (or the one named), with the leaf bytes
/// on its `extra` line; with `Accept: application/json`, the same text wrapped in JSON with the
/// on-chain anchor that covers the checkpoint. In the anchor, `root` and `consistency_proof`
/// (hex) are deprecated twins of `root_hash` and `proof` (base64) and go in the next release.
#[utoipa::path(
    get, path = "/v1/receipts/{index}", tag = "proofs",
    params(("index" = u64, Path, description = "Leaf index"), ReceiptQuery),
    responses(
        (status = 200, description = "The receipt", content(
            (String = "text/plain"),
            (ReceiptDocument = "application/json"),
        )),
        (status = 404, description = "No such entry or checkpoint, or the entry is not covered by it", body = ErrorBody),
    )
)]
pub(crate) async fn receipt(
    State(st): State<AppState>,
    index: Result<Path<u64>, PathRejection>,
    query: Result<Query<ReceiptQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let Path(index) = index?;
    let Query(q) = query?;
    let (proof, checkpoint_size, anchor) = st
        .read(move |s| {
            let (size, note) = match q.checkpoint {
                None => s
                    .latest_checkpoint()?
                    .ok_or_else(|| ServerError::NotFound("no checkpoint yet".into()))?,
                Some(size) => {
                    let note = s.checkpoint(size)?.ok_or_else(|| {
                        ServerError::NotFound(format!("no checkpoint of size {size}"))
                    })?;
                    (size, note)
                }
            };
            if index >= size {
                let what = if index >= s.size()? {
                    "no such entry".to_owned()
                } else if q.checkpoint.is_some() {
                    format!("not covered by the checkpoint of size {size}")
                } else {
                    "not yet covered by a checkpoint; retry after the next one".to_owned()
                };
                return Err(ServerError::NotFound(format!("entry {index}: {what}")));
            }
            let leaf = s
                .leaf(index)?
                .ok_or_else(|| ServerError::Unavailable(format!("leaf {index} is missing")))?;
            let proof = TlogProof {
                extra: Some(leaf),
                index,
                proof: merkle::prove_inclusion(size, index, s)?,
                checkpoint: note,
            };
            Ok((proof.to_text(), size, covering_anchor(s, size)?))
        })
        .await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(APPLICATION_JSON));
    if wants_json {
        return Ok(Json(ReceiptDocument {
            tlog_proof: proof,
            index,
            checkpoint_size,
            anchor,
        })
        .into_response());
    }
    Ok(text(proof))
}

/// The newest mined anchor at or above `size`, with the consistency proof from `size` to it.
fn covering_anchor(s: &Store, size: u64) -> Result<Option<ReceiptAnchor>, ServerError> {
    let (Some(rec), Some((chain_id, contract))) = (s.latest_mined_anchor()?, s.anchor_target()?)
    else {
        return Ok(None);
    };
    if rec.tree_size < size {
        return Ok(None);
    }
    let proof = merkle::prove_consistency(size, rec.tree_size, s)?;
    let root_hash = AnchorView::from(rec.clone()).root_hash;
    Ok(Some(ReceiptAnchor {
        chain_id,
        contract,
        tree_size: rec.tree_size,
        root_hash,
        root: rec.root,
        status: rec.status,
        tx_hash: rec.tx_hash,
        block_number: rec.block_number,
        proof: wire::encode_hashes(&proof),
        consistency_proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// Query of `GET /v1/anchors`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnchorsQuery {
    /// Only anchors of tree sizes below this (the `next` of the previous page).
    before: Option<u64>,
    /// Most anchors in the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// Anchors of checkpoints to the chain, newest first.
///
/// Each record follows one checkpoint: `pending`, `sent` (a transaction in flight), `confirmed`
/// (mined) and `final` (as deep as the confirmation depth, its block hash re-checked). Its root
/// is `root_hash` (base64); `root` (hex) is deprecated and goes in the next release.
#[utoipa::path(
    get, path = "/v1/anchors", tag = "proofs",
    params(AnchorsQuery),
    responses(
        (status = 200, description = "Anchoring status and a page of anchors", body = AnchorsPage),
        (status = 400, description = "Malformed query (`malformed_request`)", body = ErrorBody),
    )
)]
pub(crate) async fn anchors(
    State(st): State<AppState>,
    query: Result<Query<AnchorsQuery>, QueryRejection>,
) -> Result<Json<AnchorsPage>, ServerError> {
    let Query(q) = query?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_ANCHORS_PAGE)
        .clamp(1, MAX_ANCHORS_PAGE);
    let configured = st.settings.anchor.clone();
    let health = st
        .anchor_board
        .as_ref()
        .map(|b| b.get())
        .unwrap_or_default();
    st.read(move |s| {
        let (page, after) = take_page(s.anchors_newest_first(q.before), limit)?;
        let next = after.and(page.last().map(|r| r.tree_size));
        let anchors: Vec<AnchorView> = page.into_iter().map(AnchorView::from).collect();
        let (chain_id, contract) = match (s.anchor_target()?, &configured) {
            (Some((id, c)), _) => (Some(id), Some(c)),
            (None, Some(a)) => (Some(a.chain.chain_id), Some(format!("{:#x}", a.contract))),
            (None, None) => (None, None),
        };
        Ok(AnchorsPage {
            enabled: configured.is_some(),
            chain_id,
            contract,
            confirmations: configured.map(|a| a.confirmations),
            head: health.head,
            last_error: health.last_error,
            anchors,
            next,
        })
    })
    .await
    .map(Json)
}

/// Query of `GET /v1/accounts/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AccountQuery {
    /// A checkpoint's tree size: the account as the log stood at that size (default: now).
    at: Option<u64>,
}

/// An account at the current time, as the log stands now or at a checkpoint (`?at=SIZE`).
///
/// An id the log has never seen (by that size) is an empty account. Balances are computed at
/// the current time either way.
#[utoipa::path(
    get, path = "/v1/accounts/{id}", tag = "accounts",
    params(
        ("id" = String, Path, description = "The account's public key id (64 hex digits)"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "Balance, lots and links", body = doc::AccountView),
        (status = 400, description = "Malformed id (`malformed_id`) or `at` (`malformed_request`)", body = ErrorBody),
        (status = 404, description = "No checkpoint of size `at` (`not_found`)", body = ErrorBody),
        (status = 410, description = "The server no longer keeps the account as it was at `at` (`not_kept`)", body = ErrorBody),
    )
)]
pub(crate) async fn account(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<AccountView>, ServerError> {
    let Path(id) = id?;
    check_id("account", &id)?;
    let Query(q) = q?;
    let now = st.clock.now_ms();
    let versions = st.settings.account_versions;
    st.read(move |s| {
        let acc = match q.at {
            None => s.account(&id)?.unwrap_or_default(),
            Some(at) => {
                if s.checkpoint(at)?.is_none() {
                    return Err(ServerError::NotFound(format!("no checkpoint of size {at}")));
                }
                s.account_at(&id, at)?.map_err(|e| {
                    ServerError::NotKept(match e {
                        NotKept::Older { from: Some(from) } => format!(
                            "the server keeps accounts as they were at checkpoints from size \
                             {from} on (its most recent {versions} entries, since it started); \
                             ask at a newer checkpoint"
                        ),
                        NotKept::Older { from: None } | NotKept::NotABoundary => format!(
                            "the server keeps no account versions at size {at}: it keeps them \
                             for the checkpoints it signed since it started, of its most recent \
                             {versions} entries"
                        ),
                    })
                })?
            }
        };
        Ok(AccountView::new(&id, acc, now))
    })
    .await
    .map(Json)
}

/// Query of `GET /v1/accounts/{id}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// First leaf index to include (default 0).
    from: Option<u64>,
    /// Most rows (1 to 1000, default 100).
    limit: Option<usize>,
}

/// An account's history: the entries that changed its record, in leaf order.
///
/// An entry is listed exactly when the account differs after it: points moved (a change names
/// the account), a lot was created, drawn or swept, or its debt, referrer binding, referee or
/// purchase count, referral rewards or EVM link changed. So a `referral.accept` is listed for
/// both sides and an `account.link_evm` for the consumer with `delta` 0; an entry that only
/// reads the account is not (docs/PROTOCOL.md §12.4).
#[utoipa::path(
    get, path = "/v1/accounts/{id}/history", tag = "accounts",
    params(("id" = String, Path, description = "The account's public key id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of rows", body = HistoryPage),
        (status = 400, description = "Malformed id or limit out of 1..=1000", body = ErrorBody),
    )
)]
pub(crate) async fn account_history(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ServerError> {
    let Path(id) = id?;
    let Query(HistoryQuery { from, limit }) = q?;
    check_id("account", &id)?;
    let limit = limit.unwrap_or(DEFAULT_HISTORY_PAGE);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ServerError::bad_request(
            Code::OutOfRange,
            format!("limit must be 1 to {MAX_HISTORY_PAGE}"),
        ));
    }
    st.read(move |s| {
        let mut rows = views::history(s, &id, from.unwrap_or(0), limit + 1)?;
        let next = if rows.len() > limit {
            rows.pop().map(|r| r.index)
        } else {
            None
        };
        Ok(HistoryPage { rows, next })
    })
    .await
    .map(Json)
}

/// A registered merchant and its program.
#[utoipa::path(
    get, path = "/v1/merchants/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The merchant's public key id")),
    responses(
        (status = 200, description = "The merchant", body = MerchantInfo),
        (status = 400, description = "Malformed id (`malformed_id`)", body = ErrorBody),
        (status = 404, description = "Not registered", body = ErrorBody),
    )
)]
pub(crate) async fn merchant(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<MerchantInfo>, ServerError> {
    let Path(id) = id?;
    check_id("merchant", &id)?;
    st.read(move |s| {
        let m = s
            .merchant(&id)?
            .ok_or_else(|| ServerError::NotFound(format!("merchant {id} is not registered")))?;
        Ok(MerchantInfo {
            merchant: id,
            name: m.name,
            rules: m.rules,
            registered_at_index: m.registered_at_index,
        })
    })
    .await
    .map(Json)
}

/// What a merchant may offer a consumer on an order now; changes nothing.
#[utoipa::path(
    post, path = "/v1/quote", tag = "accounts",
    request_body = QuoteRequest,
    responses(
        (status = 200, description = "The quote", body = doc::Quote),
        (status = 400, description = "Malformed body, id or amount", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "Unknown merchant (`unknown_merchant`)", body = ErrorBody),
    )
)]
pub(crate) async fn quote(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Quote>, ServerError> {
    let req: QuoteRequest = serde_json::from_slice(&body?).map_err(|e| {
        ServerError::bad_request(Code::MalformedJson, format!("malformed quote request: {e}"))
    })?;
    check_id("merchant", &req.merchant)?;
    check_id("consumer", &req.consumer)?;
    if !(1..=MAX_SAFE_INT).contains(&req.order_amount) {
        return Err(ServerError::bad_request(
            Code::OutOfRange,
            format!("order_amount must be 1 to {MAX_SAFE_INT}"),
        ));
    }
    let now = st.clock.now_ms();
    st.read(move |s| {
        Ok(engine::quote(
            s,
            &req.merchant,
            &req.consumer,
            req.order_amount,
            now,
        )?)
    })
    .await
    .map(Json)
}

/// The log's identity and size.
#[utoipa::path(
    get, path = "/v1/log", tag = "service",
    responses(
        (status = 200, description = "Origin, keys and sizes", body = LogInfo),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    )
)]
pub(crate) async fn log_info(State(st): State<AppState>) -> Result<Json<LogInfo>, ServerError> {
    let (size, checkpoint_size) = st
        .read(|s| Ok((s.size()?, latest_checkpoint_size(s)?)))
        .await?;
    let (witnesses, witnessed_size) = match &st.witness_board {
        None => (Vec::new(), None),
        Some(board) => {
            let (each, witnessed) = board.get();
            let views = st
                .settings
                .witnesses
                .iter()
                .zip(each)
                .map(|(target, h)| WitnessView {
                    key: target.key.vkey(),
                    cosigned_size: (h.cosigned_size > 0).then_some(h.cosigned_size),
                    failures: h.failures,
                    last_error: h.last_error,
                })
                .collect();
            (views, (witnessed > 0).then_some(witnessed))
        }
    };
    Ok(Json(LogInfo {
        origin: st.log.origin.clone(),
        verifier_key: st.log.verifier_key.clone(),
        operator_key: st.log.operator_key.clone(),
        size,
        checkpoint_size,
        witnesses,
        witness_quorum: st.settings.witness_quorum,
        witnessed_size,
    }))
}

/// Liveness and the log's size.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses(
        (status = 200, description = "The service is up", body = Health),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    )
)]
pub(crate) async fn healthz(State(st): State<AppState>) -> Result<Json<Health>, ServerError> {
    let size = st.read(|s| Ok(s.size()?)).await?;
    Ok(Json(Health {
        status: "ok".into(),
        size,
    }))
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(State(st): State<AppState>) -> Result<Response, ServerError> {
    let (size, cp, anchored) = st
        .read(|s| {
            let anchored = s.latest_mined_anchor()?.map_or(0, |r| r.tree_size);
            Ok((s.size()?, latest_checkpoint_size(s)?.unwrap_or(0), anchored))
        })
        .await?;
    let anchoring = st.anchor_board.as_ref().map(|b| {
        let health = b.get();
        AnchorGauges {
            anchored_size: anchored,
            failures: health.failures,
            lost: health.lost,
        }
    });
    let body = st.metrics.render(
        size,
        cp,
        &st.sequencer,
        anchoring,
        st.witness_board.as_deref(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
