// The explorer: hash-routed views over the public JSON API (#/, #/entries, #/entry/N,
// #/account/ID, #/merchant/ID, #/checkpoints, #/verify, #/verify/N), so every view has a deep link and the
// server serves one page. Views are built with dom.js (no markup from data) and show the API's
// own error messages when a request fails.

import {
  h,
  isId,
  shortId,
  fmtInt,
  fmtSigned,
  fmtTime,
  fmtDuration,
  fmtBps,
  idLink,
  entryLink,
  field,
  table,
  card,
  copyButton,
} from '/explorer/dom.js';
import {
  verifyReceipt,
  verifyEnvelope,
  decodeLeaf,
  leafHash,
  b64decode,
  b64encode,
  toHex,
  parseWitnessKey,
  cosignatureStatus,
  MAX_RECEIPT_BYTES,
} from '/explorer/verify.js';

const main = document.getElementById('main');
const logLine = document.getElementById('log-line');

/** Entries per page of the entry browser, and on the overview. */
const ENTRIES_PAGE = 25;
const RECENT_ENTRIES = 8;
/** Checkpoints per page of the checkpoint history. */
const CHECKPOINTS_PAGE = 20;
/** History rows fetched per request on the account page. */
const HISTORY_PAGE = 50;
/** Anchors shown on the overview. */
const ANCHORS_SHOWN = 8;
/** How long one API request may take before the page gives up on it. */
const REQUEST_TIMEOUT_MS = 15_000;

// ---- The API ----------------------------------------------------------------------------------

/** A failed request, with the API's error code and message when it sent one. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * GETs `path` from this origin. `as`: 'json' (default), 'text' or 'bytes'. Rejects with an
 * ApiError that says what went wrong in words: unreachable server, timeout, or the API's
 * `{error, message}`.
 */
