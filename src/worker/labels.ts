/**
 * @module Worker labels: the user's, checked against the automatic ones (`coord.*`, `nfltr.worker.*`),
 * plus those the worker computes itself. The computed ones are rounded so they change only when the
 * change means something to a scheduler, and so presence updates stay rare.
 */
import { availableParallelism, freemem, loadavg } from 'node:os';
import { A2A_PROTOCOL } from '../protocol/a2a.js';
import { labelsProblem } from '../protocol/control.js';
import { WorkerConfigError } from './errors.js';

/** Key prefixes the worker owns; a user label under them would contradict what it measures. */
export const AUTOMATIC_LABEL_PREFIXES = ['coord.', 'nfltr.worker.'] as const;

/** Minimum change of `coord.load_pct`, in points, worth a label update. */
export const LOAD_STEP_PCT = 10;

export const LABEL = {
  cpuCores: 'coord.cpu_cores',
  memoryMb: 'coord.memory_mb',
  loadPct: 'coord.load_pct',
  transfer: 'coord.transfer',
  protocol: 'nfltr.worker.protocol',
  tool: 'nfltr.worker.tool',
  maxTasks: 'nfltr.worker.max_tasks',
} as const;

/** Throws a {@link WorkerConfigError} naming `--labels` when a user label is invalid or automatic. */
export function checkUserLabels(labels: Record<string, string>): void {
  for (const key of Object.keys(labels)) {
    const prefix = AUTOMATIC_LABEL_PREFIXES.find((p) => key.startsWith(p));
    if (prefix) {
      throw new WorkerConfigError(
        `--labels: ${JSON.stringify(key)} is set by the worker itself (keys starting with ` +
          `${AUTOMATIC_LABEL_PREFIXES.join(' or ')} are automatic); choose another key`,
      );
    }
  }
  const problem = labelsProblem(labels);
  if (problem) throw new WorkerConfigError(`--labels: ${problem}`);
}

/**
 * Rounds available memory down to a class: 256 MB steps below 2 GiB, 1024 MB steps above. A value
 * within half a step of the previous class keeps it, so memory hovering at a boundary does not flap.
 */
export function memoryClassMb(availableMb: number, previous?: number): number {
  const step = availableMb >= 2048 ? 1024 : 256;
  if (previous !== undefined && Math.abs(availableMb - (previous + step / 2)) < step) return previous;
  return Math.max(0, Math.floor(availableMb / step) * step);
}

/** Utilisation hint: the busier of the CPU (1-minute load per core) and the task slots, 0-100. */
export function loadPct(s: { load1: number; cores: number; busySlots: number; maxTasks: number }): number {
  const cpu = s.cores > 0 ? s.load1 / s.cores : 0;
  const slots = s.maxTasks > 0 ? s.busySlots / s.maxTasks : 0;
  return Math.min(100, Math.max(0, Math.round(Math.max(cpu, slots) * 100)));
}

export interface MachineSample {
  cpuCores: number;
  availableMb: number;
  load1: number;
}

export function sampleMachine(): MachineSample {
  return {
    cpuCores: availableParallelism(),
    availableMb: Math.floor(freemem() / (1024 * 1024)),
    load1: loadavg()[0] ?? 0,
  };
}

export interface AutomaticLabelInput {
  tool: string;
  maxTasks: number;
  cpuCores: number;
  memoryClassMb: number;
  loadPct: number;
  /** Takes task files on a direct link (`--p2p-threshold` not off): `coord.transfer` is `p2p`, the preferred mode. */
  p2p?: boolean;
}

export function automaticLabels(i: AutomaticLabelInput): Record<string, string> {
  return {
    [LABEL.cpuCores]: String(i.cpuCores),
    [LABEL.memoryMb]: String(i.memoryClassMb),
    [LABEL.loadPct]: String(i.loadPct),
    [LABEL.transfer]: i.p2p ? 'p2p' : 'a2a',
    [LABEL.protocol]: A2A_PROTOCOL,
    [LABEL.tool]: i.tool,
    [LABEL.maxTasks]: String(i.maxTasks),
  };
}

/**
 * Keeps the advertised label set: user labels plus automatic ones. {@link refresh} recomputes them and
 * says whether the change is worth sending (load moved by {@link LOAD_STEP_PCT} or more, or the memory
 * class changed).
 */
export class LabelKeeper {
  readonly #user: Record<string, string>;
  readonly #tool: string;
  readonly #maxTasks: number;
  readonly #p2p: boolean;
  readonly #sample: () => MachineSample;
  #memoryClass: number | undefined;
  #load = 0;
  #labels: Record<string, string> = {};

  constructor(opts: {
    user: Record<string, string>;
    tool: string;
    maxTasks: number;
    p2p?: boolean;
    sample?: () => MachineSample;
  }) {
    this.#p2p = opts.p2p ?? false;
    this.#user = { ...opts.user };
    this.#tool = opts.tool;
    this.#maxTasks = opts.maxTasks;
    this.#sample = opts.sample ?? sampleMachine;
  }

  get labels(): Record<string, string> {
    return { ...this.#labels };
  }

  /** Recomputes the automatic labels; true when the caller should advertise the new set. */
  refresh(busySlots: number): boolean {
    const s = this.#sample();
    const first = this.#memoryClass === undefined;
    const memoryClass = memoryClassMb(s.availableMb, this.#memoryClass);
    const load = loadPct({ load1: s.load1, cores: s.cpuCores, busySlots, maxTasks: this.#maxTasks });
    const changed =
      first || memoryClass !== this.#memoryClass || Math.abs(load - this.#load) >= LOAD_STEP_PCT;
    if (!changed) return false;
    this.#memoryClass = memoryClass;
    this.#load = load;
    this.#labels = {
      ...this.#user,
      ...automaticLabels({
        tool: this.#tool,
        maxTasks: this.#maxTasks,
        p2p: this.#p2p,
        cpuCores: s.cpuCores,
        memoryClassMb: memoryClass,
        loadPct: load,
      }),
    };
    return true;
  }
}
