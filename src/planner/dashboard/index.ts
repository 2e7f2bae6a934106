/**
 * @module The planner's Control Tower: sealed digests out, sealed commands in (see ./publisher.ts).
 */
import { DashboardCrypto, type DigestLevel, dashboardLink } from '../../protocol/dashboard.js';
import type { Logger } from '../../util/log.js';
import type { TaskManager } from '../task-manager.js';
import type { TaskStore } from '../task-store.js';
import { DashboardApi } from './api.js';
import { loadDashboard } from './key.js';
import { DashboardPublisher } from './publisher.js';

export { DashboardApi } from './api.js';
export { buildDigest, DIGEST_EVENTS } from './digest.js';
export { DASHBOARD_FILE, type DashboardInfo, loadDashboard, readDashboard } from './key.js';
export { DashboardPublisher } from './publisher.js';

/** Starts pushing digests and pulling commands; logs the dashboard link (stderr: stdout is MCP's). */
export function startDashboard(o: {
  stateDir: string;
  plannerId: string;
  proxyUrl: string;
  apiKey: string;
  ca?: Buffer;
  store: TaskStore;
  manager: TaskManager;
  level: DigestLevel;
  commands: boolean;
  logger: Logger;
}): DashboardPublisher {
  const { key } = loadDashboard(o.stateDir, o.plannerId, o.proxyUrl);
  const publisher = new DashboardPublisher({
    plannerId: o.plannerId,
    api: new DashboardApi({ proxyUrl: o.proxyUrl, apiKey: o.apiKey, ca: o.ca }),
    crypto: new DashboardCrypto(key, o.plannerId),
    store: o.store,
    manager: o.manager,
    level: o.level,
    commands: o.commands,
    logger: o.logger,
  });
  publisher.start();
  o.logger.info(`dashboard: ${dashboardLink(o.proxyUrl, key)}`, {
    digest: o.level,
    commands: o.commands ? 'on' : 'refused (--dashboard-commands=false)',
  });
  return publisher;
}
