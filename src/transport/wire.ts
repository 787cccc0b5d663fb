// The versioned node-to-node batch format (application/vnd.conclave.batch.v1): groups of opaque messages, each
// group addressed to one swarm and one channel. Encoding is exact: decode(encode(groups)) gives the same bytes.
//
// Layout (all integers big-endian):
//   magic   4 bytes  "CNCB"
//   version u8       1
//   flags   u8       0 (reserved; a decoder refuses any other value)
//   groups  u16      number of groups
//   per group:
//     swarmLen u8, swarm (ASCII id), channelLen u8, channel (ASCII name)
//     count u32, then per message: length u32, bytes
// Nothing may follow the last group.

export const BATCH_CONTENT_TYPE = 'application/vnd.conclave.batch.v1';
export const BATCH_VERSION = 1;
const MAGIC = [0x43, 0x4e, 0x43, 0x42]; // "CNCB"

/** Bounds every decoder enforces (and every encoder respects), so a peer cannot make us allocate without limit. */
export const BATCH_LIMITS = {
  maxBytes: 16 * 1024 * 1024,
  maxGroups: 1024,
  maxMessages: 65_536,
} as const;

export const SWARM_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const CHANNEL_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface BatchGroup {
  swarm: string;
  channel: string;
  messages: Uint8Array[];
}

export class BatchFormatError extends Error {
  override readonly name = 'BatchFormatError';
}

const HEADER_BYTES = 8;

/** Bytes a group adds to a batch beyond its messages' own bytes (per message: 4). */
export function groupOverhead(group: Pick<BatchGroup, 'swarm' | 'channel'>): number {
  return 2 + group.swarm.length + group.channel.length + 4;
}

export function encodedBatchSize(groups: readonly BatchGroup[]): number {
  let size = HEADER_BYTES;
  for (const group of groups) {
    size += groupOverhead(group);
    for (const message of group.messages) size += 4 + message.length;
  }
  return size;
}

export function encodeBatch(groups: readonly BatchGroup[]): Uint8Array {
  if (groups.length > BATCH_LIMITS.maxGroups) throw new BatchFormatError(`a batch holds at most ${BATCH_LIMITS.maxGroups} groups`);
  let messageCount = 0;
  for (const group of groups) {
    if (!SWARM_ID_PATTERN.test(group.swarm)) throw new BatchFormatError(`invalid swarm id ${JSON.stringify(group.swarm)}`);
    if (!CHANNEL_PATTERN.test(group.channel)) throw new BatchFormatError(`invalid channel ${JSON.stringify(group.channel)}`);
    messageCount += group.messages.length;
  }
  if (messageCount > BATCH_LIMITS.maxMessages) throw new BatchFormatError(`a batch holds at most ${BATCH_LIMITS.maxMessages} messages`);
  const size = encodedBatchSize(groups);
  if (size > BATCH_LIMITS.maxBytes) throw new BatchFormatError(`batch of ${size} bytes exceeds ${BATCH_LIMITS.maxBytes}`);

  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = BATCH_VERSION;
  out[5] = 0;
  view.setUint16(6, groups.length);
  let offset = HEADER_BYTES;
  const ascii = (text: string): void => {
    out[offset++] = text.length;
    for (let i = 0; i < text.length; i++) out[offset++] = text.charCodeAt(i);
  };
  for (const group of groups) {
    ascii(group.swarm);
    ascii(group.channel);
    view.setUint32(offset, group.messages.length);
    offset += 4;
    for (const message of group.messages) {
      view.setUint32(offset, message.length);
      offset += 4;
      out.set(message, offset);
      offset += message.length;
    }
  }
  return out;
}

/**
 * Decodes a batch. Messages are views into `bytes` (no copy): the caller must not reuse the buffer while a handler
 * may still hold them. Throws BatchFormatError on any deviation from the layout.
 */
export function decodeBatch(bytes: Uint8Array): BatchGroup[] {
  if (bytes.length > BATCH_LIMITS.maxBytes) throw new BatchFormatError(`batch of ${bytes.length} bytes exceeds ${BATCH_LIMITS.maxBytes}`);
  if (bytes.length < HEADER_BYTES) throw new BatchFormatError('batch shorter than its 8-byte header');
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) throw new BatchFormatError('not a conclave batch (bad magic)');
  if (bytes[4] !== BATCH_VERSION) throw new BatchFormatError(`unsupported batch version ${bytes[4]} (this node reads ${BATCH_VERSION})`);
  if (bytes[5] !== 0) throw new BatchFormatError(`unknown batch flags ${bytes[5]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groupCount = view.getUint16(6);
  if (groupCount > BATCH_LIMITS.maxGroups) throw new BatchFormatError(`batch declares ${groupCount} groups, at most ${BATCH_LIMITS.maxGroups}`);
  let offset = HEADER_BYTES;
  const need = (count: number, what: string): void => {
    if (offset + count > bytes.length) throw new BatchFormatError(`batch truncated in ${what} at byte ${offset}`);
  };
  const ascii = (pattern: RegExp, what: string): string => {
    need(1, what);
    const length = bytes[offset++]!;
    need(length, what);
    let text = '';
    for (let i = 0; i < length; i++) text += String.fromCharCode(bytes[offset++]!);
    if (!pattern.test(text)) throw new BatchFormatError(`invalid ${what} ${JSON.stringify(text)}`);
    return text;
  };
  const groups: BatchGroup[] = [];
  let total = 0;
  for (let g = 0; g < groupCount; g++) {
    const swarm = ascii(SWARM_ID_PATTERN, 'swarm id');
    const channel = ascii(CHANNEL_PATTERN, 'channel');
    need(4, 'message count');
    const count = view.getUint32(offset);
    offset += 4;
    total += count;
    if (total > BATCH_LIMITS.maxMessages) throw new BatchFormatError(`batch holds more than ${BATCH_LIMITS.maxMessages} messages`);
    // Each message needs at least its 4-byte length: refuse counts the remaining bytes cannot hold before allocating.
    if (count * 4 > bytes.length - offset) throw new BatchFormatError(`group declares ${count} messages but the batch is too short`);
    const messages: Uint8Array[] = new Array(count);
    for (let m = 0; m < count; m++) {
      need(4, 'message length');
      const length = view.getUint32(offset);
      offset += 4;
      need(length, 'message');
      messages[m] = bytes.subarray(offset, offset + length);
      offset += length;
    }
    groups.push({ swarm, channel, messages });
  }
  if (offset !== bytes.length) throw new BatchFormatError(`${bytes.length - offset} unexpected bytes after the last group`);
  return groups;
}
