//! `add-checkpoint`: the request body, the checks of c2sp.org/tlog-witness in its order, and the
//! refusal of each check with its status code.

use super::cosignature::Cosigner;
use super::store::Logs;
use super::WitnessError;
use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::merkle::{self, Hash};
use base64::prelude::*;

/// The most consistency proof lines a request may carry (the spec's bound).
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body accepted: the old size line, 63 proof lines and the largest note.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// Why a checkpoint was not cosigned; each maps to the spec's status code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 400: the body does not follow the format, or the old size is past the checkpoint's.
    #[error("{0}")]
    BadRequest(String),
    /// 403: no valid signature by the log's key, or a bad one.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the witness does not know the log.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// 409: the old size is not the size the witness last cosigned, which it names.
    #[error("the latest checkpoint cosigned for this log has size {0}")]
    Conflict(u64),
    /// 422: the checkpoint is not consistent with what the witness cosigned before.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: the witness could not record the checkpoint; nothing was cosigned.
    #[error(transparent)]
    Failed(#[from] WitnessError),
}

/// A parsed request body.
struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a str,
}

/// A decimal with no leading zeros (`0` alone for zero), as the spec writes sizes.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn parse(body: &[u8]) -> Result<Request<'_>, Refusal> {
    let bad = |why: &str| Refusal::BadRequest(why.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let (first, mut rest) = text
        .split_once('\n')
        .ok_or_else(|| bad("the body has no old size line"))?;
    let old = first
        .strip_prefix("old ")
        .and_then(decimal)
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let hash = BASE64_STANDARD
            .decode(line)
            .ok()
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or_else(|| bad("a consistency proof line is not a base64 SHA-256 hash"))?;
        proof.push(hash);
    }
    Ok(Request {
        old,
        proof,
        note: rest,
    })
}

/// Checks one `add-checkpoint` body against what the witness holds and, if every check passes,
/// records the cosigned checkpoint durably and returns the cosignature line and the checkpoint.
/// `logs` must be held exclusively for the whole call: the check of the old size and the record
/// are one step, so two requests cannot roll the record back.
pub(crate) fn add_checkpoint(
    logs: &mut Logs,
    cosigner: &Cosigner,
    body: &[u8],
    now: u64,
) -> Result<(String, Checkpoint), Refusal> {
    let req = parse(body)?;
    let origin = req.note.split('\n').next().unwrap_or("");
    let vkey = logs
        .verifier_key(origin)
        .ok_or_else(|| Refusal::UnknownLog(origin.to_owned()))?
        .to_owned();
    let (cp, mut note) =
        checkpoint::open_checkpoint_note(req.note, &vkey).map_err(|e| match e {
            CheckpointError::MissingSignature { .. } | CheckpointError::BadSignature { .. } => {
                Refusal::Forbidden(e.to_string())
            }
            other => Refusal::BadRequest(format!("the checkpoint is malformed: {other}")),
        })?;
    if req.old > cp.size {
        return Err(Refusal::BadRequest(format!(
            "old size {} is past the checkpoint's size {}",
            req.old, cp.size
        )));
    }
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must carry the empty tree's root".into(),
        ));
    }
    let latest = logs
        .latest(origin)
        .ok_or_else(|| Refusal::UnknownLog(origin.to_owned()))?;
    if req.old != latest.size {
        return Err(Refusal::Conflict(latest.size));
    }
    if req.old == 0 {
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "a consistency proof from size 0 must be empty".into(),
            ));
        }
    } else if req.old == cp.size {
        if cp.root != latest.root || !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(format!(
                "the checkpoint's root at size {} is not the one cosigned before",
                cp.size
            )));
        }
    } else {
        merkle::verify_consistency(req.old, cp.size, &latest.root, &cp.root, &req.proof).map_err(
            |e| {
                Refusal::Unprocessable(format!(
                    "the consistency proof from {} to {} does not verify: {e}",
                    req.old, cp.size
                ))
            },
        )?;
    }
    // The record keeps the log's verified signature and the witness's, nothing else sent along.
    let line = cosigner
        .cosign(&mut note, now)
        .map_err(|e| Refusal::Failed(WitnessError::Config(e.to_string())))?;
    let text = String::from_utf8(note.to_bytes())
        .map_err(|e| Refusal::Failed(WitnessError::Config(e.to_string())))?;
    logs.record(&cp, text)?;
    Ok((line, cp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_to_the_letter() {
        let h = BASE64_STANDARD.encode([7u8; 32]);
        let ok = format!("old 5\n{h}\n{h}\n\nlog\n9\n{h}\n\n— log x\n");
        let req = parse(ok.as_bytes()).expect("parses");
        assert_eq!((req.old, req.proof.len()), (5, 2));
        assert_eq!(req.note, format!("log\n9\n{h}\n\n— log x\n"));
        let zero = parse(b"old 0\n\nlog\n").expect("old 0, no proof");
        assert_eq!((zero.old, zero.proof.len()), (0, 0));
        let many = format!("old 1\n{}\nn\n", format!("{h}\n").repeat(64));
        for bad in [
            "old 05\n\nn\n".to_string(),
            "old -1\n\nn\n".into(),
            "old 1".into(),
            "new 1\n\nn\n".into(),
            "old 1\nAAAA\n\nn\n".into(),
            format!("old 1\n{h}\n"),
            many,
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(Refusal::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
