// Signs `count` EIP-1559 transfers from the key in a devnet's dev-owner.key with ethers, nonces
// 0..count-1, and prints one raw transaction per line (the crash loop submits them in order).
// Usage: node sign-transfers.mjs DEV_OWNER_KEY CHAIN_ID COUNT
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [file, chainId, count] = process.argv.slice(2);
if (!file || !chainId || !count) {
  console.error("usage: node sign-transfers.mjs DEV_OWNER_KEY CHAIN_ID COUNT");
  process.exit(2);
}
const wallet = new ethers.Wallet(JSON.parse(readFileSync(file, "utf8")).secret_key);
const to = "0x000000000000000000000000000000000000b0b0";
for (let nonce = 0; nonce < Number(count); nonce++) {
  const raw = await wallet.signTransaction({
    type: 2, chainId: BigInt(chainId), nonce, to, value: 1n, gasLimit: 21000n,
    maxFeePerGas: 100n * 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n,
  });
  console.log(raw);
}
