// The cost of pinned worker keys: whole A2A handshakes per second in one process (both ends, message 1 and
// 2, Split), Noise IX with static keys and the pin check against a known_workers file, against the Noise NN
// handshake nfltr ran before static keys (same Noise code, no static keys, no pins), in the same run.
import { join } from 'node:path';
import { ROOT, summarise, tempDir } from './common.mjs';

const prologue = new Uint8Array(32);
const empty = new Uint8Array(0);

/** Handshakes per second over `ms` milliseconds. */
function rate(run, ms = 700) {
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    run();
    n++;
  }
  return (n * 1000) / (performance.now() - start);
}

export async function benchHandshake({ repeats = 3 } = {}) {
  // Imported here, not at the top: a bench section loads its code when it runs (run.mjs).
  const { NoiseHandshake, generateX25519 } = await import(join(ROOT, 'dist/protocol/e2ee-noise.js'));
  const { KnownPeers } = await import(join(ROOT, 'dist/agent/peer-keys.js'));
  const nn = () => {
    const i = new NoiseHandshake({ initiator: true, prologue });
    const r = new NoiseHandshake({ initiator: false, prologue });
    r.readMessage(i.writeMessage(empty));
    i.readMessage(r.writeMessage(empty));
    i.split();
    r.split();
  };
  const planner = generateX25519();
  const worker = generateX25519();
  const pins = new KnownPeers({
    file: join(tempDir(), 'known_workers'),
    peerKind: 'worker',
    acceptCommand: 'x',
  });
  pins.remember('w', worker.publicKey);
  const ix = () => {
    const i = new NoiseHandshake({ initiator: true, prologue, s: planner });
    const r = new NoiseHandshake({ initiator: false, prologue, s: worker });
    r.readMessage(i.writeMessage(empty));
    i.readMessage(r.writeMessage(empty));
    if (pins.check('w', i.remoteStatic).status !== 'same') throw new Error('pin mismatch');
    i.split();
    r.split();
  };
  const runs = { nn: [], ix: [] };
  rate(nn, 200); // warm-up
  rate(ix, 200);
  for (let k = 0; k < repeats; k++) {
    runs.nn.push(rate(nn));
    runs.ix.push(rate(ix));
  }
  return { nn: summarise(runs.nn), ix: summarise(runs.ix) };
}
