/**
 * @module The dashboard key of a planner: made once, kept in its state dir (`dashboard.json`, mode 0600,
 * with the planner id and relay address `nfltr orch` needs), never sent to the relay.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newLinkKey, parseLinkKey } from '../../protocol/link-crypto.js';

export const DASHBOARD_FILE = 'dashboard.json';

export interface DashboardInfo {
  planner_id: string;
  proxy_url: string;
  /** base64url; the link's `#k=`. */
  key: string;
}

/** The state dir's dashboard, the key made on first use; the planner id and relay are brought up to date. */
export function loadDashboard(
  stateDir: string,
  plannerId: string,
  proxyUrl: string,
): { info: DashboardInfo; key: Buffer } {
  const file = join(stateDir, DASHBOARD_FILE);
  let key: Buffer | undefined;
  if (existsSync(file)) key = parseLinkKey(readDashboard(stateDir).key);
  key ??= newLinkKey();
  const info: DashboardInfo = { planner_id: plannerId, proxy_url: proxyUrl, key: key.toString('base64url') };
  writeFileSync(file, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  return { info, key };
}

/** What `nfltr orch` needs from a planner's state dir; throws naming the file and the fix. */
export function readDashboard(stateDir: string): DashboardInfo {
  const file = join(stateDir, DASHBOARD_FILE);
  let info: Partial<DashboardInfo>;
  try {
    info = JSON.parse(readFileSync(file, 'utf8')) as Partial<DashboardInfo>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      e.code === 'ENOENT'
        ? `${file} does not exist: the planner made no dashboard yet (start nfltr mcp with --proxy-url, and --dashboard-digest full or status)`
        : `cannot read ${file}: ${e.message}`,
    );
  }
  if (
    typeof info.planner_id !== 'string' ||
    typeof info.proxy_url !== 'string' ||
    !parseLinkKey(info.key ?? '')
  )
    throw new Error(
      `${file} is damaged (planner_id, proxy_url and a 32-byte key expected); delete it and restart nfltr mcp`,
    );
  return info as DashboardInfo;
}
