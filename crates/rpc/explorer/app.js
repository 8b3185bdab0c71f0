// The explorer's shell: routes (`#/device/0x…` and the like, so every view is a link that can
// be shared), the search box, and the live indicator. Each view is a function of its route
// that draws into <main> and returns what to stop when the view is left (its feeds).

import { get, getOrNull, rpc, h, put, ApiError } from './api.js';
import * as pages from './pages.js';
import * as devices from './device.js';

const routes = [
  [/^$/, pages.chainPage],
  [/^blocks$/, pages.blocksPage],
  [/^block\/(\d+)$/, pages.blockPage],
  [/^transactions$/, pages.transactionsPage],
  [/^tx\/(0x[0-9a-fA-F]{64})$/, pages.transactionPage],
  [/^reading\/(0x[0-9a-fA-F]{64})$/, pages.readingPage],
  [/^account\/(0x[0-9a-fA-F]{40})$/, pages.accountPage],
  [/^devices$/, devices.devicesPage],
  [/^device\/(0x[0-9a-fA-F]{40})$/, devices.devicePage],
  [/^search\/(.+)$/, searchPage],
];

const view = document.getElementById('view');
const liveDot = document.getElementById('live');
let stopView = () => {};
let generation = 0;

/** The view's context: its query string, and a way to say whether the feed is live. */
function context(query) {
  return {
    query,
    live(state) {
      liveDot.className = `live ${state === 'live' ? 'on' : 'off'}`;
      liveDot.title = `Live feed: ${state}`;
    },
  };
}

async function render() {
  stopView();
  stopView = () => {};
  const gen = ++generation;
  const [path, qs = ''] = decodeURIComponent(location.hash.replace(/^#\/?/, '')).split('?');
  const query = new URLSearchParams(qs);
  const match = routes.map(([re, page]) => [path.match(re), page]).find(([m]) => m);
  const started = performance.now();
  view.replaceChildren(h('p.muted', {}, 'Loading…'));
  try {
    if (!match) throw new ApiError(404, 'not_found', `no page ${path}`);
    const [m, page] = match;
    const out = h('div', { id: 'page' });
    const stop = await page(out, ...m.slice(1), context(query));
    if (gen !== generation) return stop?.();
    view.replaceChildren(out);
    stopView = stop ?? (() => {});
    view.dataset.renderMs = (performance.now() - started).toFixed(1);
    document.title = `${out.querySelector('h1')?.textContent ?? 'explorer'} · iotchain`;
  } catch (e) {
    if (gen !== generation) return;
    console.error(e);
    view.replaceChildren(
      h('h1', {}, e.status === 404 ? 'Not found' : 'Something went wrong'),
      h('p.error', {}, e.message),
      h('p', {}, h('a', { href: '#/' }, 'Back to the chain')),
    );
  }
}

/** Where a search leads: the first kind of thing the text names that exists. */
async function searchPage(out, text) {
  const q = text.trim();
  const go = (route) => {
    location.replace(`#/${route}`);
    return undefined;
  };
  if (/^\d+$/.test(q)) return go(`block/${q}`);
  if (/^0x[0-9a-fA-F]{64}$/.test(q)) {
    if (await getOrNull(`/v1/readings/${q}`)) return go(`reading/${q}`);
    if (await getOrNull(`/v1/transactions/${q}`)) return go(`tx/${q}`);
    if (await rpc('eth_getTransactionByHash', [q])) return go(`tx/${q}`);
    const block = await rpc('eth_getBlockByHash', [q, false]);
    if (block) return go(`block/${parseInt(block.number, 16)}`);
    put(out, h('h1', {}, 'Nothing found'), h('p', {}, `No reading, transaction or block has the hash ${q}.`));
    return undefined;
  }
  if (/^0x[0-9a-fA-F]{40}$/.test(q)) {
    if (await getOrNull(`/v1/devices/${q}`)) return go(`device/${q}`);
    return go(`account/${q}`);
  }
  return go(`devices?q=${encodeURIComponent(q)}`);
}

document.getElementById('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = document.getElementById('q').value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
});
window.addEventListener('hashchange', render);
render();

// For tests and the curious: what the page knows of itself.
window.iotchainExplorer = { get, rpc };
