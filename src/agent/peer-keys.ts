/**
 * @module Long-term identity of an agent for the A2A handshake: its static X25519 key (`static_key` in its
 * state dir, made on first run) and the keys it pinned for its peers on first contact (`known_workers` on
 * a planner, `known_planners` on a worker), like SSH's known_hosts. See docs/security.md.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  generateX25519,
  type X25519KeyPair,
  x25519FromPrivate,
  x25519PrivateBytes,
} from '../protocol/e2ee-noise.js';

export const STATIC_KEY_FILE = 'static_key';

/** `SHA256:` and the unpadded base64 SHA-256 of a public key, as SSH shows host keys. */
export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKey).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The agent's static key from `<dir>/static_key` (base64url private scalar, mode 600), made there on first
 * run. Refused when other users could read it: whoever has it can be this agent to its pinned peers.
 */
export function loadStaticKey(dir: string): X25519KeyPair {
  const file = join(dir, STATIC_KEY_FILE);
  // The key file is 0600; the folder keeps its mode (an --executor-user must be able to enter it).
  mkdirSync(dir, { recursive: true });
  try {
    const fresh = generateX25519();
    // `wx`: two processes starting on one state dir never overwrite each other's key.
    writeFileSync(file, `${Buffer.from(x25519PrivateBytes(fresh)).toString('base64url')}\n`, {
      flag: 'wx',
      mode: 0o600,
    });
    return fresh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw keyFileError(file, err);
  }
  try {
    if ((statSync(file).mode & 0o077) !== 0) {
      throw new Error(`other users can read it: run \`chmod 600 ${file}\``);
    }
    const raw = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
    if (raw.length !== 32) throw new Error('not 32 bytes of base64url (delete it to make a new key)');
    return x25519FromPrivate(raw);
  } catch (err) {
    throw keyFileError(file, err);
  }
}

function keyFileError(file: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  return new Error(`static key ${file}: ${e.syscall ? `cannot use it (${e.code})` : e.message}`);
}

/** What a pinned peer's key is compared with. */
export type PinCheck = { status: 'new' } | { status: 'same' } | { status: 'changed'; pinned: Uint8Array };

/** How the A2A endpoint consults and records pins (KnownPeers, or a test's own). */
export interface PeerPins {
  check(peerId: string, publicKey: Uint8Array): PinCheck;
  remember(peerId: string, publicKey: Uint8Array): void;
  /** The refusal of a changed key: names the peer, both fingerprints and the fix. */
  changedMessage(peerId: string, pinned: Uint8Array, presented: Uint8Array): string;
}

export interface KnownPeersOptions {
  /** The file: `<state dir>/known_workers` or `<state dir>/known_planners`. */
  file: string;
  /** `worker` or `planner`: what the peers are, for messages. */
  peerKind: string;
  /** The command that accepts a new key for a peer, with `PEER` where the id goes. */
  acceptCommand: string;
}

/**
 * Pins in a text file, one `<agent id> <base64url public key>` line per peer. Read at every check (a
 * handshake is rare), so deleting a line takes effect without a restart; written whole through a rename.
 */
export class KnownPeers implements PeerPins {
  readonly file: string;
  readonly #opts: KnownPeersOptions;

  constructor(opts: KnownPeersOptions) {
    this.file = opts.file;
    this.#opts = opts;
  }

  check(peerId: string, publicKey: Uint8Array): PinCheck {
    const pinned = this.#read().get(peerId);
    if (pinned === undefined) return { status: 'new' };
    return Buffer.from(pinned).equals(Buffer.from(publicKey))
      ? { status: 'same' }
      : { status: 'changed', pinned };
  }

  remember(peerId: string, publicKey: Uint8Array): void {
    const pins = this.#read();
    if (pins.get(peerId) !== undefined) return;
    pins.set(peerId, publicKey);
    this.#write(pins);
  }

  /** Forgets a peer's key, so that the next key it presents is pinned. Returns whether it had one. */
  forget(peerId: string): boolean {
    const pins = this.#read();
    if (!pins.delete(peerId)) return false;
    this.#write(pins);
    return true;
  }

  changedMessage(peerId: string, pinned: Uint8Array, presented: Uint8Array): string {
    const { peerKind, acceptCommand } = this.#opts;
    return (
      `${peerKind} ${peerId} presented a different key than the one pinned for it in ${this.file}: ` +
      `pinned ${fingerprint(pinned)}, presented ${fingerprint(presented)}. Either its state dir (and so ` +
      `its static_key) was replaced, or something between the two ends (the relay) is impersonating it; ` +
      `compare with the fingerprint ${peerId} logs at start. If the change is expected, run ` +
      `\`${acceptCommand.replace('PEER', peerId)}\` (or delete the line for ${peerId} in ${this.file}); ` +
      'the next key it presents is then pinned'
    );
  }

  #read(): Map<string, Uint8Array> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    const pins = new Map<string, Uint8Array>();
    for (const line of text.split('\n')) {
      const [id, key] = line.trim().split(/\s+/);
      if (!id || !key || id.startsWith('#')) continue;
      pins.set(id, new Uint8Array(Buffer.from(key, 'base64url')));
    }
    return pins;
  }

  #write(pins: Map<string, Uint8Array>): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const lines = [...pins].map(([id, key]) => `${id} ${Buffer.from(key).toString('base64url')}\n`);
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, lines.join(''), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
