//! The log's side of c2sp.org/tlog-witness: send a checkpoint with a consistency proof from the
//! size the witness last cosigned, follow a 409 to the size it names, and accept only a
//! cosignature that verifies under the witness's key.

use super::cosignature::{self, CosignerKey};
use crate::merkle::Hash;
use base64::prelude::*;
use std::time::Duration;

/// The largest answer read from a witness: a few signature lines.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// How long one request to a witness may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
pub enum WitnessClientError {
    /// The witness could not be reached or its answer not read.
    #[error("witness {url} unreachable: {why}")]
    Unreachable {
        /// The witness's URL.
        url: String,
        /// What failed.
        why: String,
    },
    /// The witness refused the checkpoint.
    #[error("witness {url} refused ({status}): {message}")]
    Refused {
        /// The witness's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The witness's explanation.
        message: String,
    },
    /// The witness answered, but not with a valid cosignature by its key.
    #[error("witness {url} answered without a valid cosignature: {why}")]
    BadAnswer {
        /// The witness's URL.
        url: String,
        /// What is wrong.
        why: String,
    },
}

/// What one `add-checkpoint` call got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Cosigned: the signature lines, newline-terminated.
    Cosigned(String),
    /// 409: the witness last cosigned this size.
    Conflict(u64),
}

/// The request body: `old N`, the proof lines, an empty line, the note.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&BASE64_STANDARD.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// One `POST <url>/add-checkpoint`.
pub async fn add_checkpoint(
    http: &reqwest::Client,
    url: &str,
    old: u64,
    proof: &[Hash],
    note: &str,
) -> Result<Added, WitnessClientError> {
    let unreachable = |why: String| WitnessClientError::Unreachable {
        url: url.to_owned(),
        why,
    };
    let resp = http
        .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
        .timeout(REQUEST_TIMEOUT)
        .body(request_body(old, proof, note))
        .send()
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    let status = resp.status();
    let conflict = status == reqwest::StatusCode::CONFLICT
        && resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
    let text = read_bounded(resp)
        .await
        .map_err(|why| unreachable(why.to_owned()))?;
    if conflict {
        let size = text
            .strip_suffix('\n')
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| WitnessClientError::BadAnswer {
                url: url.to_owned(),
                why: "a 409 whose body is not a size".into(),
            })?;
        return Ok(Added::Conflict(size));
    }
    if !status.is_success() {
        return Err(WitnessClientError::Refused {
            url: url.to_owned(),
            status: status.as_u16(),
            message: text.trim_end().chars().take(512).collect(),
        });
    }
    Ok(Added::Cosigned(text))
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<String, &'static str> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| "the answer broke off")? {
        if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err("the answer is too long");
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| "the answer is not UTF-8")
}

/// Gets `note` (a checkpoint of size `size`) cosigned by the witness at `url` with key `key`:
/// sends it with a proof from `old` (the size the log believes the witness holds), and on a 409
/// once more from the size the witness names. `prove(from)` gives the consistency proof from
/// `from` to the note's size. Returns the verified cosignature line.
pub async fn cosign<P>(
    http: &reqwest::Client,
    url: &str,
    key: &CosignerKey,
    note: &str,
    old: u64,
    prove: P,
) -> Result<String, WitnessClientError>
where
    P: Fn(u64) -> Result<Vec<Hash>, String>,
{
    let mut old = old;
    for _ in 0..2 {
        let proof = if old == 0 {
            Vec::new()
        } else {
            prove(old).map_err(|why| WitnessClientError::BadAnswer {
                url: url.to_owned(),
                why: format!("no consistency proof from size {old}: {why}"),
            })?
        };
        match add_checkpoint(http, url, old, &proof, note).await? {
            Added::Cosigned(lines) => return own_line(url, key, note, &lines),
            Added::Conflict(size) if size != old => old = size,
            Added::Conflict(size) => {
                return Err(WitnessClientError::BadAnswer {
                    url: url.to_owned(),
                    why: format!("a 409 naming the size sent, {size}"),
                })
            }
        }
    }
    Err(WitnessClientError::BadAnswer {
        url: url.to_owned(),
        why: "the witness's size changed again while it was answered".into(),
    })
}

/// The witness's own valid line among those it answered, checked over the note's body alone.
fn own_line(
    url: &str,
    key: &CosignerKey,
    note: &str,
    lines: &str,
) -> Result<String, WitnessClientError> {
    let bad = |why: String| WitnessClientError::BadAnswer {
        url: url.to_owned(),
        why,
    };
    if lines.is_empty() || !lines.ends_with('\n') || lines.len() > MAX_ANSWER_BYTES {
        return Err(bad("not newline-terminated signature lines".into()));
    }
    let mut last = None;
    for line in lines.lines() {
        match cosignature::check_line(note, line, key) {
            Ok(_) => return Ok(format!("{line}\n")),
            Err(e) => last = Some(e),
        }
    }
    Err(bad(last.map_or_else(
        || format!("no line by {}", key.name),
        |e| e.to_string(),
    )))
}
