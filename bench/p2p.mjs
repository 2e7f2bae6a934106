// P2P: MB/s of one file (default 1 GiB, --artifact-mib) from agent a to agent b in two network
// namespaces joined by a direct veth link (bench/netns.mjs), each reaching the relay in a third:
// `nfltr p2p send` direct, the same with --relay-only (through the relay), and raw TCP between the two
// namespaces over the direct link (file → socket → file), all in the same run. The nfltr figures are
// the sender's own (from its offer to the last acknowledgement; the whole-file hash before is apart).
// Needs root, ip, tc and nft; says why and skips otherwise.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFile } from './artifacts.mjs';
import { createKey, summarise, tempDir } from './common.mjs';
import { makeLab, netnsProblem, watch } from './netns.mjs';

const MIB = 1024 * 1024;

/** Raw TCP over the direct link: a sink in b writes to a file, a reads the file into the socket. */
async function rawTcp(lab, path, bytes) {
  const sinkDir = tempDir('nfltr-bench-p2p-raw-');
  const sink = `const s=require('net').createServer({allowHalfOpen:true},c=>{const f=require('fs').createWriteStream(${JSON.stringify(join(sinkDir, 'f'))});c.pipe(f);f.on('finish',()=>{c.end('k');s.close()})}).listen(0,'10.77.1.2',()=>console.log('ready',s.address().port))`;
  const server = watch(
    (await import('node:child_process')).spawn(
      'ip',
      ['netns', 'exec', lab.ns.b, process.execPath, '-e', sink],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    ),
  );
  const port = await new Promise((res) => {
    const t = setInterval(() => {
      const m = /ready (\d+)/.exec(server.stdout());
      if (m) res(Number(m[1]), clearInterval(t));
    }, 20);
  });
  const src = `const s=require('net').connect(${port},'10.77.1.2',()=>{const t=performance.now();require('fs').createReadStream(${JSON.stringify(path)},{highWaterMark:1<<20}).pipe(s);s.on('data',()=>{console.log(performance.now()-t);s.destroy()})})`;
  const text = execFileSync('ip', ['netns', 'exec', lab.ns.a, process.execPath, '-e', src], {
    encoding: 'utf8',
  });
  const ms = Number(/([\d.]+)\s*$/.exec(text)?.[1]);
  if (!(ms > 0)) throw new Error(`raw TCP run printed ${JSON.stringify(text)}, not its time`);
  await server.exited;
  return bytes / 1e6 / (ms / 1000);
}

export async function benchP2p({ mib, repeats }) {
  const problem = netnsProblem();
  if (problem) return { skipped: `network namespaces unavailable (${problem})` };
  const lab = makeLab();
  const srcDir = tempDir('nfltr-bench-p2p-');
  const dataDir = tempDir();
  let relay;
  try {
    relay = await lab.startRelay(dataDir);
    const port = relay.grpcPort;
    const key = await createKey({ dataDir }, 'bench');
    const file = join(srcDir, 'data.bin');
    await writeFile(file, mib);
    const bytes = mib * MIB;
    const once = async (extra) => {
      const out = tempDir('nfltr-bench-p2p-out-');
      const recv = watch(
        lab.nfltr(lab.ns.b, [
          'p2p',
          'recv',
          '--once',
          '--json',
          '--output',
          out,
          '--name',
          'bench-p2p',
          '--state-dir',
          tempDir(),
          '--server',
          `${lab.relayFrom.b}:${port}`,
          '--api-key',
          key,
        ]),
      );
      while (!recv.stderr().includes('receiving')) await new Promise((r) => setTimeout(r, 20));
      const send = watch(
        lab.nfltr(lab.ns.a, [
          'p2p',
          'send',
          file,
          'bench-p2p',
          '--json',
          '--state-dir',
          tempDir(),
          '--server',
          `${lab.relayFrom.a}:${port}`,
          '--api-key',
          key,
          ...extra,
        ]),
      );
      const [code] = await Promise.all([send.exited, recv.exited]);
      if (code !== 0) throw new Error(`p2p send failed:\n${send.stderr()}`);
      const r = JSON.parse(send.stdout());
      execFileSync('rm', ['-rf', out]);
      return { mb_s: r.bytes_sent / 1e6 / (r.ms / 1000), path: r.path };
    };
    const direct = [];
    const relayed = [];
    const tcp = [];
    for (let i = 0; i < repeats; i++) {
      tcp.push(await rawTcp(lab, file, bytes));
      const d = await once([]);
      if (d.path !== 'direct') throw new Error('the direct run went through the relay');
      direct.push(d.mb_s);
      relayed.push((await once(['--relay-only'])).mb_s);
    }
    return { mib, direct: summarise(direct), relay: summarise(relayed), tcpRaw: summarise(tcp) };
  } finally {
    relay?.child.kill('SIGTERM');
    await relay?.exited;
    lab.destroy();
    rmSync(srcDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchP2p({ mib: Number(process.argv[2] ?? 256), repeats: Number(process.argv[3] ?? 1) });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}