async function api(path, as = 'json') {
  let resp;
  try {
    resp = await fetch(path, {
      headers: { accept: as === 'json' ? 'application/json' : 'text/plain' },
      cache: 'no-store',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (e) {
    if (e && e.name === 'TimeoutError') {
      throw new ApiError(0, 'timeout', `The server did not answer ${path} within ${REQUEST_TIMEOUT_MS / 1000} s.`);
    }
    throw new ApiError(0, 'unreachable', `Cannot reach the server for ${path}: is it running?`);
  }
  if (!resp.ok) {
    let code = `http_${resp.status}`;
    let message = `${path} answered ${resp.status} ${resp.statusText}`.trim();
    try {
      const body = await resp.json();
      if (typeof body.error === 'string') code = body.error;
      if (typeof body.message === 'string') message = body.message;
    } catch {
      // Not the API's JSON error body (a proxy's page, say): keep the status line.
    }
    throw new ApiError(resp.status, code, message);
  }
  try {
    if (as === 'text') return await resp.text();
    if (as === 'bytes') return new Uint8Array(await resp.arrayBuffer());
    return await resp.json();
  } catch {
    throw new ApiError(resp.status, 'bad_response', `The answer to ${path} could not be read.`);
  }
}

// ---- Shared pieces -----------------------------------------------------------------------------

function errorBox(e, what) {
  const box = h('div', { class: 'error-box', role: 'alert' });
  if (e instanceof ApiError) {
    const title =
      e.status === 404 ? 'Not found' : e.status === 0 ? 'Server unreachable' : `Error ${e.status}`;
    box.append(h('strong', null, what ? `${what}: ${title}` : title), h('p', null, e.message));
    if (e.status > 0) box.append(h('p', { class: 'muted small' }, `code: ${e.code}`));
  } else {
    box.append(h('strong', null, what || 'Something went wrong'), h('p', null, String((e && e.message) || e)));
  }
  return box;
}

/** Most merchant names kept; past it the cache starts over (a log rarely has that many). */
const MAX_NAMES = 256;
const merchantNames = new Map();

/**
 * A link to a merchant that shows its short id at once and its registered name once known.
 * Names come from GET /v1/merchants/{id}, one request per merchant per page load.
 */
function merchantLink(id) {
  const a = idLink(id, 'merchant');
  if (!isId(id)) return a;
  if (!merchantNames.has(id)) {
    if (merchantNames.size >= MAX_NAMES) merchantNames.clear();
    merchantNames.set(id, api(`/v1/merchants/${id}`).then((m) => m.name, () => null));
  }
  merchantNames.get(id).then((name) => {
    if (typeof name === 'string' && name.length > 0) {
      a.textContent = name;
      a.classList.remove('mono');
    }
  });
  return a;
}

function kindBadge(kind) {
  return h('span', { class: `badge kind-${kind.replace(/[^a-z]/g, '-')}` }, kind);
}

function deltaCell(delta) {
  return h('span', { class: `delta ${delta > 0 ? 'pos' : delta < 0 ? 'neg' : ''}` }, fmtSigned(delta));
}

function reasonLabel(reason) {
  return String(reason).replace(/_/g, ' ');
}

function pre(text, cls = '') {
  return h('pre', { class: `code ${cls}` }, text);
}

/** Decodes one leaf for display; a leaf that does not decode is shown as such, not thrown. */
function decodeForDisplay(bytes) {
  try {
    return decodeLeaf(bytes);
  } catch (e) {
    return { error: e.message, leaf: null, kind: '?', payload: {} };
  }
}

/** One line about what a request did, with links to the parties. */
function summary(kind, p) {
  const amount = (n) => (typeof n === 'number' ? fmtInt(n) : '?');
  switch (kind) {
    case 'merchant.register':
    case 'merchant.update':
      return [
        h('span', null, `“${p.name}” `),
        kind === 'merchant.register' ? 'registered: ' : 'program updated: ',
        merchantLink(p.merchant),
      ];
    case 'purchase':
      return [`order ${p.order_id}, ${amount(p.amount)} paid by `, idLink(p.consumer), ' at ', merchantLink(p.merchant)];
    case 'redeem':
      return [
        `${amount(p.points)} points on order ${p.order_id} (${amount(p.order_amount)}) by `,
        idLink(p.consumer),
        ' at ',
        merchantLink(p.merchant),
      ];
    case 'refund':
      return [`${amount(p.amount)} of order ${p.order_id} refunded by `, merchantLink(p.merchant)];
    case 'referral.accept':
      return [idLink(p.consumer), ' referred by ', idLink(p.referrer)];
    case 'account.link_evm':
      return [idLink(p.consumer), ' linked ', h('span', { class: 'mono' }, String(p.address))];
    default:
      return [kind];
  }
}

function changesSummary(effects) {
  const changes = (effects && effects.changes) || [];
  if (changes.length === 0) return h('span', { class: 'muted' }, 'no point changes');
  return h(
    'ul',
    { class: 'changes' },
    changes.map((c) =>
      h('li', null, deltaCell(c.delta), ' ', h('span', { class: 'reason' }, reasonLabel(c.reason)), ' ', idLink(c.account)),
    ),
  );
}

function discountText(d) {
  if (!d) return null;
  return h('span', { class: 'badge discount' }, `${fmtInt(d.value)} off (${d.source})`);
}

function parseCheckpointNote(note) {
  const lines = note.split('\n');
  let rootHex = '?';
  try {
    rootHex = toHex(b64decode(lines[2], 'root'));
  } catch {
    // Shown as served; the verifier checks checkpoints for real.
  }
  return { origin: lines[0], size: Number(lines[1]), rootB64: lines[2], rootHex };
}

/** The signature lines of a note, under the blank line that ends its body. */
function signatureLines(note) {
  return note.slice(note.lastIndexOf('\n\n') + 2).split('\n').filter((l) => l.startsWith('\u2014 '));
}

/**
 * The witnesses the log asks (`/v1/log`), their keys parsed for checking; a key that does not
 * parse is kept with its error, so that it shows rather than vanishes.
 */
async function askedWitnesses(info) {
  const out = [];
  for (const w of info.witnesses || []) {
    try {
      out.push({ ...w, name: w.key.split('+')[0], parsed: await parseWitnessKey(w.key) });
    } catch (e) {
      out.push({ ...w, name: w.key.split('+')[0], parsed: null, keyError: e.message });
    }
  }
  return out;
}

/**
 * What a note carries for each witness the log asks: each cosignature line is checked with
 * WebCrypto against the witness's key as `/v1/log` lists it (`cosigned`), or found missing or
 * not verifying (`bad`). Lines of other signers are counted, not checked. A reader who must not
 * take the witnesses' keys from the log itself verifies a receipt with keys they trust
 * (`#/verify`, `pointsledger verify --witness-key`).
 */
async function witnessMarks(note, origin, asked) {
  const body = note.slice(0, note.lastIndexOf('\n\n') + 1);
  const keys = asked.filter((w) => w.parsed).map((w) => w.parsed);
  let status = { valid: [], missing: [], bad: [] };
  try {
    status = await cosignatureStatus(note, body, keys);
  } catch {
    // A key listed twice: every witness is shown as unchecked below.
  }
  const marks = asked.map((w) => {
    if (!w.parsed) return { name: w.name, state: 'bad', detail: `its listed key does not parse: ${w.keyError}` };
    if (status.valid.some((v) => v.name === w.name)) return { name: w.name, state: 'cosigned', detail: 'cosignature verified' };
    if (status.bad.includes(w.name)) return { name: w.name, state: 'bad', detail: 'its line does not verify under its key' };
    return { name: w.name, state: 'waiting', detail: w.last_error ? `not reached: ${w.last_error}` : 'has not cosigned this checkpoint yet' };
  });
  const names = new Set([origin, ...asked.map((w) => w.name)]);
  const others = signatureLines(note).filter((l) => !names.has(l.slice(2).split(' ')[0])).length;
  return { marks, others, valid: status.valid.length };
}

const MARK_BADGE = { cosigned: 'status-final', waiting: 'status-pending', bad: 'status-failed' };

function markItem(m, withDetail) {
  return h(
    'li',
    { class: 'witness', dataset: { name: m.name, cosigned: m.state === 'cosigned' ? 'yes' : 'no', state: m.state } },
    h('span', { class: `badge ${MARK_BADGE[m.state]}` }, m.state),
    ' ',
    h('span', { class: 'mono' }, m.name),
    withDetail ? h('span', { class: 'muted' }, ` ${m.detail}`) : null,
  );
}

/** The witnesses of the latest checkpoint, each checked as `witnessMarks` says. */
async function witnessField(info, note) {
  const asked = await askedWitnesses(info);
  const { marks, others, valid } = await witnessMarks(note, info.origin, asked);
  if (asked.length === 0 && others === 0) {
    return field('Witnesses', h('span', { class: 'muted' }, 'none: this log asks no witness to cosign'));
  }
  const extra = others > 0 ? h('li', { class: 'muted' }, `${others} signature line${others === 1 ? '' : 's'} of other signers, not checked`) : null;
  const quorum = info.witness_quorum
    ? h('span', { class: 'muted small' }, ` (${valid} of ${asked.length} verified; ${info.witness_quorum} make a quorum)`)
    : null;
  return field('Witnesses', h('ul', { id: 'witnesses', class: 'plain' }, ...marks.map((m) => markItem(m, true)), extra), quorum);
}

// ---- Views ------------------------------------------------------------------------------------

async function overview() {
  const [log, note, anchors] = await Promise.allSettled([
    api('/v1/log'),
    api('/v1/checkpoint', 'text'),
    api(`/v1/anchors?limit=${ANCHORS_SHOWN}`),
  ]);
  if (log.status === 'rejected') throw log.reason;
  const info = log.value;
  const view = h('div', { class: 'view' }, h('h1', null, 'Overview'));
  const grid = h('div', { class: 'grid two' });
  view.append(grid);

  // The checkpoint.
  let cp = null;
  if (note.status === 'fulfilled') {
    cp = parseCheckpointNote(note.value);
    grid.append(
      card(
        'Latest checkpoint',
        h('div', { class: 'stat' }, h('span', { class: 'stat-value', id: 'checkpoint-size', dataset: { value: String(cp.size) } }, fmtInt(cp.size)), h('span', { class: 'stat-label' }, 'entries covered')),
        h(
          'dl',
          { class: 'facts' },
          field('Log', h('span', { class: 'mono' }, cp.origin)),
          field('Root', h('span', { class: 'mono wrap', title: `hex ${cp.rootHex}` }, cp.rootB64)),
          field('Log size', `${fmtInt(info.size)} entries`, info.size > cp.size ? h('span', { class: 'muted' }, ` (${fmtInt(info.size - cp.size)} awaiting the next checkpoint)`) : null),
          field('Verifier key', h('span', { class: 'mono wrap' }, info.verifier_key), ' ', copyButton(info.verifier_key)),
          await witnessField(info, note.value),
        ),
        h('details', null, h('summary', null, 'Signed note, as served'), pre(note.value)),
        h(
          'p',
          { class: 'muted small' },
          'Shown as the server sends it. To check a signature, get the verifier key from the operator out of band and ',
          h('a', { href: '#/verify' }, 'verify a receipt'),
          '.',
        ),
      ),
    );
  } else {
    grid.append(card('Latest checkpoint', errorBox(note.reason, 'Checkpoint')));
  }

  // Anchoring.
  grid.append(anchorCard(anchors, cp));

  // Recent entries.
  const recent = card('Recent entries');
  view.append(recent);
  if (info.size === 0) {
    recent.append(h('p', { class: 'muted' }, 'The log is empty.'));
  } else {
    const start = Math.max(0, info.size - RECENT_ENTRIES);
    try {
      const page = await api(`/v1/entries?start=${start}&end=${info.size}`);
      recent.append(entriesTable(page, 'recent-entries'));
      recent.append(h('p', null, h('a', { href: '#/entries' }, 'All entries →')));
    } catch (e) {
      recent.append(errorBox(e, 'Entries'));
    }
  }
  return view;
}

function anchorCard(anchors, cp) {
  const c = card('Anchoring');
  if (anchors.status === 'rejected') {
    c.append(errorBox(anchors.reason, 'Anchors'));
    return c;
  }
  const a = anchors.value;
  const head = a.head;
  const confirmations = (r) =>
    typeof head === 'number' && typeof r.block_number === 'number' && head >= r.block_number
      ? head - r.block_number + 1
      : null;
  const mined = a.anchors.find((r) => r.status === 'confirmed' || r.status === 'final');
  const status = h('div', { class: 'stat', id: 'anchor-status' });
  if (!a.enabled) {
    status.append(h('span', { class: 'stat-value small-value muted' }, 'Off'), h('span', { class: 'stat-label' }, 'this server anchors to no chain (no contract configured)'));
  } else if (mined) {
    const n = confirmations(mined);
    status.append(
      h('span', { class: 'stat-value' }, fmtInt(mined.tree_size)),
      h('span', { class: 'stat-label' }, `entries anchored, ${mined.status}${n !== null ? `, ${fmtInt(n)} confirmation${n === 1 ? '' : 's'}` : ''}`),
    );
  } else {
    status.append(h('span', { class: 'stat-value small-value' }, 'Nothing anchored yet'));
  }
  c.append(status);
  if (!a.enabled) {
    c.append(
      h(
        'p',
        { class: 'muted' },
        'Checkpoints are signed by the log key. A server given a LedgerAnchor contract also ' +
          'sends each new checkpoint root to the chain, where the contract accepts it only with ' +
          'a consistency proof from the last anchored root, so history cannot be rewritten ' +
          'unseen. Receipts then name the anchor that covers them.',
      ),
    );
  }
  if (a.enabled && mined && cp) {
    c.append(
      h('p', { class: mined.tree_size >= cp.size ? 'ok-text' : 'muted' },
        mined.tree_size >= cp.size
          ? 'The latest checkpoint is anchored.'
          : `${fmtInt(cp.size - mined.tree_size)} entries of the latest checkpoint are not anchored yet.`),
    );
  }
  c.append(
    h(
      'dl',
      { class: 'facts' },
      a.chain_id !== null && a.chain_id !== undefined ? field('Chain id', String(a.chain_id)) : null,
      a.contract ? field('Contract', h('span', { class: 'mono wrap' }, a.contract)) : null,
      typeof head === 'number' ? field('Chain head', `block ${fmtInt(head)}`) : null,
      typeof a.confirmations === 'number' ? field('Final after', `${a.confirmations} confirmations`) : null,
    ),
  );
  if (a.last_error) {
    c.append(h('div', { class: 'warn-box' }, h('strong', null, 'Last anchoring error: '), a.last_error));
  }
  if (a.anchors.length > 0) {
    c.append(
      table(
        ['Tree size', 'Status', 'Transaction', 'Block', 'Confirmations'],
        a.anchors.map((r) => {
          const n = confirmations(r);
          return [
            fmtInt(r.tree_size),
            h('span', { class: `badge status-${r.status}` }, r.status),
            r.tx_hash ? h('span', { class: 'mono', title: r.tx_hash }, shortId(r.tx_hash)) : '—',
            typeof r.block_number === 'number' ? fmtInt(r.block_number) : '—',
            n !== null ? fmtInt(n) : '—',
          ];
        }),
        { id: 'anchors' },
      ),
    );
  }
  return c;
}

function entriesTable(page, id) {
  const rows = page.leaves
    .map((b64, i) => {
      const index = page.start + i;
      let bytes;
      try {
        bytes = b64decode(b64, 'leaf');
      } catch {
        bytes = new Uint8Array();
      }
      return [index, decodeForDisplay(bytes)];
    })
    .reverse()
    .map(([index, d]) =>
      d.leaf
        ? [entryLink(index), h('span', { class: 'nowrap' }, fmtTime(d.leaf.timestamp_ms)), kindBadge(d.kind), h('span', null, summary(d.kind, d.payload), ' ', discountText(d.leaf.effects && d.leaf.effects.discount)), changesSummary(d.leaf.effects)]
        : [entryLink(index), '—', kindBadge('?'), h('span', { class: 'error-text' }, `undecodable: ${d.error}`), ''],
    );
  return table(['Entry', 'Sequenced', 'Kind', 'Request', 'Point changes'], rows, { id, empty: 'No entries.' });
}

async function entries(params) {
  const info = await api('/v1/log');
  const size = info.size;
  let start = Number.parseInt(params.get('start') ?? '', 10);
  if (!Number.isSafeInteger(start) || start < 0) start = Math.max(0, size - ENTRIES_PAGE);
  const end = Math.min(size, start + ENTRIES_PAGE);
  const view = h('div', { class: 'view' }, h('h1', null, 'Entries'));
  if (size === 0) {
    view.append(card(null, h('p', { class: 'muted' }, 'The log is empty.')));
    return view;
  }
  if (start >= size) {
    view.append(card(null, h('p', null, `The log has ${fmtInt(size)} entries; there is no entry ${fmtInt(start)}.`), h('a', { href: '#/entries' }, 'Latest entries')));
    return view;
  }
  const page = await api(`/v1/entries?start=${start}&end=${end}`);
  const pager = h(
    'div',
    { class: 'pager' },
    end < size ? h('a', { class: 'button secondary', href: `#/entries?start=${Math.min(end, Math.max(0, size - ENTRIES_PAGE))}` }, '← Newer') : h('span', { class: 'button secondary disabled' }, '← Newer'),
    h('span', { class: 'muted' }, `entries ${fmtInt(start)}–${fmtInt(end - 1)} of ${fmtInt(size)}, newest first`),
    start > 0 ? h('a', { class: 'button secondary', href: `#/entries?start=${Math.max(0, start - ENTRIES_PAGE)}` }, 'Older →') : h('span', { class: 'button secondary disabled' }, 'Older →'),
  );
  view.append(card(null, pager, entriesTable(page, 'entries'), pager.cloneNode(true)));
  return view;
}

async function entry(params) {
  const raw = params.get('index');
  if (!/^(0|[1-9][0-9]{0,14})$/.test(raw)) throw new ApiError(400, 'malformed_index', `“${raw}” is not an entry number.`);
  const index = Number(raw);
  const bytes = await api(`/v1/entries/${index}`, 'bytes');
  const d = decodeForDisplay(bytes);
  // Hashes are shown in base64, as the API and checkpoints write them.
  const hash = b64encode(await leafHash(bytes));
  const view = h(
    'div',
    { class: 'view' },
    h('div', { class: 'title-row' }, h('h1', null, `Entry #${fmtInt(index)}`), d.leaf ? kindBadge(d.kind) : null),
    h(
      'div',
      { class: 'pager' },
      index > 0 ? h('a', { class: 'button secondary', href: `#/entry/${index - 1}` }, `← #${index - 1}`) : h('span', { class: 'button secondary disabled' }, '←'),
      h('a', { class: 'button secondary', href: `#/verify/${index}` }, 'Verify its receipt'),
      h('a', { class: 'button secondary', href: `/v1/receipts/${index}`, download: `entry-${index}.tlog-proof` }, 'Download receipt'),
      h('a', { class: 'button secondary', href: `#/entry/${index + 1}` }, `#${index + 1} →`),
    ),
  );
  if (!d.leaf) {
    view.append(card('Leaf', h('p', { class: 'error-text' }, `This leaf does not decode: ${d.error}`), pre(new TextDecoder().decode(bytes))));
    return view;
  }
  const leaf = d.leaf;
  const sigState = h('span', { class: 'muted' }, 'checking…');
  const request = card(
    'Request',
    h('p', null, summary(d.kind, d.payload)),
    h(
      'dl',
      { class: 'facts' },
      field('Sequenced', fmtTime(leaf.timestamp_ms)),
      field('Payload type', h('span', { class: 'mono' }, leaf.envelope.payloadType)),
      field('Signatures', h('span', null, (leaf.envelope.signatures || []).map((s, i) => [i ? ', ' : '', idLink(s.keyid)])), ' ', sigState),
    ),
    h('h3', null, 'Payload'),
    payloadTable(d.payload),
  );
  const effects = leaf.effects || { changes: [] };
  const effectsCard = card(
    'Effects',
    table(
      ['Account', 'Change', 'Reason', 'Lot', 'Available from', 'Expires'],
      effects.changes.map((c) => [
        idLink(c.account),
        deltaCell(c.delta),
        reasonLabel(c.reason),
        c.lot ? h('span', { class: 'mono' }, c.lot) : h('span', { class: 'muted' }, 'debt'),
        c.available_at !== undefined ? h('span', { class: 'nowrap' }, fmtTime(c.available_at)) : '',
        c.expires_at !== undefined ? h('span', { class: 'nowrap' }, fmtTime(c.expires_at)) : '',
      ]),
      { empty: 'No point changes.', id: 'effects' },
    ),
    effects.discount ? h('p', null, 'Discount granted: ', discountText(effects.discount)) : null,
  );
  const leafCard = card(
    'Leaf',
    h('dl', { class: 'facts' }, field('Leaf hash', h('span', { class: 'mono wrap' }, hash), h('span', { class: 'muted small' }, ' SHA-256(0x00 ‖ leaf), computed here'))),
    h('details', null, h('summary', null, `Leaf bytes (${fmtInt(bytes.length)} bytes, as stored)`), pre(new TextDecoder().decode(bytes), 'wrap')),
  );
  view.append(request, effectsCard, leafCard);
  // The signatures are checked here too (no log key needed for that); inclusion needs the
  // receipt and the key, on the verify page.
  verifyEnvelope(d).then(
    (ids) => {
      sigState.className = 'ok-text';
      sigState.textContent = `✓ ${ids.length === 1 ? 'verifies' : 'all verify'} over the payload (checked in your browser)`;
    },
    (e) => {
      sigState.className = 'error-text';
      sigState.textContent = `✗ ${e.message}`;
    },
  );
  return view;
}

const ID_FIELDS = { merchant: 'merchant', consumer: 'account', referrer: 'account', operator: 'account' };

function payloadTable(payload) {
  const rows = Object.entries(payload).map(([k, v]) => {
    let value;
    if (ID_FIELDS[k] && isId(v)) value = idLink(v, ID_FIELDS[k]);
    else if (v !== null && typeof v === 'object') value = pre(JSON.stringify(v, null, 2));
    else if (typeof v === 'number') value = h('span', { class: 'mono' }, fmtInt(v));
    else value = h('span', { class: 'mono wrap' }, String(v));
    return [h('span', { class: 'mono' }, k), value];
  });
  return table(['Field', 'Value'], rows, { id: 'payload' });
}

async function account(params) {
  const id = params.get('id');
  if (!isId(id)) throw new ApiError(400, 'malformed_id', 'An account id is 64 lowercase hex digits.');
  const [acc, hist] = await Promise.all([
    api(`/v1/accounts/${id}`),
    api(`/v1/accounts/${id}/history?limit=${HISTORY_PAGE}`),
  ]);
  const b = acc.balance;
  const stat = (label, value, elId, hint) =>
    h('div', { class: 'stat' }, h('span', { class: 'stat-value', id: elId, dataset: { value: String(value) } }, fmtInt(value)), h('span', { class: 'stat-label' }, label), hint ? h('span', { class: 'stat-hint' }, hint) : null);
  const view = h(
    'div',
    { class: 'view' },
    h('h1', null, 'Account'),
    h('p', { class: 'mono wrap id-line' }, id, ' ', copyButton(id)),
    h(
      'div',
      { class: 'stats' },
      stat('balance', b.total, 'balance-total', 'all lots − debt'),
      stat('available', b.available, 'balance-available', 'spendable now'),
      stat('pending', b.pending, 'balance-pending', 'in the refund window'),
      stat('expiring', b.expiring_30d, 'balance-expiring', 'within 30 days'),
      stat('debt', b.debt, 'balance-debt', 'settled at the next redemption'),
      b.expired_unswept > 0 ? stat('expired', b.expired_unswept, 'balance-expired', 'leaves at the next entry') : null,
    ),
  );
  const now = Date.now();
  view.append(
    h(
      'div',
      null,
      card(
        'Profile',
        h(
          'dl',
          { class: 'facts inline' },
          field('Purchases', fmtInt(acc.purchases)),
          field('Referred by', acc.referrer ? idLink(acc.referrer) : h('span', { class: 'muted' }, 'nobody')),
          field('Referees', fmtInt(acc.referees)),
          field('EVM address', acc.evm_address ? h('span', { class: 'mono wrap' }, acc.evm_address) : h('span', { class: 'muted' }, 'none linked')),
        ),
      ),
      card(
        'Lots',
        h('p', { class: 'muted small' }, 'In drawing order: the points that expire first are spent first.'),
        table(
          ['Lot', 'Merchant', 'Source', 'Order', 'Points', 'Remaining', 'Available from', 'Expires'],
          acc.lots.map((l) => [
            h('a', { class: 'mono', href: `#/entry/${Number(String(l.id).split('.')[0])}` }, l.id),
            merchantLink(l.merchant),
            reasonLabel(l.source),
            h('span', { class: 'mono nowrap' }, l.order_id),
            fmtInt(l.points),
            fmtInt(l.remaining),
            h('span', { class: `nowrap ${l.available_at > now ? 'pending-text' : ''}`, title: l.available_at > now ? 'still pending' : null }, fmtTime(l.available_at)),
            h('span', { class: 'nowrap' }, fmtTime(l.expires_at)),
          ]),
          { empty: 'No lots.', id: 'lots' },
        ),
      ),
    ),
  );
  const histCard = card('History');
  const rowsOf = (rows) =>
    rows.map((r) => [
      entryLink(r.index),
      h('span', { class: 'nowrap' }, fmtTime(r.timestamp_ms)),
      kindBadge(r.kind),
      r.merchant ? merchantLink(r.merchant) : '',
      r.order_id ? h('span', { class: 'mono' }, r.order_id) : '',
      deltaCell(r.delta),
      h(
        'ul',
        { class: 'changes' },
        r.changes.map((c) => h('li', null, h('span', { class: 'reason' }, reasonLabel(c.reason)), ' ', deltaCell(c.delta), c.lot ? h('span', { class: 'muted mono' }, ` lot ${c.lot}`) : null)),
        r.changes.length === 0 ? h('li', { class: 'muted' }, 'no point change') : null,
      ),
      discountText(r.discount),
    ]);
  const headers = ['Entry', 'Sequenced', 'Kind', 'Merchant', 'Order', 'Change', 'Why', 'Discount'];
  if (hist.rows.length === 0) {
    histCard.append(h('p', { class: 'muted' }, 'No entry has touched this account yet.'));
  } else {
    const t = table(headers, rowsOf(hist.rows), { id: 'history' });
    histCard.append(t);
    let next = hist.next;
    if (next !== null && next !== undefined) {
      const more = h('button', { type: 'button', class: 'secondary' }, 'Load more');
      const status = h('span', { class: 'muted' });
      more.addEventListener('click', async () => {
        more.disabled = true;
        status.textContent = ' loading…';
        try {
          const page = await api(`/v1/accounts/${id}/history?from=${next}&limit=${HISTORY_PAGE}`);
          const tbody = t.querySelector('tbody');
          for (const cells of rowsOf(page.rows)) tbody.append(h('tr', null, cells.map((c) => h('td', null, c))));
          next = page.next;
          status.textContent = '';
          if (next === null || next === undefined) more.remove();
          else more.disabled = false;
        } catch (e) {
          status.replaceChildren(errorBox(e, 'More history'));
          more.disabled = false;
        }
      });
      histCard.append(h('p', null, more, status));
    }
  }
  view.append(histCard);
  return view;
}

const RULES = [
  ['earn_bps', 'Points earned', (v) => `${fmtInt(v)} per 10,000 paid (${fmtBps(v)} of the money paid)`],
  ['point_value_milli', 'Value of one point', (v) => `${(v / 1000).toLocaleString('en-US', { maximumFractionDigits: 3 })} minor unit${v === 1000 ? '' : 's'} of discount`],
  ['max_redeem_bps', 'Payable with points', (v) => `at most ${fmtBps(v)} of an order`],
  ['pending_ms', 'Pending period', (v) => (v === 0 ? 'none: new points can be spent at once' : `${fmtDuration(v)} before new points can be spent (the refund window)`)],
  ['validity_ms', 'Validity', (v) => `${fmtDuration(v)} once available`],
  ['max_points_per_order', 'Cap per order', (v) => `${fmtInt(v)} points`],
  ['referee_discount_bps', 'Referee discount', (v) => `${fmtBps(v)} off a referred consumer's first purchase`],
  ['referee_discount_max', 'Referee discount cap', (v) => `${fmtInt(v)} minor units`],
  ['referrer_reward_points', 'Referrer reward', (v) => `${fmtInt(v)} points for each referee's first purchase`],
  ['referrer_reward_cap', 'Rewarded referees', (v) => `at most ${fmtInt(v)} per referrer`],
];

async function merchant(params) {
  const id = params.get('id');
  if (!isId(id)) throw new ApiError(400, 'malformed_id', 'A merchant id is 64 lowercase hex digits.');
  const m = await api(`/v1/merchants/${id}`);
  return h(
    'div',
    { class: 'view' },
    h('div', { class: 'title-row' }, h('h1', { id: 'merchant-name' }, m.name), h('span', { class: 'badge' }, 'merchant')),
    h('p', { class: 'mono wrap id-line' }, id, ' ', copyButton(id)),
    h('p', null, 'Registered by entry ', entryLink(m.registered_at_index), '. Its points also count as an ', h('a', { href: `#/account/${id}` }, 'account'), ' if it ever receives any.'),
    card(
      'Program rules',
      h('p', { class: 'muted small' }, 'The program in force; it applies to entries sequenced after it was set, and existing lots keep their dates.'),
      table(
        ['Rule', 'Value', 'Meaning'],
        RULES.filter(([k]) => k in m.rules).map(([k, label, explain]) => [label, h('span', { class: 'mono' }, fmtInt(m.rules[k])), explain(m.rules[k])]),
        { id: 'rules' },
      ),
    ),
  );
}

/** What the user pasted, kept across views so going to an entry and back keeps the key. */
const pasted = { key: '', receipt: '', witnesses: '' };

async function verifyView(params) {
  const keyInput = h('input', {
    id: 'verifier-key',
    class: 'mono',
    type: 'text',
    spellcheck: 'false',
    autocomplete: 'off',
    maxlength: '1024',
    placeholder: 'origin+keyid+base64, e.g. example.pointsledger.dev+f8aef57c+AYE5…',
    'aria-describedby': 'key-help',
  });
  keyInput.value = pasted.key;
  keyInput.addEventListener('input', () => {
    pasted.key = keyInput.value;
  });
  const receiptInput = h('textarea', {
    id: 'receipt',
    class: 'mono',
    rows: '12',
    spellcheck: 'false',
    placeholder: 'c2sp.org/tlog-proof@v1\nextra …\nindex …\n…',
  });
  receiptInput.value = pasted.receipt;
  receiptInput.addEventListener('input', () => {
    pasted.receipt = receiptInput.value;
  });
  const fileNote = h('span', { class: 'muted small', role: 'status' });
  const loadFile = async (file) => {
    if (!file) return;
    if (file.size > MAX_RECEIPT_BYTES) {
      fileNote.textContent = `${file.name} is ${fmtInt(file.size)} bytes; a receipt is at most ${fmtInt(MAX_RECEIPT_BYTES)}.`;
      return;
    }
    try {
      receiptInput.value = new TextDecoder('utf-8', { fatal: true }).decode(await file.arrayBuffer());
      pasted.receipt = receiptInput.value;
      fileNote.textContent = `Loaded ${file.name}.`;
    } catch {
      fileNote.textContent = `${file.name} is not a text file.`;
    }
  };
  const fileInput = h('input', { id: 'receipt-file', type: 'file', accept: '.tlog-proof,text/plain' });
  fileInput.addEventListener('change', () => loadFile(fileInput.files[0]));
  receiptInput.addEventListener('dragover', (e) => e.preventDefault());
  receiptInput.addEventListener('drop', (e) => {
    e.preventDefault();
    loadFile(e.dataTransfer && e.dataTransfer.files[0]);
  });

  const fillNote = h('span', { class: 'muted small', role: 'status' });
  const fill = h('button', { type: 'button', class: 'secondary small', id: 'fill-key' }, "Fill in this server's key");
  fill.addEventListener('click', async () => {
    try {
      const info = await api('/v1/log');
      keyInput.value = info.verifier_key;
      pasted.key = keyInput.value;
      fillNote.textContent =
        'Filled in from this server’s /v1/log: compare it with the key you got from the operator before trusting a VALID.';
    } catch (e) {
      fillNote.replaceChildren(errorBox(e, 'Key'));
    }
  });

  const witnessInput = h('textarea', {
    id: 'witness-keys',
    class: 'mono',
    rows: '2',
    spellcheck: 'false',
    placeholder: 'name+keyid+base64, one per line, e.g. witness.example/w1+1a2b3c4d+BK1…',
  });
  witnessInput.value = pasted.witnesses || '';
  witnessInput.addEventListener('input', () => {
    pasted.witnesses = witnessInput.value;
  });
  const quorumInput = h('input', { id: 'witness-quorum', type: 'number', min: '0', step: '1', placeholder: 'all' });

  const result = h('div', { id: 'result', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', id: 'verify-button' }, 'Verify');
  const form = h(
    'form',
    { class: 'verify-form', novalidate: true },
    h('label', { for: 'verifier-key' }, 'Log verifier key'),
    keyInput,
    h(
      'p',
      { id: 'key-help', class: 'muted small' },
      'The one thing to trust: the log’s key as the operator published it (',
      h('span', { class: 'mono' }, 'pointsledger log-key'),
      '). Nothing else from the server counts. ',
      fill,
      ' is a convenience only: a key fetched from the server you are checking proves nothing about that server.',
    ),
    h('p', { class: 'small' }, fillNote),
    h('label', { for: 'receipt' }, 'Receipt (.tlog-proof)'),
    receiptInput,
    h('p', { class: 'file-row' }, fileInput, h('span', { class: 'muted small' }, 'Choose a .tlog-proof file, paste its text above, or drop the file on the box.')),
    h('p', null, fileNote),
    h('label', { for: 'witness-keys' }, 'Witness keys (optional)'),
    witnessInput,
    h(
      'p',
      { class: 'muted small' },
      'Witnesses you trust (',
      h('span', { class: 'mono' }, 'pointsledger witness --print-key'),
      '): the checkpoint must carry valid cosignatures by ',
      h('label', { for: 'witness-quorum' }, 'at least'),
      ' ',
      quorumInput,
      ' of them (empty: all).',
    ),
    h('p', null, button),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    result.replaceChildren(h('p', { class: 'loading' }, 'Verifying…'));
    try {
      const quorum = quorumInput.value.trim() === '' ? undefined : Number(quorumInput.value);
      const r = await verifyReceipt(receiptInput.value, keyInput.value, {
        keys: witnessInput.value.split('\n'),
        quorum,
      });
      result.replaceChildren(renderVerdict(r));
    } finally {
      button.disabled = false;
    }
  });

  const view = h(
    'div',
    { class: 'view' },
    h('h1', null, 'Verify a receipt'),
    h(
      'p',
      { class: 'lead' },
      'A receipt proves that one entry is in the log. This page checks it entirely in your browser with WebCrypto: the checkpoint’s signature by the log key, the leaf’s hash, the Merkle inclusion proof up to the signed root, the request’s own signatures and, given witness keys, the witnesses’ cosignatures of the checkpoint.',
    ),
    card(null, form),
    result,
  );

  const index = params.get('index');
  if (index !== null) {
    if (!/^(0|[1-9][0-9]{0,14})$/.test(index)) throw new ApiError(400, 'malformed_index', `“${index}” is not an entry number.`);
    try {
      receiptInput.value = await api(`/v1/receipts/${Number(index)}`, 'text');
      pasted.receipt = receiptInput.value;
      fileNote.textContent = `Receipt of entry ${index} loaded from this server; what it proves does not depend on the server.`;
    } catch (e) {
      result.replaceChildren(errorBox(e, `Receipt of entry ${index}`));
    }
  }
  return view;
}

function renderVerdict(r) {
  const verdict = h(
    'div',
    { id: 'verdict', class: `verdict ${r.valid ? 'valid' : 'invalid'}`, role: 'status', dataset: { verdict: r.valid ? 'valid' : 'invalid' } },
    h('span', { class: 'verdict-word' }, r.valid ? 'VALID' : 'INVALID'),
    h('span', { class: 'verdict-reason', id: 'verdict-reason' }, r.reason),
  );
  const steps = h(
    'ol',
    { class: 'steps' },
    r.steps.map((s) =>
      h('li', { class: `step ${s.status}` }, h('span', { class: 'step-mark', 'aria-hidden': 'true' }, s.status === 'ok' ? '✓' : s.status === 'failed' ? '✗' : '–'), h('span', { class: 'step-name' }, s.name), h('span', { class: 'step-detail' }, s.detail)),
    ),
  );
  const out = h('div', { class: 'verdict-wrap' }, verdict, card('Checks', steps));
  if (r.valid) {
    const { checkpoint, decoded } = r.result;
    const leaf = decoded.leaf;
    out.append(
      card(
        'What the receipt proves',
        h(
          'dl',
          { class: 'facts' },
          field('Entry', entryLink(leaf.index), ' ', kindBadge(decoded.kind)),
          field('Sequenced', fmtTime(leaf.timestamp_ms)),
          field('Request', h('span', null, summary(decoded.kind, decoded.payload))),
          field('Point changes', changesSummary(leaf.effects)),
          field('Log', h('span', { class: 'mono' }, checkpoint.origin)),
          field('Tree size', fmtInt(Number(checkpoint.size))),
          field('Root', h('span', { class: 'mono wrap' }, b64encode(checkpoint.root))),
        ),
        h('p', { class: 'muted small' }, 'To hold the log to this tree, compare the root with an anchor on the chain or with a checkpoint you saved earlier (a consistency proof links the two).'),
      ),
    );
  }
  return out;
}

async function checkpoints(params) {
  const info = await api('/v1/log');
  let from = Number.parseInt(params.get('from') ?? '', 10);
  if (!Number.isSafeInteger(from) || from < 0) from = 0;
  const [page, asked] = await Promise.all([
    api(`/v1/checkpoints?from=${from}&limit=${CHECKPOINTS_PAGE}`),
    askedWitnesses(info),
  ]);
  const view = h('div', { class: 'view' }, h('h1', null, 'Checkpoints'));
  const rows = [];
  for (const c of page.checkpoints) {
    const cp = parseCheckpointNote(c.note);
    const { marks, others } = await witnessMarks(c.note, info.origin, asked);
    const cell = marks.length || others
      ? h('ul', { class: 'plain inline' }, ...marks.map((m) => markItem(m, false)), others ? h('li', { class: 'muted' }, `+${others} unchecked`) : null)
      : h('span', { class: 'muted' }, 'none asked');
    rows.push([
      h('span', { class: 'mono', dataset: { size: String(c.size) } }, fmtInt(c.size)),
      h('span', { class: 'mono wrap', title: `hex ${cp.rootHex}` }, cp.rootB64),
      cell,
      h('details', null, h('summary', null, 'note'), pre(c.note)),
    ]);
  }
  const latest = info.checkpoint_size;
  const pager = h(
    'div',
    { class: 'pager' },
    from > 0 ? h('a', { class: 'button secondary', href: '#/checkpoints' }, '← First') : h('span', { class: 'button secondary disabled' }, '← First'),
    h('span', { class: 'muted' }, `tree sizes from ${fmtInt(from)}, oldest first`),
    page.next !== null && page.next !== undefined
      ? h('a', { class: 'button secondary', href: `#/checkpoints?from=${page.next}` }, 'Next →')
      : h('span', { class: 'button secondary disabled' }, 'Next →'),
  );
  view.append(
    card(
      null,
      h(
        'p',
        { class: 'muted small' },
        'Every checkpoint the log signed. Each witness line is checked against the key the log lists for that witness; ',
        'to check against keys you trust, ',
        h('a', { href: '#/verify' }, 'verify a receipt'),
        ' with them.',
        latest !== null && latest !== undefined ? h('span', null, ' ', h('a', { href: `#/checkpoints?from=${latest}` }, 'Latest checkpoint')) : null,
      ),
      pager,
      table(['Tree size', 'Root', 'Witnesses', 'Signed note'], rows, { id: 'checkpoints', empty: 'No checkpoint from this size on.' }),
    ),
  );
  return view;
}

function notFound(path) {
  return h(
    'div',
    { class: 'view' },
    h('h1', null, 'No such page'),
    errorBox(new ApiError(404, 'not_found', `There is no explorer page at #/${path}.`)),
    h('p', null, h('a', { href: '#/' }, 'Back to the overview')),
  );
}

// ---- Routing ----------------------------------------------------------------------------------

const ROUTES = [
  [/^$/, 'overview', overview, () => 'Overview'],
  [/^entries$/, 'entries', entries, () => 'Entries'],
  [/^entry\/([^/]+)$/, 'entries', entry, (p) => `Entry #${p.get('index')}`, ['index']],
  [/^account\/([^/]+)$/, null, account, (p) => `Account ${shortId(p.get('id'))}`, ['id']],
  [/^merchant\/([^/]+)$/, null, merchant, (p) => `Merchant ${shortId(p.get('id'))}`, ['id']],
  [/^checkpoints$/, 'checkpoints', checkpoints, () => 'Checkpoints'],
  [/^verify$/, 'verify', verifyView, () => 'Verify a receipt'],
  [/^verify\/([^/]+)$/, 'verify', verifyView, () => 'Verify a receipt', ['index']],
];

let renderSeq = 0;

/** Shows `node` if no newer navigation started meanwhile. */
function show(seq, node) {
  if (seq !== renderSeq) return;
  main.replaceChildren(node);
}

async function render() {
  const seq = ++renderSeq;
  const hash = location.hash.replace(/^#\/?/, '');
  const q = hash.indexOf('?');
  const path = q < 0 ? hash : hash.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  let match = null;
  for (const [re, nav, view, title, names = []] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    names.forEach((n, i) => params.set(n, safeDecode(m[i + 1])));
    match = { nav, view, title };
    break;
  }
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', !!match && a.dataset.nav === match.nav);
  }
  refreshLogLine();
  if (!match) {
    document.title = 'Not found · pointsledger explorer';
    show(seq, notFound(path));
    return;
  }
  document.title = `${match.title(params)} · pointsledger explorer`;
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  try {
    show(seq, await match.view(params));
  } catch (e) {
    show(seq, h('div', { class: 'view' }, h('h1', null, match.title(params)), errorBox(e)));
  }
  if (seq === renderSeq) main.focus({ preventScroll: true });
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

async function refreshLogLine() {
  try {
    const info = await api('/v1/log');
    const cp = info.checkpoint_size;
    logLine.className = 'logline';
    logLine.replaceChildren(
      h('span', { class: 'dot ok', 'aria-hidden': 'true' }),
      h('span', { class: 'mono' }, info.origin),
      ` · ${fmtInt(info.size)} entries · `,
      cp === null || cp === undefined ? 'no checkpoint yet' : `checkpoint at ${fmtInt(cp)}`,
    );
  } catch (e) {
    logLine.className = 'logline down';
    logLine.replaceChildren(h('span', { class: 'dot', 'aria-hidden': 'true' }), e.message);
  }
}

document.getElementById('search').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = document.getElementById('search-input');
  const q = input.value.trim().toLowerCase();
  if (/^(0|[1-9][0-9]{0,14})$/.test(q)) {
    location.hash = `#/entry/${q}`;
  } else if (isId(q)) {
    // A registered merchant opens its program; any other id is an account.
    try {
      await api(`/v1/merchants/${q}`);
      location.hash = `#/merchant/${q}`;
    } catch {
      location.hash = `#/account/${q}`;
    }
  } else {
    input.setCustomValidity('Type an entry number or a 64-hex-digit id.');
    input.reportValidity();
    setTimeout(() => input.setCustomValidity(''), 2000);
    return;
  }
  input.value = '';
});

window.addEventListener('hashchange', render);
render();
