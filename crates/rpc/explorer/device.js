// The explorer's device views: the searchable list, and a device's page with its keys, gaps,
// hooks (and what their contracts logged), recent readings, and one chart per stream that
// extends live and whose range can be proven complete here in the browser.

import { get, rpc, follow, chain, h, put, link, facts, table, short, time, dataText, labelsText, numberAt, firstNumberPath } from './api.js';
import { Chart } from './chart.js';
import { keccak256, verifyRangeProof } from './verify.js';
import { verdict, logLine } from './pages.js';

export async function devicesPage(out, ctx) {
  const q = ctx.query.get('q') ?? '';
  const after = ctx.query.get('after') ?? '';
  const owner = ctx.query.get('owner') ?? '';
  const limit = ctx.query.get('limit') ?? '';
  const kept = { ...(q && { q }), ...(owner && { owner }), ...(limit && { limit }) };
  const list = await get(`/v1/devices?${new URLSearchParams({ limit: '100', ...kept, ...(after && { after }) })}`);
  const onward = new URLSearchParams({ ...kept, after: list.next ?? '' });
  const first = new URLSearchParams(kept).toString();
  const input = h('input', { type: 'search', value: q, placeholder: 'address, owner, model or label', 'aria-label': 'Filter devices', id: 'device-filter' });
  const form = h('form', { onsubmit: (e) => { e.preventDefault(); location.hash = `#/devices?q=${encodeURIComponent(input.value.trim())}`; } }, input, ' ', h('button.btn', { type: 'submit' }, 'Filter'));
  put(out, 
    h('h1', {}, q ? `Devices matching “${q}”` : owner ? `Devices of ${short(owner, 4)}` : 'Devices'),
    h('div.card', {}, form),
    list.devices.length
      ? table(
          ['Device', 'Model', 'Labels', 'Owner', 'Status', 'Readings', 'Last reading'],
          list.devices.map((d) => [
            link(`device/${d.address}`, short(d.address, 6)),
            d.model,
            labelsText(d.labels),
            link(`account/${d.owner}`, short(d.owner, 4)),
            d.status,
            d.reading_count,
            d.reading_count ? time(d.last_ts) : '—',
          ]),
          'devices',
        )
      : h('p.muted', {}, 'No device matches.'),
    list.next || after
      ? h('p', {}, after ? link(`devices${first ? `?${first}` : ''}`, 'First page') : null,
          after && list.next ? ' · ' : null,
          list.next ? h('a', { id: 'devices-next', href: `#/devices?${onward}` }, 'Next devices →') : null)
      : null,
  );
}

