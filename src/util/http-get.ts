/**
 * @module One GET, answered within 8 s, with node:http(s), which (unlike fetch) takes a CA for the relay's own certificate.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const GET_TIMEOUT_MS = 8_000;

export function httpGet(
  url: string,
  headers: Record<string, string>,
  ca: Buffer | undefined,
): Promise<{ status: number; ok: boolean; text: string }> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, ca }, (res) => {
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
    req.setTimeout(GET_TIMEOUT_MS, () =>
      req.destroy(new Error(`no answer within ${GET_TIMEOUT_MS / 1000} s`)),
    );
    req.on('error', reject);
    req.end();
  });
}
