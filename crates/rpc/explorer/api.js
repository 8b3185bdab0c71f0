// The explorer's reach into its node: REST under /v1, JSON-RPC at /, the live feed, and the
// small DOM and formatting helpers every page shares. Same origin only (the node serves the
// page), so nothing here needs CORS or a configured URL.

/** An answer the node refused, with its stable error code (docs/api.md, "Errors"). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET a REST path (`/v1/...`) as JSON; a non-2xx answer throws an ApiError. */
export async function get(path, { signal } = {}) {
  const res = await fetch(path, { signal, headers: { accept: 'application/json' } });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(res.status, 'bad_json', `${path}: the node answered something that is not JSON`);
  }
  if (!res.ok) {
    const err = body?.error ?? {};
    throw new ApiError(res.status, err.code ?? String(res.status), err.message ?? res.statusText);
  }
  return body;
}

/** GET that answers `null` for a 404 instead of throwing. */
export async function getOrNull(path, opts) {
  try {
    return await get(path, opts);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

let rpcId = 0;
/** One Ethereum JSON-RPC call. */
export async function rpc(method, params = []) {
  const res = await fetch('/', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new ApiError(res.status, String(body.error.code), body.error.message);
  return body.result;
}

/**
 * Follows `/v1/feed` with `query` (an object of its parameters), calling `onReading` and
 * `onBlock` with each event's data. EventSource reconnects by itself and resumes after the
 * last event id, so nothing is lost or repeated. Returns a function that stops it.
 */
export function follow(query, { onReading, onBlock, onState } = {}) {
  const qs = new URLSearchParams(query).toString();
  const source = new EventSource(`/v1/feed${qs ? `?${qs}` : ''}`);
  if (onReading) source.addEventListener('reading', (e) => onReading(JSON.parse(e.data)));
  if (onBlock) source.addEventListener('block', (e) => onBlock(JSON.parse(e.data)));
  source.onopen = () => onState?.('live');
  source.onerror = () => onState?.(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  return () => source.close();
}

/** The chain as the page needs it once: status, and what a proof is checked against. */
let chainPromise = null;
export function chain() {
  chainPromise ??= get('/v1/status').then((s) => ({
    status: s,
    genesis: { genesis_hash: s.genesis_hash, chain_id: s.chain_id, validators: s.validators, reading_aad: s.reading_aad },
  }));
  return chainPromise;
}

// ---- DOM ----

/**
 * Builds an element: `h('a.link', {href}, child…)`. Children are nodes or text (never parsed
 * as HTML, so data from the chain cannot inject markup).
 */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Appends `children` to `parent`, leaving out the absent ones (`null`, `false`). */
export function put(parent, ...children) {
  parent.append(...children.flat().filter((c) => c != null && c !== false));
}

/** A link inside the explorer (`#/…`). */
export const link = (route, text, cls = '') => h(`a${cls ? `.${cls}` : ''}`, { href: `#/${route}` }, text);

/** A definition list of [label, value] rows. */
export const facts = (rows) =>
  h('dl.facts', {}, rows.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));

/** A table: `columns` are header texts, `rows` arrays of cells. */
export function table(columns, rows, cls = '') {
  return h(
    `table${cls ? `.${cls}` : ''}`,
    {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      rows.length
        ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
        : h('tr', {}, h('td.muted', { colspan: columns.length }, 'none')),
    ),
  );
}

// ---- formats ----

/** `0x1234…abcd`, whole in the title. */
export function short(hex, keep = 6) {
  if (typeof hex !== 'string' || hex.length <= 2 + keep * 2) return h('code', {}, hex ?? '');
  return h('code', { title: hex }, `${hex.slice(0, 2 + keep)}…${hex.slice(-keep)}`);
}

/** A time in ms since the epoch, as local ISO-like text. */
export function time(ms) {
  if (ms == null) return '—';
  const d = new Date(Number(ms));
  return Number.isNaN(d.getTime()) ? String(ms) : d.toLocaleString(undefined, { hour12: false });
}

/** A device's labels as `key=value, …`. */
export const labelsText = (labels) => labels.map((l) => `${l.key}=${l.value}`).join(', ');

/** Reading data (JSON by the API's mapping) as short text. */
export function dataText(data) {
  const text = JSON.stringify(data);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

/** The number a reading's data stands for: the data itself, or its value at `path`. */
export function numberAt(data, path) {
  let v = data;
  if (path) for (const key of path.split('.')) v = v == null ? v : v[key];
  return typeof v === 'number' ? v : null;
}

/** The first path (`''` for the data itself) at which `data` holds a number, or null. */
export function firstNumberPath(data, prefix = '', depth = 0) {
  if (typeof data === 'number') return prefix;
  if (depth > 3 || data == null || typeof data !== 'object') return null;
  if (Object.keys(data).some((k) => k.startsWith('$'))) return null;
  for (const [k, v] of Object.entries(data)) {
    const p = firstNumberPath(v, prefix ? `${prefix}.${k}` : k, depth + 1);
    if (p !== null) return p;
  }
  return null;
}
