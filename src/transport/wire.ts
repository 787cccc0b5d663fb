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
//
// The peer stream (application/vnd.conclave.stream.v1, POST /peer/v1/stream) carries a sequence of frames, each a
// u32 big-endian length followed by that many bytes of one batch in the layout above. A frame may arrive split
// across any number of chunks; FrameReader reassembles them and refuses a length above its bound before reading it.

export const BATCH_CONTENT_TYPE = 'application/vnd.conclave.batch.v1';
export const STREAM_CONTENT_TYPE = 'application/vnd.conclave.stream.v1';
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
  override readonly name: string = 'BatchFormatError';
}

/** A stream frame's length prefix announces more bytes than the reader accepts. */
export class FrameTooLargeError extends BatchFormatError {
  override readonly name: string = 'FrameTooLargeError';
}

/** Bytes of a stream frame's length prefix. */
export const FRAME_PREFIX_BYTES = 4;

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
  return encodeWithPrefix(groups, 0);
}

/** One stream frame: the batch's length (u32 big-endian), then the batch; one allocation, no copy of the batch. */
export function encodeFrame(groups: readonly BatchGroup[]): Uint8Array {
  const frame = encodeWithPrefix(groups, FRAME_PREFIX_BYTES);
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setUint32(0, frame.length - FRAME_PREFIX_BYTES);
  return frame;
}

function encodeWithPrefix(groups: readonly BatchGroup[], prefix: number): Uint8Array {
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

  const out = new Uint8Array(prefix + size);
  const view = new DataView(out.buffer);
  out.set(MAGIC, prefix);
  out[prefix + 4] = BATCH_VERSION;
  out[prefix + 5] = 0;
  view.setUint16(prefix + 6, groups.length);
  let offset = prefix + HEADER_BYTES;
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

/**
 * Reassembles stream frames from chunks of any size. `push` returns the frames completed by a chunk (views into the
 * chunk when a frame lies within one, a copy when it straddles chunks) and throws FrameTooLargeError as soon as a
 * length prefix exceeds `maxFrameBytes`. It does not decode the batches: the caller does, frame by frame.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private buffered = 0;
  /** Length of the frame being read, or -1 while its prefix is incomplete. */
  private need = -1;

  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes held for an incomplete frame (bounded by 4 + maxFrameBytes + one chunk). */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    if (chunk.length === 0) return frames;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < FRAME_PREFIX_BYTES) break;
        const prefix = this.take(FRAME_PREFIX_BYTES);
        const length = new DataView(prefix.buffer, prefix.byteOffset, FRAME_PREFIX_BYTES).getUint32(0);
        if (length > this.maxFrameBytes) throw new FrameTooLargeError(`stream frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
        this.need = length;
      }
      if (this.buffered < this.need) break;
      frames.push(this.take(this.need));
      this.need = -1;
    }
    return frames;
  }

  private take(count: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length - this.head >= count) {
      const bytes = first.subarray(this.head, this.head + count);
      this.head += count;
      this.buffered -= count;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      return bytes;
    }
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const current = this.chunks[0]!;
      const part = Math.min(count - filled, current.length - this.head);
      out.set(current.subarray(this.head, this.head + part), filled);
      filled += part;
      this.head += part;
      if (this.head === current.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.buffered -= count;
    return out;
  }
}
