import type { Logger } from '../../util/log.js';
import type { Bus } from './bus.js';
import { LocalBus } from './local/index.js';

/** Opens the bus `--bus` names (a `nats://` URL), or the in-process one when no URL is given. */
export async function openBus(url: string | undefined, opts: { logger: Logger }): Promise<Bus> {
  if (!url) return new LocalBus();
  if (/^nats:\/\//i.test(url)) {
    // Loaded on demand: a relay alone never pays for the NATS client.
    const { NatsBus } = await import('./nats/index.js');
    return NatsBus.connect(url, { logger: opts.logger });
  }
  throw new Error(
    `--bus: expected a nats://host:4222 URL, got ${JSON.stringify(url)} (leave it out to run alone)`,
  );
}
