//! The C2SP tlog-tiles read API (<https://c2sp.org/tlog-tiles>): `GET /checkpoint`,
//! `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]`, at exactly the paths the
//! spec writes, so that any tlog-tiles client or mirror can read the log without knowing the
//! `/v1` API.
//!
//! A full tile or bundle never changes, so it is served with a year-long `immutable` cache
//! header; a partial one is replaced by a wider one as the log grows, and the checkpoint by the
//! next, so those get a short one. Entry bundles (about 200 KiB full) are gzip-encoded when the
//! client accepts it; hash tiles (8 KiB of random bytes) would not shrink.

use super::error::ServerError;
use super::state::AppState;
use crate::log::layout::{Resource, TILE_WIDTH};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flate2::write::GzEncoder;
use std::io::Write as _;

/// The cache header of a resource that never changes: a full tile or bundle.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The cache header of one the log replaces as it grows: a partial tile, the checkpoint.
pub(crate) const SHORT_LIVED: &str = "public, max-age=2";

/// The tlog-tiles routes, to be merged among the reads.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
}

/// The latest checkpoint (tlog-tiles).
///
/// The signed note, as `GET /v1/checkpoint` serves it, at the path tlog-tiles clients read.
#[utoipa::path(
    get, path = "/checkpoint", tag = "tiles",
    responses(
        (status = 200, description = "The latest signed checkpoint note (`Cache-Control: public, max-age=2`)", body = String, content_type = "text/plain"),
        (status = 404, description = "The log is empty (`not_found`)", body = crate::wire::ErrorBody),
    )
)]
pub(crate) async fn checkpoint(State(st): State<AppState>) -> Result<Response, ServerError> {
    serve(&st, Resource::Checkpoint, &HeaderMap::new()).await
}

/// A hash tile or an entry bundle (tlog-tiles).
///
/// `tile/<L>/<N>[.p/<W>]`: the `W` (256 when full) hashes of tree level `8 L`, nodes
/// `256 N ..`, 32 bytes each. `tile/entries/<N>[.p/<W>]`: leaves `256 N ..`, each behind its
/// length as a big-endian `u16`; gzip-encoded when `Accept-Encoding` allows it. `N` is written
/// in three-digit groups, all but the last prefixed with `x` (`x001/x234/067`); any other
/// spelling is 404.
#[utoipa::path(
    get, path = "/tile/{path}", tag = "tiles",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`")),
    responses(
        (status = 200, description = "The tile's bytes; full ones `Cache-Control: public, max-age=31536000, immutable`, partial ones `public, max-age=2`", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such resource, or not in the log yet (`not_found`)", body = crate::wire::ErrorBody),
    )
)]
pub(crate) async fn tile(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let Path(path) = path?;
    let resource = Resource::parse(&format!("tile/{path}")).map_err(|_| {
        ServerError::NotFound(
            "no such tlog-tiles resource: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>], \
             N in three-digit groups (x001/x234/067)"
                .into(),
        )
    })?;
    serve(&st, resource, &headers).await
}

async fn serve(
    st: &AppState,
    resource: Resource,
    headers: &HeaderMap,
) -> Result<Response, ServerError> {
    let bundle = matches!(resource, Resource::Bundle { .. });
    let gzipped = bundle && accepts_gzip(headers);
    // Compressing takes a few milliseconds for a full bundle: on the blocking pool with the read.
    let body = st
        .read(move |s| match s.tile(&resource)? {
            Some(body) if gzipped => gzip(&body).map(Some),
            found => Ok(found),
        })
        .await?
        .ok_or_else(|| match resource {
            Resource::Checkpoint => {
                ServerError::NotFound("no checkpoint yet: the log is empty".into())
            }
            _ => ServerError::NotFound(format!("{} is not in the log yet", resource.path())),
        })?;
    let (content_type, width) = match resource {
        Resource::Checkpoint => ("text/plain; charset=utf-8", 0),
        Resource::Tile { width, .. } | Resource::Bundle { width, .. } => {
            ("application/octet-stream", width)
        }
    };
    let cache = if u64::from(width) == TILE_WIDTH {
        IMMUTABLE
    } else {
        SHORT_LIVED
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    if bundle {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, ServerError> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|source| ServerError::Io {
            context: "compressing an entry bundle".into(),
            source,
        })
}

/// Whether `Accept-Encoding` allows gzip: `gzip` or `*` listed without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("br, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&with("gzipx, br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
