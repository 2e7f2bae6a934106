import type { ChildProcess } from 'node:child_process';

/** Why namespaces cannot be made here (not root, no ip/nft/tc), or undefined when they can. */
export function netnsProblem(): string | undefined;

export interface Lab {
  ns: { a: string; b: string; r: string };
  /** The relay's address as a and b reach it. */
  relayFrom: { a: string; b: string };
  /** a's end of the direct link. */
  directIf: string;
  /** The direct link is blocked now. */
  blocked: boolean;
  /** Drops everything on the direct link (a's side, both ways, nftables) until {@link unblock}. */
  block(): void;
  /** Lifts {@link block}; a no-op when not blocked. */
  unblock(): void;
  /** Limits the direct link to `rate` (tc syntax, `80mbit`) each way. */
  shape(rate: string): void;
  /** `nfltr relay` in `r` on all its addresses, with `dataDir` and `args`; resolved once ready. */
  startRelay(dataDir: string, args?: string[]): Promise<Watched & { grpcPort: number; httpPort: number }>;
  /** Spawns `nfltr …` in a namespace. */
  nfltr(ns: string, args: string[]): ChildProcess;
  destroy(): void;
}

export function makeLab(): Lab;

/** A child's output so far, and its exit code. */
export interface Watched {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  child: ChildProcess;
}

export function watch(child: ChildProcess): Watched;
