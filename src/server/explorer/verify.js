// Offline verification of pointsledger receipts (c2sp.org/tlog-proof, docs/PROTOCOL.md §9.4),
// in the browser, with WebCrypto only: SHA-256 and Ed25519 through crypto.subtle.
//
// Nothing here talks to the server. The only root of trust is the log verifier key the caller
// passes (what the user pasted); the receipt is untrusted input and is parsed as strictly as
// `pointsledger verify` parses it (src/checkpoint.rs), so that both reach the same verdict.
//
// Ed25519 follows `verify_strict` of the Rust side (PROTOCOL.md §3): besides the signature
// equation that WebCrypto checks, S must be below the group order and neither the public key
// nor R may be a point of small order or a non-canonical encoding. WebCrypto alone does not
// promise those, and an entry the server accepted always satisfies them.
//
// The module works unchanged in Node (globalThis.crypto), which keeps it testable without a
// browser.

export const MAX_RECEIPT_BYTES = 131072;
const MAX_NOTE_BYTES = 16384;
const MAX_NOTE_SIGNATURES = 16;
const MAX_PROOF_HASHES = 64;
const MAX_EXTRA_BYTES = 65536;
const MAX_VERIFIER_KEY_BYTES = 1024;
const MAX_SIGNATURES = 4;
const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
const PAYLOAD_TYPE = /^application\/vnd\.pointsledger\.([a-z0-9._]{1,32})\+json$/;

// Who must sign each kind (PROTOCOL.md §4): the payload members that name the signers.
const SIGNER_FIELDS = {
  'merchant.register': ['operator'],
  'merchant.update': ['operator'],
  purchase: ['merchant'],
  redeem: ['consumer', 'merchant'],
  refund: ['merchant'],
  'referral.accept': ['consumer'],
  'account.link_evm': ['consumer'],
};

/** The checks of a receipt, in the order they run; the first that fails decides the verdict. */
export const STEPS = [
  'Receipt format',
  'Log verifier key',
  'Checkpoint signature',
  'Checkpoint',
  'Leaf hash',
  'Inclusion proof',
  'Leaf content',
  'Envelope signatures',
  'Signers',
  'Witnesses',
];

/**
 * The code of each step's failure, as the library's verifier names it (`ReceiptError::code` in
 * src/receipt.rs): both verifiers are held to the known-answer vectors in
 * tests/vectors/receipts/receipts.json, verdict and code alike.
 */
export const STEP_CODES = {
  'Receipt format': 'malformed_receipt',
  'Log verifier key': 'bad_verifier_key',
  'Checkpoint signature': 'bad_checkpoint_signature',
  Checkpoint: 'bad_checkpoint',
  'Leaf hash': 'malformed_leaf',
  'Inclusion proof': 'bad_inclusion_proof',
  'Leaf content': 'malformed_leaf',
  'Envelope signatures': 'bad_envelope_signature',
  Signers: 'wrong_signers',
  Witnesses: 'not_witnessed',
};

/** A reason to refuse: the message is shown to people as is. */
export class VerifyError extends Error {}

