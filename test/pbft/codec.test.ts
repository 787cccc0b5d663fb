// The PBFT wire codec: byte-exact round trips for every message type, canonical signing bytes, and a
// clear error for every kind of malformed input.
import { describe, expect, it } from 'vitest';
import {
  batchDigest,
  decodePbftDurableState,
  decodePbftMessage,
  encodePbftDurableState,
  encodePbftMessage,
  signingBytes,
  type SignedPbftMessage,
} from '../../src/consensus/pbft/index.ts';
import { req, sha256 } from './harness.ts';

const d = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const sig = new Uint8Array(64).fill(5);
const prepare: SignedPbftMessage = { type: 'prepare', to: 'all', view: 3, seq: 2 ** 40, digest: d(1), from: 'org1', sig };
const checkpoint: SignedPbftMessage = { type: 'checkpoint', to: 'org2', seq: 16, digest: d(2), from: 'org0', sig };
const vc: SignedPbftMessage = {
  type: 'view-change',
  to: 'all',
  view: 4,
  checkpoint: { seq: 16, digest: d(2), proof: [checkpoint, { ...checkpoint, from: 'org1' }, { ...checkpoint, from: 'org2' }] },
  prepared: [{ view: 3, seq: 17, digest: batchDigest(sha256, [req('a')]), requests: [req('a')], prepares: [prepare, { ...prepare, from: 'org2' }] }],
  from: 'org3',
  sig,
};
const all: SignedPbftMessage[] = [
  { type: 'request', to: 'org0', request: { id: 'ünïcode-id', payload: new Uint8Array([0, 255, 7]) }, from: 'org1', sig },
  { type: 'pre-prepare', to: 'all', view: 0, seq: 1, digest: d(3), requests: [req('a'), req('b')], from: 'org0', sig },
  prepare,
  { type: 'commit', to: 'all', view: 0, seq: 1, digest: d(3), from: 'org2', sig: new Uint8Array(0) },
  checkpoint,
  vc,
  { type: 'new-view', to: 'all', view: 4, viewChanges: [vc, vc, vc], prePrepares: [{ seq: 17, digest: d(4), requests: [] }], from: 'org0', sig },
  { type: 'executed', to: 'org3', seq: 9, digest: d(5), requests: [req('c')], from: 'org1', sig },
];

describe('pbft codec', () => {
  it('round-trips every message type byte for byte', () => {
    for (const m of all) {
      const bytes = encodePbftMessage(m);
      const back = decodePbftMessage(bytes);
      expect(back).toEqual(m);
      expect(encodePbftMessage(back)).toEqual(bytes);
    }
  });

  it('round-trips the durable state', () => {
    const s = { view: 4, inViewChange: true, stableCheckpoint: vc.type === 'view-change' ? vc.checkpoint : null, log: all };
    expect(decodePbftDurableState(encodePbftDurableState(s))).toEqual(s);
  });

  it('signing bytes are domain-separated, bind swarm and sender, and ignore the destination', () => {
    const a = signingBytes(prepare, 'swarm-a');
    expect(new TextDecoder().decode(a.subarray(0, 17))).toBe('conclave/pbft/v1\n');
    expect(signingBytes({ ...prepare, to: 'org3' }, 'swarm-a')).toEqual(a);
    expect(signingBytes(prepare, 'swarm-b')).not.toEqual(a);
    expect(signingBytes({ ...prepare, from: 'org2' }, 'swarm-a')).not.toEqual(a);
    expect(signingBytes({ ...prepare, seq: 3 }, 'swarm-a')).not.toEqual(a);
  });

  it('rejects truncated, trailing, unknown-version, unknown-type and non-canonical input with a clear error', () => {
    const good = encodePbftMessage(prepare);
    for (let cut = 0; cut < good.length; cut++) expect(() => decodePbftMessage(good.subarray(0, cut))).toThrow(/pbft codec: malformed/);
    expect(() => decodePbftMessage(new Uint8Array([...good, 0]))).toThrow(/trailing/);
    expect(() => decodePbftMessage(new Uint8Array([2, ...good.subarray(1)]))).toThrow(/unsupported version 2/);
    const tagAt = 1 + 1 + 4 + 1 + 3 + 1 + 64;
    const badTag = good.slice();
    badTag[tagAt] = 99;
    expect(() => decodePbftMessage(badTag)).toThrow(/unknown type tag 99/);
    // view 3 encoded as the non-minimal varint 0x83 0x00
    const nonCanonical = new Uint8Array([...good.subarray(0, tagAt + 1), 0x83, 0x00, ...good.subarray(tagAt + 2)]);
    expect(() => decodePbftMessage(nonCanonical)).toThrow(/non-canonical/);
    expect(() => decodePbftMessage(new Uint8Array([1, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(/exceeds the remaining input/);
  });
});
