import { describe, expect, it } from 'vitest';
import { DashboardCrypto, dashboardLink, keyOfLink, type TaskDigest } from '../../src/protocol/dashboard.js';
import { newLinkKey } from '../../src/protocol/link-crypto.js';

const digest = (task_id: string): TaskDigest => ({
  v: 1,
  level: 'full',
  task_id,
  worker: 'w1',
  state: 'running',
  created_at: 1,
  updated_at: 2,
  last_seq: 2,
  counts: { events: 2, artifacts: 0 },
  objective: 'the secret objective',
});

describe('dashboard crypto', () => {
  const k = newLinkKey();
  const c = new DashboardCrypto(k, 'plan-1');

  it('dashboard crypto - a digest opens for its own task only, with the right key and planner', () => {
    const sealed = c.sealDigest(digest('t1'));
    expect(sealed).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain('secret');
    expect(c.openDigest('t1', sealed)).toEqual(digest('t1'));
    // A relay moving it under another task, or another planner, is caught.
    expect(c.openDigest('t2', sealed)).toBeUndefined();
    expect(new DashboardCrypto(k, 'plan-2').openDigest('t1', sealed)).toBeUndefined();
    expect(new DashboardCrypto(newLinkKey(), 'plan-1').openDigest('t1', sealed)).toBeUndefined();
    const tampered = Buffer.from(sealed, 'base64url');
    tampered[20]! ^= 1;
    expect(c.openDigest('t1', tampered.toString('base64url'))).toBeUndefined();
    expect(c.openDigest('t1', 'AAAA')).toBeUndefined();
    // Two seals of the same digest differ (random nonces).
    expect(c.sealDigest(digest('t1'))).not.toBe(sealed);
  });

  it('dashboard crypto - a command carries a fresh id and time and opens for its planner only', () => {
    const { id, sealed } = c.sealCommand({ type: 'cancel', task_id: 't1', reason: 'r' });
    const opened = c.openCommand(sealed);
    expect(opened).toMatchObject({ v: 1, id, type: 'cancel', task_id: 't1', reason: 'r' });
    expect(Math.abs(Date.now() - opened!.at)).toBeLessThan(5_000);
    expect(new DashboardCrypto(k, 'plan-2').openCommand(sealed)).toBeUndefined();
    // A command is not a digest: the keys differ.
    expect(c.openDigest('t1', sealed)).toBeUndefined();
  });

  it('dashboard crypto - the link keeps the key in its fragment; the token does not reveal it', () => {
    const link = dashboardLink('https://relay.example/', k, 'task 1');
    expect(link).toBe(`https://relay.example/dashboard#k=${k.toString('base64url')}&task=task%201`);
    expect(keyOfLink(link)).toEqual(k);
    expect(keyOfLink('https://relay.example/dashboard#k=short')).toBeUndefined();
    expect(c.token).not.toContain(k.toString('base64url'));
    expect(c.token).toBe(new DashboardCrypto(k, 'other').token);
  });
});
