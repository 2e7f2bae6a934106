/**
 * @module Static files of the pages the relay serves (`nfltr ai`, the dashboard): bundled in the
 * package's assets/ folder, read once, sent with headers that keep the link's fragment and the page
 * to themselves (no referrer, no framing, scripts from the relay only).
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

export const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; style-src 'self'; frame-ancestors 'none'",
};

/** The absolute path of `assets/<rel>` in this package. */
export const assetFile = (rel: string): string =>
  fileURLToPath(new URL(`../../assets/${rel}`, import.meta.url));

const cache = new Map<string, Buffer>();

/** Sends one bundled file; `maxAge` (seconds) lets the browser keep scripts and styles. */
export function sendAsset(res: ServerResponse, file: string, type: string, maxAge?: number): void {
  let body = cache.get(file);
  if (!body) {
    body = readFileSync(file);
    cache.set(file, body);
  }
  res.writeHead(200, {
    ...PAGE_HEADERS,
    'content-type': type,
    ...(maxAge ? { 'cache-control': `max-age=${maxAge}` } : {}),
  });
  res.end(body);
}
