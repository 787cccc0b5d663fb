// Majority arithmetic over a voter set: the committed index and the outcome of an election.

export type VoteResult = 'won' | 'lost' | 'pending';

export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** The largest index that a majority of voters have durably: the highest index a leader may commit. */
export function majorityCommitIndex(voters: readonly string[], matchOf: (id: string) => number): number {
  if (voters.length === 0) return 0;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[quorumSize(voters.length) - 1]!;
}

export function voteResult(voters: readonly string[], votes: ReadonlyMap<string, boolean>): VoteResult {
  if (voters.length === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const v of voters) {
    const vote = votes.get(v);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const q = quorumSize(voters.length);
  if (granted >= q) return 'won';
  if (granted + missing >= q) return 'pending';
  return 'lost';
}

export function hasQuorum(voters: readonly string[], isActive: (id: string) => boolean): boolean {
  return voters.filter(isActive).length >= quorumSize(voters.length);
}
