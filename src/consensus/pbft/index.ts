// Public surface of the PBFT core: what a driver (src/swarm) and the simulator import.
export type * from './types.ts';
export { PbftCore, PBFT_DEFAULTS } from './replica.ts';
export { pbftFaults, pbftQuorum, pbftReadQuorum, pbftReadTarget, primaryOf } from './quorum.ts';
export { emptyPbftState, applyPersist, persistMustSync } from './state.ts';
export { batchDigest, bytesEqual, toHex } from './digest.ts';
export {
  encodePbftMessage,
  decodePbftMessage,
  signingBytes,
  encodeBatch,
  encodePbftDurableState,
  decodePbftDurableState,
  PBFT_CODEC_VERSION,
} from './codec.ts';
