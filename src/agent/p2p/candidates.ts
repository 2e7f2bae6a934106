/**
 * @module Where this agent can be reached directly: the addresses of its local interfaces, and the one
 * the relay saw (which differs behind a NAT), each with the port of the transfer's listening socket.
 */
import { isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

/** Addresses of the local interfaces: loopback and IPv6 link-local ones (unusable from elsewhere) left out. */
export function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || (a.family === 'IPv6' && a.scopeid !== 0)) continue;
      out.push(a.address);
    }
  }
  return out;
}

/** The hosts to advertise: the local interfaces' and the one the relay saw (`observedAddr`, `host:port`). */
export function advertisedHosts(observedAddr: string): string[] {
  const seen = hostOfAddr(observedAddr);
  return [...new Set([...localAddresses(), ...(seen ? [seen] : [])])];
}

/** `host:port`, with brackets around an IPv6 host. */
export function joinHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The host of `host:port` / `[v6]:port` (the address the relay saw), or undefined when `addr` is not one. */
export function hostOfAddr(addr: string): string | undefined {
  return parseCandidate(addr)?.host;
}

/** Parses a candidate; undefined for anything but `host:port` with a port of 1–65535. */
export function parseCandidate(addr: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(addr) ?? /^([^\s:[\]]+):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}

/** The candidates to advertise: each address with `port`, without repeats; at most 16. */
export function candidateList(addresses: readonly string[], port: number): string[] {
  return [...new Set(addresses.map((a) => joinHostPort(a, port)))].slice(0, 16);
}
