//! The web explorer: a static page and a few JavaScript modules, embedded in the binary, that
//! read the public API from the browser (`/` and `/explorer/{name}`).
//!
//! The page shows the latest checkpoint and its anchoring, the entries with their decoded
//! payloads, accounts, merchants, and verifies `.tlog-proof` receipts in the browser with
//! WebCrypto against a log key the user pastes. The server only hands out files: every view is
//! built in the browser from the same JSON any client gets, so the explorer can show nothing the
//! API does not.
//!
//! Why the files are embedded rather than read from disk: the binary is the whole deployment,
//! the assets always match the API they were written for, and no request can name a path on
//! the server's file system. The set is fixed at compile time; any other name under
//! `/explorer/` falls through to the API's JSON 404.
//!
//! Headers: a Content-Security-Policy that allows scripts, styles, images and fetches from this
//! origin only and nothing inline (the page builds its DOM with `textContent`, so data from the
//! log cannot become markup, and the policy is a second wall if that ever slips), `nosniff`,
//! no referrer, no framing. Caching: `no-cache` with a strong `ETag` (SHA-256 of the file), so a
//! browser revalidates every load and gets a bodiless 304 when nothing changed; a server upgraded
//! in place is never mixed with stale modules from a cache.

use super::error::ServerError;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The policy every explorer response carries: this origin only, nothing inline, no plugins,
/// no `<base>` rewriting, no form posts, no framing.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The largest asset the build accepts. The explorer is meant to stay small enough to read in
/// one sitting; a file past this is a mistake (a bundle, a data dump) the build should refuse.
pub(super) const MAX_ASSET_BYTES: usize = 128 * 1024;

/// `Cache-Control` of every explorer response: keep, but revalidate before each use (see the
/// module docs for why not `max-age`).
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
struct Asset {
    /// The name under `/explorer/` (`index.html` is served at `/`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The index page, served at `/`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("explorer/index.html"),
};

/// Everything under `/explorer/`.
const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("explorer/app.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("explorer/dom.js"),
    },
    Asset {
        name: "verify.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("explorer/verify.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("explorer/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("explorer/favicon.svg"),
    },
];

// Every asset is bounded at compile time.
const _: () = {
    assert!(INDEX.body.len() <= MAX_ASSET_BYTES);
    let mut i = 0;
    while i < ASSETS.len() {
        assert!(ASSETS[i].body.len() <= MAX_ASSET_BYTES);
        i += 1;
    }
};

/// Strong ETags, computed once: the quoted hex of the first 16 bytes of each file's SHA-256,
/// in the order of [`ASSETS`], then the index page's. Quoted hex is always a valid header
/// value; were one not, that file would simply go without an ETag (and never get a 304).
static ETAGS: LazyLock<Vec<Option<HeaderValue>>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .chain(std::iter::once(&INDEX))
        .map(|a| {
            let digest = Sha256::digest(a.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16]))).ok()
        })
        .collect()
});

/// The explorer's routes, to be merged into the API router (which keeps its layers and its
/// JSON 404 for every other path). They read no state, so they fit any router's.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/explorer/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, ASSETS.len(), &headers)
}

async fn asset(
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let Path(name) = name?;
    let (i, a) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
        .ok_or_else(|| ServerError::NotFound(format!("no explorer asset named {name:?}")))?;
    Ok(serve(a, i, &headers))
}

/// The file, or a bodiless 304 when the browser's copy is current (`If-None-Match`, compared
/// weakly as RFC 9110 §13.1.2 asks).
fn serve(a: &Asset, etag_index: usize, headers: &HeaderMap) -> Response {
    let etag = ETAGS.get(etag_index).cloned().flatten();
    let fresh = etag.as_ref().is_some_and(|etag| {
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes())
    });
    let etag = etag.map(|v| [(header::ETAG, v)]);
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, etag, common).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    )];
    (etag, common, content_type, a.body).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_plain() {
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        for n in names {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'-'),
                "{n}"
            );
        }
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        // Every `/explorer/...` reference of the page and of the modules names an embedded file,
        // and nothing is loaded from another origin.
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for a in ASSETS.iter().chain(std::iter::once(&INDEX)) {
            let text = std::str::from_utf8(a.body)
                .unwrap()
                .replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                a.name
            );
            for part in text.split("/explorer/").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect();
                assert!(names.contains(&name.as_str()), "{} names {name:?}", a.name);
            }
        }
    }
}