function fail(message) {
  throw new VerifyError(message);
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(s, what) {
  if (!/^(?:[0-9a-f]{2})*$/.test(s)) fail(`${what} is not lowercase hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function b64encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Standard base64 with padding, canonical only (as the Rust side accepts it). */
export function b64decode(s, what) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    fail(`${what} is not base64`);
  }
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  if (b64encode(bytes) !== s) fail(`${what} is not canonical base64`);
  return bytes;
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) {
    fail(
      'WebCrypto is not available: browsers offer it only to secure contexts. Open the ' +
        'explorer over HTTPS or on localhost.',
    );
  }
  return s;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

/** SHA-256(0x00 || leaf), the RFC 6962 leaf hash. */
export async function leafHash(leaf) {
  return sha256(concat(Uint8Array.of(0), leaf));
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// --- Ed25519 -----------------------------------------------------------------------------------

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
// The y coordinates of the eight points of small order (either sign of x): 0, 1, p - 1 and the
// two of order 8. Checked against the curve equation when this list was written.
const SMALL_ORDER_Y = new Set([
  0n,
  1n,
  P - 1n,
  leInt(fromHexUnchecked('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05')),
  leInt(fromHexUnchecked('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a')),
]);

function fromHexUnchecked(s) {
  return Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16));
}

function leInt(bytes) {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** Why a 32-byte point encoding is refused, or null: non-canonical y or small order. */
function pointProblem(bytes) {
  const y = leInt(bytes) & ((1n << 255n) - 1n);
  if (y >= P) return 'is not a canonical point encoding';
  if (SMALL_ORDER_Y.has(y)) return 'is a point of small order (a weak key)';
  return null;
}

async function importEd25519(pub, what) {
  const problem = pointProblem(pub);
  if (problem) fail(`${what} ${problem}`);
  try {
    return await subtle().importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    if (e && e.name === 'NotSupportedError') {
      fail('this browser has no Ed25519 in WebCrypto (current Chromium and Firefox have it)');
    }
    fail(`${what} is not an Ed25519 public key (${e && e.message})`);
  }
}

/** Strict Ed25519 verification of `sig` (64 bytes) over `msg` by `key` (a CryptoKey). */
async function ed25519Verify(key, sig, msg) {
  if (sig.length !== 64) return false;
  if (pointProblem(sig.subarray(0, 32))) return false;
  if (leInt(sig.subarray(32)) >= L) return false;
  return subtle().verify({ name: 'Ed25519' }, key, sig, msg);
}

// --- Parsing -----------------------------------------------------------------------------------

/** A decimal without sign or leading zeros, as a BigInt below 2^64. */
function parseDecimal(s, what) {
  if (!/^(?:0|[1-9][0-9]*)$/.test(s)) fail(`${what} is not a decimal number`);
  const v = BigInt(s);
  if (v >= 2n ** 64n) fail(`${what} is too large`);
  return v;
}

/** A signed-note key name: not empty, no whitespace or control characters, no '+'. */
function validKeyName(name) {
  return name.length > 0 && !/[\s+\p{Cc}]/u.test(name);
}

/**
 * Parses a log verifier key `name+keyid+base64(0x01 || pubkey)` (PROTOCOL.md §9.3) and checks
 * that the key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey).
 */
export async function parseVerifierKey(text) {
  const s = text.trim();
  if (s.length === 0) fail('no log verifier key was given');
  if (s.length > MAX_VERIFIER_KEY_BYTES) fail('the log verifier key is too long');
  const a = s.indexOf('+');
  const b = a < 0 ? -1 : s.indexOf('+', a + 1);
  if (b < 0) fail('the log verifier key must read name+keyid+key');
  const name = s.slice(0, a);
  const idHex = s.slice(a + 1, b);
  if (!validKeyName(name)) fail('the log verifier key has an invalid name');
  if (!/^[0-9a-f]{8}$/.test(idHex)) fail('the key id must be 8 lowercase hex digits');
  const raw = b64decode(s.slice(b + 1), 'the public key of the log verifier key');
  if (raw.length !== 33) fail('the log verifier key must hold 0x01 and a 32-byte key');
  if (raw[0] !== 0x01) fail(`the log verifier key's algorithm ${raw[0]} is not Ed25519 (1)`);
  const keyId = (await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a), raw))).subarray(0, 4);
  if (toHex(keyId) !== idHex) {
    fail(`the key id ${idHex} does not match the key (it should be ${toHex(keyId)})`);
  }
  const pub = raw.subarray(1);
  const key = await importEd25519(pub, 'the log key');
  return { name, keyId, keyIdHex: idHex, pub, key };
}

/**
 * Parses a witness key `name+keyid+base64(0x04 || pubkey)` (PROTOCOL.md §9.6, c2sp.org/
 * tlog-cosignature) and checks that the key id is the first 4 bytes of
 * SHA-256(name || 0x0A || 0x04 || pubkey).
 */
