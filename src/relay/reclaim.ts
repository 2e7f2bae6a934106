/**
 * @module Gives memory back after an offender leaves. The payloads a relay buffers are external
 * memory that V8 frees only at its next full collection, and an idle relay may not run one for a
 * long time: its RSS would stay at the offender's peak. So after a large drain the relay asks for
 * collections, at most one every few seconds. The collector is reached through `--expose-gc`, set at run
 * time: Node offers no other way, and where it fails the relay only frees memory later.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../util/log.js';

const MIN_INTERVAL_MS = 5_000;

/**
 * Returns a function that schedules two full collections, the first soon and the second at least 5 s
 * later (calls meanwhile are coalesced), or a no-op when the collector cannot be reached.
 */
export function memoryReclaimer(logger: Logger): () => void {
  let gc: (() => void) | undefined;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  } catch (err) {
    logger.warn('cannot reach the garbage collector; memory is given back later', { error: err as Error });
    return () => {};
  }
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  const collect = (then?: () => void) => {
    timer = setTimeout(
      () => {
        timer = undefined;
        last = Date.now();
        gc!();
        then?.();
      },
      Math.max(500, last + MIN_INTERVAL_MS - Date.now()),
    );
    timer.unref();
  };
  // The first collection frees the payloads; V8 shrinks its own heap only after a second one.
  return () => {
    if (!timer) collect(() => collect());
  };
}
