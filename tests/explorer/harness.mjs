// What the explorer's browser tests share: the binary, free loopback ports, waiting for a
// process's output lines (events, not sleeps), Debian's chromium under playwright-core, and
// screenshots that first check the page shows no raw value.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.IOTCHAIN_BIN ?? resolve(here, "../../target/debug/iotchain");
export const SHOTS = process.env.SCREENSHOTS ?? resolve(here, "../../target/explorer-screenshots");

/** A port free on 127.0.0.1 now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Follows a readable stream line by line: `wait(re)` resolves with the first line (seen or to
 * come) that matches; `tail()` is the last 200 lines, for a failure's report.
 */
export function lines(stream, onLine = () => {}) {
  const seen = [];
  const waiters = [];
  createInterface({ input: stream }).on("line", (l) => {
    seen.push(l);
    if (seen.length > 5000) seen.shift();
    onLine(l);
    for (const w of waiters.filter((w) => w.re.test(l))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.ok(l);
    }
  });
  return {
    wait(re) {
      const hit = seen.find((l) => re.test(l));
      return hit ? Promise.resolve(hit) : new Promise((ok) => waiters.push({ re, ok }));
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