export async function parseWitnessKey(text) {
  const s = text.trim();
  if (s.length > MAX_VERIFIER_KEY_BYTES) fail('a witness key is too long');
  const a = s.indexOf('+');
  const b = a < 0 ? -1 : s.indexOf('+', a + 1);
  if (b < 0) fail(`the witness key ${s} must read name+keyid+key`);
  const name = s.slice(0, a);
  const idHex = s.slice(a + 1, b);
  if (!validKeyName(name)) fail(`the witness key ${s} has an invalid name`);
  if (!/^[0-9a-f]{8}$/.test(idHex)) fail(`the witness key ${name}: the key id must be 8 lowercase hex digits`);
  const raw = b64decode(s.slice(b + 1), `the public key of the witness key ${name}`);
  if (raw.length !== 33) fail(`the witness key ${name} must hold 0x04 and a 32-byte key`);
  if (raw[0] !== 0x04) fail(`the witness key ${name} has signature type ${raw[0]}, not cosignature/v1 (4)`);
  const keyId = (await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a), raw))).subarray(0, 4);
  if (toHex(keyId) !== idHex) fail(`the witness key ${name}: the key id ${idHex} does not match the key`);
  const key = await importEd25519(raw.subarray(1), `the witness key ${name}`);
  return { name, keyId, key, pubHex: toHex(raw.subarray(1)) };
}

/**
 * Sorts witnesses by what a checkpoint note carries for them: `valid` ([{ name, time }], a
 * `cosignature/v1` line that verifies over `body`), `missing` (no line under the witness's name
 * and key id) and `bad` (a line that does not verify). Lines of other keys are ignored. A public
 * key given twice (under any names) is refused: a witness counts once toward a quorum.
 */
export async function cosignatureStatus(note, body, witnesses) {
  const seen = new Set();
  for (const w of witnesses) {
    if (seen.has(w.pubHex)) fail(`the witness key of ${w.name} is given more than once: each witness counts once toward a quorum`);
    seen.add(w.pubHex);
  }
  const lines = note.slice(note.lastIndexOf('\n\n') + 2).split('\n');
  const valid = [];
  const missing = [];
  const bad = [];
  for (const w of witnesses) {
    let found = null;
    for (const line of lines) {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m || m[1] !== w.name) continue;
      const raw = b64decode(m[2], 'a cosignature');
      if (raw.length >= 4 && equalBytes(raw.subarray(0, 4), w.keyId)) {
        found = raw.subarray(4);
        break;
      }
    }
    if (!found) {
      missing.push(w.name);
      continue;
    }
    let ok = found.length === 72;
    let time = 0n;
    if (ok) {
      time = new DataView(found.buffer, found.byteOffset, 8).getBigUint64(0);
      ok = time < 2n ** 63n;
    }
    if (ok) {
      const msg = concat(utf8.encode(`cosignature/v1\ntime ${time}\n`), utf8.encode(body));
      ok = await ed25519Verify(w.key, found.subarray(8), msg);
    }
    if (ok) valid.push({ name: w.name, time: Number(time) });
    else bad.push(w.name);
  }
  return { valid, missing, bad };
}

/**
 * Checks the `cosignature/v1` lines of a checkpoint note against witness keys: resolves to the
 * valid ones `[{ name, time }]` when at least `quorum` witnesses cosigned `body`, and fails
 * naming the missing and the bad ones otherwise, as `check_quorum` in
 * src/witness/cosignature.rs does.
 */
export async function verifyCosignatures(note, body, witnesses, quorum) {
  const { valid, missing, bad } = await cosignatureStatus(note, body, witnesses);
  if (valid.length < quorum) {
    const list = (names) => (names.length ? names.join(', ') : 'none');
    fail(
      `${valid.length} valid witness cosignatures, ${quorum} required ` +
        `(missing: ${list(missing)}; bad: ${list(bad)})`,
    );
  }
  return valid;
}

