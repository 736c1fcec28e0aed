//! An HTTP client for a pointsledger server, used by the command line's `--server` mode and by
//! `pointsledger bench http`.
//!
//! It speaks the API documented in `GET /v1/openapi.json`, decoding answers into the same
//! [`crate::wire`] types the server serializes. Responses are checked as they are
//! decoded: a receipt's leaf can be verified against a checkpoint the caller trusts (see
//! `pointsledger verify`); nothing here trusts the server beyond decoding its answers.

use crate::dsse::Envelope;
use crate::engine::Quote;
use crate::ledger::Receipt;
use crate::merkle::Hash;
use crate::views::AccountView;
use crate::wire::{
    self, AnchorsPage, BatchItem, BatchResponse, ConsistencyProof, ErrorBody, HistoryPage,
    InclusionProof, LeavesPage, LogInfo, QuoteRequest, ReceiptDocument,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an http(s) URL.
    #[error("bad server URL {0:?}: expected http://HOST:PORT or https://HOST")]
    BadUrl(String),
    /// The server could not be reached or the connection failed.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer does not decode as expected.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The request URL.
        url: String,
        /// What did not decode.
        reason: String,
    },
}

impl ClientError {
    /// The API error code, or a transport-level code.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::BadUrl(_) => "bad_url",
            ClientError::Transport { .. } => "unreachable",
            ClientError::Decode { .. } => "bad_answer",
        }
    }
}

