// The explorer's chain views: the live overview, blocks, transactions, accounts, and a
// reading with its proof checked here in the browser (verify.js).

import { get, getOrNull, rpc, follow, chain, h, put, link, facts, table, short, time, dataText } from './api.js';
import { verifyReadingProof, decodeReading, hexToBytes } from './verify.js';
import { cborToJson } from './cbor.js';

const hex = (n) => `0x${Number(n).toString(16)}`;
const num = (x) => (typeof x === 'string' && x.startsWith('0x') ? parseInt(x, 16) : Number(x));

/** Final blocks `to`, `to − 1`, … (at most `limit`). */
const blockList = (params) => get(`/v1/blocks?${new URLSearchParams(params)}`);

function blockRow(b) {
  const hd = b.header;
  return [
    link(`block/${hd.height}`, hd.height),
    short(b.hash),
    time(hd.timestamp_ms),
    hd.reading_count,
    hd.transaction_count,
    short(hd.proposer),
  ];
}
const BLOCK_COLUMNS = ['Height', 'Hash', 'Time', 'Readings', 'Transactions', 'Proposer'];

/** A certificate's signers, as a set of keys. */
const signers = (cert) => new Set((cert?.signatures ?? []).map((s) => s.validator));

// ---- the chain, live ----

export async function chainPage(out, ctx) {
  const [{ status }, list] = await Promise.all([chain(), blockList({ limit: 20 })]);
  let blocks = list.blocks;
  const tiles = {
    height: h('div.v', { id: 'height' }, status.height),
    rate: h('div.v', { id: 'block-rate' }, '—'),
    rps: h('div.v', { id: 'readings-rate' }, '—'),
    finality: h('div.v', { id: 'finality' }, '—'),
  };
  const tile = (k, v) => h('div.tile', {}, h('div.k', {}, k), v);
  const lastVote = new Map(); // validator key → highest height whose certificate it signed
  const tbody = h('tbody');
  const validatorBody = h('tbody');

  const rates = () => {
    if (blocks.length < 2) return;
    const newest = blocks[0].header;
    const oldest = blocks[blocks.length - 1].header;
    const secs = (newest.timestamp_ms - oldest.timestamp_ms) / 1000;
    if (secs <= 0) return;
    const readings = blocks.slice(0, -1).reduce((n, b) => n + b.header.reading_count, 0);
    tiles.rate.textContent = `${((blocks.length - 1) / secs).toFixed(2)} /s`;
    tiles.rps.textContent = `${Math.round(readings / secs).toLocaleString()} /s`;
  };
  const drawBlocks = () => tbody.replaceChildren(...blocks.map((b) => h('tr', {}, blockRow(b).map((c) => h('td', {}, c)))));
  const drawValidators = (st) => {
    validatorBody.replaceChildren(
      ...st.consensus.peers.map((p) =>
        h(
          'tr',
          {},
          h('td', {}, short(p.public_key, 8)),
          h('td', {}, p.this_node ? 'this node' : ''),
          h('td', {}, h(`span.badge.${p.live ? 'ok' : 'bad'}`, {}, p.live ? 'live' : 'silent')),
          h('td', {}, p.this_node ? '—' : p.heard_ms_ago == null ? 'never' : `${(p.heard_ms_ago / 1000).toFixed(1)} s ago`),
          h('td', {}, lastVote.has(p.public_key) ? link(`block/${lastVote.get(p.public_key)}`, `block ${lastVote.get(p.public_key)}`) : '—'),
        ),
      ),
    );
  };
  const noteVotes = (height, cert) => {
    for (const v of signers(cert)) lastVote.set(v, Math.max(lastVote.get(v) ?? 0, height));
  };
  // The votes of the newest blocks' certificates: each validator's last finalize vote.
  const certs = await Promise.all(blocks.slice(0, 5).map((b) => get(`/v1/blocks/${b.header.height}`)));
  certs.forEach((c) => noteVotes(c.header.height, c.certificate));

  let latest = status;
  const refresh = async () => {
    latest = await get('/v1/status');
    tiles.finality.textContent = `${latest.consensus.last_finality_ms} ms`;
    drawValidators(latest);
  };
  await refresh();
  rates();
  drawBlocks();

  put(out, 
    h('h1', {}, `Chain ${status.chain_id}`),
    h('div.tiles', {}, tile('Height', tiles.height), tile('Block rate', tiles.rate), tile('Readings', tiles.rps), tile('Finality latency', tiles.finality)),
    h('h2', {}, 'Validators'),
    h('table', { id: 'validators' }, h('thead', {}, h('tr', {}, ['Key', '', 'Liveness', 'Last heard', 'Last finalize vote'].map((c) => h('th', {}, c)))), validatorBody),
    h('h2', {}, 'Latest blocks ', link('blocks', 'all →')),
    h('table', { id: 'blocks' }, h('thead', {}, h('tr', {}, BLOCK_COLUMNS.map((c) => h('th', {}, c)))), tbody),
    h('p.muted', {}, `Genesis ${status.genesis_hash} · node ${status.version}`),
  );

  const timer = setInterval(() => refresh().catch(() => ctx.live('reconnecting')), 3000);
  const stop = follow(
    { readings: 'false' },
    {
      onState: ctx.live,
      async onBlock(ev) {
        const b = await get(`/v1/blocks/${ev.height}`);
        noteVotes(ev.height, b.certificate);
        blocks = [{ hash: b.hash, header: b.header }, ...blocks.filter((x) => x.header.height !== ev.height)].slice(0, 20);
        tiles.height.textContent = ev.height;
        rates();
        drawBlocks();
        drawValidators(latest);
      },
    },
  );
  return () => {
    stop();
    clearInterval(timer);
  };
}

