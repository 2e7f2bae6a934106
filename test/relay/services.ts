/**
 * The machine's PostgreSQL and NATS for tests: where they are, whether they answer, and a fresh
 * PostgreSQL schema or NATS subject prefix per test run. Unreachable services skip their tests with
 * the reason printed; under CI=true (CI starts both) they fail at once instead.
 */
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import pg from 'pg';

export const PG_URL = process.env.NFLTR_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env.NFLTR_TEST_NATS ?? 'nats://127.0.0.1:4222';

function answers(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: u.hostname, port: Number(u.port || defaultPort) });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1_500, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Checks that a service answers; returns the reason to skip when it does not. Under CI=true an
 * unreachable service is an error, not a skip.
 */
export async function serviceSkipReason(name: 'PostgreSQL' | 'NATS'): Promise<string | undefined> {
  const url = name === 'PostgreSQL' ? PG_URL : NATS_URL;
  if (await answers(url, name === 'PostgreSQL' ? 5432 : 4222)) return undefined;
  const reason = `${name} is unreachable at ${url} (start it, or set ${name === 'PostgreSQL' ? 'NFLTR_TEST_POSTGRES' : 'NFLTR_TEST_NATS'})`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI runs these tests and .ci/run starts ${name}`);
  process.stderr.write(`skipping ${name} tests: ${reason}\n`);
  return reason;
}

/** A schema of its own in the test database; `url` points at it, `drop()` removes it. */
export async function freshSchema(): Promise<{ url: string; schema: string; drop: () => Promise<void> }> {
  const schema = `nfltr_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  return {
    url: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}

/** A subject prefix of its own on the NATS server, so concurrent test runs never hear each other. */
export const freshNatsUrl = (): string => `${NATS_URL}?prefix=nfltr_test_${randomBytes(6).toString('hex')}`;
