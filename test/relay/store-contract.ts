/**
 * The one contract every {@link Store} keeps, run against each implementation. `newStore` opens
 * another handle on the same state each time it is called (two replicas on one database), reading time
 * through the clock it is given: rows age by advancing it, not by waiting.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PresenceClaim, type Store, StoreClock } from '../../src/relay/store/store.js';

export interface StoreContractOptions {
  name: string;
  /** Sets up fresh state; returns how to open a handle on it and how to clean up. */
  setup: () => Promise<{ newStore: (clock: StoreClock) => Promise<Store>; teardown?: () => Promise<void> }>;
  /** Skips the suite, with the reason printed; every skip has one. */
  skip?: string;
}

const hash = (token: string) => createHash('sha256').update(token).digest();
const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

function claim(account: string, agentId: string, relayId: string, token: string): PresenceClaim {
  return {
    account,
    agentId,
    kind: 'worker',
    labels: { zone: 'eu' },
    connectedSince: new Date(),
    relayId,
    sessionHash: hash(token),
  };
}

export function runStoreContract(opts: StoreContractOptions): void {
  describe.skipIf(opts.skip !== undefined)(`store contract: ${opts.name}`, () => {
    let a: Store;
    let b: Store;
    let teardown: (() => Promise<void>) | undefined;
    const clock = new StoreClock();

    beforeAll(async () => {
      const s = await opts.setup();
      teardown = s.teardown;
      a = await s.newStore(clock);
      b = await s.newStore(clock);
    });

    afterAll(async () => {
      await a?.close();
      await b?.close();
      await teardown?.();
    });

    it('keys - a created key authenticates on every handle; list shows no secret', async () => {
      const account = uniq('acct');
      const { id, key } = await a.createKey(account);
      expect(key).toMatch(/^nfk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      expect(await b.authenticate(key)).toEqual({ ok: true, keyId: id, account });
      const listed = await b.listKeys(account);
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ id, account, revokedAt: null });
      expect(listed[0]!.lastUsedAt).toBeInstanceOf(Date);
      // The secret is all after `nfk_<id>_`: base64url, so it may hold '_' itself.
      expect(JSON.stringify(listed)).not.toContain(key.slice('nfk_0123456789abcdef_'.length));
      expect((await a.listKeys()).some((k) => k.id === id)).toBe(true);
    });

    it('keys - malformed, unknown and wrong-secret keys are told apart', async () => {
      const { key } = await a.createKey(uniq('acct'));
      expect(await a.authenticate('nope')).toMatchObject({ ok: false, reason: 'malformed' });
      expect(await a.authenticate(`nfk_${'0'.repeat(16)}_${'A'.repeat(43)}`)).toMatchObject({
        ok: false,
        reason: 'unknown',
      });
      expect(await a.authenticate(`${key.slice(0, -4)}AAAA`)).toMatchObject({ ok: false, reason: 'unknown' });
    });

    it('keys - a revocation through one handle is refused at once on the other', async () => {
      const { id, key } = await a.createKey(uniq('acct'));
      const other = await a.createKey(uniq('acct'));
      expect(await b.revokedAmong([id, other.id])).toEqual([]);
      expect(await a.revokeKey(id)).toBe(true);
      expect(await a.revokeKey('feedfeedfeedfeed')).toBe(false);
      const auth = await b.authenticate(key);
      expect(auth).toMatchObject({ ok: false, reason: 'revoked' });
      expect((auth as { message: string }).message).toMatch(
        new RegExp(`API key ${id} was revoked at \\d{4}-`),
      );
      expect(await b.revokedAmong([id, other.id])).toEqual([id]);
      expect(await b.revokedAmong([])).toEqual([]);
    });

    it('keys - replicas confirm the revocations they acted on; a silent one stops counting', async () => {
      const before = await a.revocationCount();
      const { id } = await a.createKey(uniq('acct'));
      const r1 = uniq('relay');
      const r2 = uniq('relay');
      await a.confirmRevocations(r1, before, 10_000);
      await b.confirmRevocations(r2, before, 10_000);
      await a.revokeKey(id);
      const n = await b.revocationCount();
      expect(n).toBe(before + 1);
      expect((await a.unconfirmedReplicas(n)).filter((r) => r === r1 || r === r2)).toEqual([r1, r2].sort());
      await a.confirmRevocations(r1, n, 10_000);
      expect(await b.unconfirmedReplicas(n)).not.toContain(r1);
      await b.confirmRevocations(r2, before, 1);
      clock.advance(20);
      expect(await a.unconfirmedReplicas(n)).not.toContain(r2);
      await a.forgetReplicas(r1);
      await a.confirmRevocations(r2, 0, 10_000);
      expect(await b.unconfirmedReplicas(n)).toContain(r2);
      await b.forgetReplicas(r2);
      expect(await a.unconfirmedReplicas(n)).not.toContain(r2);
    });

    it('presence - a claim is visible to every handle, with its replica and labels', async () => {
      const account = uniq('acct');
      const r = await a.claimPresence(claim(account, 'w1', 'relay-1', 't1'), 10_000);
      expect(r.ok).toBe(true);
      const rows = await b.listPresence({ ttlMs: 10_000, account });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        account,
        agentId: 'w1',
        kind: 'worker',
        labels: { zone: 'eu' },
        relayId: 'relay-1',
        epoch: (r as { epoch: number }).epoch,
      });
      expect(rows[0]!.ageMs).toBeLessThan(5_000);
      expect(rows[0]!.connectedSince).toBeInstanceOf(Date);
    });

    it('presence - a live id is refused to another session token and taken over by the same one', async () => {
      const account = uniq('acct');
      const first = await a.claimPresence(claim(account, 'dup', 'relay-1', 'tok-1'), 10_000);
      expect(first.ok).toBe(true);
      const other = await b.claimPresence(claim(account, 'dup', 'relay-2', 'tok-2'), 10_000);
      expect(other.ok).toBe(false);
      expect((other as { holder: { relayId: string } }).holder.relayId).toBe('relay-1');
      const again = await b.claimPresence(claim(account, 'dup', 'relay-2', 'tok-1'), 10_000);
      expect(again.ok).toBe(true);
      expect((again as { epoch: number }).epoch).toBeGreaterThan((first as { epoch: number }).epoch);
      const rows = await a.listPresence({ ttlMs: 10_000, account });
      expect(rows.map((x) => [x.agentId, x.relayId])).toEqual([['dup', 'relay-2']]);
      // The same id in another account is another agent.
      expect((await a.claimPresence(claim(uniq('acct'), 'dup', 'relay-3', 'tok-3'), 10_000)).ok).toBe(true);
    });

    it('presence - two replicas claiming one id at once: exactly one wins', async () => {
      const account = uniq('acct');
      const results = await Promise.all([
        a.claimPresence(claim(account, 'race', 'relay-1', 'x1'), 10_000),
        b.claimPresence(claim(account, 'race', 'relay-2', 'x2'), 10_000),
        a.claimPresence(claim(account, 'race', 'relay-3', 'x3'), 10_000),
      ]);
      expect(results.filter((r) => r.ok)).toHaveLength(1);
    });

    it('presence - heartbeats keep rows; a row not refreshed for the TTL expires and is free', async () => {
      const account = uniq('acct');
      const relay = uniq('relay');
      const dead = uniq('relay');
      const kept = await a.claimPresence(claim(account, 'kept', relay, 'k'), 10_000);
      await a.claimPresence(claim(account, 'stale', dead, 's'), 10_000);
      clock.advance(700);
      const held = await a.heartbeatPresence(relay, [
        { account, agentId: 'kept', epoch: (kept as { epoch: number }).epoch, labels: { zone: 'us' } },
      ]);
      expect(held).toEqual([{ account, agentId: 'kept', epoch: (kept as { epoch: number }).epoch }]);
      const fresh = await b.listPresence({ ttlMs: 500, account });
      expect(fresh.map((r) => [r.agentId, r.labels])).toEqual([['kept', { zone: 'us' }]]);
      // The stale row is refused to nobody, and expiry returns and deletes it.
      const takeover = await b.claimPresence(claim(account, 'stale', relay, 'another-token'), 500);
      expect(takeover.ok).toBe(true);
      clock.advance(700);
      await a.heartbeatPresence(relay, []);
      await a.claimPresence(claim(account, 'gone', dead, 'g'), 10_000);
      clock.advance(700);
      await a.heartbeatPresence(relay, []);
      const expired = await b.expirePresence(500);
      expect(expired.filter((r) => r.account === account).map((r) => r.agentId)).toEqual(['gone']);
      expect((await a.listPresence({ ttlMs: 60_000, account })).map((r) => r.agentId).sort()).toEqual([
        'kept',
        'stale',
      ]);
    });

    it('presence - a heartbeat no longer lists a row claimed by a later connection elsewhere', async () => {
      const account = uniq('acct');
      const r1 = uniq('relay');
      await a.claimPresence(claim(account, 'mover', r1, 'm'), 10_000);
      expect(await a.heartbeatPresence(r1, [])).toHaveLength(1);
      await b.claimPresence(claim(account, 'mover', uniq('relay'), 'm'), 10_000);
      expect(await a.heartbeatPresence(r1, [])).toEqual([]);
    });

    it('presence - release deletes only the current claim', async () => {
      const account = uniq('acct');
      const old = await a.claimPresence(claim(account, 'rel', 'relay-1', 'r'), 10_000);
      const cur = await b.claimPresence(claim(account, 'rel', 'relay-2', 'r'), 10_000);
      await a.releasePresence(account, 'rel', (old as { epoch: number }).epoch);
      expect(await b.listPresence({ ttlMs: 10_000, account })).toHaveLength(1);
      await a.releasePresence(account, 'rel', (cur as { epoch: number }).epoch);
      expect(await b.listPresence({ ttlMs: 10_000, account })).toHaveLength(0);
      expect((await a.claimPresence(claim(account, 'rel', 'relay-3', 'other'), 10_000)).ok).toBe(true);
    });

    it('presence - expire with TTL 0 clears every row', async () => {
      const account = uniq('acct');
      await a.claimPresence(claim(account, 'x', 'relay-x', 'x'), 10_000);
      const gone = await b.expirePresence(0);
      expect(gone.some((r) => r.account === account)).toBe(true);
      expect(await a.listPresence({ ttlMs: 10_000 })).toEqual([]);
    });

    it('dashboard - a token opens its planner on every handle; a new token replaces the old', async () => {
      const account = uniq('acct');
      const t1 = uniq('tok');
      await a.registerDashboard(account, 'plan-1', t1);
      expect(await b.dashboardOfToken(t1)).toEqual({ account, plannerId: 'plan-1' });
      const t2 = uniq('tok');
      await b.registerDashboard(account, 'plan-1', t2);
      expect(await a.dashboardOfToken(t1)).toBeUndefined();
      expect(await a.dashboardOfToken(t2)).toEqual({ account, plannerId: 'plan-1' });
    });

    it('dashboard - digests are replaced per task, listed after a rev, scoped to account and planner, and capped', async () => {
      const account = uniq('acct');
      const other = uniq('acct');
      const r1 = await a.putDigests(
        account,
        'p1',
        [
          { taskId: 't1', sealed: 'AAA' },
          { taskId: 't2', sealed: 'BBB' },
        ],
        10,
      );
      await b.putDigests(other, 'p1', [{ taskId: 't1', sealed: 'OTHER' }], 10);
      await b.putDigests(account, 'p2', [{ taskId: 't9', sealed: 'P2' }], 10);
      const all = await b.listDigests(account, { limit: 100 });
      expect(all.map((d) => [d.plannerId, d.taskId, d.sealed])).toEqual([
        ['p1', 't1', 'AAA'],
        ['p1', 't2', 'BBB'],
        ['p2', 't9', 'P2'],
      ]);
      expect(all[1]!.rev).toBe(r1);
      const r2 = await a.putDigests(account, 'p1', [{ taskId: 't1', sealed: 'CCC' }], 10);
      expect(r2).toBeGreaterThan(r1);
      const since = await b.listDigests(account, { plannerId: 'p1', afterRev: r1, limit: 100 });
      expect(since.map((d) => [d.taskId, d.sealed, d.rev])).toEqual([['t1', 'CCC', r2]]);
      expect(since[0]!.updatedAt).toBeInstanceOf(Date);
      // Three tasks with room for two: the least recently written goes.
      await a.putDigests(account, 'p1', [{ taskId: 't3', sealed: 'DDD' }], 2);
      const kept = await b.listDigests(account, { plannerId: 'p1', limit: 100 });
      expect(kept.map((d) => d.taskId)).toEqual(['t1', 't3']);
      expect((await b.listDigests(other, { limit: 100 })).map((d) => d.sealed)).toEqual(['OTHER']);
    });

    it('dashboard - commands queue per planner up to a bound and leave once acked', async () => {
      const account = uniq('acct');
      const q1 = await a.queueCommand(account, 'p1', 'c1', 2);
      const q2 = await b.queueCommand(account, 'p1', 'c2', 2);
      expect(q1.ok && q2.ok).toBe(true);
      expect(await a.queueCommand(account, 'p1', 'c3', 2)).toEqual({ ok: false, pending: 2 });
      expect((await a.queueCommand(account, 'p2', 'x', 2)).ok).toBe(true);
      const pending = await b.pendingCommands(account, 'p1', 10);
      expect(pending.map((c) => c.sealed)).toEqual(['c1', 'c2']);
      expect(pending[0]!.createdAt).toBeInstanceOf(Date);
      const ids = pending.map((c) => c.id);
      expect(await a.ackCommands(account, 'p1', [ids[0]!])).toBe(1);
      // An ack is taken once; another account cannot ack this one's commands.
      expect(await b.ackCommands(account, 'p1', [ids[0]!])).toBe(0);
      expect(await b.ackCommands(uniq('acct'), 'p1', [ids[1]!])).toBe(0);
      expect((await a.pendingCommands(account, 'p1', 10)).map((c) => c.sealed)).toEqual(['c2']);
    });
  });
}