// ---- blocks ----

export async function blocksPage(out, ctx) {
  const to = ctx.query.get('to');
  const list = await blockList({ limit: 50, ...(to ? { to } : {}) });
  put(out, 
    h('h1', {}, 'Blocks'),
    table(BLOCK_COLUMNS, list.blocks.map(blockRow)),
    list.next_to != null ? h('p', {}, h('a', { href: `#/blocks?to=${list.next_to}` }, 'Older blocks →')) : null,
  );
}

export async function blockPage(out, height, ctx) {
  const offset = Number(ctx.query.get('offset') ?? 0);
  const [b, items, { status }] = await Promise.all([
    get(`/v1/blocks/${height}`),
    get(`/v1/blocks/${height}/items?offset=${offset}&limit=100`),
    chain(),
  ]);
  const hd = b.header;
  const cert = b.certificate;
  const quorum = status.validators.length - Math.floor((status.validators.length - 1) / 3);
  const receipts = hd.height > 0 ? await rpc('eth_getBlockReceipts', [hex(hd.height)]).catch(() => []) : [];
  put(out, 
    h('h1', {}, `Block ${hd.height}`),
    h(
      'div.card',
      {},
      facts([
        ['Hash', h('code', {}, b.hash)],
        ['Parent', hd.height > 0 ? link(`block/${hd.height - 1}`, hd.parent_hash) : h('code', {}, hd.parent_hash)],
        ['Time', time(hd.timestamp_ms)],
        ['Proposer', h('code', {}, hd.proposer)],
        ['Readings', `${hd.reading_count} (root ${hd.readings_root})`],
        ['Transactions', `${hd.transaction_count} (root ${hd.transactions_root})`],
        ['State root', h('code', {}, hd.state_root)],
        ['Chain id', hd.chain_id],
      ]),
    ),
    h('h2', {}, 'Finality certificate'),
    cert
      ? h(
          'div.card',
          {},
          facts([
            ['Certified block', cert.height === hd.height ? 'this one' : link(`block/${cert.height}`, `descendant ${cert.height}`)],
            ['View', `${cert.view} (parent view ${cert.parent_view}), epoch ${cert.epoch}`],
            ['Signers', `${cert.signatures.length} of ${status.validators.length} (quorum ${quorum})`],
          ]),
          h('ul.checks', { id: 'signers' }, cert.signatures.map((s) => h('li', {}, h('code', {}, s.validator)))),
        )
      : h('p.muted', {}, 'Genesis has no certificate.'),
    h('h2', {}, `Readings (${items.reading_count})`),
    table(
      ['#', 'Id', 'Device', 'Stream', 'Seq', 'Device time', 'Data'],
      items.readings.map((r) => [r.index, link(`reading/${r.id}`, short(r.id)), link(`device/${r.device}`, short(r.device, 4)), r.stream, r.seq, time(r.ts), h('code', {}, dataText(r.data))]),
      'readings',
    ),
    items.reading_count > offset + items.readings.length
      ? h('p', {}, h('a', { href: `#/block/${height}?offset=${offset + 100}` }, `Next readings (${offset + 101}–) →`))
      : null,
    h('h2', {}, `Transactions (${items.transactions.length})`),
    table(
      ['#', 'Kind', 'Hash', 'What'],
      items.transactions.map((t) => [t.index, t.kind, link(`tx/${t.hash}`, short(t.hash)), t.op ? opText(t) : '']),
    ),
    receipts.length ? h('h2', {}, 'Receipts (Ethereum transactions and reading hooks)') : null,
    receipts.length ? receiptTable(receipts) : null,
  );
}

