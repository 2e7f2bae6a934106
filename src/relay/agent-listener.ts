/**
 * @module The control listener: the relay accepts agent connections on a listener of its own and hands
 * each to grpc-js, so that it chooses the backlog a fleet's reconnect needs, and sees (and says) when it
 * is running out of file descriptors.
 */

import type { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import type { Http2Session } from 'node:http2';
import { createServer, type Server } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { HTTP2_WINDOW_BYTES } from '../protocol/grpc.js';
import type { Logger } from '../util/log.js';

/**
 * Connections the kernel queues until the relay accepts them (capped by net.core.somaxconn). grpc-js
 * listens with Node's default of 511: a fleet redialling after a restart overflows that, and each
 * dropped connection is retried by TCP only after 1, 3, 7… s.
 */
const BACKLOG = 65_535;

/** Share of the open-file limit at which the relay says it is running out. */
const NEAR_LIMIT = 0.9;

/**
 * The soft limit on open files, from /proc (Linux); undefined elsewhere. Node does not expose it, and
 * libuv drops connections past it without telling (its EMFILE trick), so the relay watches its count.
 */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Descriptors this process has open now (Linux), 0 where it cannot tell. */
function openFiles(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/** Listens on `addr` for agents and hands every connection to `grpcServer`. */
export async function listenForAgents(
  grpcServer: grpc.Server,
  creds: grpc.ServerCredentials,
  addr: { host: string; port: number },
  flag: string,
  logger: Logger,
): Promise<Server> {
  const injector = grpcServer.createConnectionInjector(creds);
  widenHttp2Windows(grpcServer, logger);
  const limit = openFileLimit();
  // What the relay holds besides agents (store, listeners, logs) counts against the same limit.
  const near =
    limit === undefined ? Number.POSITIVE_INFINITY : Math.floor((limit - openFiles()) * NEAR_LIMIT);
  let open = 0;
  let warned = false;
  const listener = createServer((socket) => {
    open++;
    socket.once('close', () => {
      open--;
      if (open < near * NEAR_LIMIT) warned = false;
    });
    if (open >= near && !warned) {
      warned = true;
      logger.error(
        `${open} agent connections bring this process near its open-file limit of ${limit}: past it, new connections are dropped (EMFILE); raise it (ulimit -n, or LimitNOFILE= for a service)`,
        { open, limit },
      );
    }
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err) => reject(new Error(`--grpc-addr ${flag}: ${err.message}`)));
    listener.listen({ host: addr.host, port: addr.port, backlog: BACKLOG }, resolve);
  });
  listener.removeAllListeners('error');
  // An accept that fails for another reason must not take the relay down (no listener would throw).
  listener.on('error', (err: NodeJS.ErrnoException) =>
    logger.error('accepting an agent connection failed', { code: err.code, error: err.message }),
  );
  return listener;
}

/**
 * Grants each agent connection {@link HTTP2_WINDOW_BYTES} of HTTP/2 window, as agents grant the relay
 * with `grpc-node.flow_control_window`. grpc-js reads that option on clients only (grpc/grpc-node#3058
 * adds it to the server), so this reaches for the server's HTTP/2 listeners, which it does not
 * expose: without them the relay runs with the 64 KiB default, slower but correct.
 */
function widenHttp2Windows(server: grpc.Server, logger: Logger): void {
  const listeners = (server as unknown as { http2Servers?: Map<EventEmitter, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) {
    logger.warn('cannot widen HTTP/2 windows with this grpc-js; artifact transfers will be slower');
    return;
  }
  for (const listener of listeners.keys()) {
    listener.on('session', (session: Http2Session) => {
      session.settings({ initialWindowSize: HTTP2_WINDOW_BYTES });
      session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
    });
  }
}
