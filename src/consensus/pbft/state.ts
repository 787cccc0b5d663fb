// Durable PBFT state: the empty starting state, folding a Ready's `persist` into what a driver
// keeps on disk (append the log, adopt a stable checkpoint, drop what it makes obsolete), and whether a persist
// must be synced before its Ready's messages leave.
import type { NodeId, PbftDurableState, PbftInitialState, PbftPersist, PbftReady, SignedPbftMessage } from './types.ts';

export function emptyPbftState(): PbftInitialState {
  return { view: 0, inViewChange: false, stableCheckpoint: null, log: [], lastExecuted: 0, executedIds: [] };
}

/** True if a logged message is still needed once `stableSeq` is stable and the replica is in `view`. */
export function stillNeeded(m: SignedPbftMessage, stableSeq: number, view: number): boolean {
  switch (m.type) {
    case 'pre-prepare':
    case 'prepare':
    case 'commit':
    case 'checkpoint':
      return m.seq > stableSeq;
    case 'view-change':
    case 'new-view':
      return m.view >= view;
    case 'request':
    case 'executed':
      return false;
  }
}

/**
 * Folds `p` into `state` (mutating it) exactly as a driver's storage must: hard state replaced, messages
 * appended, and on a new stable checkpoint every message it makes obsolete dropped.
 */
export function applyPersist(state: PbftDurableState, p: PbftPersist): PbftDurableState {
  state.view = p.view;
  state.inViewChange = p.inViewChange;
  const stableSeq = state.stableCheckpoint?.seq ?? 0;
  for (const m of p.append) if (stillNeeded(m, stableSeq, p.view)) state.log.push(m);
  if (p.stableCheckpoint && p.stableCheckpoint.seq > (state.stableCheckpoint?.seq ?? 0)) {
    state.stableCheckpoint = p.stableCheckpoint;
    const seq = p.stableCheckpoint.seq;
    state.log = state.log.filter((m) => stillNeeded(m, seq, p.view));
  }
  return state;
}

/**
 * Whether `ready.persist` must be durable (synced) before `ready.messages` leave: the Ready sends something and its
 * persist logs a new statement of this replica — an own message's unsigned intent (see PbftPersist.append) — or a new
 * view / view-change state. Otherwise its messages only repeat what is durable already (retransmissions, forwarded
 * requests, `executed` answers), or there are none, and the persist may be written lazily: in order before every
 * later write, so durable with the next synced one. Call before folding the persist into `durable`.
 */
export function persistMustSync(ready: PbftReady, durable: Pick<PbftDurableState, 'view' | 'inViewChange'>, self: NodeId): boolean {
  const persist = ready.persist;
  if (!persist || ready.messages.length === 0) return false;
  if (persist.view !== durable.view || persist.inViewChange !== durable.inViewChange) return true;
  return persist.append.some((m) => m.from === self && m.sig.length === 0);
}
