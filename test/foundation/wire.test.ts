// The batch wire format: exact round trip, and every malformed input refused with a reason; stream frames
// (length-prefixed batches) reassembled from chunks of any size.
import { describe, expect, it } from 'vitest';
import { BatchFormatError, decodeBatch, encodeBatch, encodeFrame, FrameReader, FrameTooLargeError, type BatchGroup } from '../../src/transport/wire.ts';

describe('batch wire format v1', () => {
  const groups: BatchGroup[] = [
    { swarm: 'review', channel: 'raft', messages: [new Uint8Array(0), new Uint8Array([0, 1, 255]), new Uint8Array(70_000).fill(9)] },
    { swarm: 'deploy-2', channel: 'pbft.view', messages: [] },
    { swarm: 'review', channel: 'raft', messages: [new Uint8Array([5])] },
  ];

  it('decodes exactly what was encoded, group order and message bytes included', () => {
    const hex = (list: BatchGroup[]) => list.map((g) => ({ ...g, messages: g.messages.map((m) => Buffer.from(m).toString('hex')) }));
    expect(hex(decodeBatch(encodeBatch(groups)))).toEqual(hex(groups));
  });

  it('starts with the magic "CNCB" and version 1', () => {
    const bytes = encodeBatch([]);
    expect([...bytes]).toEqual([0x43, 0x4e, 0x43, 0x42, 1, 0, 0, 0]);
  });

  it.each([
    ['bad magic', (b: Uint8Array) => (b[0] = 0x58), /bad magic/],
    ['future version', (b: Uint8Array) => (b[4] = 2), /unsupported batch version 2/],
    ['unknown flags', (b: Uint8Array) => (b[5] = 1), /unknown batch flags/],
  ])('refuses a batch with %s', (_name, mutate, reason) => {
    const bytes = encodeBatch(groups);
    mutate(bytes);
    expect(() => decodeBatch(bytes)).toThrow(reason);
  });

  it('refuses truncated input and trailing bytes', () => {
    const bytes = encodeBatch(groups);
    expect(() => decodeBatch(bytes.subarray(0, bytes.length - 1))).toThrow(BatchFormatError);
    expect(() => decodeBatch(new Uint8Array([...bytes, 0]))).toThrow(/unexpected bytes/);
  });

  it('refuses a message count the body cannot hold, before allocating for it', () => {
    const bytes = encodeBatch([{ swarm: 's', channel: 'c', messages: [] }]);
    new DataView(bytes.buffer).setUint32(bytes.length - 4, 0xffffffff);
    expect(() => decodeBatch(bytes)).toThrow(/more than 65536 messages|too short/);
  });

  it('refuses invalid swarm ids and channels on both sides', () => {
    expect(() => encodeBatch([{ swarm: 'Bad Swarm', channel: 'raft', messages: [] }])).toThrow(/invalid swarm id/);
    const bytes = encodeBatch([{ swarm: 'ok', channel: 'raft', messages: [] }]);
    bytes[9] = 0x4f; // 'O': uppercase is not a valid id
    expect(() => decodeBatch(bytes)).toThrow(/invalid swarm id/);
  });
});

describe('stream frames', () => {
  const batches: BatchGroup[][] = [
    [{ swarm: 'review', channel: 'raft', messages: [new Uint8Array([1, 2, 3]), new Uint8Array(0)] }],
    [],
    [{ swarm: 'deploy', channel: 'pbft', messages: [new Uint8Array(5000).fill(8)] }],
  ];
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

  it('a frame is the batch prefixed with its length (u32 big-endian)', () => {
    const frame = encodeFrame(batches[0]!);
    const batch = encodeBatch(batches[0]!);
    expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(batch.length);
    expect(hex(frame.subarray(4))).toBe(hex(batch));
  });

  it.each([1, 3, 7, 4096, 1 << 20])('reassembles every frame from chunks of %i bytes', (chunkBytes) => {
    const stream = Buffer.concat(batches.map((b) => encodeFrame(b)));
    const reader = new FrameReader(1 << 20);
    const frames: Uint8Array[] = [];
    for (let at = 0; at < stream.length; at += chunkBytes) frames.push(...reader.push(stream.subarray(at, at + chunkBytes)));
    expect(frames.map(hex)).toEqual(batches.map((b) => hex(encodeBatch(b))));
    expect(reader.pendingBytes).toBe(0);
  });

  it('refuses a length above its bound as soon as the prefix is complete, before the bytes arrive', () => {
    const reader = new FrameReader(100);
    expect(reader.push(new Uint8Array([0, 0]))).toEqual([]);
    expect(() => reader.push(new Uint8Array([0, 101]))).toThrow(FrameTooLargeError);
    expect(new FrameReader(101).push(new Uint8Array([0, 0, 0, 101]))).toEqual([]); // at the bound: waits for the bytes
  });
});
