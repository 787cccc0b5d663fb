// Node liveness: one message per peer per round, a peer silent for the lapse reported down exactly once per outage,
// reported up when heard again; peers come and go with the membership. Driven round by round with an injected clock.
import { describe, expect, it } from 'vitest';
import { announcedLevel, LIVENESS_CHANNEL, LIVENESS_SWARM, NodeLiveness, PROTOCOL_LEVEL } from '../../src/transport/liveness.ts';

function setup(initialPeers: string[]) {
  let now = 0;
  let peers = initialPeers;
  const sent: string[] = [];
  const events: string[] = [];
  const liveness = new NodeLiveness({
    peers: () => peers,
    send: (org, swarm, channel, messages) => {
      expect([swarm, channel, messages.length]).toEqual([LIVENESS_SWARM, LIVENESS_CHANNEL, 1]);
      expect(announcedLevel(messages[0]!)).toBe(PROTOCOL_LEVEL);
      sent.push(org);
    },
    onPeerDown: (org) => events.push(`down ${org}`),
    onPeerUp: (org) => events.push(`up ${org}`),
    intervalMs: 1000,
    lapseMs: 3000,
    now: () => now,
  });
  return {
    liveness,
    sent,
    events,
    /** One interval passes; `heard` peers' messages arrived during it. */
    interval(heard: string[]) {
      now += 1000;
      for (const org of heard) liveness.heard(org);
      liveness.round();
    },
    setPeers(next: string[]) {
      peers = next;
    },
    /** This node's own timers do not run for `ms`; then its next round runs. */
    stall(ms: number) {
      now += ms;
      liveness.round();
    },
  };
}

describe('node liveness', () => {
  it('heartbeats every peer once per round and never reports a peer that keeps answering', () => {
    const t = setup(['globex', 'initech']);
    t.liveness.round();
    for (let i = 0; i < 20; i++) t.interval(['globex', 'initech']);
    expect(t.sent.filter((org) => org === 'globex')).toHaveLength(21);
    expect(t.events).toEqual([]);
    expect(t.liveness.status().map((p) => p.up)).toEqual([true, true]);
  });

  it('reports a silent peer down once, after the lapse, and up again when it is heard', () => {
    const t = setup(['globex', 'initech']);
    t.liveness.round();
    t.interval(['globex', 'initech']);
    for (let i = 0; i < 3; i++) t.interval(['globex']); // initech silent for 3 s: not yet beyond the lapse
    expect(t.events).toEqual([]);
    t.interval(['globex']);
    expect(t.events).toEqual(['down initech']);
    for (let i = 0; i < 10; i++) t.interval(['globex']);
    expect(t.events).toEqual(['down initech']); // once per outage
    expect(t.liveness.status().find((p) => p.org === 'initech')).toMatchObject({ up: false, silentMs: 14_000 });
    t.interval(['globex', 'initech']);
    expect(t.events).toEqual(['down initech', 'up initech']);
    for (let i = 0; i < 4; i++) t.interval(['globex']);
    expect(t.events).toEqual(['down initech', 'up initech', 'down initech']);
  });

  it('a peer never heard gets one lapse of grace from when it is first watched (it may be starting)', () => {
    const t = setup(['globex']);
    t.liveness.round();
    for (let i = 0; i < 3; i++) t.interval([]);
    expect(t.events).toEqual([]);
    t.interval([]);
    expect(t.events).toEqual(['down globex']);
  });

  it('follows the membership: a new peer is watched from its first round, a removed one is forgotten', () => {
    const t = setup(['globex']);
    t.liveness.round();
    t.liveness.heard('hooli'); // not a peer yet: ignored
    t.setPeers(['globex', 'hooli']);
    t.interval(['globex']);
    expect(t.sent.at(-1)).toBe('hooli');
    t.setPeers(['hooli']);
    for (let i = 0; i < 10; i++) t.interval(['hooli']);
    expect(t.events).toEqual([]);
    expect(t.liveness.status().map((p) => p.org)).toEqual(['hooli']);
  });

  it('a node that itself stalled for a lapse judges nobody on its first round back; silent peers get a fresh lapse', () => {
    const s = setup(['globex']);
    s.liveness.round();
    s.interval(['globex']);
    s.stall(10_000);
    expect(s.events).toEqual([]); // the first round after the stall
    s.interval(['globex']); // the queued messages are read: globex was alive all along
    for (let i = 0; i < 3; i++) s.interval(['globex']);
    expect(s.events).toEqual([]);
    s.stall(10_000);
    for (let i = 0; i < 3; i++) s.interval([]);
    expect(s.events).toEqual([]); // 3 s of real silence after the stall: not yet beyond the lapse
    s.interval([]);
    expect(s.events).toEqual(['down globex']);
  });

  it('keeps the protocol level each peer announced last; the one-byte message of earlier versions is level 1', () => {
    const s = setup(['globex', 'initech']);
    s.liveness.round();
    expect(s.liveness.levelOf('globex')).toBeNull(); // not heard yet
    s.liveness.announced('globex', [new Uint8Array([1])]);
    s.liveness.announced('initech', [new Uint8Array([2, 2])]);
    expect([s.liveness.levelOf('globex'), s.liveness.levelOf('initech')]).toEqual([1, 2]);
    // globex's node was upgraded and restarted: its new announcement replaces the old one.
    s.liveness.announced('globex', [new Uint8Array([2, 3])]);
    expect(s.liveness.levelOf('globex')).toBe(3);
    // What this version cannot read changes nothing, but the peer was heard.
    s.liveness.announced('initech', [new Uint8Array([]), new Uint8Array([2, 0]), new Uint8Array([9, 9, 9]), new Uint8Array([3])]);
    expect(s.liveness.levelOf('initech')).toBe(2);
    expect(s.liveness.status().map((p) => [p.org, p.level])).toEqual([
      ['globex', 3],
      ['initech', 2],
    ]);
  });

  it('starts from the levels remembered from an earlier run, and reports each change of a level once', () => {
    const changes: string[] = [];
    const liveness = new NodeLiveness({
      peers: () => ['globex', 'initech'],
      send: () => undefined,
      onPeerDown: () => undefined,
      intervalMs: 1000,
      lapseMs: 3000,
      now: () => 0,
      remembered: new Map([['globex', 3]]),
      onLevel: (org, level, all) => changes.push(`${org}=${level} ${JSON.stringify(Object.fromEntries(all))}`),
    });
    // Known before globex's node is heard in this run (it may be down): what a restarted node stored.
    expect([liveness.levelOf('globex'), liveness.levelOf('initech')]).toEqual([3, null]);
    liveness.announced('globex', [new Uint8Array([2, 3])]); // the same level again: nothing to store
    liveness.announced('initech', [new Uint8Array([2, 2]), new Uint8Array([2, 2])]);
    liveness.announced('globex', [new Uint8Array([1])]); // downgraded: the live announcement wins
    expect(changes).toEqual(['initech=2 {"globex":3,"initech":2}', 'globex=1 {"globex":1,"initech":2}']);
    expect(liveness.levelOf('globex')).toBe(1);
  });

  it('refuses a lapse that is not longer than the interval', () => {
    const options = { peers: () => [], send: () => undefined, onPeerDown: () => undefined };
    expect(() => new NodeLiveness({ ...options, intervalMs: 1000, lapseMs: 1000 })).toThrow(/intervalMs .* < lapseMs/);
    expect(() => new NodeLiveness({ ...options, intervalMs: 0, lapseMs: 1000 })).toThrow(/0 < intervalMs/);
  });
});