function opText(t) {
  const op = t.op;
  const who = link(`account/${t.owner}`, short(t.owner, 4));
  if (op.type === 'register') return h('span', {}, who, ` registers a ${op.model || 'device'}`);
  if (op.type === 'register_many') {
    const certified = op.devices.filter((d) => d.certificate).length;
    return h('span', {}, who, ` registers ${op.devices.length} devices` + (certified ? ` (${certified} certified)` : ''));
  }
  if (op.type === 'manufacturer') {
    return h('span', {}, who, op.authorised ? ' trusts manufacturer ' : ' stops trusting manufacturer ', short(op.manufacturer, 4));
  }
  return h('span', {}, who, ` ${op.type}s `, link(`device/${op.device}`, short(op.device, 4)));
}

/** Receipts with their logs (hook receipts included). */
export function receiptTable(receipts, names = new Map()) {
  return table(
    ['Tx', 'From → to', 'Status', 'Gas', 'Logs'],
    receipts.map((r) => [
      link(`tx/${r.transactionHash}`, short(r.transactionHash)),
      h('span', {}, link(`account/${r.from}`, short(r.from, 4)), ' → ', r.to ? link(`account/${r.to}`, short(r.to, 4)) : 'create'),
      h(`span.badge.${num(r.status) === 1 ? 'ok' : 'bad'}`, {}, num(r.status) === 1 ? 'success' : 'reverted'),
      num(r.gasUsed),
      h('div', {}, (r.logs ?? []).map((l) => logLine(l, names))),
    ]),
    'receipts',
  );
}

/** One log: its event's name when known (see device.js), else topic 0. */
export function logLine(l, names = new Map()) {
  const name = names.get(l.topics?.[0]) ?? short(l.topics?.[0] ?? '(anonymous)');
  return h('div', {}, h('strong', {}, name), ' ', h('span.muted', {}, `by `), short(l.address, 4), ' ', h('code', {}, l.data.length > 66 ? `${l.data.slice(0, 66)}…` : l.data));
}

// ---- transactions ----

export async function transactionsPage(out, ctx) {
  const to = ctx.query.get('to');
  const list = await blockList({ limit: 20, has_transactions: 'true', ...(to ? { to } : {}) });
  const all = await Promise.all(list.blocks.map((b) => get(`/v1/blocks/${b.header.height}/items?limit=1`)));
  const rows = all.flatMap((items) =>
    items.transactions.map((t) => [link(`block/${items.height}`, items.height), t.kind, link(`tx/${t.hash}`, short(t.hash)), t.op ? opText(t) : '']),
  );
  put(out, 
    h('h1', {}, 'Transactions'),
    rows.length ? table(['Block', 'Kind', 'Hash', 'What'], rows) : h('p.muted', {}, 'No transactions in the blocks looked at.'),
    list.next_to != null ? h('p', {}, h('a', { href: `#/transactions?to=${list.next_to}` }, 'Older →')) : null,
  );
}

