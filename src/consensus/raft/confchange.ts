// Membership changes: validation, application to a ConfState, and the byte encoding of a conf entry.
//
// Why one server at a time rather than joint consensus: when a change adds or removes a single
// voter, every majority of the old voter set intersects every majority of the new one, so two
// leaders can never be elected in one term across the switch, even though nodes adopt the new
// configuration at different moments (when they apply the entry). That needs no joint (C_old,new)
// phase, no two-quorum arithmetic and no second entry to leave it, which keeps the core small.
// The price, paid by the leader in raft.ts: (1) a change is proposed only when no other one is
// pending (proposed but not applied), and (2) only after the leader has committed an entry of its
// own term — without (2) a leader elected under an older configuration can still commit a change
// that conflicts with one a previous leader started (Ongaro's 2015 single-server-change bug).
// New members join as learners (receive the log, do not vote) and are promoted only once caught up,
// so adding a voter never stalls commitment while it copies the log.
import type { ConfChange, ConfState, NodeId } from './types.ts';

const CONF_CHANGE_VERSION = 1;
const TYPE_CODES: Record<ConfChange['type'], number> = { 'add-learner': 1, promote: 2, remove: 3 };

export function sortedConf(conf: ConfState): ConfState {
  return { voters: [...conf.voters].sort(), learners: [...conf.learners].sort() };
}

/** Why the change cannot be applied to conf, or null when it can. */
export function confChangeError(conf: ConfState, cc: ConfChange): string | null {
  const isVoter = conf.voters.includes(cc.node);
  const isLearner = conf.learners.includes(cc.node);
  if (cc.node.length === 0) return 'node id is empty';
  switch (cc.type) {
    case 'add-learner':
      return isVoter || isLearner ? `${cc.node} is already a member` : null;
    case 'promote':
      return isLearner ? null : `${cc.node} is not a learner`;
    case 'remove':
      if (!isVoter && !isLearner) return `${cc.node} is not a member`;
      if (isVoter && conf.voters.length === 1) return `${cc.node} is the last voter`;
      return null;
  }
}

/** The configuration after cc; an invalid change leaves it unchanged (every replica decides the same way). */
export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  if (confChangeError(conf, cc) !== null) return sortedConf(conf);
  const without = (ids: NodeId[]) => ids.filter((id) => id !== cc.node);
  switch (cc.type) {
    case 'add-learner':
      return sortedConf({ voters: conf.voters, learners: [...conf.learners, cc.node] });
    case 'promote':
      return sortedConf({ voters: [...conf.voters, cc.node], learners: without(conf.learners) });
    case 'remove':
      return sortedConf({ voters: without(conf.voters), learners: without(conf.learners) });
  }
}

/** Layout: version u8, type u8, utf-8 node id. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const node = new TextEncoder().encode(cc.node);
  const out = new Uint8Array(2 + node.length);
  out[0] = CONF_CHANGE_VERSION;
  out[1] = TYPE_CODES[cc.type];
  out.set(node, 2);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < 3) throw new Error(`raft conf change: ${data.length} bytes is too short`);
  if (data[0] !== CONF_CHANGE_VERSION) throw new Error(`raft conf change: unsupported version ${data[0]}`);
  const type = (Object.keys(TYPE_CODES) as ConfChange['type'][]).find((t) => TYPE_CODES[t] === data[1]);
  if (type === undefined) throw new Error(`raft conf change: unknown type code ${data[1]}`);
  const node = new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(2));
  return { type, node };
}
