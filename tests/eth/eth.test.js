// Real Ethereum clients against a running `iotchain dev --no-sim` node: ethers v6 sends a
// transfer, solc compiles the ERC-20 in contracts/, ethers deploys and transfers it and reads
// receipts and logs, @ethereumjs/trie checks eth_getProof against the block's stateRoot, and
// bad input gets the JSON-RPC errors these clients expect while the node stays up.
//
// The node binary is IOTCHAIN_BIN (default: target/debug/iotchain of this repository).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { Trie } from "@ethereumjs/trie";
import { ethers } from "ethers";
import solc from "solc";
import WebSocket from "ws";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.IOTCHAIN_BIN ?? resolve(here, "../../target/debug/iotchain");

let node;
let dataDir;
let url;
let provider;
let wallet;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/// Blocks of state history the node keeps (small, so the test can go past it).
const HISTORY = 8;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "iotchain-eth-"));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  node = spawn(BIN, [
    "dev", "--no-sim", "--data-dir", dataDir,
    "--http-addr", `127.0.0.1:${port}`, "--block-interval-ms", "50",
    "--history-blocks", String(HISTORY),
    // Only the trie's top levels stay in memory: every block and proof reads the rest from
    // the store, as on a node whose fleet outgrows its trie cache.
    "--trie-cache-mb", "0",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  // The node prints its API line once it listens: wait for that event, not for time.
  const lines = createInterface({ input: node.stdout });
  await new Promise((ok, fail) => {
    node.once("exit", (code) => fail(new Error(`node exited (${code}) before serving`)));
    lines.on("line", (line) => {
      if (line.includes("API:")) ok();
    });
  });
  const key = JSON.parse(readFileSync(join(dataDir, "dev-owner.key"), "utf8"));
  // No response cache: a nonce read 250 ms ago may be stale after the last transaction.
  provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, pollingInterval: 50, cacheTimeout: -1 });
  wallet = new ethers.Wallet(key.secret_key, provider);
});