export async function transactionPage(out, hash) {
  const owner = await getOrNull(`/v1/transactions/${hash}`);
  const eth = await rpc('eth_getTransactionByHash', [hash]);
  if (eth) {
    const receipt = await rpc('eth_getTransactionReceipt', [hash]);
    put(out, 
      h('h1', {}, 'Ethereum transaction'),
      h(
        'div.card',
        {},
        facts([
          ['Hash', h('code', {}, hash)],
          ['Status', receipt ? h(`span.badge.${num(receipt.status) === 1 ? 'ok' : 'bad'}`, {}, num(receipt.status) === 1 ? 'success' : 'reverted') : 'pending'],
          ['Block', eth.blockNumber ? link(`block/${num(eth.blockNumber)}`, num(eth.blockNumber)) : 'pending'],
          ['From', link(`account/${eth.from}`, eth.from)],
          ['To', eth.to ? link(`account/${eth.to}`, eth.to) : `contract creation${receipt?.contractAddress ? ` → ${receipt.contractAddress}` : ''}`],
          ['Value', `${BigInt(eth.value).toString()} wei`],
          ['Nonce', num(eth.nonce)],
          ['Gas used', receipt ? num(receipt.gasUsed) : '—'],
          ['Input', h('code', {}, eth.input.length > 200 ? `${eth.input.slice(0, 200)}…` : eth.input)],
        ]),
      ),
      receipt?.logs?.length ? h('h2', {}, 'Logs') : null,
      receipt?.logs?.length ? h('div.card', {}, receipt.logs.map((l) => logLine(l))) : null,
    );
    return;
  }
  if (!owner) {
    put(out, h('h1', {}, 'Unknown transaction'), h('p', {}, `This node knows no transaction ${hash}.`));
    return;
  }
  let tx = null;
  if (owner.status === 'final') {
    const items = await get(`/v1/blocks/${owner.height}/items?limit=1`);
    tx = items.transactions.find((t) => t.hash === hash);
  }
  put(out, 
    h('h1', {}, 'Owner transaction'),
    h(
      'div.card',
      {},
      facts([
        ['Hash', h('code', {}, hash)],
        ['Status', h(`span.badge.${owner.status === 'final' ? 'ok' : 'wait'}`, {}, owner.status)],
        ['Block', owner.height != null ? link(`block/${owner.height}`, owner.height) : 'pending'],
        tx && ['Owner', link(`account/${tx.owner}`, tx.owner)],
        tx && ['Nonce', tx.nonce],
        tx && ['Operation', opText(tx)],
      ]),
    ),
    tx ? h('pre', {}, JSON.stringify(tx.op, null, 2)) : null,
  );
}

// ---- accounts ----

export async function accountPage(out, address) {
  const [owner, balance, nonce, code, owned] = await Promise.all([
    get(`/v1/owners/${address}`),
    rpc('eth_getBalance', [address, 'latest']),
    rpc('eth_getTransactionCount', [address, 'latest']),
    rpc('eth_getCode', [address, 'latest']),
    get(`/v1/devices?owner=${address}`),
  ]);
  const isContract = code && code !== '0x';
  let logs = [];
  if (isContract) {
    const head = num(await rpc('eth_blockNumber'));
    logs = await rpc('eth_getLogs', [{ address, fromBlock: hex(Math.max(0, head - 9999)), toBlock: 'latest' }]).catch(() => []);
  }
  put(out, 
    h('h1', {}, `${isContract ? 'Contract' : 'Account'} ${address}`),
    h(
      'div.card',
      {},
      facts([
        ['Balance', `${(Number(BigInt(balance)) / 1e18).toLocaleString(undefined, { maximumFractionDigits: 6 })} (${BigInt(balance)} wei)`],
        ['Nonce', num(nonce)],
        ['Owner of devices', owner.authorised ? `yes, ${owner.device_count} registered (owner nonce ${owner.nonce})` : 'not an owner listed in genesis'],
        isContract && ['Code', `${(code.length - 2) / 2} bytes`],
      ]),
    ),
    owned.devices.length ? h('h2', {}, 'Devices') : null,
    owned.devices.length
      ? table(['Device', 'Model', 'Status', 'Readings'], owned.devices.map((d) => [link(`device/${d.address}`, short(d.address, 6)), d.model, d.status, d.reading_count]))
      : null,
    owned.next ? h('p', {}, link(`devices?owner=${address}`, `All ${owner.device_count} devices →`)) : null,
    logs.length ? h('h2', {}, `Logs (last 10,000 blocks)`) : null,
    logs.length ? h('div.card', {}, logs.slice(-200).reverse().map((l) => h('div', {}, link(`block/${num(l.blockNumber)}`, num(l.blockNumber)), ' ', logLine(l)))) : null,
  );
}

