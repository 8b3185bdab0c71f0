// The explorer's chain page on four validators (`iotchain testnet` + four `iotchain node`
// processes on loopback): every validator is listed live with its last finalize vote; one
// killed with SIGKILL turns "silent" while the other three keep finalizing, and the page shows
// both. Screenshot: chain-testnet.png.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { BIN, freePorts, getJson, launch, lines, shot } from "./harness.mjs";

const N = 4;
let dir, base, browser, page;
const nodes = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "iotchain-explorer-testnet-"));
  // Ports base..base+N-1 for HTTP and base+100.. for p2p.
  base = await freePorts([...Array(N).keys()].flatMap((i) => [i, 100 + i]));
  execFileSync(BIN, ["testnet", "--validators", String(N), "--dir", dir, "--base-port", String(base), "--block-interval-ms", "100"], { stdio: "ignore" });
  for (let i = 0; i < N; i++) {
    const proc = spawn(BIN, ["node", "--config", join(dir, `validator-${i}`, "node.toml")], { stdio: ["ignore", "pipe", "pipe"] });
    const log = lines(proc.stderr, undefined, proc);
    lines(proc.stdout);
    proc.once("exit", (code, signal) => {
      if (signal !== "SIGKILL" && code !== 0 && code !== null) console.error(`validator-${i} exited ${code}:\n${log.tail()}`);
    });
    nodes.push({ proc, url: `http://127.0.0.1:${base + i}`, log });
  }
  // Every node serves, and the chain finalizes (block sync's `wait_ms` waits for block 3).
  for (const n of nodes) await n.log.wait(/node started/);
  const sync = await getJson(nodes[0].url, "/v1/sync/3?wait_ms=10000");
  assert.ok(sync.blocks.length > 0, "the testnet finalizes");
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
});

after(async () => {
  await browser?.close();
  await Promise.all(
    nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null).map((n) => {
      const exited = new Promise((ok) => n.proc.once("exit", ok));
      n.proc.kill("SIGINT");
      return exited;
    }),
  );
  rmSync(dir, { recursive: true, force: true });
});

const liveCount = () => page.locator("#validators .badge.ok").count();

test("four validators are listed live; a killed one goes silent while the others finalize", async () => {
  await page.goto(`${nodes[0].url}/explorer/`);
  await page.locator("#validators tbody tr").first().waitFor();
  assert.equal(await page.locator("#validators tbody tr").count(), N);
  // The page refreshes liveness every few seconds: all four are heard from soon.
  await page.waitForFunction((n) => document.querySelectorAll("#validators .badge.ok").length === n, N, { timeout: 30_000 });
  // Each validator's last finalize vote is a block (with 3 of 4 signing each certificate, all
  // four appear among the newest certificates).
  await page.waitForFunction(() => [...document.querySelectorAll("#validators tbody tr td:last-child")].every((td) => /block \d+/.test(td.textContent)), null, { timeout: 30_000 });
  await shot(page, "chain-testnet");

  const victim = (await getJson(nodes[3].url, "/v1/status")).consensus.peers.find((p) => p.this_node).public_key;
  const exited = new Promise((ok) => nodes[3].proc.once("exit", ok));
  nodes[3].proc.kill("SIGKILL");
  await exited;
  // Silent once 10 s pass without a message from it; the chain goes on with three.
  await page.waitForFunction(
    (key) => [...document.querySelectorAll("#validators tbody tr")].some((tr) => tr.querySelector("code")?.title === key && /silent/.test(tr.textContent)),
    victim,
    { timeout: 40_000 },
  );
  assert.equal(await liveCount(), N - 1);
  const h0 = Number(await page.locator("#height").textContent());
  await page.waitForFunction((h) => Number(document.querySelector("#height").textContent) > h, h0, { timeout: 20_000 });
  await shot(page, "chain-testnet-one-down");
});
