// Building the page without markup: every string from the log or the user goes into the DOM
// as a text node or an attribute value, never through innerHTML, so no data can become HTML.

/**
 * `h('a', { href: '#/entry/1', class: 'x' }, 'text', child, ...)`. Props: `class`, `dataset`
 * (an object), `on<event>` (a listener), anything else as an attribute (false, null and
 * undefined omit it, true sets it empty). Children: nodes, strings, numbers, nested arrays;
 * null, undefined and false are skipped.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else {
      if ((k === 'href' || k === 'src') && !/^(?:#|\/(?!\/))/.test(String(v))) {
        // Links are built from validated ids and numbers only; refuse anything else outright
        // (another origin, a javascript: URL) rather than render it.
        throw new Error(`refusing to link to ${v}`);
      }
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A public key id: 64 lowercase hex digits. */
export function isId(s) {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
}

/** `ca93ac17…be7c`, for tables; the full id goes in the title. */
export function shortId(id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function fmtInt(n) {
  return typeof n === 'number' ? intFormat.format(n) : String(n);
}

/** `+1,000`, `−200` (a real minus sign), `0`. */
export function fmtSigned(n) {
  if (n > 0) return `+${fmtInt(n)}`;
  if (n < 0) return `\u2212${fmtInt(-n)}`;
  return '0';
}

/** Unix milliseconds as `2026-01-01 01:00:00 UTC`. */
export function fmtTime(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  return d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}

/** A duration in the largest unit that divides it: `14 days`, `36 h`, `90 s`, `250 ms`. */
export function fmtDuration(ms) {
  const units = [
    [86_400_000, 'day', 'days'],
    [3_600_000, 'h', 'h'],
    [60_000, 'min', 'min'],
    [1000, 's', 's'],
  ];
  if (ms === 0) return '0';
  for (const [size, one, many] of units) {
    if (ms % size === 0) {
      const n = ms / size;
      return `${fmtInt(n)} ${n === 1 ? one : many}`;
    }
  }
  return `${fmtInt(ms)} ms`;
}

/** Basis points as a percentage: 1000 → `10%`, 1250 → `12.5%`. */
export function fmtBps(bps) {
  return `${(bps / 100).toLocaleString('en-US', { maximumFractionDigits: 2 })}%`;
}

/** A link to an account (or a merchant), shortened, with the full id as its title. */
export function idLink(id, kind = 'account') {
  if (!isId(id)) return h('span', { class: 'mono' }, String(id));
  return h('a', { class: 'mono id', href: `#/${kind}/${id}`, title: id }, shortId(id));
}

export function entryLink(index) {
  return h('a', { class: 'mono', href: `#/entry/${Number(index)}` }, `#${index}`);
}

/** A labelled value for a definition list. */
export function field(label, ...value) {
  return [h('dt', null, label), h('dd', null, ...value)];
}

/** A table with a header row; `rows` are arrays of cells (nodes or text). */
export function table(headers, rows, { empty = 'Nothing yet.', id } = {}) {
  if (rows.length === 0) return h('p', { class: 'muted', id }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { id },
      h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))),
    ),
  );
}

/** A card: a titled section. */
export function card(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...body);
}

/** A copy-to-clipboard button for `text` (where the browser allows the clipboard). */
export function copyButton(text, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'small secondary' }, label);
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
    } catch {
      b.textContent = 'Select and copy';
    }
    setTimeout(() => {
      b.textContent = label;
    }, 1500);
  });
  return b;
}
