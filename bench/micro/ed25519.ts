// Owns the Ed25519 micro-benchmark: sign and verify per second on one core (this process is single-threaded), with
// node:crypto KeyObjects (the node's signing), the node's verifier (crypto/ed25519.ts verifyBytes: libsodium) and
// @noble/ed25519 (verdict/agent.ts, the portable agent side), over an 800-byte message (about a verdict's signing
// input with a 512-byte reason). One JSON line per library.
// Run: node --import tsx bench/micro/ed25519.ts [secondsPerCase]
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { rawPublicKey, verifyBytes } from '../../src/crypto/ed25519.ts';

ed.hashes.sha512 = sha512;
const SECONDS = Number(process.argv[2] ?? 1);
const message = new Uint8Array(800).fill(3);

function rate(fn: () => void): number {
  for (let i = 0; i < 20; i++) fn(); // warm-up
  let n = 0;
  const started = performance.now();
  const stopAt = started + SECONDS * 1000;
  while (performance.now() < stopAt) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
  }
  return Math.round(n / ((performance.now() - started) / 1000));
}

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const nodeSig = sign(null, message, privateKey);
const node = {
  signPerSec: rate(() => sign(null, message, privateKey)),
  verifyPerSec: rate(() => {
    if (!verify(null, message, publicKey, nodeSig)) throw new Error('verify failed');
  }),
};
console.log(JSON.stringify({ bench: 'ed25519', lib: 'node:crypto', messageBytes: message.length, perCore: true, ...node }));

const raw = rawPublicKey(publicKey);
const sodiumVerifyPerSec = rate(() => {
  if (!verifyBytes(raw, message, nodeSig)) throw new Error('verify failed');
});
console.log(
  JSON.stringify({
    bench: 'ed25519',
    lib: 'libsodium (sodium-native): the node verifier',
    messageBytes: message.length,
    perCore: true,
    verifyPerSec: sodiumVerifyPerSec,
    speedupOverNodeCrypto: Math.round((sodiumVerifyPerSec / node.verifyPerSec) * 10) / 10,
  }),
);

const secret = ed.utils.randomSecretKey();
const pub = ed.getPublicKey(secret);
const nobleSig = ed.sign(message, secret);
const noble = {
  signPerSec: rate(() => ed.sign(message, secret)),
  verifyPerSec: rate(() => {
    if (!ed.verify(nobleSig, message, pub)) throw new Error('verify failed');
  }),
};
console.log(
  JSON.stringify({
    bench: 'ed25519',
    lib: '@noble/ed25519',
    messageBytes: message.length,
    perCore: true,
    ...noble,
    nodeCryptoSpeedup: { sign: Math.round((node.signPerSec / noble.signPerSec) * 10) / 10, verify: Math.round((node.verifyPerSec / noble.verifyPerSec) * 10) / 10 },
  }),
);
