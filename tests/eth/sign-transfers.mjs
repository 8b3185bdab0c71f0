// Signs `count` EIP-1559 transactions from the key in a devnet's dev-owner.key with ethers,
// nonces 0..count-1, and prints one raw transaction per line (the crash loop submits them in
// order). By default they are transfers; with `storage`, nonce 0 deploys a contract whose
// runtime stores calldata word 1 at slot calldata word 0, and nonce n ≥ 1 calls it to store n
// at slot n (so the crash loop can check contract storage after its SIGKILLs).
// Usage: node sign-transfers.mjs DEV_OWNER_KEY CHAIN_ID COUNT [storage]
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [file, chainId, count, mode] = process.argv.slice(2);
if (!file || !chainId || !count || (mode && mode !== "storage")) {
  console.error("usage: node sign-transfers.mjs DEV_OWNER_KEY CHAIN_ID COUNT [storage]");
  process.exit(2);
}
const wallet = new ethers.Wallet(JSON.parse(readFileSync(file, "utf8")).secret_key);
const fees = { type: 2, chainId: BigInt(chainId), maxFeePerGas: 100n * 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n };
// Runtime: PUSH1 0x20 CALLDATALOAD PUSH1 0 CALLDATALOAD SSTORE STOP; the init code copies it out.
const runtime = "6020356000355500";
const init = "0x6008600c60003960086000f3" + runtime;
const writer = ethers.getCreateAddress({ from: wallet.address, nonce: 0 });
for (let nonce = 0; nonce < Number(count); nonce++) {
  let tx = { ...fees, nonce, to: "0x000000000000000000000000000000000000b0b0", value: 1n, gasLimit: 21000n };
  if (mode === "storage") {
    const word = ethers.zeroPadValue(ethers.toBeHex(nonce), 32);
    tx = nonce === 0
      ? { ...fees, nonce, data: init, gasLimit: 100000n }
      : { ...fees, nonce, to: writer, data: ethers.concat([word, word]), gasLimit: 60000n };
  }
  console.log(await wallet.signTransaction(tx));
}