after(async () => {
  provider?.destroy();
  if (node && node.exitCode === null) {
    const exited = new Promise((ok) => node.once("exit", ok));
    node.kill("SIGINT");
    await exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

/// A raw JSON-RPC call: the whole response object (result or error).
async function rpc(method, params = [], body = undefined) {
  const res = await fetch(url + "/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body ?? JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

const repo = resolve(here, "../..");

/// Compiles a Solidity file of this repository (path relative to its root) with solc from
/// npm, resolving its imports in the repository: the ABI and creation bytecode of `name`.
function compileFile(path, name) {
  const input = {
    language: "Solidity",
    sources: { [path]: { content: readFileSync(join(repo, path), "utf8") } },
    settings: {
      evmVersion: "cancun",
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const findImports = (p) => {
    try {
      return { contents: readFileSync(join(repo, p), "utf8") };
    } catch (e) {
      return { error: String(e) };
    }
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (out.errors ?? []).filter((e) => e.severity === "error");
  assert.deepEqual(errors, []);
  const c = out.contracts[path][name];
  return { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
}

function compile() {
  return compileFile("tests/eth/contracts/Token.sol", "Token");
}

let token;

test("chain id, client version and a plain transfer", async () => {
  const net = await provider.getNetwork();
  assert.equal(net.chainId, 1337n);
  assert.match((await rpc("web3_clientVersion")).result, /^iotchain\//);
  const to = ethers.Wallet.createRandom().address;
  const before = await provider.getBalance(wallet.address);
  const tx = await wallet.sendTransaction({ to, value: ethers.parseEther("1.5") });
  const receipt = await tx.wait();
  assert.equal(receipt.status, 1);
  assert.equal(receipt.gasUsed, 21000n);
  assert.equal(await provider.getBalance(to), ethers.parseEther("1.5"));
  const fee = receipt.gasUsed * receipt.gasPrice;
  assert.equal(await provider.getBalance(wallet.address), before - ethers.parseEther("1.5") - fee);
  const block = await provider.getBlock(receipt.blockNumber);
  assert.equal(block.hash, receipt.blockHash);
  assert.ok(block.transactions.includes(tx.hash));
  assert.ok(block.baseFeePerGas >= 1_000_000_000n);
  const got = await provider.getTransaction(tx.hash);
  assert.equal(got.from, wallet.address);
  assert.equal(got.to, to);

  // The same transaction by block and index, the block's count by hash, its receipts.
  const index = block.transactions.indexOf(tx.hash);
  const number = ethers.toQuantity(receipt.blockNumber);
  for (const [method, at] of [["eth_getTransactionByBlockNumberAndIndex", number],
                              ["eth_getTransactionByBlockHashAndIndex", block.hash]]) {
    const t = (await rpc(method, [at, ethers.toQuantity(index)])).result;
    assert.equal(t.hash, tx.hash, method);
    assert.equal(t.blockHash, block.hash, method);
    assert.equal(t.transactionIndex, ethers.toQuantity(index), method);
    assert.equal((await rpc(method, [at, "0xffff"])).result, null, `${method} past the end`);
  }
  assert.equal((await rpc("eth_getBlockTransactionCountByHash", [block.hash])).result,
               ethers.toQuantity(block.transactions.length));
  assert.equal((await rpc("eth_getBlockTransactionCountByHash", [ethers.ZeroHash])).result, null);
  const receipts = (await rpc("eth_getBlockReceipts", [number])).result;
  assert.deepEqual(receipts.map((r) => r.transactionHash), block.transactions);
  assert.equal(receipts[index].gasUsed, "0x5208");
  // A bare block hash is a block parameter too (as geth takes it).
  // Answered from the state history (the block is a few blocks back), never as a number.
  const atHash = await rpc("eth_getBalance", [to, block.hash]);
  assert.equal(atHash.result, ethers.toQuantity(ethers.parseEther("1.5")), JSON.stringify(atHash));
  assert.deepEqual((await rpc("eth_getBlockReceipts", [block.hash])).result, receipts);
});

test("an ERC-20 compiled with solc is deployed, transferred and its logs read", async () => {
  const { abi, bytecode } = compile();
  const factory = new ethers.ContractFactory(abi, bytecode, wallet);
  const supply = ethers.parseUnits("1000000", 18);
  const deployed = await factory.deploy("Sensor Credit", "SNS", supply);
  await deployed.waitForDeployment();
  token = deployed;
  const address = await token.getAddress();
  assert.notEqual(await provider.getCode(address), "0x");
  assert.equal(await token.symbol(), "SNS");
  assert.equal(await token.balanceOf(wallet.address), supply);

  const bob = ethers.Wallet.createRandom().address;
  const tx = await token.transfer(bob, ethers.parseUnits("250", 18));
  const receipt = await tx.wait();
  assert.equal(receipt.status, 1);
  const [log] = receipt.logs;
  const parsed = token.interface.parseLog(log);
  assert.equal(parsed.name, "Transfer");
  assert.equal(parsed.args.from, wallet.address);
  assert.equal(parsed.args.to, bob);
  assert.equal(parsed.args.value, ethers.parseUnits("250", 18));
  assert.equal(await token.balanceOf(bob), ethers.parseUnits("250", 18));

  // eth_getLogs by block range, address and topics.
  const logs = await provider.getLogs({
    address,
    fromBlock: 0,
    toBlock: "latest",
    topics: [token.interface.getEvent("Transfer").topicHash, null, ethers.zeroPadValue(bob, 32)],
  });
  assert.equal(logs.length, 1);
  assert.equal(logs[0].transactionHash, tx.hash);
  const events = await token.queryFilter(token.filters.Transfer(), 0, "latest");
  assert.equal(events.length, 2, "the mint and the transfer");

  // A call that reverts carries its reason (JSON-RPC error 3 with the revert data).
  await assert.rejects(
    token.transfer.staticCall(bob, supply * 2n),
    (e) => e.code === "CALL_EXCEPTION" && e.reason === "insufficient balance",
  );
  const est = await token.transfer.estimateGas(bob, 1n);
  assert.ok(est > 21000n && est < 100000n, `estimate ${est}`);
});

test("eth_createAccessList names the contract and its slots; type-1 and type-2 transactions use it", async () => {
  const address = await token.getAddress();
  const bob = ethers.Wallet.createRandom().address;
  const data = token.interface.encodeFunctionData("transfer", [bob, 7n]);
  // balanceOf is slot 3: a holder's balance is at keccak256(holder ‖ 3).
  const balanceSlot = (holder) =>
    ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [holder, 3]));
  const call = { from: wallet.address, to: address, data };
  const created = await provider.send("eth_createAccessList", [call]);
  assert.equal(created.error, undefined, JSON.stringify(created));
  assert.deepEqual(
    created.accessList.map((e) => [e.address.toLowerCase(), e.storageKeys]),
    [[address.toLowerCase(), [balanceSlot(wallet.address), balanceSlot(bob)].sort()]],
  );
  const gasUsed = BigInt(created.gasUsed);
  assert.ok(gasUsed > 21000n && gasUsed < 100000n, `gasUsed ${gasUsed}`);
  // The sender and the recipient of a plain transfer are left out: an empty list.
  const plain = await provider.send("eth_createAccessList", [{ from: wallet.address, to: bob, value: "0x1" }]);
  assert.deepEqual(plain.accessList, []);
  assert.equal(BigInt(plain.gasUsed), 21000n);

  // The list in a type-1 and a type-2 transaction: accepted, executed, and it used the gas
  // eth_createAccessList said it would (each with the list, from the same starting state).
  const feeData = await provider.getFeeData();
  for (const type of [1, 2]) {
    const again = await provider.send("eth_createAccessList", [call]);
    const fees = type === 1
      ? { gasPrice: feeData.gasPrice }
      : { maxFeePerGas: feeData.maxFeePerGas, maxPriorityFeePerGas: feeData.maxPriorityFeePerGas };
    const tx = await wallet.sendTransaction({
      type, to: address, data, accessList: again.accessList, gasLimit: 200000n, ...fees,
    });
    const receipt = await tx.wait();
    assert.equal(receipt.status, 1);
    assert.equal(receipt.type, type);
    const mined = await provider.getTransaction(tx.hash);
    assert.deepEqual(
      mined.accessList.map((e) => [e.address.toLowerCase(), e.storageKeys]),
      again.accessList.map((e) => [e.address.toLowerCase(), e.storageKeys]),
    );
    assert.equal(receipt.gasUsed, BigInt(again.gasUsed));
  }
  assert.equal(await token.balanceOf(bob), 14n);

  // A call that reverts still gets the list of what it touched, and the reason as `error`.
  const reverting = await provider.send("eth_createAccessList", [{
    from: bob, to: address, data: token.interface.encodeFunctionData("transfer", [wallet.address, 1000n]),
  }]);
  assert.match(reverting.error, /execution reverted: insufficient balance/);
  assert.deepEqual(reverting.accessList.map((e) => e.storageKeys), [[balanceSlot(bob)]]);
  // A block parameter is taken; the list given is kept and extended.
  const seeded = await provider.send("eth_createAccessList", [{
    ...call, accessList: [{ address: bob, storageKeys: [ethers.ZeroHash] }],
  }, "latest"]);
  assert.deepEqual(seeded.accessList.map((e) => e.address.toLowerCase()).sort(),
    [address.toLowerCase(), bob.toLowerCase()].sort());

  // Malformed parameters: clear -32602 errors, and the node stays up.
  for (const [params, pattern] of [
    [[], /missing value for required argument 0/],
    [["nope"], /must be an object/],
    [[{ to: "0x1234" }], /to is not an address/],
    [[{ ...call, accessList: "x" }], /accessList must be an array/],
    [[{ ...call, accessList: [{ address: "0x12" }] }], /accessList\[0\]\.address/],
    [[{ ...call, accessList: [{ address: bob, storageKeys: ["0x01"] }] }], /storageKeys/],
    [[call, "0xnothex"], /./],
  ]) {
    const r = await rpc("eth_createAccessList", params);
    assert.ok(r.error, `expected an error for ${JSON.stringify(params)}, got ${JSON.stringify(r)}`);
    assert.equal(r.error.code, -32602, JSON.stringify(r.error));
    assert.match(r.error.message, pattern);
  }
  assert.ok((await provider.getBlockNumber()) > 0);
});

test("polled filters: ethers' contract.on over HTTP, block filters, getFilterLogs, uninstall", async () => {
  assert.ok(token, "the ERC-20 test ran first");
  const address = await token.getAddress();
  const transfer = token.interface.getEvent("Transfer").topicHash;
  // ethers' JsonRpcProvider follows contract events with eth_newFilter + eth_getFilterChanges.
  const carol = ethers.Wallet.createRandom().address;
  // The listener's last argument is the event payload, whatever the filter's form.
  const seen = new Promise((ok) => token.once(token.filters.Transfer(null, carol), (...a) => ok(a[a.length - 1])));
  const blocks = (await rpc("eth_newBlockFilter")).result;
  const logsFilter = (await rpc("eth_newFilter", [{ address, topics: [transfer], fromBlock: "0x0" }])).result;
  assert.match(blocks, /^0x[0-9a-f]{32}$/);
  // Give ethers' poller a moment to install its filter before the transfer it must see.
  await new Promise((ok) => setTimeout(ok, 300));
  const tx = await token.transfer(carol, 7n);
  const receipt = await tx.wait();
  const event = await seen;
  assert.deepEqual([...event.args], [wallet.address, carol, 7n]);
  assert.equal(event.log.transactionHash, tx.hash);

  const logs = (await rpc("eth_getFilterChanges", [logsFilter])).result;
  assert.deepEqual(logs.map((l) => l.transactionHash), [tx.hash]);
  assert.deepEqual((await rpc("eth_getFilterChanges", [logsFilter])).result, [], "reported once");
  const hashes = (await rpc("eth_getFilterChanges", [blocks])).result;
  assert.ok(hashes.includes(receipt.blockHash), "the transfer's block is among the new blocks");
  for (const h of hashes) assert.match(h, /^0x[0-9a-f]{64}$/);
  // eth_getFilterLogs answers the whole filter (from block 0): every Transfer of the token so
  // far; its changes began with the blocks after it was installed.
  const all = (await rpc("eth_getFilterLogs", [logsFilter])).result;
  assert.ok(all.length >= 3 && all.some((l) => l.transactionHash === tx.hash), `${all.length} logs`);
  assert.deepEqual((await rpc("eth_getFilterLogs", [blocks])).error.code, -32602);

  assert.equal((await rpc("eth_uninstallFilter", [logsFilter])).result, true);
  assert.equal((await rpc("eth_uninstallFilter", [logsFilter])).result, false);
  assert.equal((await rpc("eth_getFilterChanges", [logsFilter])).error.message, "filter not found");
  assert.equal((await rpc("eth_getFilterChanges", ["0x1234"])).error.message, "filter not found");
  assert.equal((await rpc("eth_newFilter", [{ address: "0x12" }])).error.code, -32602);
  assert.deepEqual((await rpc("eth_getFilterChanges", [(await rpc("eth_newPendingTransactionFilter")).result])).result, []);
  token.removeAllListeners();
});

test("eth_getProof verifies against the block's stateRoot with @ethereumjs/trie", async () => {
  assert.ok(token, "the ERC-20 test ran first");
  const address = await token.getAddress();
  // Slot of balanceOf[wallet]: keccak256(pad(wallet) ‖ pad(3)).
  const slot = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [wallet.address, 3]));
  const block = await rpc("eth_getBlockByNumber", ["latest", false]);
  const { result: proof, error } = await rpc("eth_getProof", [address, [slot], block.result.number]);
  assert.equal(error, undefined);
  const stateRoot = ethers.getBytes(block.result.stateRoot);
  const trie = new Trie({ useKeyHashing: true });
  const leaf = await trie.verifyProof(stateRoot, ethers.getBytes(address), proof.accountProof.map(ethers.getBytes));
  assert.ok(leaf, "the account is in the state trie");
  const [nonce, balance, storageHash, codeHash] = ethers.decodeRlp(leaf);
  assert.equal(BigInt(nonce === "0x" ? 0 : nonce), BigInt(proof.nonce));
  assert.equal(BigInt(balance === "0x" ? 0 : balance), BigInt(proof.balance));
  assert.equal(storageHash, proof.storageHash);
  assert.equal(codeHash, proof.codeHash);
  assert.equal(codeHash, ethers.keccak256(await provider.getCode(address)));

  const [sp] = proof.storageProof;
  const value = await trie.verifyProof(ethers.getBytes(proof.storageHash), ethers.getBytes(slot), sp.proof.map(ethers.getBytes));
  assert.ok(value, "the balance slot is in the storage trie");
  assert.equal(BigInt(ethers.decodeRlp(value)), await token.balanceOf(wallet.address));
  assert.equal(BigInt(sp.value), await token.balanceOf(wallet.address));

  // An account that does not exist: the proof shows its absence.
  const nobody = ethers.Wallet.createRandom().address;
  const { result: absent } = await rpc("eth_getProof", [nobody, [], block.result.number]);
  const none = await trie.verifyProof(stateRoot, ethers.getBytes(nobody), absent.accountProof.map(ethers.getBytes));
  assert.equal(none, null);
});

test("older blocks: eth_call, eth_getBalance, eth_getStorageAt and eth_getProof see that block, and past the window a clear error", async () => {
  assert.ok(token, "the ERC-20 test ran first");
  const address = await token.getAddress();
  const slot = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [wallet.address, 3]));
  const before = await provider.getBlockNumber();
  const then = ethers.toQuantity(before);
  const tokensThen = await token.balanceOf(wallet.address);
  const etherThen = await provider.getBalance(wallet.address);
  const receipt = await (await token.transfer(ethers.Wallet.createRandom().address, 5n)).wait();
  assert.ok(receipt.blockNumber > before);
  // The contract call, the balance and the slot at the older block and at the transfer's.
  assert.equal(await token.balanceOf(wallet.address, { blockTag: before }), tokensThen);
  assert.equal(await token.balanceOf(wallet.address, { blockTag: receipt.blockNumber }), tokensThen - 5n);
  assert.equal(await provider.getBalance(wallet.address, before), etherThen);
  assert.ok(await provider.getBalance(wallet.address, receipt.blockNumber) < etherThen, "the transfer paid gas");
  assert.equal(BigInt(await provider.getStorage(address, slot, before)), tokensThen);
  // eth_getProof at the older block verifies against that block's stateRoot.
  const header = (await rpc("eth_getBlockByNumber", [then, false])).result;
  const proof = (await rpc("eth_getProof", [address, [slot], then])).result;
  const trie = new Trie({ useKeyHashing: true });
  const leaf = await trie.verifyProof(ethers.getBytes(header.stateRoot), ethers.getBytes(address), proof.accountProof.map(ethers.getBytes));
  assert.ok(leaf, "the token is in the older block's state trie");
  assert.equal(ethers.decodeRlp(leaf)[2], proof.storageHash);
  const value = await trie.verifyProof(ethers.getBytes(proof.storageHash), ethers.getBytes(slot), proof.storageProof[0].proof.map(ethers.getBytes));
  assert.equal(BigInt(ethers.decodeRlp(value)), tokensThen);
  // Blocks on past the window: the older block's state is refused, saying why and what to do.
  while (await provider.getBlockNumber() <= before + HISTORY) {
    await (await wallet.sendTransaction({ to: wallet.address, value: 1n })).wait();
  }
  const gone = await rpc("eth_getBalance", [wallet.address, then]);
  assert.equal(gone.error?.code, -32000, JSON.stringify(gone));
  assert.match(gone.error.message, /^missing trie node: the state of block \d+ is no longer kept.*--archive/);
  assert.match((await rpc("eth_call", [{ to: address, data: "0x" }, then])).error.message, /no longer kept/);
});

test("bad input gets clear JSON-RPC errors and the node stays up", async () => {
  const network = await provider.getNetwork();
  const nonce = await provider.getTransactionCount(wallet.address, "pending");
  const feeData = await provider.getFeeData();
  const base = {
    to: ethers.Wallet.createRandom().address,
    value: 1n,
    gasLimit: 21000n,
    maxFeePerGas: feeData.maxFeePerGas,
    maxPriorityFeePerGas: feeData.maxPriorityFeePerGas,
    chainId: network.chainId,
    type: 2,
  };
  const send = async (raw) => rpc("eth_sendRawTransaction", [raw]);
  const expectError = async (raw, code, pattern) => {
    const r = await send(raw);
    assert.ok(r.error, `expected an error, got ${JSON.stringify(r)}`);
    assert.equal(r.error.code, code, JSON.stringify(r.error));
    assert.match(r.error.message, pattern);
  };

  await expectError("0xdeadbeef", -32000, /malformed transaction/);
  await expectError("0x02c0", -32000, /malformed transaction/);
  await expectError("0xzz", -32602, /invalid hex/);
  await expectError(await wallet.signTransaction({ ...base, nonce, chainId: 1n }), -32000, /chain id/);
  const good = await wallet.signTransaction({ ...base, nonce });
  const forged = good.slice(0, -64) + "f".repeat(64);
  await expectError(forged, -32000, /signature/);
  await expectError(await wallet.signTransaction({ ...base, nonce: nonce + 5 }), -32000, /nonce too high/);
  await expectError(await wallet.signTransaction({ ...base, nonce, gasLimit: 30_000_001n }), -32000, /exceeds block gas limit/);
  await expectError(
    await wallet.signTransaction({ ...base, nonce, gasLimit: 29_000_000n, data: "0x" + "01".repeat(200_000) }),
    -32000,
    /limit is 131072/,
  );
  const poor = ethers.Wallet.createRandom();
  await expectError(await poor.signTransaction({ ...base, nonce: 0 }), -32000, /insufficient funds/);

  // The good one is accepted once; the replay and a reused nonce are refused.
  const first = await send(good);
  assert.equal(first.error, undefined, JSON.stringify(first));
  await expectError(good, -32000, /already known/);
  await expectError(await wallet.signTransaction({ ...base, nonce, value: 2n }), -32000, /nonce too low/);
  await provider.waitForTransaction(first.result);

  // Not JSON, not a request, unknown method, bad params.
  assert.equal((await rpc(null, null, "{not json")).error.code, -32700);
  assert.equal((await rpc(null, null, JSON.stringify({ id: 1 }))).error.code, -32600);
  assert.equal((await rpc("eth_nope")).error.code, -32601);
  assert.equal((await rpc("eth_getBalance", ["0x1234"])).error.code, -32602);
  const batch = await rpc(null, null, JSON.stringify([
    { jsonrpc: "2.0", id: 1, method: "eth_chainId" },
    { jsonrpc: "2.0", id: 2, method: "eth_blockNumber" },
  ]));
  assert.equal(batch.length, 2);
  assert.equal(batch[0].result, "0x539");

  // Still serving and producing blocks.
  const height = await provider.getBlockNumber();
  const tx = await wallet.sendTransaction({ to: base.to, value: 1n });
  const receipt = await tx.wait();
  assert.ok(receipt.blockNumber > height);
});

test("eth_subscribe newHeads and logs over WebSocket", async () => {
  assert.ok(token, "the ERC-20 test ran first");
  const socket = new WebSocket(url.replace("http://", "ws://") + "/");
  await new Promise((ok, fail) => {
    socket.once("open", ok);
    socket.once("error", fail);
  });
  // Replies and notifications, in arrival order.
  const waiting = [];
  const inbox = [];
  socket.on("message", (data) => {
    const msg = JSON.parse(data.toString());
    const i = waiting.findIndex((w) => w.match(msg));
    if (i >= 0) waiting.splice(i, 1)[0].ok(msg);
    else inbox.push(msg);
  });
  const next = (match) => {
    const i = inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
    return new Promise((ok) => waiting.push({ match, ok }));
  };
  let id = 0;
  const call = async (method, params) => {
    id += 1;
    const want = id;
    socket.send(JSON.stringify({ jsonrpc: "2.0", id: want, method, params }));
    const reply = await next((m) => m.id === want);
    assert.equal(reply.error, undefined, JSON.stringify(reply));
    return reply.result;
  };
  try {
    // The subscription exists once its id is returned: no race with what follows.
    const carol = ethers.Wallet.createRandom().address;
    const address = await token.getAddress();
    const heads = await call("eth_subscribe", ["newHeads"]);
    const logs = await call("eth_subscribe", ["logs", {
      address,
      topics: [token.interface.getEvent("Transfer").topicHash, null, ethers.zeroPadValue(carol, 32)],
    }]);
    assert.equal(await call("eth_chainId", []), "0x539");
    const tx = await token.transfer(carol, 5n);
    const receipt = await tx.wait();
    const log = await next((m) => m.params?.subscription === logs);
    assert.equal(log.params.result.transactionHash, tx.hash);
    assert.equal(BigInt(log.params.result.data), 5n);
    const head = await next((m) => m.params?.subscription === heads
      && BigInt(m.params.result.number) === BigInt(receipt.blockNumber));
    assert.equal(head.params.result.hash, receipt.blockHash);
    assert.equal(await call("eth_unsubscribe", [logs]), true);
    const bad = await new Promise((ok) => {
      id += 1;
      const want = id;
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: want, method: "eth_subscribe", params: ["pendingNothing"] }));
      next((m) => m.id === want).then(ok);
    });
    assert.equal(bad.error.code, -32602);
  } finally {
    socket.close();
  }
});

// The IoT precompile, reading hooks and the cold-chain example (contracts/IIoT.sol,
// contracts/IReadingHook.sol, examples/coldchain/ColdChainEscrow.sol).

const IOT = "0x0000000000000000000000000000000000001070";
const COSE_EDDSA = -8;

function iotchain(...args) {
  return execFileSync(BIN, args, { encoding: "utf8" });
}

/// A new Ed25519 device key file: its path and contents.
function newDeviceKey(name) {
  const file = join(dataDir, `${name}.key`);
  iotchain("keys", "new", "--alg", "ed25519", "--out", file);
  return { file, ...JSON.parse(readFileSync(file, "utf8")) };
}

/// Readings signed by the device (not sent by any account), waited on until final.
function sendReadings(key, stream, values) {
  for (const v of values) {
    iotchain("send", "--node", url, "--device-key", key.file, "--stream", stream,
      "--data", JSON.stringify(v), "--wait");
  }
}

async function iotContract(runner) {
  const { abi } = compileFile("contracts/IIoT.sol", "IIoT");
  return new ethers.Contract(IOT, abi, runner);
}

test("contracts register, read and revoke devices through the IoT precompile", async () => {
  const iot = await iotContract(wallet);
  const key = newDeviceKey("precompile");
  const tx = await iot.registerDevice(COSE_EDDSA, key.public_key, "cold-sensor");
  const receipt = await tx.wait();
  assert.equal(receipt.status, 1);
  // The change is an event of the precompile, applied when the transaction succeeded.
  const registered = receipt.logs.map((l) => iot.interface.parseLog(l)).find((e) => e?.name === "DeviceRegistered");
  assert.equal(registered.args.device.toLowerCase(), key.address);
  const d = await iot.device(key.address);
  assert.equal(d.registered, true);
  assert.equal(d.owner, wallet.address);
  assert.equal(d.status, 0n);
  assert.equal(d.alg, BigInt(COSE_EDDSA));
  assert.equal(d.hasSeq, false);
  // The readings lane sees the same registry: the device's readings are accepted.
  sendReadings(key, "temp", [4.25]);
  const api = await (await fetch(`${url}/v1/devices/${key.address}`)).json();
  assert.equal(api.owner.toLowerCase(), wallet.address.toLowerCase());
  const after = await iot.device(key.address);
  assert.equal(after.hasSeq, true);
  assert.equal(after.lastSeq, BigInt(api.last_seq));
  const latest = await iot.latestReading(key.address, "temp");
  assert.equal(latest.found, true);
  assert.equal(latest.hasValue, true);
  assert.equal(latest.value, 4_250_000n);
  assert.equal((await iot.latestReading(key.address, "humidity")).found, false);
  // Someone else's device: refused with the registry's reason, nothing changes.
  const stranger = ethers.Wallet.createRandom().connect(provider);
  await (await wallet.sendTransaction({ to: stranger.address, value: ethers.parseEther("1") })).wait();
  await assert.rejects(iot.connect(stranger).revokeDevice(key.address), /not authorised|belongs to/);
  // A second registration of the same key is refused before it is sent.
  await assert.rejects(iot.registerDevice(COSE_EDDSA, key.public_key, "again"), /already registered/);
  await (await iot.revokeDevice(key.address)).wait();
  assert.equal((await iot.device(key.address)).status, 1n);
  assert.throws(() => sendReadings(key, "temp", [4.5]), /revoked/);
});

async function deployEscrow(sensor, carrier, payment, maxMicro, readings) {
  const { abi, bytecode } = compileFile("examples/coldchain/ColdChainEscrow.sol", "ColdChainEscrow");
  const factory = new ethers.ContractFactory(abi, bytecode, wallet);
  const escrow = await factory.deploy(carrier, sensor, "temp", maxMicro, readings, { value: payment });
  await escrow.waitForDeployment();
  return escrow;
}

async function registerSensor(name) {
  const key = newDeviceKey(name);
  iotchain("device", "register", "--node", url, "--owner-key", join(dataDir, "dev-owner.key"),
    "--device-key", key.file);
  return key;
}

test("cold chain: readings under the threshold release the escrow to the carrier", async () => {
  const iot = await iotContract(wallet);
  const sensor = await registerSensor("shipment-1");
  const carrier = ethers.Wallet.createRandom().address;
  const payment = ethers.parseEther("2");
  const escrow = await deployEscrow(sensor.address, carrier, payment, 8_000_000n, 3n);
  const address = await escrow.getAddress();
  const deposit = ethers.parseEther("0.1");
  await (await iot.attachHook(sensor.address, "temp", address, 300_000n, { value: deposit })).wait();
  const hook = await iot.hook(sensor.address, "temp");
  assert.equal(hook.hookContract, address);
  assert.equal(hook.deposit, deposit);
  // Nobody but the chain can feed the escrow a reading.
  await assert.rejects(
    escrow.onReading(sensor.address, "temp", 1n, 1n, true, 1n, ethers.ZeroHash),
    /only the chain calls hooks/,
  );
  sendReadings(sensor, "temp", [4.5, 5, 7.75]);
  assert.equal(await escrow.state(), 1n); // Released
  assert.equal(await provider.getBalance(carrier), payment);
  assert.equal(await provider.getBalance(address), 0n);
  assert.equal(await escrow.goodReadings(), 3n);
  assert.equal(await escrow.hottest(), 7_750_000n);
  // Each call has a receipt (id keccak256(readingId ++ hook)), paid from the deposit.
  const latest = await iot.latestReading(sensor.address, "temp");
  const id = ethers.keccak256(ethers.concat([latest.readingId, address]));
  const receipt = await provider.getTransactionReceipt(id);
  assert.equal(receipt.status, 1);
  assert.equal(receipt.from.toLowerCase(), IOT);
  assert.equal(receipt.to, address);
  const released = receipt.logs.map((l) => escrow.interface.parseLog(l)).find((e) => e?.name === "Released");
  assert.equal(released.args.amount, payment);
  // The block's logsBloom has the hook's logs in it (a client that skips blocks by their
  // bloom finds the Released event), checked bit by bit as the yellow paper defines it.
  const block = await rpc("eth_getBlockByNumber", [ethers.toQuantity(receipt.blockNumber), false]);
  const bloom = ethers.getBytes(block.result.logsBloom);
  const inBloom = (data) => {
    const h = ethers.getBytes(ethers.keccak256(data));
    return [0, 2, 4].every((i) => {
      const bit = ((h[i] << 8) | h[i + 1]) & 2047;
      return (bloom[255 - (bit >> 3)] >> (bit & 7)) & 1;
    });
  };
  assert.ok(inBloom(address), "the escrow's address is in its block's bloom");
  assert.ok(inBloom(escrow.interface.getEvent("Released").topicHash), "Released is in the bloom");
  // eth_getBlockReceipts lists the hook's receipt after the block's transactions, with a
  // cumulative gas that counts its own.
  const inBlock = (await rpc("eth_getBlockReceipts", [ethers.toQuantity(receipt.blockNumber)])).result;
  const hookReceipt = inBlock.find((r) => r.transactionHash === id);
  assert.ok(hookReceipt, "the hook's receipt is among the block's");
  assert.equal(BigInt(hookReceipt.transactionIndex), BigInt(block.result.transactions.length) +
    BigInt(inBlock.filter((r) => r.from.toLowerCase() === IOT).indexOf(hookReceipt)));
  assert.ok(BigInt(hookReceipt.cumulativeGasUsed) >= BigInt(hookReceipt.gasUsed), JSON.stringify(hookReceipt));
  const left = (await iot.hook(sensor.address, "temp")).deposit;
  assert.ok(left < deposit && left > 0n, `deposit left ${left}`);
  // The hook's logs are found by eth_getLogs like any contract's.
  const logs = await provider.getLogs({ address, fromBlock: 0, toBlock: "latest" });
  assert.equal(logs.filter((l) => escrow.interface.parseLog(l)?.name === "Reading").length, 3);
});

test("cold chain: one reading above the threshold refunds the shipper", async () => {
  const iot = await iotContract(wallet);
  const sensor = await registerSensor("shipment-2");
  const carrier = ethers.Wallet.createRandom().address;
  const payment = ethers.parseEther("3");
  const escrow = await deployEscrow(sensor.address, carrier, payment, 8_000_000n, 5n);
  const address = await escrow.getAddress();
  await (await iot.attachHook(sensor.address, "temp", address, 300_000n, { value: ethers.parseEther("0.1") })).wait();
  const before = await provider.getBalance(wallet.address);
  sendReadings(sensor, "temp", [4, 9.5, 3]);
  assert.equal(await escrow.state(), 2n); // Refunded
  assert.equal(await provider.getBalance(carrier), 0n);
  assert.equal(await provider.getBalance(address), 0n);
  // The shipper got the payment back (and sent no transaction meanwhile).
  assert.equal(await provider.getBalance(wallet.address), before + payment);
  const refund = (await provider.getLogs({ address, fromBlock: 0, toBlock: "latest" }))
    .map((l) => escrow.interface.parseLog(l))
    .find((e) => e?.name === "Refunded");
  assert.equal(refund.args.value, 9_500_000n);
});

test("a hook that reverts or runs out of gas never blocks the readings", async () => {
  const iot = await iotContract(wallet);
  const sensor = await registerSensor("shipment-3");
  // An escrow for another sensor reverts every call ("not this shipment's sensor").
  const other = ethers.Wallet.createRandom().address;
  const escrow = await deployEscrow(other, other, 1n, 8_000_000n, 1n);
  const address = await escrow.getAddress();
  await (await iot.attachHook(sensor.address, "temp", address, 300_000n, { value: ethers.parseEther("0.1") })).wait();
  sendReadings(sensor, "temp", [4]);
  let latest = await iot.latestReading(sensor.address, "temp");
  let receipt = await provider.getTransactionReceipt(ethers.keccak256(ethers.concat([latest.readingId, address])));
  assert.equal(receipt.status, 0);
  // Too little gas: out of gas, a failed receipt, the reading final all the same.
  await (await iot.attachHook(sensor.address, "temp", address, 21_500n)).wait();
  sendReadings(sensor, "temp", [5]);
  latest = await iot.latestReading(sensor.address, "temp");
  assert.equal(latest.value, 5_000_000n);
  receipt = await provider.getTransactionReceipt(ethers.keccak256(ethers.concat([latest.readingId, address])));
  assert.equal(receipt.status, 0);
  // Attaching a hook to a device one does not own, or to nothing, is refused.
  const stranger = ethers.Wallet.createRandom().connect(provider);
  await (await wallet.sendTransaction({ to: stranger.address, value: ethers.parseEther("1") })).wait();
  await assert.rejects(iot.connect(stranger).attachHook(sensor.address, "temp", address, 100_000n), /belongs to/);
  await assert.rejects(iot.attachHook(sensor.address, "temp", ethers.ZeroAddress, 100_000n), /needs a contract/);
});

test("the cold-chain bytecode `iotchain dev` deploys is what solc compiles from its source", () => {
  const { bytecode } = compileFile("examples/coldchain/ColdChainEscrow.sol", "ColdChainEscrow");
  const committed = readFileSync(join(repo, "examples/coldchain/ColdChainEscrow.bin"), "utf8").trim();
  assert.equal("0x" + committed, bytecode, "regenerate examples/coldchain/ColdChainEscrow.bin (docs/contracts.md)");
});

test("the ERC-20 bytecode `iotchain bench --erc20` deploys is what solc compiles from its source", () => {
  const { bytecode } = compile();
  const committed = readFileSync(join(repo, "crates/cli/src/token.bin"), "utf8").trim();
  assert.equal("0x" + committed, bytecode, "regenerate crates/cli/src/token.bin (docs/contracts.md)");
});