// ---- a reading and its proof ----

/** A badge and the list of checks of a verification report. */
export function verdict(report, id) {
  const failed = report.checks.find((c) => !c.ok);
  return h(
    'div.card',
    { id },
    h(
      `span.badge.${report.ok ? 'ok' : 'bad'}`,
      { 'data-verdict': report.ok ? 'verified' : 'failed', 'data-part': failed?.part ?? '' },
      report.ok ? 'verified' : `failed: ${failed?.part ?? 'unknown'}`,
    ),
    h('span.muted', {}, report.ok ? ' checked in this browser (WebCrypto), against the genesis validators' : ''),
    h('ul.checks', {}, report.checks.map((c) => h(`li.${c.ok ? 'ok' : 'bad'}`, {}, h('strong', {}, c.part), c.detail ? `: ${c.detail}` : ''))),
  );
}

/**
 * The reading's data decoded here from the signed message (what the proof checks), and a
 * warning if the node's own JSON of it says something else.
 */
function dataView(message, nodeJson) {
  let data;
  try {
    data = cborToJson(decodeReading(hexToBytes(message)).data);
  } catch (e) {
    return h('p.error', { id: 'data' }, `the signed message does not decode: ${e.message}`);
  }
  const same = JSON.stringify(data) === JSON.stringify(nodeJson);
  return h(
    'div',
    {},
    h('p.muted', {}, 'Decoded in this browser from the signed message below.'),
    h('pre', { id: 'data', dataset: { matchesNode: String(same) } }, JSON.stringify(data, null, 2)),
    same ? null : h('p.error', {}, `The node's JSON of this reading differs: ${JSON.stringify(nodeJson)}`),
  );
}

export async function readingPage(out, id) {
  const st = await get(`/v1/readings/${id}`);
  put(out, h('h1', {}, 'Reading'));
  if (st.status !== 'final') {
    put(out, 
      h('div.card', {}, facts([
        ['Id', h('code', {}, id)],
        ['Status', h(`span.badge.${st.status === 'refused' ? 'bad' : 'wait'}`, {}, st.status)],
        st.error && ['Why', `${st.error.code}: ${st.error.message}`],
        st.ts != null && ['Device time', time(st.ts)],
      ])),
      st.status === 'pending' ? h('p.muted', {}, 'Not final yet: this page reloads when it is.') : null,
    );
    if (st.status === 'pending') {
      get(`/v1/readings/${id}?wait_ms=30000`).then((s) => s.status !== 'pending' && location.hash.endsWith(id) && window.dispatchEvent(new HashChangeEvent('hashchange')));
    }
    return;
  }
  const [items, bundle, { genesis }] = await Promise.all([
    get(`/v1/blocks/${st.height}/items?offset=${st.index}&limit=1`),
    get(`/v1/readings/${id}/proof`),
    chain(),
  ]);
  const r = items.readings[0];
  const badge = h('div', { id: 'proof' }, h('span.badge.wait', {}, 'checking…'));
  put(out, 
    h(
      'div.card',
      {},
      facts([
        ['Id', h('code', {}, id)],
        ['Device', link(`device/${r.device}`, r.device)],
        ['Stream', r.stream],
        ['Seq', r.seq],
        ['Device time', time(r.ts)],
        ['Block', h('span', {}, link(`block/${st.height}`, st.height), ` (reading ${st.index}), final ${time(st.block_time_ms)}`)],
        ['Delay', st.delay_ms != null ? `${st.delay_ms} ms from device time to acceptance` : '—'],
      ]),
    ),
    h('h2', {}, 'Data'),
    dataView(bundle.message, r.data),
    h('h2', {}, 'Proof'),
    badge,
    h('details', {}, h('summary', {}, 'Signed message (COSE_Sign1) and proof bundle'), h('pre', {}, JSON.stringify(bundle, null, 2))),
  );
  verifyReadingProof(bundle, genesis).then((report) => badge.replaceChildren(verdict(report, 'proof-report')));
}

