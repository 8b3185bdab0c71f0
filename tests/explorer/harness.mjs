// What the explorer's browser tests share: the binary, free loopback ports, waiting for a
// process's output lines (events, not sleeps), Debian's chromium under playwright-core, and
// screenshots that first check the page shows no raw value.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.IOTCHAIN_BIN ?? resolve(here, "../../target/debug/iotchain");
export const SHOTS = process.env.SCREENSHOTS ?? resolve(here, "../../target/explorer-screenshots");

/** Whether `port` can be bound on 127.0.0.1 now. */
function bindable(port) {
  return new Promise((ok) => {
    const s = createServer();
    s.once("error", () => ok(false));
    s.listen(port, "127.0.0.1", () => s.close(() => ok(true)));
  });
}

/**
 * A base port such that base+k is free for every k in `offsets`, taken below the kernel's
 * ephemeral range: a port from `bind(0)` can be handed to an outgoing connection before a node
 * binds it (as tests/python/conftest.py's `free_ports` does, for the same reason).
 */
export async function freePorts(offsets) {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch {}
  const top = low - Math.max(...offsets) - 1;
  for (let i = 0; i < 100; i++) {
    const base = 10000 + Math.floor(Math.random() * (top - 10000));
    const free = await Promise.all(offsets.map((k) => bindable(base + k)));
    if (free.every(Boolean)) return base;
  }
  throw new Error("no free block of ports below the ephemeral range");
}

/** One free port below the ephemeral range. */
export const freePort = () => freePorts([0]);

/**
 * Follows a readable stream line by line: `wait(re)` resolves with the first line (seen or to
 * come) that matches, and rejects if `proc` (the process writing it) exits first; `tail()` is
 * the last 200 lines, for a failure's report.
 */
export function lines(stream, onLine = () => {}, proc = null) {
  const seen = [];
  const waiters = [];
  let ended = null;
  createInterface({ input: stream }).on("line", (l) => {
    seen.push(l);
    if (seen.length > 5000) seen.shift();
    onLine(l);
    for (const w of waiters.filter((w) => w.re.test(l))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.ok(l);
    }
  });
  // "close", not "exit": it comes after the process's output has all been read.
  proc?.once("close", (code, signal) => {
    ended = new Error(`the process exited (${signal ?? code}) before printing what was awaited`);
    for (const w of waiters.splice(0)) w.fail(new Error(`${ended.message}: ${w.re}`));
  });
  return {
    wait(re) {
      const hit = seen.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      if (ended) return Promise.reject(new Error(`${ended.message}: ${re}`));
      return new Promise((ok, fail) => waiters.push({ re, ok, fail }));
    },
    tail: () => seen.slice(-200).join("\n"),
  };
}

/** Headless chromium as the machine's probe starts it (no background connections). */
export function launch() {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Saves a screenshot of `page` as NAME.png, after checking it shows no unrendered value. */
export async function shot(page, name) {
  const text = await page.locator("main").innerText();
  assert.doesNotMatch(text, /\b(null|undefined|NaN|\[object Object\])\b/, `${name} shows a raw value:\n${text}`);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** GET a node's JSON, asserting a 200. */
export async function getJson(base, path) {
  const res = await fetch(base + path);
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}
