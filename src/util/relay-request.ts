/**
 * @module One HTTP request to the relay's API with node:http(s), which (unlike fetch) takes a CA for the
 * relay's own certificate (`--tls-ca`). Used by discovery, the dashboard and `--relay` URL resolution.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const TIMEOUT_MS = 8_000;

export interface RelayResponse {
  status: number;
  ok: boolean;
  text: string;
}

export function relayRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown; ca?: Buffer } = {},
): Promise<RelayResponse> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  const headers = payload
    ? { ...opts.headers, 'content-type': 'application/json', 'content-length': String(payload.byteLength) }
    : opts.headers;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers, ca: opts.ca }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        resolve({ status, ok: status >= 200 && status < 300, text });
      });
      res.on('error', reject);
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
