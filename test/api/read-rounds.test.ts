// ReadRounds, the batching of linearizable reads both engines share: reads that begin while no round has asked yet
// share one; while a round is out, the reads that begin join the next, which asks only once the one out is released.
import { describe, expect, it } from 'vitest';
import { ReadRounds } from '../../src/swarm/read-rounds.ts';

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('ReadRounds', () => {
  it('one round out at a time; the reads that begin meanwhile share the next', async () => {
    const asked: string[][] = [];
    const rounds = new ReadRounds<string[]>((round) => asked.push(round));
    const first = rounds.join(() => []);
    first.push('a');
    expect(rounds.join(() => [])).toBe(first); // same turn, not asked yet: shared
    rounds.join(() => []).push('b');
    await turn();
    expect(asked).toEqual([['a', 'b']]);
    expect(rounds.asked).toBe(1);

    // While ['a', 'b'] is out, later reads wait for the next round, which does not ask yet.
    const second = rounds.join(() => []);
    second.push('c');
    rounds.join(() => []).push('d');
    await turn();
    await turn();
    expect(asked).toHaveLength(1);
    rounds.release(['x']); // not the round out: nothing happens
    await turn();
    expect(asked).toHaveLength(1);
    rounds.release(first);
    await turn();
    expect(asked).toEqual([['a', 'b'], ['c', 'd']]);
    expect(rounds.asked).toBe(2);

    // Releasing twice changes nothing; with nothing out, the next read asks on the next turn.
    rounds.release(first);
    rounds.release(second);
    rounds.join(() => []).push('e');
    await turn();
    expect(asked.at(-1)).toEqual(['e']);
  });
});
