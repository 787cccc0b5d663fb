// Log commands and keys: canonical encoding round trips, proposal signatures, admin approvals against the policy,
// and the keyring's verification cache (a signature is verified once per node).
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../src/crypto/canonical.ts';
import { generateSigningKey, signBytes, type SigningKey } from '../../src/crypto/ed25519.ts';
import { fromBase64Url, toBase64Url, utf8 } from '../../src/crypto/encoding.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import {
  ADMIN_JWS_TYPE,
  adminCommandVerifies,
  admitAdminCommand,
  checkAdminApprovals,
  countCommittedApprovals,
  decodeCommand,
  encodeCommand,
  requiredApprovals,
  signProposal,
  signProposalEncoded,
  verifyProposal,
  type AdminAction,
  type AdminCommand,
} from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm, verdictOf } from './fixtures.ts';

const fed = makeFederation(['a', 'b', 'c', 'd']);
const swarm = makeSwarm('s1', ['a', 'b', 'c', 'd']);

function approval(key: SigningKey, payload: unknown, header: Record<string, unknown> = { alg: 'EdDSA', kid: key.kid, typ: ADMIN_JWS_TYPE }): string {
  const h = toBase64Url(utf8(JSON.stringify(header)));
  const p = toBase64Url(canonicalBytes(payload));
  return `${h}.${p}.${toBase64Url(signBytes(key, utf8(`${h}.${p}`)))}`;
}

function adminCommand(action: AdminAction, signers: string[], id = 'change-0000000001'): AdminCommand {
  const payload = { v: 1, swarm: 's1', id, action };
  return { v: 1, type: 'admin', swarm: 's1', id, action, approvals: signers.map((org) => approval(fed.keys[org]!.admin, payload)) };
}

describe('log commands', () => {
  it('every command kind round-trips through its canonical bytes', () => {
    const verdicts = signProposal('s1', 'a', [verdictOf(fed, 'a', { subject: 'x', verdict: 'approve' })], fed.keys.a!.node);
    const admin = adminCommand({ kind: 'set-mode', mode: 'pbft' }, ['a', 'b', 'c']);
    for (const cmd of [verdicts, { v: 1, type: 'noop' } as const, admin]) {
      const bytes = encodeCommand(cmd);
      expect(decodeCommand(bytes)).toEqual(cmd);
      expect(encodeCommand(decodeCommand(bytes))).toEqual(bytes);
    }
    expect(new TextDecoder().decode(encodeCommand({ v: 1, type: 'noop' }))).toBe('{"type":"noop","v":1}');
  });

  it('a proposal verifies with a node key of its proposer only, and not after any change', () => {
    const batch = [verdictOf(fed, 'b', { subject: 'x', verdict: 'approve' })];
    const cmd = signProposal('s1', 'a', batch, fed.keys.a!.node);
    expect(verifyProposal(cmd, fed.keyring)).toBe(true);
    expect(verifyProposal({ ...cmd, proposer: 'b' }, fed.keyring)).toBe(false);
    expect(verifyProposal({ ...cmd, swarm: 's2' }, fed.keyring)).toBe(false);
    expect(verifyProposal({ ...cmd, batch: [...batch, ...batch] }, fed.keyring)).toBe(false);
    expect(verifyProposal(signProposal('s1', 'a', batch, fed.keys.a!.agent), fed.keyring)).toBe(false); // agent key is not a node key
    expect(verifyProposal({ ...cmd, proposer: 'nobody' }, fed.keyring)).toBe(false);
  });

  it('a proposal whose signature is re-encoded with other trailing bits is refused: its bytes are not malleable', () => {
    const cmd = signProposal('s1', 'a', [verdictOf(fed, 'b', { subject: 'x', verdict: 'approve' })], fed.keys.a!.node);
    // 64 bytes = 86 characters: the last one carries 2 bits of the signature and 4 unused ones, which Buffer ignores.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(cmd.sig.at(-1)!);
    expect(last & 0b1111).toBe(0);
    const variants = Array.from({ length: 15 }, (_, i) => `${cmd.sig.slice(0, -1)}${alphabet[last | (i + 1)]}`);
    for (const sig of variants) {
      expect(Buffer.from(sig, 'base64url').equals(Buffer.from(cmd.sig, 'base64url'))).toBe(true); // same bytes to Buffer
      expect(() => fromBase64Url(sig)).toThrow(/canonical/);
      expect(verifyProposal({ ...cmd, sig }, fed.keyring)).toBe(false);
    }
    expect(verifyProposal(cmd, fed.keyring)).toBe(true);
  });
});

