/**
 * @module The race for a direct connection: both ends listen, learn each other's candidates through
 * the sealed A2A channel, and dial all of them at once while accepting the other's dials. The sender
 * takes the first connection whose handshake completes (the peer's key proven, the offer's secret
 * shared) and says so on it; the receiver takes the one the sender names. Everything else is closed.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { type Logger, silentLogger } from '../../util/log.js';
import { candidateList, parseCandidate } from './candidates.js';
import { DirectLink, type LinkIdentity } from './direct-link.js';

/** Inbound connections one race takes at most. */
const MAX_INBOUND = 16;

export interface RaceOptions {
  identity: Omit<LinkIdentity, 'remoteKey'>;
  /** The sender picks the connection; the receiver waits to be told. */
  picker: boolean;
  /** Hosts to advertise with the listening port (local interfaces, the address the relay saw). */
  addresses: readonly string[];
  /** Where to listen; every interface by default. */
  listenHost?: string;
  logger?: Logger;
}

export interface RaceResult {
  link?: DirectLink;
  /** Why each attempt failed, one `host:port: reason` each (empty when a link was found). */
  failures: string[];
}

export class DirectRace {
  readonly #opts: RaceOptions;
  readonly #log: Logger;
  readonly #server: Server;
  /** Inbound connections that came before {@link connect}: they wait, paused. */
  readonly #early: Socket[] = [];
  #onInbound: ((s: Socket) => void) | undefined;
  #port = 0;
  #inbound = 0;
  #closed = false;

  private constructor(opts: RaceOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#server = createServer({ pauseOnConnect: true }, (s) => {
      // Anyone can dial the port; only the peer can complete a handshake: bound what strangers cost.
      if (++this.#inbound > MAX_INBOUND) s.destroy();
      else if (this.#onInbound) this.#onInbound(s);
      else this.#early.push(s);
    });
  }

  /** Opens the listening socket (a free port). */
  static async listen(opts: RaceOptions): Promise<DirectRace> {
    const race = new DirectRace(opts);
    await new Promise<void>((resolve, reject) => {
      race.#server.once('error', reject);
      race.#server.listen(0, opts.listenHost, () => resolve());
    });
    race.#port = (race.#server.address() as { port: number }).port;
    return race;
  }

  /** `host:port` of each advertised address on the listening port. */
  get candidates(): string[] {
    return candidateList(this.#opts.addresses, this.#port);
  }

  /**
   * Dials `remote` and takes the peer's dials until one connection is authenticated (and, at the
   * receiver, selected by the sender) or `deadlineMs` passes. Stops listening either way.
   */
  connect(remote: readonly string[], remoteKey: Uint8Array, deadlineMs: number): Promise<RaceResult> {
    const identity: LinkIdentity = { ...this.#opts.identity, remoteKey };
    const links = new Set<DirectLink>();
    const failures: string[] = [];
    return new Promise<RaceResult>((resolve) => {
      let settled = false;
      const finish = (link?: DirectLink) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#onInbound = undefined;
        for (const s of dialing) s.destroy();
        for (const l of links) if (l !== link) l.close();
        this.close();
        if (!link) {
          for (const l of links)
            if (l.state !== 'closed') failures.push(`${l.remote}: no handshake within ${deadlineMs} ms`);
        }
        resolve({ link, failures: link ? [] : failures });
      };
      const timer = setTimeout(() => {
        for (const a of pendingDials) failures.push(`${a}: no answer within ${deadlineMs} ms`);
        finish();
      }, deadlineMs);
      const pendingDials = new Set<string>();
      /** Dials not yet connected, destroyed when the race ends. */
      const dialing = new Set<Socket>();
      const adopt = (socket: Socket, dialer: boolean, label: string) => {
        if (settled) return void socket.destroy();
        let link: DirectLink;
        try {
          link = new DirectLink(socket, identity, dialer);
        } catch (err) {
          failures.push(`${label}: ${(err as Error).message}`);
          return void socket.destroy();
        }
        links.add(link);
        link.on('close', (err) => {
          links.delete(link);
          if (!settled && err) failures.push(`${label}: ${err.message}`);
        });
        if (this.#opts.picker) {
          link.once('authenticated', () => {
            if (settled) return;
            link.select();
            finish(link);
          });
        } else link.once('selected', () => finish(link));
        socket.resume();
      };
      this.#onInbound = (s) => adopt(s, false, `from ${s.remoteAddress}:${s.remotePort}`);
      for (const s of this.#early.splice(0)) this.#onInbound(s);
      for (const addr of remote.slice(0, 16)) {
        const c = parseCandidate(addr);
        if (!c) {
          failures.push(`${addr}: not a host:port`);
          continue;
        }
        pendingDials.add(addr);
        const socket = connect({ host: c.host, port: c.port });
        dialing.add(socket);
        socket.once('connect', () => {
          pendingDials.delete(addr);
          dialing.delete(socket);
          adopt(socket, true, addr);
        });
        socket.once('error', (err: NodeJS.ErrnoException) => {
          dialing.delete(socket);
          if (!pendingDials.delete(addr)) return;
          failures.push(`${addr}: ${err.code ?? err.message}`);
          socket.destroy();
        });
      }
      this.#log.debug('direct connection race', { remote: remote.join(','), deadline_ms: deadlineMs });
    });
  }

  /** Stops listening and drops connections not yet taken. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const s of this.#early.splice(0)) s.destroy();
  }
}
