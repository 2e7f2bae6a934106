/**
 * A small network made of namespaces (test/p2p/netns.test.ts and bench/p2p.mjs): two agent machines `a` and `b` joined by a direct link, each
 * reaching the relay machine `r` through a link of its own, so a and b talk to each other directly or
 * through the relay, never otherwise. Needs root, `ip` and `nft`.
 *
 *   a (10.77.1.1) ──── b (10.77.1.2)        the direct link
 *   a (10.77.2.1) ──── r (10.77.2.2)
 *   b (10.77.3.1) ──── r (10.77.3.2)
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { NFLTR_BIN } from './common.mjs';

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsProblem() {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['ip', 'nft', 'tc']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `no ${tool} (Debian: iproute2, nftables)`;
    }
  }
  try {
    const probe = `nfltr-probe-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
  } catch (err) {
    return `ip netns add fails: ${err.message.split('\n')[0]}`;
  }
  return undefined;
}

const run = (...args) => execFileSync(args[0], args.slice(1), { stdio: 'pipe' });

/** Makes the namespaces and links; see netns.d.mts for what the lab offers. */
export function makeLab() {
  const tag = randomBytes(3).toString('hex');
  const ns = { a: `nfa-${tag}`, b: `nfb-${tag}`, r: `nfr-${tag}` };
  const links = [
    // [namespace, interface, address, peer namespace, peer interface, peer address]
    [ns.a, `ab${tag}`, '10.77.1.1/24', ns.b, `ba${tag}`, '10.77.1.2/24'],
    [ns.a, `ar${tag}`, '10.77.2.1/24', ns.r, `ra${tag}`, '10.77.2.2/24'],
    [ns.b, `br${tag}`, '10.77.3.1/24', ns.r, `rb${tag}`, '10.77.3.2/24'],
  ];
  const lab = {
    ns,
    relayFrom: { a: '10.77.2.2', b: '10.77.3.2' },
    directIf: `ab${tag}`,
    blocked: false,
    block() {
      const rules = `table inet nfltr_block {
  chain in { type filter hook input priority 0; iifname "${lab.directIf}" drop; }
  chain out { type filter hook output priority 0; oifname "${lab.directIf}" drop; }
}
`;
      lab.blocked = true;
      execFileSync('ip', ['netns', 'exec', ns.a, 'nft', '-f', '-'], {
        input: rules,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    },
    unblock() {
      if (!lab.blocked) return;
      lab.blocked = false;
      run('ip', 'netns', 'exec', ns.a, 'nft', 'delete', 'table', 'inet', 'nfltr_block');
    },
    shape(rate) {
      for (const [n, i] of [
        [ns.a, `ab${tag}`],
        [ns.b, `ba${tag}`],
      ]) {
        run(
          'ip',
          'netns',
          'exec',
          n,
          'tc',
          'qdisc',
          'replace',
          'dev',
          i,
          'root',
          'tbf',
          'rate',
          rate,
          'burst',
          '64kb',
          'latency',
          '50ms',
        );
      }
    },
    async startRelay(dataDir, args = []) {
      const relay = watch(
        lab.nfltr(ns.r, [
          'relay',
          '--data-dir',
          dataDir,
          '--grpc-addr',
          '0.0.0.0:0',
          '--http-addr',
          '0.0.0.0:0',
          ...args,
        ]),
      );
      for (const deadline = Date.now() + 15_000; ; ) {
        const m = /nfltr relay ready grpc_port=(\d+) http_port=(\d+)/.exec(relay.stderr());
        if (m) return { ...relay, grpcPort: Number(m[1]), httpPort: Number(m[2]) };
        if (relay.child.exitCode !== null || Date.now() > deadline) {
          relay.child.kill('SIGKILL');
          throw new Error(`nfltr relay in ${ns.r} was not ready:\n${relay.stderr()}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    nfltr(where, args) {
      return spawn('ip', ['netns', 'exec', where, process.execPath, NFLTR_BIN, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    },
    destroy() {
      for (const n of Object.values(ns)) {
        try {
          run('ip', 'netns', 'del', n);
        } catch {}
      }
    },
  };
  try {
    for (const n of Object.values(ns)) {
      run('ip', 'netns', 'add', n);
      run('ip', '-n', n, 'link', 'set', 'lo', 'up');
    }
    for (const [n1, i1, a1, n2, i2, a2] of links) {
      run('ip', 'link', 'add', i1, 'netns', n1, 'type', 'veth', 'peer', 'name', i2, 'netns', n2);
      run('ip', '-n', n1, 'addr', 'add', a1, 'dev', i1);
      run('ip', '-n', n2, 'addr', 'add', a2, 'dev', i2);
      run('ip', '-n', n1, 'link', 'set', i1, 'up');
      run('ip', '-n', n2, 'link', 'set', i2, 'up');
    }
  } catch (err) {
    lab.destroy();
    throw err;
  }
  return lab;
}

/** A child's output so far, and its exit. */
export function watch(child) {
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d) => {
    err += d;
  });
  const exited = new Promise((res) => child.once('exit', (code) => res(code)));
  return { stdout: () => out, stderr: () => err, exited, child };
}
