// The explorer in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a running `iotchain dev` (its simulated thermometers and cold-chain escrows). It
// finds a device, sees its chart grow as readings become final, opens a reading and sees its
// proof verified in the page (WebCrypto), sees tampered proofs fail naming the part, proves a
// chart's range complete, and sees the escrow's outcome on the sensor's page. Screenshots of
// each page go to target/explorer-screenshots/ (SCREENSHOTS to change it); figures (page weight, first paint, a 100,000
// point chart's draw time) are printed.
//
// IOTCHAIN_BIN (default target/debug/iotchain) and CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { BIN, freePort, getJson, launch, lines, shot as save } from "./harness.mjs";

let node, dataDir, base, browser, page, out;
const devices = [];
const pageErrors = [];
const foreignRequests = [];

const line = (re) => out.wait(re);
const api = (path) => getJson(base, path);
const shot = (name) => save(page, name);
const verdictOf = (sel) =>
  page.locator(`${sel} [data-verdict]`).first().waitFor({ timeout: 30_000 }).then(() =>
    page.locator(`${sel} [data-verdict]`).first().evaluate((e) => ({ verdict: e.dataset.verdict, part: e.dataset.part, text: e.textContent })),
  );

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "iotchain-explorer-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  node = spawn(BIN, ["dev", "--data-dir", dataDir, "--http-addr", `127.0.0.1:${port}`, "--devices", "3", "--rate", "4"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  out = lines(
    node.stdout,
    (l) => {
      const m = l.match(/registered simulated device (0x[0-9a-f]{40})/);
      if (m) devices.push(m[1]);
    },
    node,
  );
  // The node's log is shown only if it dies.
  const log = lines(node.stderr);
  node.once("exit", (code) => {
    if (code !== null && code !== 0) console.error(`iotchain dev exited with ${code}:\n${log.tail()}`);
  });
  await line(/API:/);
  // The simulator registers its devices, then deploys the escrows: wait for both.
  await line(/cold chain: shipment 2/);
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreignRequests.push(r.url());
  });
});