describe('fromBase64Url', () => {
  it('decodes exactly the canonical encoding of every byte string, and nothing else', () => {
    for (let length = 0; length <= 40; length++) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 97 + length * 31) & 0xff);
      const text = toBase64Url(bytes);
      expect(fromBase64Url(text)).toEqual(bytes);
      if (text.length % 4 === 0) continue; // no unused bits
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const flipped = `${text.slice(0, -1)}${alphabet[alphabet.indexOf(text.at(-1)!) ^ 1]}`;
      expect(() => fromBase64Url(flipped)).toThrow(/canonical/);
    }
    for (const bad of ['a', 'ab=', 'a+b/', 'ab cd', 'abcde']) expect(() => fromBase64Url(bad)).toThrow();
  });
});

describe('admin approvals', () => {
  it('required approvals: majority, all, two-thirds, a count, and never below 2f+1 in pbft', () => {
    expect(requiredApprovals('majority', 4, 'raft')).toBe(3);
    expect(requiredApprovals('majority', 5, 'raft')).toBe(3);
    expect(requiredApprovals('all', 4, 'raft')).toBe(4);
    expect(requiredApprovals('two-thirds', 4, 'raft')).toBe(3);
    expect(requiredApprovals(2, 7, 'raft')).toBe(2);
    expect(requiredApprovals(2, 7, 'pbft')).toBe(5);
  });

  it('counts one approval per member org with a valid admin signature over exactly this change', () => {
    const ok = checkAdminApprovals(adminCommand({ kind: 'remove-member', org: 'd' }, ['a', 'b', 'c']), swarm, fed.keyring);
    expect(ok).toMatchObject({ ok: true, approvers: ['a', 'b', 'c'], required: 3, refused: [] });

    const twice = adminCommand({ kind: 'remove-member', org: 'd' }, ['a', 'a', 'b']);
    expect(checkAdminApprovals(twice, swarm, fed.keyring)).toMatchObject({ ok: false, approvers: ['a', 'b'] });

    // an approval of another change (other id) cannot be reused
    const cmd = adminCommand({ kind: 'remove-member', org: 'd' }, ['a', 'b']);
    const stale = adminCommand({ kind: 'remove-member', org: 'd' }, ['c'], 'change-0000000002').approvals[0]!;
    const check = checkAdminApprovals({ ...cmd, approvals: [...cmd.approvals, stale] }, swarm, fed.keyring);
    expect(check).toMatchObject({ ok: false, approvers: ['a', 'b'], refused: [{ position: 2, reason: 'the approval is for another change' }] });

    // an agent key or a node key is not an admin key; a non-member's admin key does not count
    const payload = { v: 1, swarm: 's1', id: cmd.id, action: cmd.action };
    const wrongRole = approval(fed.keys.c!.agent, payload);
    const outsiderFed = makeFederation(['z']);
    const mixed = Keyring.fromMembers([...fed.members, ...outsiderFed.members]);
    const outsider = approval(outsiderFed.keys.z!.admin, payload);
    const refused = checkAdminApprovals({ ...cmd, approvals: [...cmd.approvals, wrongRole, outsider] }, swarm, mixed);
    expect(refused.ok).toBe(false);
    expect(refused.refused.map((r) => r.reason)).toEqual([expect.stringMatching(/not an admin key/), expect.stringMatching(/not a member/)]);
  });

  it('admitted, an admin command keeps only the approvals that verify, each named with its org', () => {
    const cmd = adminCommand({ kind: 'remove-member', org: 'd' }, ['b', 'a']);
    const forged = approval(fed.keys.c!.agent, { v: 1, swarm: 's1', id: cmd.id, action: cmd.action });
    const { command, check } = admitAdminCommand({ ...cmd, approvals: [...cmd.approvals, forged], approvers: ['x', 'y', 'z'] }, swarm, fed.keyring);
    expect(command).toEqual({ ...cmd, approvers: ['b', 'a'] });
    expect(check.refused).toHaveLength(1);
    expect(admitAdminCommand({ ...cmd, approvals: [forged] }, swarm, fed.keyring).command).toBeNull();
    expect(decodeCommand(encodeCommand(command!))).toEqual(command);
  });

  it('before commit: every approval verifies and the approvers named are exactly theirs', () => {
    const cmd = adminCommand({ kind: 'remove-member', org: 'd' }, ['a', 'b']);
    expect(adminCommandVerifies(cmd, swarm, fed.keyring)).toBe(true);
    expect(adminCommandVerifies({ ...cmd, approvers: ['a', 'b'] }, swarm, fed.keyring)).toBe(true);
    expect(adminCommandVerifies({ ...cmd, approvers: ['b', 'a'] }, swarm, fed.keyring)).toBe(false);
    const stale = adminCommand({ kind: 'remove-member', org: 'd' }, ['c'], 'change-0000000002').approvals[0]!;
    expect(adminCommandVerifies({ ...cmd, approvals: [...cmd.approvals, stale] }, swarm, fed.keyring)).toBe(false);
    // A node whose file lacks b's admin key cannot vouch for the command.
    const withoutB = Keyring.fromMembers(fed.members.map((m) => (m.org === 'b' ? { ...m, adminKeys: [] } : m)));
    expect(adminCommandVerifies(cmd, swarm, withoutB)).toBe(false);
  });

  it('applied: the approvers an entry names are counted with no key looked up; an entry without them uses the keys', () => {
    const cmd = { ...adminCommand({ kind: 'remove-member', org: 'd' }, ['a', 'b', 'c']), approvers: ['a', 'b', 'c'] };
    const noKeys = Keyring.fromMembers(fed.members.map((m) => ({ ...m, adminKeys: [] })));
    expect(countCommittedApprovals(cmd, swarm, noKeys)).toMatchObject({ ok: true, approvers: ['a', 'b', 'c'], refused: [] });
    // Only voters at this index count, and only approvals of exactly this change.
    const smaller = makeSwarm('s1', ['a', 'b', 'd']);
    expect(countCommittedApprovals(cmd, smaller, noKeys)).toMatchObject({ approvers: ['a', 'b'], refused: [{ position: 2, reason: 'c is not a member of swarm s1' }] });
    const stale = adminCommand({ kind: 'remove-member', org: 'd' }, ['c'], 'change-0000000002').approvals[0]!;
    const mixed = { ...cmd, approvals: [cmd.approvals[0]!, cmd.approvals[1]!, stale] };
    expect(countCommittedApprovals(mixed, swarm, noKeys)).toMatchObject({ ok: false, approvers: ['a', 'b'], refused: [{ position: 2, reason: 'the approval is for another change' }] });
    const { approvers: _none, ...legacy } = cmd;
    expect(countCommittedApprovals(legacy, swarm, noKeys).approvers).toEqual([]);
    expect(countCommittedApprovals(legacy, swarm, fed.keyring).approvers).toEqual(['a', 'b', 'c']);
  });

  it('approvers that do not match the approvals one to one are MALFORMED_COMMAND', () => {
    const cmd = adminCommand({ kind: 'set-mode', mode: 'pbft' }, ['a', 'b']);
    for (const approvers of [['a'], ['a', 'b', 'c'], ['a', ''], 'a,b', ['a', 7]]) {
      expect(() => decodeCommand(new TextEncoder().encode(JSON.stringify({ ...cmd, approvers }))), JSON.stringify(approvers)).toThrow(/approvers/);
    }
  });

  it('admin commands are applied as no-ops by the decision machine for now', () => {
    const machine = new DecisionMachine(swarm, fed.keyring);
    expect(machine.apply(1, adminCommand({ kind: 'set-mode', mode: 'pbft' }, ['a', 'b', 'c']), { verifyAgentSignatures: true })).toEqual([]);
  });
});