/** Parses a c2sp.org/tlog-proof text with the strictness of src/checkpoint.rs. */
export function parseTlogProof(text) {
  if (utf8.encode(text).length > MAX_RECEIPT_BYTES) {
    fail(`the receipt is larger than ${MAX_RECEIPT_BYTES} bytes`);
  }
  const cut = text.indexOf('\n\n');
  if (cut < 0) fail('no empty line before the checkpoint');
  const lines = text.slice(0, cut).split('\n');
  const checkpoint = text.slice(cut + 2);
  if (lines[0] !== TLOG_PROOF_HEADER) fail(`the first line is not ${TLOG_PROOF_HEADER}`);
  let i = 1;
  let extra = null;
  if (lines[i] !== undefined && lines[i].startsWith('extra ')) {
    const b64 = lines[i].slice(6);
    if (b64.length > Math.ceil(MAX_EXTRA_BYTES / 3) * 4) fail('the extra data is too large');
    extra = b64decode(b64, 'the extra line');
    i += 1;
  }
  if (lines[i] === undefined || !lines[i].startsWith('index ')) fail('missing index line');
  const index = parseDecimal(lines[i].slice(6), 'the index');
  const proof = [];
  for (const line of lines.slice(i + 1)) {
    if (proof.length === MAX_PROOF_HASHES) fail(`more than ${MAX_PROOF_HASHES} proof hashes`);
    if (line.length !== 44) fail('a proof line is not one base64 SHA-256 hash');
    proof.push(b64decode(line, 'a proof line'));
  }
  if (checkpoint.length === 0) fail('missing checkpoint');
  if (utf8.encode(checkpoint).length > MAX_NOTE_BYTES) fail('the checkpoint note is too large');
  return { extra, index, proof, checkpoint };
}

/**
 * Checks a C2SP signed note (PROTOCOL.md §9.2) with the log key: requires a valid signature line
 * `— name base64(keyid || sig)` by that key (other signers, such as witnesses, are ignored).
 * Returns the signed body text.
 */
export async function verifyNote(note, vkey) {
  const sep = note.lastIndexOf('\n\n');
  if (sep < 0) fail('the checkpoint has no blank line before its signatures');
  const body = note.slice(0, sep + 1);
  const block = note.slice(sep + 2);
  if (!block.endsWith('\n')) fail('the checkpoint signatures do not end with a newline');
  const sigLines = block.slice(0, -1).split('\n');
  if (sigLines.length > MAX_NOTE_SIGNATURES) fail('the checkpoint has too many signatures');
  let ours = null;
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) fail('a checkpoint signature line is malformed');
    const raw = b64decode(m[2], 'a checkpoint signature');
    if (raw.length < 5) fail('a checkpoint signature is too short');
    if (m[1] === vkey.name && equalBytes(raw.subarray(0, 4), vkey.keyId)) {
      if (raw.length !== 68) fail('the log signature is not 64 bytes');
      ours = raw.subarray(4);
    }
  }
  if (!ours) {
    fail(`the checkpoint carries no signature by the log key ${vkey.name}+${vkey.keyIdHex}`);
  }
  if (!(await ed25519Verify(vkey.key, ours, utf8.encode(body)))) {
    fail(
      `the checkpoint's signature by ${vkey.name} does not verify: the checkpoint was altered ` +
        'or signed by another key',
    );
  }
  return body;
}

/**
 * Parses a checkpoint body (c2sp.org/tlog-checkpoint: origin, size, base64 root, then extension
 * lines, which are ignored) and requires its origin to be the key's name.
 */
export function parseCheckpoint(body, vkey) {
  const lines = body.split('\n');
  if (lines.length < 4) fail('the checkpoint body is not origin, size and root');
  const [origin, sizeText, rootText] = lines;
  if (origin !== vkey.name) {
    fail(`the checkpoint is of the log ${origin}, the key is of ${vkey.name}`);
  }
  const size = parseDecimal(sizeText, 'the checkpoint size');
  if (rootText.length !== 44) fail('the checkpoint root is not one SHA-256 hash');
  const root = b64decode(rootText, 'the checkpoint root');
  return { origin, size, root };
}

/**
 * RFC 9162 §2.1.3.2: does `proof` lead from `hash` at `index` to `root` in a tree of `size`?
 * Index and size are BigInts.
 */