/// A pointsledger server.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `url` (keep-alive connections, 30 s timeout per request).
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(Client { base, http })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.to_owned(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_body(resp, url, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Err(ClientError::Api {
                status,
                code: e.error,
                message: e.message,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(self.http.get(&url), &url).await?;
        decode_json(resp, &url).await
    }

    async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(self.http.get(&url), &url).await?;
        let body = read_body(resp, &url, MAX_BODY).await?;
        String::from_utf8(body).map_err(|_| ClientError::Decode {
            url,
            reason: "the text is not UTF-8".into(),
        })
    }

    async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(self.http.post(&url).json(body), &url).await?;
        decode_json(resp, &url).await
    }

    /// Submits one envelope; returns its receipt once the entry is durable.
    pub async fn submit(&self, envelope: &Envelope) -> Result<Receipt, ClientError> {
        let url = format!("{}/v1/entries", self.base);
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope.to_json_bytes());
        let resp = self.send(req, &url).await?;
        decode_json(resp, &url).await
    }

    /// Submits envelopes in one request; one result each, in order.
    pub async fn submit_batch(
        &self,
        envelopes: &[Envelope],
    ) -> Result<Vec<BatchItem>, ClientError> {
        let body: Vec<serde_json::Value> = envelopes.iter().map(Envelope::to_json).collect();
        let results: BatchResponse = self.post_json("/v1/entries/batch", &body).await?;
        if results.results.len() != envelopes.len() {
            return Err(ClientError::Decode {
                url: format!("{}/v1/entries/batch", self.base),
                reason: format!(
                    "{} results for {} entries",
                    results.results.len(),
                    envelopes.len()
                ),
            });
        }
        Ok(results.results)
    }

    /// An account at the server's current time.
    pub async fn account(&self, id: &str) -> Result<AccountView, ClientError> {
        self.get_json(&format!("/v1/accounts/{id}")).await
    }

    /// An account as the log stood at the checkpoint of `size` (`?at=SIZE`).
    pub async fn account_at(&self, id: &str, size: u64) -> Result<AccountView, ClientError> {
        self.get_json(&format!("/v1/accounts/{id}?at={size}")).await
    }

    /// A page of an account's history.
    pub async fn history(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<HistoryPage, ClientError> {
        self.get_json(&format!(
            "/v1/accounts/{id}/history?from={from}&limit={limit}"
        ))
        .await
    }

    /// The latest signed checkpoint.
    pub async fn checkpoint(&self) -> Result<String, ClientError> {
        self.get_text("/v1/checkpoint").await
    }

    /// The log's description: origin, verifier key, operator key, size.
    pub async fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log").await
    }

    /// Leaves `start..end`, fetched page by page.
    pub async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut out = Vec::new();
        let mut next = start;
        while next < end {
            let page = self.leaves_page(next, end).await?;
            if page.is_empty() {
                return Err(ClientError::Decode {
                    url: format!("/v1/entries?start={next}&end={end}"),
                    reason: "empty page before the end".into(),
                });
            }
            out.extend(page);
            next = start + out.len() as u64;
        }
        Ok(out)
    }

    /// One page of leaves from `start` (at most `end - start`, as many as the server sends),
    /// as served: callers that check the log look at what each leaf says its index is.
    pub async fn leaves_page(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ClientError> {
        let url = format!("/v1/entries?start={start}&end={end}");
        let page: LeavesPage = self.get_json(&url).await?;
        if page.start != start {
            return Err(ClientError::Decode {
                url,
                reason: format!(
                    "asked for leaves from {start}, got a page from {}",
                    page.start
                ),
            });
        }
        page.leaves
            .into_iter()
            .map(|l| {
                B64.decode(l).map_err(|e| ClientError::Decode {
                    url: url.clone(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The leaves of entry bundle `index`, `width` of them (256 = full): the tlog-tiles
    /// `tile/entries/<N>[.p/<W>]`, asked for gzip-encoded. Decompression stops at the largest
    /// bundle that can exist, so a hostile server cannot make the client inflate more.
    pub async fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<Vec<u8>>, ClientError> {
        use std::io::Read as _;
        const MAX_BUNDLE: u64 = 256 * (2 + crate::log::layout::MAX_LEAF_LEN as u64);
        let url = format!(
            "{}/{}",
            self.base,
            crate::log::layout::bundle_path(index, width)
        );
        let req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip");
        let resp = self.send(req, &url).await?;
        let gzipped = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let decode = |reason: String| ClientError::Decode {
            url: url.clone(),
            reason,
        };
        let body = read_body(resp, &url, MAX_BUNDLE + (64 << 10)).await?;
        let raw = if gzipped {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BUNDLE + 1)
                .read_to_end(&mut out)
                .map_err(|e| decode(format!("gzip: {e}")))?;
            out
        } else {
            body.to_vec()
        };
        if raw.len() as u64 > MAX_BUNDLE {
            return Err(decode("larger than any entry bundle".into()));
        }
        let leaves = crate::log::layout::unbundle(&raw).map_err(|e| decode(e.to_string()))?;
        if leaves.len() != usize::from(width) {
            return Err(decode(format!(
                "{} leaves in a bundle of {width}",
                leaves.len()
            )));
        }
        Ok(leaves)
    }

    /// The signed checkpoint note cut at tree size `size`.
    pub async fn checkpoint_at(&self, size: u64) -> Result<String, ClientError> {
        self.get_text(&format!("/v1/checkpoints/{size}")).await
    }

    /// The bytes of leaf `index`, verbatim.
    pub async fn leaf(&self, index: u64) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/entries/{index}", self.base);
        let resp = self.send(self.http.get(&url), &url).await?;
        read_body(resp, &url, MAX_BODY).await
    }

    /// The inclusion proof of leaf `index` in the tree of `size`.
    pub async fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, ClientError> {
        let url = format!("/v1/proofs/inclusion?index={index}&size={size}");
        let p: InclusionProof = self.get_json(&url).await?;
        if p.index != index || p.size != size {
            return Err(ClientError::Decode {
                url,
                reason: format!(
                    "asked for leaf {index} in size {size}, got leaf {} in size {}",
                    p.index, p.size
                ),
            });
        }
        wire::decode_hashes("an inclusion proof hash", &p.proof).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// The tlog-proof receipt of entry `index` against the latest checkpoint.
    pub async fn receipt(&self, index: u64) -> Result<String, ClientError> {
        self.get_text(&format!("/v1/receipts/{index}")).await
    }

    /// The receipt of entry `index` as JSON (the tlog-proof and the anchor covering it),
    /// against the checkpoint of size `checkpoint` or the latest.
    pub async fn receipt_document(
        &self,
        index: u64,
        checkpoint: Option<u64>,
    ) -> Result<ReceiptDocument, ClientError> {
        let query = checkpoint.map_or_else(String::new, |c| format!("?checkpoint={c}"));
        let url = format!("{}/v1/receipts/{index}{query}", self.base);
        let req = self.http.get(&url).header("accept", "application/json");
        let resp = self.send(req, &url).await?;
        decode_json(resp, &url).await
    }

    /// Every anchor record the server keeps, oldest first (at most `limit`).
    pub async fn anchors(&self, limit: usize) -> Result<Vec<wire::AnchorView>, ClientError> {
        let mut out = Vec::new();
        let mut before: Option<u64> = None;
        while out.len() < limit {
            let query = before.map_or_else(String::new, |b| format!("&before={b}"));
            let page: AnchorsPage = self
                .get_json(&format!("/v1/anchors?limit=1000{query}"))
                .await?;
            out.extend(page.anchors);
            match page.next {
                Some(n) if Some(n) != before => before = Some(n),
                _ => break,
            }
        }
        out.truncate(limit);
        out.reverse();
        Ok(out)
    }

    /// A page of the checkpoints the log signed, of sizes from `from` on, oldest first (the
    /// server caps `limit` at 1000).
    pub async fn checkpoints(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<wire::CheckpointsPage, ClientError> {
        self.get_json(&format!("/v1/checkpoints?from={from}&limit={limit}"))
            .await
    }

    /// A consistency proof from `from` to `to`, decoded (not verified: the caller holds the
    /// roots).
    pub async fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, ClientError> {
        let url = format!("/v1/proofs/consistency?from={from}&to={to}");
        let p: ConsistencyProof = self.get_json(&url).await?;
        if p.from != from || p.to != to {
            return Err(ClientError::Decode {
                url,
                reason: format!("asked for {from}..{to}, got {}..{}", p.from, p.to),
            });
        }
        wire::decode_hashes("a consistency proof hash", &p.proof).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// A quote for an order.
    pub async fn quote(
        &self,
        merchant: &str,
        consumer: &str,
        order_amount: u64,
    ) -> Result<Quote, ClientError> {
        let body = QuoteRequest {
            merchant: merchant.to_owned(),
            consumer: consumer.to_owned(),
            order_amount,
        };
        self.post_json("/v1/quote", &body).await
    }
}

/// Most bytes read of any answer: above the largest page the API serves (1000 leaves of up to
/// 64 KiB each, in JSON), so that a hostile server cannot make a client hold more.
const MAX_BODY: u64 = 160 << 20;
/// Most bytes read of an error answer (its message is cut to 200 characters anyway).
const MAX_ERROR_BODY: u64 = 64 << 10;

/// The body of `resp`, refused once it passes `max` bytes.
async fn read_body(
    mut resp: reqwest::Response,
    url: &str,
    max: u64,
) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_owned(),
            source,
        })?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(ClientError::Decode {
                url: url.to_owned(),
                reason: format!("the answer is larger than {max} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn decode_json<T: DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> Result<T, ClientError> {
    let bytes = read_body(resp, url, MAX_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}
