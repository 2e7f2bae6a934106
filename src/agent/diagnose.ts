/**
 * @module Why the first dial to a relay failed, in one line with the fix. gRPC only says UNAVAILABLE
 * (or nothing, for a while); a plain TCP and TLS probe of the same address tells the usual mistakes
 * apart: nothing listening, the relay's HTTP port given for its gRPC port, TLS on one side only, a
 * certificate this machine does not trust, and a refused key.
 */
import { isIP, type Socket, connect as tcpConnect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { readFlagFile } from '../util/fs-check.js';

const PROBE_MS = 3_000;
const GRPC_PORT_HINT = "--server wants the relay's gRPC port (nfltr relay --grpc-addr, 9090 by default)";

export interface DialSettings {
  tls: boolean;
  tlsCaFile?: string;
}

/** `host:port` or `[v6]:port` split; the port is a number. */
function splitServer(server: string): { host: string; port: number } {
  const i = server.lastIndexOf(':');
  return { host: server.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(server.slice(i + 1)) };
}

/** Resolves with the socket once `event` fires, or with the error; always within {@link PROBE_MS}. */
function settle<S extends Socket>(socket: S, event: string): Promise<S | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      const err: NodeJS.ErrnoException = new Error('no answer');
      err.code = 'ETIMEDOUT';
      resolve(err);
    }, PROBE_MS);
    socket.once(event, () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  }).finally(() => socket.destroy()) as Promise<S | NodeJS.ErrnoException>;
}

/** Sends an HTTP/1.1 request; true when the answer is HTTP/1 (the relay's HTTP port, not its gRPC port). */
function answersHttp1(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), PROBE_MS);
    s.once('connect', () => s.write(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    s.once('data', (b: Buffer) => done(b.subarray(0, 7).toString('latin1') === 'HTTP/1.'));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

/**
 * Probes `server` and returns what is wrong with dialling it as `settings` say, or undefined when the
 * probe finds nothing (then the gRPC reason stands).
 */
export async function diagnoseDial(server: string, settings: DialSettings): Promise<string | undefined> {
  const { host, port } = splitServer(server);
  const tcp = await settle(tcpConnect({ host, port }), 'connect');
  if (!('remoteAddress' in tcp)) {
    switch (tcp.code) {
      case 'ECONNREFUSED':
        return `nothing listens at ${server}: is \`nfltr relay\` running there, and is this its gRPC port (--grpc-addr, 9090 by default)?`;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return `cannot resolve the host in --server ${server} (${tcp.code})`;
      case 'ETIMEDOUT':
        return `no answer from ${server} within ${PROBE_MS / 1000}s: a wrong host, or a firewall in the way`;
      default:
        return `cannot reach ${server} (${tcp.code ?? tcp.message})`;
    }
  }
  let ca: Buffer | undefined;
  try {
    ca = settings.tlsCaFile ? readFlagFile(settings.tlsCaFile, '--tls-ca') : undefined;
  } catch (err) {
    return (err as Error).message;
  }
  // Not verified here: we want to know whether TLS is spoken at all, then whether we trust it.
  const tls = await settle(
    tlsConnect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      ca,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
    }),
    'secureConnect',
  );
  if (!('encrypted' in tls)) {
    if (settings.tls) {
      return `${server} does not speak TLS: drop --tls (or give the relay --tls-cert and --tls-key)`;
    }
    if (await answersHttp1(host, port))
      return `${server} is an HTTP server, likely the relay's HTTP port: ${GRPC_PORT_HINT}`;
    return undefined;
  }
  const socket = tls as TLSSocket;
  const untrusted = socket.authorized ? undefined : String(socket.authorizationError);
  if (!settings.tls) {
    return `the relay at ${server} speaks TLS: add --tls${untrusted ? ` and --tls-ca FILE (its certificate is not trusted here: ${untrusted})` : ''}`;
  }
  if (untrusted) {
    return settings.tlsCaFile
      ? `the certificate of ${server} is not signed by the CA in --tls-ca ${settings.tlsCaFile} (${untrusted})`
      : `the certificate of ${server} is not trusted here (${untrusted}): pass --tls-ca FILE with the CA that signed it`;
  }
  if (socket.alpnProtocol !== 'h2') {
    return `${server} is an HTTPS server, likely the relay's HTTP port: ${GRPC_PORT_HINT}`;
  }
  return undefined;
}

/** A final refusal by the relay (`STATUS: details`, as gRPC ended the stream) as one line with the fix. */
export function describeRefusal(server: string, reason: string): string {
  if (reason.startsWith('UNAUTHENTICATED') || reason.startsWith('PERMISSION_DENIED')) {
    return `the relay at ${server} refused the API key (${reason}): check --api-key, NFLTR_API_KEY or --api-key-file (\`nfltr keys list\` on the relay's host shows the valid ones)`;
  }
  return `the relay at ${server} refused this agent: ${reason}`;
}
