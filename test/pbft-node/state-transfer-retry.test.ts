// A PBFT replica that fell behind a stable checkpoint catches up by state transfer even when no signer could serve
// its first attempt and the swarm then goes idle. The replica hears the others (their checkpoint votes reach it)
// but its own connections to them are cut, so every call of the transfer fails; once the links heal it must try
// again by itself — before 8b94abc only the next stable checkpoint restarted a transfer, and an idle swarm never
// reaches one, so the replica stayed behind for good. Real nodes in one process (TLS, HTTP/2, RocksDB); every peer
// connection goes through a TCP proxy (the chaos tool's ProxyMesh), cut one way.
import { afterEach, describe, expect, it } from 'vitest';
import { appliedOnceEverywhere, startPbftFour, type InProcessFederation } from '../support/inproc-federation.ts';

const SWARM = 'lagging';
let fed: InProcessFederation | undefined;

afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

interface PbftDetail {
  lastExecuted: number;
  stableCheckpoint: number;
  stateTransfer: { pending: number | null; completed: number; failedAttempts: number };
}

async function detailOf(federation: InProcessFederation, org: string): Promise<PbftDetail> {
  const status = await federation.api(org, 'GET', `/v1/swarms/${SWARM}/status`);
  expect(status.status, status.text).toBe(200);
  return status.json.detail as PbftDetail;
}

/** Submits verdicts one at a time (each its own batch, so the sequence number grows by one per verdict). */
async function submitInTurn(federation: InProcessFederation, org: string, subjects: string[]): Promise<void> {
  for (const subject of subjects) {
    const jws = await federation.sign(org, { swarm: SWARM, subject, verdict: 'approve' });
    const answer = await federation.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.status).toBe('committed');
  }
}

/** Waits until the circuit of each of `orgs`' nodes to `peer` is in `state` (closed: healthy; open: cut off). */
async function linksTo(federation: InProcessFederation, orgs: string[], peer: string, state: 'closed' | 'open'): Promise<void> {
  await federation.waitFor(`${orgs.join(', ')} to see their link to ${peer} ${state}`, async () => {
    for (const org of orgs) {
      const peers = (await federation.api(org, 'GET', '/v1/status')).json.peers as { org: string; state: string }[];
      if (peers.find((p) => p.org === peer)?.state !== state) return false;
    }
    return true;
  });
}

describe('pbft state transfer', () => {
  it('is tried again by itself after no signer could serve it, and completes in an idle swarm once the links heal', async () => {
    const started = await startPbftFour(SWARM, undefined, { mesh: true });
    fed = started.fed;
    const mesh = fed.mesh!;
    const { primary } = started;
    const lagger = fed.orgs.map((o) => o.org).find((org) => org !== primary && org !== started.backup)!;
    const others = fed.orgs.map((o) => o.org).filter((org) => org !== lagger);

    // 1. The lagger is cut off both ways while the others commit past a checkpoint (16 sequence numbers apart). Once
    //    their circuits to it are open they drop what they would send it (a peer link queues messages only while it
    //    may still deliver them), so it can catch up only by state transfer.
    mesh.isolate([lagger]);
    await linksTo(fed, others, lagger, 'open');
    const missed = Array.from({ length: 20 }, (_, i) => `github.com/acme/widget/pull/${i}@missed`);
    await submitInTurn(fed, primary, missed);
    const ahead = await detailOf(fed, primary);
    expect(ahead.stableCheckpoint).toBeGreaterThanOrEqual(16);
    expect((await detailOf(fed, lagger)).lastExecuted).toBe(0);

    // 2. The others reach it again, it still reaches none of them: it learns of a stable checkpoint it cannot execute
    //    up to (the others resend their latest checkpoint votes), asks for a state transfer, and every signer's call
    //    fails; meanwhile more verdicts move the stable checkpoint on.
    for (const org of others) mesh.link(org, lagger).heal();
    await linksTo(fed, others, lagger, 'closed');
    const heard = Array.from({ length: 20 }, (_, i) => `github.com/acme/widget/pull/${i}@heard`);
    await submitInTurn(fed, primary, heard);
    const failed = await fed.waitFor('the lagger to fail a state transfer', async () => {
      const detail = await detailOf(fed!, lagger);
      return detail.stateTransfer.failedAttempts > 0 && detail.stateTransfer.pending !== null ? detail : null;
    });
    expect(failed.stateTransfer.completed).toBe(0);
    expect(failed.lastExecuted).toBeLessThan(failed.stateTransfer.pending!);

    // 3. No more verdicts: the swarm is idle, no new checkpoint will come. Its links heal; it must retry on its own.
    const target = (await detailOf(fed, primary)).stableCheckpoint;
    for (const org of others) mesh.link(lagger, org).heal();
    const caughtUp = await fed.waitFor('the lagger to complete the state transfer', async () => {
      const detail = await detailOf(fed!, lagger);
      return detail.stateTransfer.completed > 0 ? detail : null;
    });
    expect(caughtUp.stateTransfer.pending).toBeNull();
    expect(caughtUp.lastExecuted).toBeGreaterThanOrEqual(target);
    expect(caughtUp.stableCheckpoint).toBe(target);
    // Everything it missed is applied there once, as everywhere (the verdicts after the checkpoint through the
    // ordinary protocol or the next transfer).
    await appliedOnceEverywhere(fed, SWARM, [...missed, ...heard]);
  });
});
