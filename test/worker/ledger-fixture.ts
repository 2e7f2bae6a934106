/**
 * A recovery ledger over a fresh tasks folder for in-process tests: its sends are recorded, its paced
 * replays held for the test to run, its clock set by the test.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { A2aBody } from '../../src/agent/a2a.js';
import type { TaskStateName } from '../../src/protocol/a2a.js';
import { silentLogger } from '../../src/util/log.js';
import { type Recovered, RecoveryLedger } from '../../src/worker/recovery-ledger.js';
import { EVENTS_FILE, TaskEventLog } from '../../src/worker/task-events.js';
import { tempDir } from '../helpers/processes.js';

export interface Sent {
  peer: string;
  channel: string;
  msg: A2aBody;
}

/** A ledger over a fresh tasks folder; `sent` records its sends, `timers` its paced replays. */
export function ledgerFixture(opts: { tasksDir?: string; recovered?: Recovered; fail?: () => boolean } = {}) {
  const tasksDir = opts.tasksDir ?? join(tempDir(), 'tasks');
  mkdirSync(tasksDir, { recursive: true });
  const sent: Sent[] = [];
  const timers: { ms: number; fn: () => void }[] = [];
  const running = new Set<string>();
  const clock = { now: 1_000_000 };
  const ledger = new RecoveryLedger(opts.recovered ?? { known: new Set(), owed: new Map() }, {
    tasksDir,
    send: async (peer, channel, msg) => {
      if (opts.fail?.()) throw new Error('link gone');
      sent.push({ peer, channel, msg });
    },
    running: (id) => running.has(id),
    logger: silentLogger,
    now: () => clock.now,
    later: (ms, fn) => timers.push({ ms, fn }),
  });
  /** Task `id` of `owner`, accepted and owed, with events in these states (the first is `accepted`). */
  const task = (id: string, owner: string, ...states: TaskStateName[]) => {
    const dir = ledger.open(id, owner);
    const log = new TaskEventLog(id, join(dir, EVENTS_FILE));
    for (const state of ['accepted' as const, ...states]) log.append({ state });
    ledger.owe(id, owner, log);
    return ledger.get(id)!;
  };
  /** Waits for the replays under way to finish sending. */
  const settle = async () => {
    for (const id of ['t1', 't2', 't3']) await ledger.get(id)?.chain;
  };
  return { ledger, tasksDir, sent, timers, running, clock, task, settle };
}

/** What was sent, as `case:seq` (task events) or `case:lastSeq` (replay complete), per channel. */
export const summary = (sent: Sent[]) =>
  sent.map(({ peer, channel, msg }) => {
    const v =
      msg.case === 'taskEvent' ? msg.value.seq : msg.case === 'replayComplete' ? msg.value.lastSeq : '';
    return `${peer}/${channel} ${msg.case}:${v}`;
  });