describe('keyring', () => {
  it('indexes agent, node and admin keys by kid with their org', () => {
    expect(fed.keyring.get(fed.keys.a!.agent.kid)).toMatchObject({ org: 'a', role: 'agent' });
    expect(fed.keyring.get(fed.keys.b!.node.kid)).toMatchObject({ org: 'b', role: 'node' });
    expect(fed.keyring.get(fed.keys.c!.admin.kid)).toMatchObject({ org: 'c', role: 'admin' });
    expect(fed.keyring.keysOf('d', 'node').map((k) => k.kid)).toEqual([fed.keys.d!.node.kid]);
  });

  it('refuses a kid listed twice', () => {
    const shared = generateSigningKey();
    const members = [
      { org: 'x', agentKeys: [shared.publicJwk], nodeKeys: [], adminKeys: [] },
      { org: 'y', agentKeys: [shared.publicJwk], nodeKeys: [], adminKeys: [] },
    ];
    expect(() => Keyring.fromMembers(members)).toThrow(/listed twice/);
  });

  it('verifies a signature once: a second check of the same signature is a cache hit, failures are not cached', () => {
    const keyring = Keyring.fromMembers(fed.members, { cacheSize: 2 });
    const entry = keyring.get(fed.keys.a!.agent.kid)!;
    const sign = (text: string) => [utf8(text), signBytes(fed.keys.a!.agent, utf8(text))] as const;
    const [m1, s1] = sign('one');
    expect(keyring.verify(entry, m1, s1)).toBe(true);
    expect(keyring.verify(entry, m1, s1)).toBe(true);
    expect(keyring.stats()).toEqual({ verified: 1, cacheHits: 1, cacheSize: 1 });
    expect(keyring.verify(entry, utf8('two'), s1)).toBe(false);
    expect(keyring.verify(entry, utf8('two'), s1)).toBe(false);
    expect(keyring.stats()).toMatchObject({ verified: 3, cacheSize: 1 });
    // bounded: the least recently used entry is evicted
    const [m2, s2] = sign('two');
    const [m3, s3] = sign('three');
    keyring.verify(entry, m2, s2);
    keyring.verify(entry, m1, s1); // refreshes m1
    keyring.verify(entry, m3, s3); // evicts m2
    expect(keyring.stats().cacheSize).toBe(2);
    const before = keyring.stats().verified;
    keyring.verify(entry, m1, s1);
    expect(keyring.stats().verified).toBe(before);
    keyring.verify(entry, m2, s2);
    expect(keyring.stats().verified).toBe(before + 1);
  });

  it('signProposalEncoded gives exactly encodeCommand of the signed proposal, whatever the batch holds', () => {
    const batches = [
      [],
      [verdictOf(fed, 'b', { subject: 'enc', verdict: 'approve' })],
      Array.from({ length: 12 }, (_, i) => verdictOf(fed, 'c', { subject: `enc-${i}`, verdict: i % 2 ? 'approve' : 'reject' })),
      // strings that look like the key boundary, quotes, escapes, non-ASCII: only the unescaped key may match
      [',"swarm":"x"', 'a"b\\c', '\u00e9\ud83d\ude00\n', '{"sig":"no"}'],
    ];
    for (const batch of batches) {
      for (const [swarmId, proposer] of [['s1', 'a'], ['swarm', 'sig'], ['a-b', 'z']] as const) {
        const { command, bytes } = signProposalEncoded(swarmId, proposer, batch, fed.keys.a!.node);
        expect(Buffer.from(bytes).toString('utf8')).toBe(Buffer.from(encodeCommand(command)).toString('utf8'));
        expect(command).toEqual({ v: 1, type: 'verdicts', swarm: swarmId, proposer, batch, sig: command.sig });
      }
      const { command, bytes } = signProposalEncoded('s1', 'a', batch, fed.keys.a!.node);
      expect(verifyProposal(command, Keyring.fromMembers(fed.members))).toBe(true);
      if (batch.length > 0 && batch.every((jws) => jws.split('.').length === 3)) expect(decodeCommand(bytes)).toEqual(command);
    }
  });

  it("a node's own proposal is remembered as verified when it signs it; another key's signature is not", () => {
    const keyring = Keyring.fromMembers(fed.members);
    const batch = [verdictOf(fed, 'b', { subject: 'own', verdict: 'approve' })];
    const own = signProposal('s1', 'a', batch, fed.keys.a!.node, keyring);
    expect(keyring.stats()).toMatchObject({ verified: 0, cacheSize: 1 });
    expect(verifyProposal(own, keyring)).toBe(true);
    expect(keyring.stats()).toMatchObject({ verified: 0, cacheHits: 1 });
    // a different byte anywhere is a different message: verified, and refused
    expect(verifyProposal({ ...own, batch: [verdictOf(fed, 'b', { subject: 'own2', verdict: 'approve' })] }, keyring)).toBe(false);
    expect(keyring.stats().verified).toBe(1);
    // a key that is not the listed key of its kid (same kid, other bytes) is never remembered
    const impostor = { ...generateSigningKey(), kid: fed.keys.a!.node.kid };
    const forged = signProposal('s1', 'a', batch, impostor, keyring);
    expect(keyring.stats().cacheSize).toBe(1);
    expect(verifyProposal(forged, keyring)).toBe(false);
  });

  it('replicas applying the same proposal verify each agent signature at most once per keyring', () => {
    const keyring = Keyring.fromMembers(fed.members);
    const cmd = signProposal('s1', 'a', [verdictOf(fed, 'b', { subject: 'x', verdict: 'approve' })], fed.keys.a!.node);
    new DecisionMachine(swarm, keyring).apply(1, cmd, { verifyAgentSignatures: true });
    expect(keyring.stats().verified).toBe(2); // the proposal and the verdict
    new DecisionMachine(swarm, keyring).apply(1, cmd, { verifyAgentSignatures: true });
    expect(keyring.stats()).toMatchObject({ verified: 2, cacheHits: 2 });
  });
});