after(async () => {
  await browser?.close();
  if (node && node.exitCode === null) {
    const exited = new Promise((ok) => node.once("exit", ok));
    node.kill("SIGINT");
    await exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test("the chain page is live: the height grows and validators show their liveness", async () => {
  const res = await page.goto(`${base}/explorer/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()["content-security-policy"], /default-src 'none'/);
  await page.locator("#blocks tbody tr").first().waitFor();
  const h0 = Number(await page.locator("#height").textContent());
  await page.waitForFunction((h) => Number(document.querySelector("#height").textContent) > h, h0, { timeout: 20_000 });
  assert.equal(await page.locator("#validators .badge.ok").count(), 1, "the devnet's one validator is live");
  await page.waitForFunction(() => /\/s$/.test(document.querySelector("#readings-rate").textContent));
  await shot("chain");
  const weight = await page.evaluate(() =>
    performance.getEntriesByType("resource").concat(performance.getEntriesByType("navigation"))
      .filter((e) => e.name.includes("/explorer/"))
      .reduce((n, e) => n + (e.encodedBodySize || 0), 0),
  );
  console.log(`# explorer page weight: ${(weight / 1024).toFixed(1)} KiB (html, css, js; uncompressed)`);
});

test("search finds a device by model; its page paints fast and its chart grows live", async () => {
  await page.goto(`${base}/explorer/`);
  await page.fill("#q", "thermometer");
  await page.press("#q", "Enter");
  await page.locator("table.devices tbody tr").first().waitFor();
  assert.equal(await page.locator("table.devices tbody tr").count(), 3);
  await shot("devices");
  // Pages: two devices, then the third after the "next" link, then back to the first page.
  const sorted = [...devices].sort();
  await page.goto(`${base}/explorer/#/devices?limit=2`);
  await page.locator("#devices-next").waitFor();
  const shown = async () => page.locator("table.devices tbody tr td:first-child a").evaluateAll((as) => as.map((a) => a.getAttribute("href").split("/").pop()));
  assert.deepEqual(await shown(), sorted.slice(0, 2));
  await page.click("#devices-next");
  await page.locator("text=First page").waitFor();
  assert.deepEqual(await shown(), sorted.slice(2));
  assert.equal(await page.locator("#devices-next").count(), 0, "the last page has no next");
  await page.click("text=First page");
  await page.locator("#devices-next").waitFor();
  assert.deepEqual(await shown(), sorted.slice(0, 2));
  await page.goto(`${base}/explorer/`);
  await page.fill("#q", "thermometer");
  await page.press("#q", "Enter");
  await page.locator("table.devices tbody tr").first().waitFor();
  const address = devices[0];
  await page.click(`table.devices a[href="#/device/${address}"]`);
  await page.locator('canvas[data-stream="temperature"][data-points]').waitFor({ timeout: 20_000 });
  const n0 = Number(await page.getAttribute('canvas[data-stream="temperature"]', "data-points"));
  assert.ok(n0 > 0, "the chart shows the readings so far");
  await page.waitForFunction(
    (n) => Number(document.querySelector('canvas[data-stream="temperature"]').dataset.points) > n,
    n0,
    { timeout: 20_000 },
  );
  await shot("device");

  // A cold load of the device page: first contentful paint and the page's own render time.
  const fresh = await browser.newPage();
  await fresh.goto(`${base}/explorer/#/device/${address}`);
  await fresh.locator("#charts").waitFor();
  const { fcp, render } = await fresh.evaluate(() => ({
    fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime,
    render: Number(document.getElementById("view").dataset.renderMs),
  }));
  console.log(`# device page: first contentful paint ${fcp?.toFixed(0)} ms, device view rendered ${render.toFixed(0)} ms after navigation start of the view`);
  assert.ok(Number.isFinite(render));
  await fresh.close();
});

test("a reading's proof is verified in the browser; tampered ones fail and name the part", async () => {
  const device = devices[0];
  const recent = await api(`/v1/devices/${device}/readings?order=desc&limit=1`);
  const id = recent.readings[0].id;
  await page.goto(`${base}/explorer/#/device/${device}`);
  await page.locator("#recent tbody tr a").first().click();
  await page.waitForURL(/#\/reading\//);
  let v = await verdictOf("#proof");
  assert.equal(v.verdict, "verified", v.text);
  // The data is decoded in the page from the signed message, and agrees with the node's JSON.
  assert.equal(await page.getAttribute("#data", "data-matches-node"), "true");
  assert.ok(Number.isFinite(Number(await page.locator("#data").textContent())), "a thermometer's reading is a number");
  await shot("reading");

  // Tampered bundles, served in place of the node's: each must fail at the part it breaks.
  const cases = [
    ["merkle audit path", (b) => { b.header.readings_root = `0x${"11".repeat(32)}`; }],
    ["finality certificate", (b) => { const s = b.certificate.signatures[0].signature; b.certificate.signatures[0].signature = s.slice(0, -2) + (s.endsWith("00") ? "01" : "00"); }],
    ["device signature", (b) => { const k = b.device_key.public_key; b.device_key.public_key = k.slice(0, -2) + (k.endsWith("00") ? "01" : "00"); }],
  ];
  for (const [part, tamper] of cases) {
    await page.route("**/v1/readings/*/proof", async (route) => {
      const res = await route.fetch();
      const bundle = await res.json();
      tamper(bundle);
      await route.fulfill({ response: res, json: bundle });
    });
    await page.goto(`${base}/explorer/#/reading/${id}`);
    await page.reload();
    v = await verdictOf("#proof");
    assert.equal(v.verdict, "failed", `${part}: ${v.text}`);
    assert.equal(v.part, part, v.text);
    assert.match(v.text, new RegExp(part));
    if (part === "merkle audit path") await shot("reading-tampered");
    await page.unroute("**/v1/readings/*/proof");
  }
});

test("a chart's range is proven complete in the browser; a reading left out is caught", async () => {
  const device = devices[1];
  await page.goto(`${base}/explorer/#/device/${device}`);
  const card = 'section.chart-card[data-stream="temperature"]';
  await page.locator(`${card} canvas[data-points]`).waitFor({ timeout: 20_000 });
  await page.click(`${card} [data-action="prove"]`);
  let v = await verdictOf(card);
  assert.equal(v.verdict, "verified", v.text);
  await shot("range-proof");

  await page.route(/\/readings\?.*proof=true/, async (route) => {
    const res = await route.fetch();
    const answer = await res.json();
    answer.readings.splice(Math.floor(answer.readings.length / 2), 1);
    await route.fulfill({ response: res, json: answer });
  });
  await page.click(`${card} [data-action="prove"]`);
  await page.waitForFunction((c) => document.querySelector(`${c} [data-verdict]`)?.dataset.verdict === "failed", card, { timeout: 30_000 });
  v = await verdictOf(card);
  assert.equal(v.verdict, "failed");
  assert.ok(["completeness", "readings"].includes(v.part), v.text);
  await page.unroute(/\/readings\?.*proof=true/);
});

test("the cold-chain escrow's release shows on its sensor's page", async () => {
  const done = await line(/cold chain: shipment 1 \(vaccines\): (delivered cold|sensor)/);
  const sensor = done.match(/sensor (0x[0-9a-f]{40})/)[1];
  const outcome = /delivered cold/.test(done) ? "Released" : "Refunded";
  await page.goto(`${base}/explorer/#/device/${sensor}`);
  await page.locator(`#hooks [data-outcome="${outcome}"]`).waitFor({ timeout: 20_000 });
  await shot("coldchain");
});

test("search by block height, reading id and transaction hash; block and transaction pages", async () => {
  const head = (await api("/v1/status")).height;
  await page.goto(`${base}/explorer/`);
  await page.fill("#q", String(head));
  await page.press("#q", "Enter");
  await page.waitForURL(new RegExp(`#/block/${head}$`));
  await page.locator("#signers li").first().waitFor();
  await shot("block");

  const reading = (await api(`/v1/devices/${devices[2]}/readings?order=desc&limit=1`)).readings[0];
  await page.fill("#q", reading.id);
  await page.press("#q", "Enter");
  await page.waitForURL(new RegExp(`#/reading/${reading.id}$`));
  assert.equal((await verdictOf("#proof")).verdict, "verified");

  await page.goto(`${base}/explorer/#/transactions`);
  const txLink = page.locator('a[href^="#/tx/"]').first();
  await txLink.waitFor();
  const hash = (await txLink.getAttribute("href")).slice(5);
  await page.fill("#q", hash);
  await page.press("#q", "Enter");
  await page.waitForURL(new RegExp(`#/tx/${hash}$`));
  await page.locator("h1", { hasText: /transaction/i }).waitFor();
  await shot("transaction");

  await page.fill("#q", `0x${"ab".repeat(32)}`);
  await page.press("#q", "Enter");
  await page.locator("h1", { hasText: "Nothing found" }).waitFor();
});

test("a chart of 100,000 points draws without freezing the page", async () => {
  await page.goto(`${base}/explorer/`);
  const r = await page.evaluate(async () => {
    const { Chart } = await import("./chart.js");
    const canvas = document.createElement("canvas");
    canvas.style.cssText = "width: 1200px; height: 220px; display: block";
    document.body.append(canvas);
    const chart = new Chart(canvas);
    const n = 100_000;
    const xs = new Float64Array(n), ys = new Float64Array(n);
    for (let i = 0; i < n; i++) { xs[i] = 1.7e12 + i * 1000; ys[i] = Math.sin(i / 500) * 10 + (i % 7); }
    const t0 = performance.now();
    chart.setPoints(xs, ys);
    await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
    const total = performance.now() - t0;
    const draw = chart.lastDrawMs;
    for (let i = 0; i < 100; i++) chart.append(1.7e12 + (n + i) * 1000, i);
    await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
    return { points: chart.size, total, draw, redraw: chart.lastDrawMs };
  });
  console.log(`# 100,000-point chart: set+first draw ${r.total.toFixed(1)} ms (draw ${r.draw.toFixed(1)} ms), redraw after 100 live points ${r.redraw.toFixed(1)} ms`);
  assert.equal(r.points, 100_100);
  assert.ok(r.draw > 0);
});

test("the page loaded nothing from elsewhere and raised no error", () => {
  assert.deepEqual(foreignRequests, []);
  assert.deepEqual(pageErrors, []);
});
