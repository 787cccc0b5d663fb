// Public surface of the Raft core: the state machine, its types and the wire codec.
export { RaftCore, PROMOTION_MAX_LAG } from './raft.ts';
export { encodeMessages, decodeMessages, CODEC_VERSION } from './codec.ts';
export { encodeConfChange, decodeConfChange } from './confchange.ts';
export type * from './types.ts';