/** Event signatures the page names in logs (the cold-chain escrow's, the IoT precompile's). */
const EVENTS = [
  'Released(address,uint256)',
  'Refunded(address,uint256,uint64,int256)',
  'Reading(uint64,int256)',
  'DeviceRegistered(address,address,int64,bytes,string)',
  'KeyRotated(address,address,int64,bytes)',
  'DeviceRevoked(address,address)',
  'Transfer(address,address,uint256)',
];
let eventNames = null;
function names() {
  if (!eventNames) {
    const enc = new TextEncoder();
    const hex = (b) => `0x${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
    eventNames = new Map(EVENTS.map((e) => [hex(keccak256(enc.encode(e))), e.split('(')[0]]));
  }
  return eventNames;
}

/** Ranges a chart offers, in ms (`null`: the whole stream). */
const RANGES = [['1h', 3600e3], ['1d', 86400e3], ['7d', 7 * 86400e3], ['all', null]];
/** A range with at most this many readings is drawn from raw points; more, from buckets. */
const RAW_LIMIT = 20000;
/** The aggregate view aims at about this many buckets. */
const BUCKETS = 600;
const BUCKET_SIZES = [['1m', 60e3], ['5m', 300e3], ['15m', 900e3], ['1h', 3600e3], ['6h', 21600e3], ['1d', 86400e3], ['7d', 604800e3]];

/** One stream's chart card. */
class StreamChart {
  constructor(device, stream) {
    this.device = device;
    this.stream = stream;
    this.path = firstNumberPath(stream.latest?.data);
    this.canvas = h('canvas', { dataset: { stream: stream.stream } });
    this.chart = new Chart(this.canvas);
    this.note = h('span.muted');
    this.proof = h('div', { dataset: { proofFor: stream.stream } });
    this.range = stream.count > RAW_LIMIT ? '7d' : 'all';
    this.buttons = RANGES.map(([name]) =>
      h('button', { type: 'button', 'aria-pressed': String(name === this.range), onclick: () => this.show(name) }, name),
    );
    this.card = h(
      'section.card.chart-card',
      { dataset: { stream: stream.stream } },
      h('header', {}, h('h3', {}, stream.stream), h('span.muted', {}, this.path ? `value ${this.path}` : ''), h('span.ranges', {}, this.buttons), this.note,
        h('button.btn', { type: 'button', onclick: () => this.prove(), dataset: { action: 'prove' } }, 'Verify this range')),
      this.canvas,
      this.proof,
    );
  }

  /** The device-time window of range `name`, ending at the stream's newest reading. */
  window(name) {
    const span = RANGES.find(([n]) => n === name)[1];
    const end = this.stream.last_ts;
    return [span == null ? this.stream.first_ts : Math.max(this.stream.first_ts, end - span), end];
  }

  async show(name) {
    this.range = name;
    this.buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.textContent === name)));
    this.proof.replaceChildren();
    if (this.path === null) {
      this.note.textContent = ' (not numeric: no chart)';
      this.chart.setPoints([], []);
      return;
    }
    const [from, to] = this.window(name);
    this.chart.range = [from, to];
    const base = `/v1/devices/${this.device}`;
    const span = to - from;
    // Few readings, or a short span: raw points. Otherwise the node's minute aggregates.
    const fewEnough = this.stream.count <= RAW_LIMIT || span <= 3600e3;
    if (fewEnough) {
      const xs = [];
      const ys = [];
      let cursor = null;
      do {
        const qs = new URLSearchParams({ stream: this.stream.stream, from_ts: from, to_ts: to, limit: 1000 });
        if (cursor) qs.set('cursor', cursor);
        const page = await get(`${base}/readings?${qs}`);
        for (const r of page.readings) {
          const v = numberAt(r.data, this.path);
          if (v !== null) { xs.push(r.ts); ys.push(v); }
        }
        cursor = page.next_cursor;
        this.chart.setPoints(xs, ys);
        this.note.textContent = ` ${xs.length.toLocaleString()} readings`;
      } while (cursor && xs.length < RAW_LIMIT * 5 && this.range === name);
    } else {
      const [bucket, ms] = BUCKET_SIZES.find(([, ms]) => span / ms <= BUCKETS) ?? BUCKET_SIZES.at(-1);
      const qs = new URLSearchParams({ bucket, from_ts: from, to_ts: to });
      if (this.path) qs.set('path', this.path);
      const series = await get(`${base}/streams/${encodeURIComponent(this.stream.stream)}/series?${qs}`);
      this.chart.setBuckets(series.buckets, ms);
      const n = series.buckets.reduce((s, b) => s + b.count, 0);
      this.note.textContent = ` ${n.toLocaleString()} readings in ${series.buckets.length} buckets of ${bucket}`;
    }
  }

  /** A reading of this stream became final. */
  add(r) {
    this.stream.count += 1;
    this.stream.last_ts = Math.max(this.stream.last_ts, r.ts);
    const v = numberAt(r.data, this.path);
    if (v !== null) this.chart.append(r.ts, v);
    if (!this.chart.buckets) this.note.textContent = ` ${this.chart.size.toLocaleString()} readings`;
  }

  /** Proves the shown range complete (a device-time range), checked in the browser. */
  async prove() {
    const [from, to] = this.window(this.range);
    this.proof.replaceChildren(h('span.badge.wait', {}, 'fetching the proof…'));
    const qs = new URLSearchParams({ stream: this.stream.stream, from_ts: from, to_ts: to, proof: 'true', limit: 10000 });
    let answer;
    try {
      answer = await get(`/v1/devices/${this.device}/readings?${qs}`);
    } catch (e) {
      this.proof.replaceChildren(h('span.badge.warn', {}, `no proof: ${e.code}`), h('span.muted', {}, ` ${e.message}`));
      return;
    }
    const { genesis } = await chain();
    const report = await verifyRangeProof(answer, genesis);
    this.proof.replaceChildren(verdict(report, `range-proof-${this.stream.stream}`), h('p.muted', {}, `${answer.readings.length} readings proven to be all of “${this.stream.stream}” from ${time(from)} to ${time(to)}.`));
  }
}

export async function devicePage(out, address, ctx) {
  const [detail, streams] = await Promise.all([get(`/v1/devices/${address}`), get(`/v1/devices/${address}/streams`)]);
  const d = detail;
  const charts = new Map(streams.streams.map((s) => [s.stream, new StreamChart(address, s)]));
  const recent = await get(`/v1/devices/${address}/readings?order=desc&limit=20`);
  const recentBody = h('tbody');
  const recentRow = (r) => h('tr', {}, [link(`reading/${r.id}`, short(r.id)), r.stream, r.seq, time(r.ts), link(`block/${r.height}`, r.height), h('code', {}, dataText(r.data))].map((c) => h('td', {}, c)));
  recentBody.replaceChildren(...recent.readings.map(recentRow));
  const keys = [
    ...d.previous_keys.map((k, i) => [`v${i}`, k.alg, h('code', {}, k.public_key), 'replaced']),
    [`v${d.key_version}`, d.alg, h('code', {}, d.public_key), d.status === 'active' ? 'current' : 'revoked'],
  ];
  const hookBox = h('div', { id: 'hooks' });
  put(out, 
    h('h1', {}, `Device ${d.address}`),
    h(
      'div.card',
      {},
      facts([
        ['Status', h(`span.badge.${d.status === 'active' ? 'ok' : 'bad'}`, {}, d.status)],
        ['Owner', link(`account/${d.owner}`, d.owner)],
        ['Model', d.model || '—'],
        ['Labels', labelsText(d.labels) || '—'],
        ['Registered', link(`block/${d.registered_at}`, `block ${d.registered_at}`)],
        ['Readings', h('span', { id: 'reading-count' }, d.reading_count)],
        ['Last seq', d.last_seq ?? '—'],
        ['Gaps', d.missing_count ? `${d.missing_count} seq missing in ${d.gaps.length} open gaps: ${d.gaps.map((g) => (g.from === g.to ? g.from : `${g.from}–${g.to}`)).join(', ')}` : 'none'],
        d.gaps_closed_through != null && ['Closed gaps', `every seq ≤ ${d.gaps_closed_through} that was missing is given up`],
      ]),
    ),
    h('h2', {}, 'Streams'),
    charts.size ? h('div', { id: 'charts' }, [...charts.values()].map((c) => c.card)) : h('p.muted', {}, 'No readings yet.'),
    h('h2', {}, 'Latest readings'),
    h('table', { id: 'recent' }, h('thead', {}, h('tr', {}, ['Id', 'Stream', 'Seq', 'Device time', 'Block', 'Data'].map((c) => h('th', {}, c)))), recentBody),
    h('h2', {}, 'Key history'),
    table(['Version', 'Alg', 'Public key', ''], keys),
    d.hooks.length ? h('h2', {}, 'Hooks') : null,
    hookBox,
  );
  // The charts load after first paint; so do the hooks' logs.
  for (const c of charts.values()) c.show(c.range).catch((e) => { c.note.textContent = ` ${e.message}`; });
  if (d.hooks.length) showHooks(hookBox, d).catch((e) => hookBox.append(h('p.error', {}, e.message)));

  let count = d.reading_count;
  const stop = follow(
    { device: address, blocks: 'false' },
    {
      onState: ctx.live,
      onReading(r) {
        count += 1;
        out.querySelector('#reading-count').textContent = count;
        let c = charts.get(r.stream);
        if (!c) return; // a new stream shows on reload
        c.add(r);
        recentBody.prepend(recentRow(r));
        while (recentBody.children.length > 20) recentBody.lastChild.remove();
        if (d.hooks.some((hk) => hk.stream === r.stream)) showHooks(hookBox, d).catch(() => {});
      },
    },
  );
  return stop;
}

/** Each hook's contract and what it logged: a cold-chain escrow's release or refund. */
async function showHooks(box, d) {
  const head = parseInt(await rpc('eth_blockNumber'), 16);
  const from = `0x${Math.max(d.registered_at, head - 9999).toString(16)}`;
  const sections = await Promise.all(
    d.hooks.map(async (hk) => {
      const logs = await rpc('eth_getLogs', [{ address: hk.contract, fromBlock: from, toBlock: 'latest' }]);
      const outcome = logs.map((l) => names().get(l.topics[0])).filter((n) => n === 'Released' || n === 'Refunded').at(-1);
      return h(
        'div.card',
        { dataset: { hook: hk.contract } },
        facts([
          ['Stream', hk.stream],
          ['Contract', link(`account/${hk.contract}`, hk.contract)],
          ['Gas per reading', hk.gas_limit.toLocaleString()],
          ['Deposit left', `${hk.deposit} wei`],
          ['Outcome', outcome ? h(`span.badge.${outcome === 'Released' ? 'ok' : 'warn'}`, { 'data-outcome': outcome }, outcome === 'Released' ? 'escrow released to the carrier' : 'escrow refunded to the shipper') : h('span.muted', {}, 'open')],
        ]),
        h('details', {}, h('summary', {}, `${logs.length} logs`), logs.slice(-50).reverse().map((l) => h('div', {}, link(`block/${parseInt(l.blockNumber, 16)}`, parseInt(l.blockNumber, 16)), ' ', logLine(l, names())))),
      );
    }),
  );
  box.replaceChildren(...sections);
}
