// The leader's and candidate's bookkeeping over the current membership: per-member progress and votes.
import { Progress } from './progress.ts';
import { hasQuorum, majorityCommitIndex, voteResult, type VoteResult } from './quorum.ts';
import { sortedConf } from './confchange.ts';
import type { ConfState, NodeId } from './types.ts';

export class ProgressTracker {
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();

  constructor(
    conf: ConfState,
    lastIndex: number,
    private readonly maxInflightMsgs: number,
    private readonly maxInflightBytes: number,
  ) {
    this.setConf(conf, lastIndex);
  }

  conf(): ConfState {
    return { voters: [...this.voters], learners: [...this.learners] };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id);
  }

  isMember(id: NodeId): boolean {
    return this.progress.has(id);
  }

  /** Switches membership, keeping the progress of members that stay. */
  setConf(conf: ConfState, lastIndex: number): void {
    const sorted = sortedConf(conf);
    this.voters = sorted.voters;
    this.learners = sorted.learners;
    const members = new Set([...sorted.voters, ...sorted.learners]);
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id)) this.progress.delete(id);
    }
    for (const id of members) {
      const learner = sorted.learners.includes(id);
      const pr = this.progress.get(id);
      if (pr) pr.isLearner = learner;
      else this.progress.set(id, new Progress(lastIndex + 1, learner, this.maxInflightMsgs, this.maxInflightBytes));
    }
  }

  /** Fresh progress for a new term: nothing known about followers; self has its whole log. */
  resetProgress(self: NodeId, lastIndex: number): void {
    for (const [id, old] of this.progress) {
      const pr = new Progress(lastIndex + 1, old.isLearner, this.maxInflightMsgs, this.maxInflightBytes);
      if (id === self) pr.match = lastIndex;
      this.progress.set(id, pr);
    }
  }

  committedIndex(): number {
    return majorityCommitIndex(this.voters, (id) => this.progress.get(id)?.match ?? 0);
  }

  quorumActive(self: NodeId): boolean {
    return hasQuorum(this.voters, (id) => id === self || (this.progress.get(id)?.recentActive ?? false));
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): VoteResult {
    return voteResult(this.voters, this.votes);
  }
}
