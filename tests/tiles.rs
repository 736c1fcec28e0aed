//! The C2SP tlog-tiles read API against the real server on loopback: a mirror that knows only
//! the verifier key and reads `/checkpoint`, `/tile/<L>/...` and `/tile/entries/...` (nothing
//! of `/v1`) rebuilds the whole log, and the checkpoint's root and inclusion proofs computed
//! from the tiles alone agree with what the server signs and proves; cache headers, gzip and
//! 404s as docs/PROTOCOL.md §12.12 states them.

mod common;
#[path = "common/server.rs"]
mod server;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::Party;
use pointsledger::checkpoint;
use pointsledger::ledger::Leaf;
use pointsledger::log::layout::{bundle_path, tile_path};
use pointsledger::merkle::{self, Hash, HashSource, MemoryHashes};
use serde_json::Value;
use server::{eventually, Api, TestServer};
use std::io::Read as _;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=2";

/// GET `path` (with `Accept-Encoding: gzip` if `gzip`): status, `Cache-Control`,
/// `Content-Encoding` and the body as sent.
async fn fetch(api: &Api, path: &str, gzip: bool) -> (u16, String, String, Vec<u8>) {
    let mut req = api.http.get(api.url(path));
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let resp = req.send().await.expect("GET");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cache, encoding) = (header("cache-control"), header("content-encoding"));
    let status = resp.status().as_u16();
    (
        status,
        cache,
        encoding,
        resp.bytes().await.expect("body").to_vec(),
    )
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// The leaves of an entry bundle: each behind its big-endian `u16` length.
fn unbundle(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut leaves = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 2, "a torn length prefix");
        let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        assert!(body.len() >= 2 + len, "a torn leaf");
        leaves.push(body[2..2 + len].to_vec());
        body = &body[2 + len..];
    }
    leaves
}

fn hashes(body: &[u8]) -> Vec<Hash> {
    assert_eq!(body.len() % 32, 0);
    body.chunks(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_rebuilds_the_log_from_tiles_alone() {
    let (server, _clock) = TestServer::manual().await;
    let api = server.api.clone();
    let vkey = api.verifier_key().await;
    let (status, _, _, body) = fetch(&api, "/checkpoint", false).await;
    assert_eq!(status, 404, "an empty log has no checkpoint yet");
    let body: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(body["error"], "not_found");

    // 601 entries: two full bundles, one of 89, and two level-1 hashes.
    let shop = Party::new();
    let alice = Party::new();
    server.register(&shop).await;
    let mut order = 0;
    while order < 600 {
        let batch: Vec<Value> = (order..order + 100)
            .map(|i| {
                let env = server
                    .signer
                    .purchase(&shop, &alice, &format!("o{i}"), 1000 + i);
                serde_json::from_slice(&env.to_json_bytes()).expect("json")
            })
            .collect();
        let (status, answer) = api.post("/v1/entries/batch", &Value::from(batch)).await;
        assert_eq!(status, 200, "{answer}");
        order += 100;
    }
    let size = 601u64;
    let note = eventually(10, "a checkpoint of the whole log", || async {
        let (status, cache, _, body) = fetch(&api, "/checkpoint", false).await;
        assert_eq!(status, 200);
        assert_eq!(cache, SHORT);
        let note = String::from_utf8(body).expect("text");
        let cp = checkpoint::open_checkpoint(&note, &vkey).expect("a signed checkpoint");
        (cp.size == size).then_some(note)
    })
    .await;
    let cp = checkpoint::open_checkpoint(&note, &vkey).expect("checkpoint");

    // The entry bundles: every leaf, in order, each naming its own index.
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - 256 * n).min(256) as u16;
        let gzip = n % 2 == 0;
        let (status, cache, encoding, body) =
            fetch(&api, &format!("/{}", bundle_path(n, width)), gzip).await;
        assert_eq!(status, 200, "bundle {n}");
        assert_eq!(cache, if width == 256 { IMMUTABLE } else { SHORT });
        assert_eq!(encoding, if gzip { "gzip" } else { "" });
        let body = if gzip { gunzip(&body) } else { body };
        let bundle = unbundle(&body);
        assert_eq!(bundle.len(), usize::from(width));
        leaves.extend(bundle);
    }
    let mut tree = MemoryHashes::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let decoded = Leaf::decode(i as u64, leaf).expect("a leaf");
        assert_eq!(decoded.index, i as u64);
        tree.append(&merkle::leaf_hash(leaf)).expect("append");
    }
    assert_eq!(
        tree.root().expect("root"),
        cp.root,
        "the bundles reproduce the signed root"
    );

    // The hash tiles: level 0 holds the leaf hashes, level 1 the roots of 256-leaf subtrees.
    for (level, nodes) in [(0u8, size), (1, size >> 8)] {
        for n in 0..nodes.div_ceil(256) {
            let width = (nodes - 256 * n).min(256) as u16;
            let (status, cache, encoding, body) =
                fetch(&api, &format!("/{}", tile_path(level, n, width)), true).await;
            assert_eq!(status, 200, "tile {level}/{n}");
            assert_eq!(cache, if width == 256 { IMMUTABLE } else { SHORT });
            assert_eq!(encoding, "", "hash tiles are not compressed");
            let want: Vec<u64> = (0..u64::from(width))
                .map(|i| merkle::stored_index(level * 8, 256 * n + i))
                .collect();
            assert_eq!(
                hashes(&body),
                tree.read_hashes(&want).expect("hashes"),
                "tile {level}/{n}"
            );
        }
    }

    // Proofs computed from the mirrored tree verify against the signed root, and are the
    // server's own.
    for index in [0u64, 255, 256, 511, 600] {
        let proof = merkle::prove_inclusion(size, index, &tree).expect("prove");
        merkle::verify_inclusion(
            index,
            size,
            &merkle::leaf_hash(&leaves[index as usize]),
            &proof,
            &cp.root,
        )
        .expect("the mirror's proof verifies");
        let (status, served) = api
            .get(&format!("/v1/proofs/inclusion?index={index}&size={size}"))
            .await;
        assert_eq!(status, 200);
        let served: Vec<String> = serde_json::from_value(served["proof"].clone()).expect("proof");
        let mine: Vec<String> = proof.iter().map(|h| B64.encode(h)).collect();
        assert_eq!(served, mine, "leaf {index}");
    }

    // What the log does not hold, or a path not spelt as the spec writes it, is 404.
    for path in [
        "/tile/entries/003",
        "/tile/entries/002.p/90",
        "/tile/1/000",
        "/tile/2/000.p/1",
        "/tile/entries/2",
        "/tile/entries/000.p/256",
        "/tile/entries/000.p/0",
        "/tile/0/x000/001",
        "/tile/64/000",
        "/tile/entries/000/",
    ] {
        let (status, _, _, body) = fetch(&api, path, false).await;
        assert_eq!(status, 404, "{path}");
        let body: Value = serde_json::from_slice(&body).expect("a JSON error");
        assert_eq!(body["error"], "not_found", "{path}");
    }
    // A narrower view of a partial bundle is served too: its first leaves.
    let (status, _, _, body) = fetch(&api, "/tile/entries/002.p/5", false).await;
    assert_eq!(status, 200);
    assert_eq!(unbundle(&body), leaves[512..517].to_vec());
    server.stop().await.expect("stop");
}