export async function verifyInclusion(index, size, hash, proof, root) {
  if (index >= size) fail(`leaf ${index} is not in a tree of size ${size}`);
  let fn = index;
  let sn = size - 1n;
  let r = hash;
  for (const p of proof) {
    if (sn === 0n) fail('the inclusion proof is longer than the tree allows');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail('the inclusion proof is shorter than the tree requires');
  if (!equalBytes(r, root)) {
    fail("the inclusion proof does not lead to the checkpoint's root: the leaf or a proof hash was altered");
  }
}

/** DSSE pre-authentication encoding (PROTOCOL.md §3; src/dsse.rs). */
export function pae(payloadType, payload) {
  const type = utf8.encode(payloadType);
  return concat(
    utf8.encode(`DSSEv1 ${type.length} `),
    type,
    utf8.encode(` ${payload.length} `),
    payload,
  );
}

/**
 * Decodes leaf bytes: the leaf JSON, its kind, its decoded payload. Throws VerifyError on
 * anything that is not a well-formed leaf; never verifies signatures.
 */
export function decodeLeaf(bytes) {
  let leaf;
  try {
    leaf = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    fail('the leaf is not UTF-8 JSON');
  }
  if (!leaf || typeof leaf !== 'object' || Array.isArray(leaf)) fail('the leaf is not a JSON object');
  const env = leaf.envelope;
  if (!env || typeof env !== 'object') fail('the leaf has no envelope');
  if (typeof env.payloadType !== 'string') fail('the envelope has no payloadType');
  const m = PAYLOAD_TYPE.exec(env.payloadType);
  if (!m) fail(`the payload type ${env.payloadType} is not a pointsledger type`);
  const payloadBytes = b64decode(env.payload, "the envelope's payload");
  let payload;
  try {
    payload = JSON.parse(strictUtf8.decode(payloadBytes));
  } catch {
    fail('the payload is not UTF-8 JSON');
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    fail('the payload is not a JSON object');
  }
  return { leaf, kind: m[1], payload, payloadBytes };
}

/**
 * Verifies every DSSE signature of a decoded leaf's envelope over PAE(type, payload). Returns
 * the signer ids in envelope order; throws on the first that does not verify.
 */
export async function verifyEnvelope(decoded) {
  const env = decoded.leaf.envelope;
  const sigs = env.signatures;
  if (!Array.isArray(sigs) || sigs.length < 1 || sigs.length > MAX_SIGNATURES) {
    fail(`the envelope must carry 1 to ${MAX_SIGNATURES} signatures`);
  }
  const message = pae(env.payloadType, decoded.payloadBytes);
  const ids = [];
  for (const [i, s] of sigs.entries()) {
    const at = `signature ${i + 1}`;
    if (!s || typeof s.keyid !== 'string' || !/^[0-9a-f]{64}$/.test(s.keyid)) {
      fail(`${at}: the keyid is not a public key id (64 lowercase hex digits)`);
    }
    if (ids.includes(s.keyid)) fail(`${at}: ${s.keyid} signs twice`);
    const sig = b64decode(s.sig, `${at}`);
    if (sig.length !== 64) fail(`${at} is not 64 bytes`);
    const key = await importEd25519(fromHex(s.keyid, 'the keyid'), `${at}: the key`);
    if (!(await ed25519Verify(key, sig, message))) {
      fail(`${at}, by ${s.keyid}, does not verify over the payload`);
    }
    ids.push(s.keyid);
  }
  return ids;
}

/** The signer ids the payload names for its kind (PROTOCOL.md §4), as a sorted array. */
export function expectedSigners(decoded) {
  const fields = SIGNER_FIELDS[decoded.kind];
  if (!fields) fail(`unknown kind ${decoded.kind}`);
  const ids = new Set();
  for (const f of fields) {
    const v = decoded.payload[f];
    if (typeof v !== 'string') fail(`the payload has no ${f}`);
    ids.add(v);
  }
  return [...ids].sort();
}

/** Undoes what copying a receipt through a clipboard or an editor may do to it. */
function normalize(text) {
  // A receipt never holds CR or surrounding blanks (its lines are base64, decimals and a key
  // name without whitespace), so removing them cannot turn a forgery into a valid receipt; a
  // paste commonly adds them, or drops the final newline, which no signature covers.
  return text.replace(/\r\n?/g, '\n').replace(/^\s+/, '').replace(/\s+$/, '') + '\n';
}

/**
 * Verifies a receipt against a pasted log verifier key and, when `witnesses.keys` (witness key
 * strings) are given, requires `witnesses.quorum` of them (default: all) to have cosigned its
 * checkpoint. Resolves (never rejects) to
 * `{ valid, reason, code, steps: [{ name, status: 'ok'|'failed'|'skipped', detail }], result }`;
 * `code` (when invalid) is the failed step's code (STEP_CODES); `result` (when valid) holds the
 * checkpoint, the decoded entry and the valid cosignatures.
 */
export async function verifyReceipt(receiptText, verifierKeyText, witnesses = { keys: [] }) {
  const steps = STEPS.map((name) => ({ name, status: 'skipped', detail: 'not checked' }));
  let at = 0;
  const pass = (detail) => {
    steps[at] = { name: STEPS[at], status: 'ok', detail };
    at += 1;
  };
  try {
    // UTF-16 units never outnumber UTF-8 bytes: past this length the receipt is too large
    // whatever it holds, and nothing longer is copied or encoded.
    if (receiptText.length > MAX_RECEIPT_BYTES) fail(`the receipt is larger than ${MAX_RECEIPT_BYTES} bytes`);
    const proof = parseTlogProof(normalize(receiptText));
    if (!proof.extra) fail('the receipt carries no leaf (no extra line), so there is nothing to check it against');
    pass(`entry ${proof.index}, ${proof.proof.length} proof hashes, ${proof.extra.length}-byte leaf`);

    const vkey = await parseVerifierKey(verifierKeyText);
    pass(`${vkey.name}, key id ${vkey.keyIdHex}`);

    const body = await verifyNote(proof.checkpoint, vkey);
    pass(`signed by ${vkey.name}+${vkey.keyIdHex}`);

    const cp = parseCheckpoint(body, vkey);
    pass(`tree size ${cp.size}, root ${b64encode(cp.root)}`);

    const hash = await leafHash(proof.extra);
    pass(`SHA-256(0x00 ‖ leaf) = ${b64encode(hash)}`);

    await verifyInclusion(proof.index, cp.size, hash, proof.proof, cp.root);
    pass(`leaf ${proof.index} is in the tree of size ${cp.size}`);

    const decoded = decodeLeaf(proof.extra);
    if (String(decoded.leaf.index) !== String(proof.index)) {
      fail(`the leaf says it is entry ${decoded.leaf.index}, the proof places it at ${proof.index}`);
    }
    pass(`${decoded.kind}, sequenced ${new Date(decoded.leaf.timestamp_ms).toISOString()}`);

    const signers = await verifyEnvelope(decoded);
    pass(`${signers.length} signature${signers.length === 1 ? '' : 's'} over the payload verified`);

    const want = expectedSigners(decoded);
    const got = [...signers].sort();
    if (want.join() !== got.join()) {
      fail(`a ${decoded.kind} must be signed by exactly ${want.join(' and ')}; it is signed by ${got.join(' and ')}`);
    }
    pass(`exactly the ${decoded.kind}'s signers`);

    const keys = (witnesses.keys || []).map((k) => k.trim()).filter((k) => k.length > 0);
    let cosigned = [];
    if (keys.length > 0) {
      if (keys.length >= MAX_NOTE_SIGNATURES) fail('too many witness keys');
      const parsed = [];
      for (const k of keys) parsed.push(await parseWitnessKey(k));
      const quorum = witnesses.quorum === undefined || witnesses.quorum === null ? parsed.length : witnesses.quorum;
      if (!Number.isInteger(quorum) || quorum < 0 || quorum > parsed.length) {
        fail(`the quorum must be a whole number from 0 to ${parsed.length}`);
      }
      cosigned = await verifyCosignatures(proof.checkpoint, body, parsed, quorum);
      pass(`cosigned by ${cosigned.map((c) => c.name).join(', ') || 'none'} (${quorum} required)`);
    } else {
      steps[at] = { name: STEPS[at], status: 'skipped', detail: 'no witness keys given' };
    }

    return {
      valid: true,
      code: null,
      reason:
        `Entry ${proof.index} is in the log ${cp.origin} at tree size ${cp.size}, whose ` +
        `checkpoint the pasted key signed` +
        (cosigned.length ? ` and ${cosigned.length} of the given witnesses cosigned` : '') +
        `, and its request is signed by exactly its signers.`,
      steps,
      result: { checkpoint: cp, decoded, leafHash: hash, cosigned },
    };
  } catch (e) {
    const reason = e instanceof VerifyError ? e.message : `unexpected error: ${e && e.message}`;
    steps[at] = { name: STEPS[at], status: 'failed', detail: reason };
    return { valid: false, reason, code: STEP_CODES[STEPS[at]], steps, result: null };
  }
}
