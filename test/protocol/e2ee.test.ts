import { createCipheriv, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type ChannelOpener,
  E2eeError,
  type E2eeErrorCode,
  E2eeHandshake,
  E2eeSession,
  generatePairingKey,
  parsePairingKey,
  plaintextRefused,
} from '../../src/protocol/e2ee.js';
import {
  NOISE_IX,
  NOISE_IXPSK0,
  NOISE_NN,
  NOISE_NNPSK0,
  NoiseCipherState,
  NoiseHandshake,
  x25519FromPrivate,
} from '../../src/protocol/e2ee-noise.js';

const PLANNER = 'agent-planner';
const WORKER = 'agent-worker';
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

interface Pair {
  planner: E2eeSession;
  worker: E2eeSession;
  hello: string;
  welcome: string;
}

function pair(
  opts: {
    plannerKey?: Uint8Array;
    workerKey?: Uint8Array;
    plannerSeesWorker?: string;
    workerSeesPlanner?: string;
  } = {},
): Pair {
  const initiator = new E2eeHandshake({
    role: 'initiator',
    localId: PLANNER,
    remoteId: opts.plannerSeesWorker ?? WORKER,
    pairingKey: opts.plannerKey,
  });
  const responder = new E2eeHandshake({
    role: 'responder',
    localId: WORKER,
    remoteId: opts.workerSeesPlanner ?? PLANNER,
    pairingKey: opts.workerKey,
  });
  const hello = str(responder.readMessage(initiator.writeMessage(text('hello'))));
  const welcome = str(initiator.readMessage(responder.writeMessage(text('welcome'))));
  expect(initiator.complete && responder.complete).toBe(true);
  return { planner: initiator.session(), worker: responder.session(), hello, welcome };
}

function expectCode(fn: () => unknown, code: E2eeErrorCode, message?: RegExp): E2eeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(E2eeError);
    const e = err as E2eeError;
    expect(e.code).toBe(code);
    if (message) expect(e.message).toMatch(message);
    return e;
  }
  throw new Error(`expected E2eeError ${code}`);
}

describe('Noise core against published test vectors (flynn/noise vectors.txt)', () => {
  // Vectors for Noise_NN / Noise_NNpsk0 _25519_AESGCM_SHA256 from github.com/flynn/noise vectors.txt.
  // msg_0/msg_1 are the handshake; msg_2 (initiator->responder) and msg_3 (responder->initiator)
  // are transport messages with the two Split() CipherStates.
  const initEphemeral = '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f';
  const respEphemeral = '4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60';
  const psk = '2176657279736563726574766572797365637265747665727973656372657421';
  const msg2 = '79656c6c6f777375626d6172696e65';
  const msg3 = '7375626d6172696e6579656c6c6f77';
  const vectors = [
    {
      name: NOISE_NN,
      prologue: '',
      payloads: ['', ''],
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d484667cc0d7b4540fd183ba30ecbd3f464f16',
        'a0193b62b90fb3497108ec8adcc340a49ebb0a07f1654d71f7e38361f57ba5',
        'b2afdcb051e896fa5b6a23def5ee6bdd6032f1b39b2d22ef7da01857648389',
      ],
    },
    {
      name: NOISE_NNPSK0,
      prologue: '',
      payloads: ['', ''],
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd1662544833316e6c21d899aec6c5f0c6e85e13',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466d3ec4419885d86e6d7310fb1d2263afd',
        '6a7b199c69a64cc2ea3c556cf17489fd2ae452d3f3c2a0871cebd327fc31c6',
        'e58d43e0c69d8c15df523586b2c58ca40cb0472b5b3775f1cca807fee28a71',
      ],
    },
    {
      name: NOISE_NN,
      prologue: '6e6f74736563726574',
      payloads: ['746573745f6d73675f30', '746573745f6d73675f31'],
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254746573745f6d73675f30',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d484663d8d136c2fcf7ecd3c3d4c93591205092db481f2a901eb96f06c',
        'a0193b62b90fb3497108ec8adcc340a49ebb0a07f1654d71f7e38361f57ba5',
        'b2afdcb051e896fa5b6a23def5ee6bdd6032f1b39b2d22ef7da01857648389',
      ],
    },
    {
      name: NOISE_NNPSK0,
      prologue: '6e6f74736563726574',
      payloads: ['746573745f6d73675f30', '746573745f6d73675f31'],
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254d2f8054fcaf80f347006e0fc25590a31fd33c4626fe59283ea40',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466e21a3177614fce09f014af55e853ed6b88b0e4628e071b23e905',
        '6a7b199c69a64cc2ea3c556cf17489fd2ae452d3f3c2a0871cebd327fc31c6',
        'e58d43e0c69d8c15df523586b2c58ca40cb0472b5b3775f1cca807fee28a71',
      ],
    },
  ];

  it.each(vectors)('$name prologue=$prologue', (v) => {
    const common = { prologue: unhex(v.prologue), psk: v.name === NOISE_NNPSK0 ? unhex(psk) : undefined };
    const init = new NoiseHandshake({
      ...common,
      initiator: true,
      ephemeral: x25519FromPrivate(unhex(initEphemeral)),
    });
    const resp = new NoiseHandshake({
      ...common,
      initiator: false,
      ephemeral: x25519FromPrivate(unhex(respEphemeral)),
    });
    expect(init.protocolName).toBe(v.name);

    const m0 = init.writeMessage(unhex(v.payloads[0] ?? ''));
    expect(hex(m0)).toBe(v.ciphertexts[0]);
    expect(hex(resp.readMessage(m0))).toBe(v.payloads[0]);
    const m1 = resp.writeMessage(unhex(v.payloads[1] ?? ''));
    expect(hex(m1)).toBe(v.ciphertexts[1]);
    expect(hex(init.readMessage(m1))).toBe(v.payloads[1]);
    expect(hex(init.handshakeHash)).toBe(hex(resp.handshakeHash));

    const i = init.split();
    const r = resp.split();
    expect(hex(i.initiatorToResponder)).toBe(hex(r.initiatorToResponder));
    expect(hex(i.responderToInitiator)).toBe(hex(r.responderToInitiator));
    const empty = new Uint8Array(0);
    const c2 = new NoiseCipherState(i.initiatorToResponder).encryptWithAd(empty, unhex(msg2));
    expect(hex(c2)).toBe(v.ciphertexts[2]);
    const c3 = new NoiseCipherState(r.responderToInitiator).encryptWithAd(empty, unhex(msg3));
    expect(hex(c3)).toBe(v.ciphertexts[3]);
  });
});

describe('handshake', () => {
  it.each([
    { name: 'without a pairing key', key: undefined, protocol: NOISE_IX },
    { name: 'with a pairing key', key: parsePairingKey(generatePairingKey()), protocol: NOISE_IXPSK0 },
  ])('$name: completes, carries payloads, both ends agree on the handshake hash', ({ key, protocol }) => {
    const { planner, worker, hello, welcome } = pair({ plannerKey: key, workerKey: key });
    expect([hello, welcome]).toEqual(['hello', 'welcome']);
    expect(planner.protocolName).toBe(protocol);
    expect(worker.protocolName).toBe(protocol);
    expect(hex(planner.handshakeHash)).toBe(hex(worker.handshakeHash));
    expect(planner.handshakeHash).toHaveLength(32);
  });

  it('message 1 payload is encrypted with a pairing key, visible without one', () => {
    const key = parsePairingKey(generatePairingKey());
    const secret = text('the-hello-payload');
    const withKey = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: key,
    });
    const without = new E2eeHandshake({ role: 'initiator', localId: PLANNER, remoteId: WORKER });
    expect(Buffer.from(withKey.writeMessage(secret)).includes(Buffer.from(secret))).toBe(false);
    expect(Buffer.from(without.writeMessage(secret)).includes(Buffer.from(secret))).toBe(true);
  });

  it('different handshakes produce different hashes and keys', () => {
    const a = pair();
    const b = pair();
    expect(hex(a.planner.handshakeHash)).not.toBe(hex(b.planner.handshakeHash));
    const sa = a.planner.sealer('task-1').seal(text('same plaintext'));
    const sb = b.planner.sealer('task-1').seal(text('same plaintext'));
    expect(sa.seq).toBe(sb.seq);
    expect(hex(sa.ciphertext)).not.toBe(hex(sb.ciphertext));
    // A frame of one session does not open in another session between the same agents.
    expectCode(() => b.worker.opener('task-1').open(sa.seq, sa.ciphertext), 'tampered');
  });

  it('a wrong pairing key is refused by the responder, naming --e2ee-key-file', () => {
    const initiator = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: parsePairingKey(generatePairingKey()),
    });
    const responder = new E2eeHandshake({
      role: 'responder',
      localId: WORKER,
      remoteId: PLANNER,
      pairingKey: parsePairingKey(generatePairingKey()),
    });
    const m1 = initiator.writeMessage(text('hello'));
    expectCode(
      () => responder.readMessage(m1),
      'pairing_mismatch',
      /pairing keys differ: check --e2ee-key-file on both ends/,
    );
    // The failed handshake stays failed.
    expectCode(() => responder.writeMessage(), 'handshake', /already failed/);
    expectCode(() => responder.session(), 'handshake');
  });

  it('a wrong pairing key is refused by the initiator when the responder does not stop it', () => {
    const mine = parsePairingKey(generatePairingKey());
    const theirs = parsePairingKey(generatePairingKey());
    const initiator = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: mine,
    });
    // A responder holding another key, answering a message 1 made with that key (e.g. a key-swapping relay).
    const impostor = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: theirs,
    });
    const responder = new E2eeHandshake({
      role: 'responder',
      localId: WORKER,
      remoteId: PLANNER,
      pairingKey: theirs,
    });
    initiator.writeMessage();
    responder.readMessage(impostor.writeMessage());
    const m2 = responder.writeMessage(text('welcome'));
    expectCode(
      () => initiator.readMessage(m2),
      'pairing_mismatch',
      /pairing keys differ: check --e2ee-key-file on both ends/,
    );
    expect(initiator.complete).toBe(false);
  });

  it.each([
    {
      name: 'initiator has a key, responder none',
      plannerKey: true,
      workerKey: false,
      message: /peer uses a pairing key but this end has none \(--e2ee-key-file\)/,
    },
    {
      name: 'responder has a key, initiator none',
      plannerKey: false,
      workerKey: true,
      message: /this end uses a pairing key but the peer has none \(--e2ee-key-file\)/,
    },
  ])('pairing key on one side only ($name) fails clearly', ({ plannerKey, workerKey, message }) => {
    const key = parsePairingKey(generatePairingKey());
    const initiator = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: plannerKey ? key : undefined,
    });
    const responder = new E2eeHandshake({
      role: 'responder',
      localId: WORKER,
      remoteId: PLANNER,
      pairingKey: workerKey ? key : undefined,
    });
    expectCode(() => responder.readMessage(initiator.writeMessage()), 'pairing_missing', message);
  });

  it('the initiator also reports a missing pairing key from the reply header', () => {
    const key = parsePairingKey(generatePairingKey());
    const initiator = new E2eeHandshake({
      role: 'initiator',
      localId: PLANNER,
      remoteId: WORKER,
      pairingKey: key,
    });
    const keyless = new E2eeHandshake({ role: 'initiator', localId: PLANNER, remoteId: WORKER });
    const responder = new E2eeHandshake({ role: 'responder', localId: WORKER, remoteId: PLANNER });
    initiator.writeMessage();
    responder.readMessage(keyless.writeMessage());
    expectCode(
      () => initiator.readMessage(responder.writeMessage()),
      'pairing_missing',
      /this end uses a pairing key but the peer has none \(--e2ee-key-file\)/,
    );
  });

  it.each([
    { name: 'without a pairing key', key: false, code: 'handshake' as const },
    { name: 'with a pairing key', key: true, code: 'pairing_mismatch' as const },
  ])('relay splicing (ids in the prologue differ) fails, $name', ({ key, code }) => {
    const k = key ? parsePairingKey(generatePairingKey()) : undefined;
    const cases = [
      // The worker believes the hello came from another agent.
      { plannerSeesWorker: WORKER, workerSeesPlanner: 'agent-other' },
      // The planner addressed another worker; the relay delivered it to this one.
      { plannerSeesWorker: 'agent-other', workerSeesPlanner: PLANNER },
    ];
    for (const ids of cases) expectCode(() => pair({ plannerKey: k, workerKey: k, ...ids }), code);
  });

  it('roles swapped (both ids exchanged in the prologue) fail', () => {
    const initiator = new E2eeHandshake({ role: 'initiator', localId: PLANNER, remoteId: WORKER });
    const responder = new E2eeHandshake({ role: 'responder', localId: PLANNER, remoteId: WORKER });
    responder.readMessage(initiator.writeMessage());
    expectCode(() => initiator.readMessage(responder.writeMessage()), 'handshake', /failed authentication/);
  });

  it.each([
    { name: 'empty', bytes: new Uint8Array(0) },
    { name: 'unknown mode byte', bytes: new Uint8Array(49).fill(7) },
    { name: 'too short', bytes: Uint8Array.of(1, 2, 3) },
  ])('a malformed message 1 ($name) fails', ({ bytes }) => {
    const responder = new E2eeHandshake({ role: 'responder', localId: WORKER, remoteId: PLANNER });
    expectCode(() => responder.readMessage(bytes), 'handshake');
  });

  it('a low-order ephemeral key from the peer is refused', () => {
    const responder = new E2eeHandshake({ role: 'responder', localId: WORKER, remoteId: PLANNER });
    const initiator = new E2eeHandshake({ role: 'initiator', localId: PLANNER, remoteId: WORKER });
    responder.readMessage(initiator.writeMessage());
    const m2 = responder.writeMessage();
    const forged = Uint8Array.from(m2);
    forged.fill(0, 1, 33); // the all-zero point
    expectCode(() => initiator.readMessage(forged), 'handshake');
  });

  it('messages out of turn fail and session() before completion fails', () => {
    const initiator = new E2eeHandshake({ role: 'initiator', localId: PLANNER, remoteId: WORKER });
    expectCode(() => initiator.session(), 'handshake', /not complete/);
    const responder = new E2eeHandshake({ role: 'responder', localId: WORKER, remoteId: PLANNER });
    expectCode(() => responder.writeMessage(), 'handshake');
  });
});

describe('channels', () => {
  it.each([
    { name: 'without a pairing key', key: undefined },
    { name: 'with a pairing key', key: parsePairingKey(generatePairingKey()) },
  ])('round-trips many frames on several channels in both directions, $name', ({ key }) => {
    const { planner, worker } = pair({ plannerKey: key, workerKey: key });
    const channels = ['task-a', 'task-b', 'task-c'];
    for (let i = 0; i < 50; i++) {
      for (const channel of channels) {
        const down = planner.sealer(channel).seal(text(`objective ${channel} ${i}`));
        expect(down.seq).toBe(BigInt(i));
        expect(str(worker.opener(channel).open(down.seq, down.ciphertext))).toBe(`objective ${channel} ${i}`);
        const up = worker.sealer(channel).seal(text(`progress ${channel} ${i}`));
        expect(up.seq).toBe(BigInt(i));
        expect(str(planner.opener(channel).open(Number(up.seq), up.ciphertext))).toBe(
          `progress ${channel} ${i}`,
        );
      }
    }
    expect(planner.sealer('task-a').nextSeq).toBe(50n);
    expect(worker.opener('task-a').nextSeq).toBe(50n);
  });

  it('frames follow the documented construction (channel key, nonce, associated data)', () => {
    const sendKey = new Uint8Array(32).fill(1);
    const receiveKey = new Uint8Array(32).fill(2);
    const handshakeHash = new Uint8Array(32).fill(3);
    const session = new E2eeSession({
      localId: PLANNER,
      remoteId: WORKER,
      protocolName: NOISE_NN,
      handshakeHash,
      sendKey,
      receiveKey,
    });
    const lp = (s: string) => {
      const b = Buffer.from(s);
      const n = Buffer.alloc(4);
      n.writeUInt32BE(b.length);
      return Buffer.concat([n, b]);
    };
    const expected = (key: Uint8Array, from: string, to: string, seq: bigint, plaintext: string) => {
      const channelKey = Buffer.from(hkdfSync('sha256', key, handshakeHash, 'nfltr a2a channel task-7', 32));
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(seq, 4);
      const seqBytes = Buffer.alloc(8);
      seqBytes.writeBigUInt64BE(seq);
      const cipher = createCipheriv('aes-256-gcm', channelKey, nonce);
      cipher.setAAD(Buffer.concat([lp(from), lp(to), lp('task-7'), seqBytes]));
      return hex(Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]));
    };
    const sealer = session.sealer('task-7');
    expect(hex(sealer.seal(text('zero')).ciphertext)).toBe(expected(sendKey, PLANNER, WORKER, 0n, 'zero'));
    expect(hex(sealer.seal(text('one')).ciphertext)).toBe(expected(sendKey, PLANNER, WORKER, 1n, 'one'));
    const opener = session.opener('task-7');
    for (const [seq, msg] of [
      [0n, 'a'],
      [1n, 'b'],
    ] as const) {
      expect(str(opener.open(seq, unhex(expected(receiveKey, WORKER, PLANNER, seq, msg))))).toBe(msg);
    }
    // The Noise CipherState uses the same nonce layout (4 zero bytes, 64-bit big-endian counter).
    const cs = new NoiseCipherState(sendKey);
    cs.encryptWithAd(new Uint8Array(0), text('n0'));
    const nonce1 = Buffer.alloc(12);
    nonce1.writeBigUInt64BE(1n, 4);
    const manual = createCipheriv('aes-256-gcm', sendKey, nonce1);
    manual.setAAD(Buffer.from('ad'));
    const want = Buffer.concat([manual.update('n1'), manual.final(), manual.getAuthTag()]);
    expect(hex(cs.encryptWithAd(Buffer.from('ad'), text('n1')))).toBe(hex(want));
  });

  it('a plaintext in parts seals as its concatenation, behind the prefix', () => {
    const { planner, worker } = pair();
    const parts = [text('head:'), new Uint8Array(100_000).fill(7), new Uint8Array(0), text(':tail')];
    const joined = Buffer.concat(parts);
    const sealer = planner.sealer('task-p');
    const opener = worker.opener('task-p');
    for (const plaintext of [parts, joined]) {
      const { seq, ciphertext } = sealer.seal(plaintext, text('TAG'));
      expect(str(ciphertext.subarray(0, 3))).toBe('TAG');
      expect(ciphertext.length).toBe(3 + joined.length + 16);
      expect(hex(opener.open(seq, ciphertext.subarray(3)))).toBe(hex(joined));
    }
  });

  it('ciphertext contains no plaintext substring and is exactly 16 bytes longer', () => {
    const { planner } = pair();
    const plaintext = text(
      JSON.stringify({ objective: 'refactor the parser', context: 'SECRET-CONTEXT-1234' }),
    );
    const { ciphertext } = planner.sealer('task-1').seal(plaintext);
    expect(ciphertext.length).toBe(plaintext.length + 16);
    const ct = Buffer.from(ciphertext);
    for (const needle of ['refactor', 'SECRET', 'objective', 'context', '1234']) {
      expect(ct.includes(Buffer.from(needle))).toBe(false);
    }
  });

  it('sealer and opener are the same object per channel (no nonce reuse)', () => {
    const { planner } = pair();
    expect(planner.sealer('t')).toBe(planner.sealer('t'));
    expect(planner.opener('t')).toBe(planner.opener('t'));
    const a = planner.sealer('t').seal(text('x'));
    const b = planner.sealer('t').seal(text('x'));
    expect([a.seq, b.seq]).toEqual([0n, 1n]);
  });

  const violations: {
    name: string;
    code: E2eeErrorCode;
    attack: (frames: { seq: bigint; ciphertext: Uint8Array }[], opener: ChannelOpener, pair: Pair) => void;
  }[] = [
    {
      name: 'flipped bit',
      code: 'tampered',
      attack: ([f], opener) => {
        const c = Uint8Array.from(f!.ciphertext);
        c[3]! ^= 0x01;
        opener.open(f!.seq, c);
      },
    },
    {
      name: 'flipped tag bit',
      code: 'tampered',
      attack: ([f], opener) => {
        const c = Uint8Array.from(f!.ciphertext);
        c[c.length - 1]! ^= 0x80;
        opener.open(f!.seq, c);
      },
    },
    {
      name: 'truncated ciphertext',
      code: 'tampered',
      attack: ([f], opener) => opener.open(f!.seq, f!.ciphertext.subarray(0, f!.ciphertext.length - 1)),
    },
    {
      name: 'truncated below the tag length',
      code: 'tampered',
      attack: ([f], opener) => opener.open(f!.seq, f!.ciphertext.subarray(0, 5)),
    },
    {
      name: 'replayed frame',
      code: 'replay',
      attack: ([f], opener) => {
        opener.open(f!.seq, f!.ciphertext);
        opener.open(f!.seq, f!.ciphertext);
      },
    },
    {
      name: 'dropped frame',
      code: 'gap',
      attack: ([, f], opener) => opener.open(f!.seq, f!.ciphertext),
    },
    {
      name: 'reordered frames',
      code: 'gap',
      attack: ([a, b], opener) => {
        opener.open(b!.seq, b!.ciphertext);
        opener.open(a!.seq, a!.ciphertext);
      },
    },
    {
      name: 'seq relabelled (frame 1 presented as frame 0)',
      code: 'tampered',
      attack: ([, b], opener) => opener.open(0n, b!.ciphertext),
    },
    {
      name: 'frame sealed for channel A opened on channel B',
      code: 'tampered',
      attack: ([f], _opener, p) => p.worker.opener('task-B').open(f!.seq, f!.ciphertext),
    },
    {
      name: 'frame reflected back to its sender',
      code: 'tampered',
      attack: ([f], _opener, p) => p.planner.opener('task-A').open(f!.seq, f!.ciphertext),
    },
    {
      name: 'invalid seq',
      code: 'tampered',
      attack: ([f], opener) => opener.open(-1, f!.ciphertext),
    },
  ];

  it.each(violations)('$name → $code, and the opener stays poisoned', ({ code, attack }) => {
    const p = pair();
    const sealer = p.planner.sealer('task-A');
    const frames = [sealer.seal(text('frame zero')), sealer.seal(text('frame one'))];
    const opener = p.worker.opener('task-A');
    let violated: ChannelOpener = opener;
    const original = expectCode(() => {
      try {
        attack(frames, opener, p);
      } finally {
        // Whichever opener the attack hit is the one that must now be poisoned.
        for (const o of [opener, p.worker.opener('task-B'), p.planner.opener('task-A')]) {
          if (o.violation) violated = o;
        }
      }
    }, code);
    expect(violated.violation).toBe(original);
    // Even the genuine next frame is refused now.
    const poisoned = expectCode(() => violated.open(violated.nextSeq, frames[0]!.ciphertext), 'poisoned');
    expect(poisoned.cause).toBe(original);
    expectCode(() => violated.open(0n, frames[0]!.ciphertext), 'poisoned');
  });

  it('a closed channel cannot be used or reopened', () => {
    const { planner, worker } = pair();
    const f = planner.sealer('t').seal(text('x'));
    expect(str(worker.opener('t').open(f.seq, f.ciphertext))).toBe('x');
    planner.closeChannel('t');
    worker.closeChannel('t');
    expectCode(() => planner.sealer('t'), 'invalid_channel', /closed/);
    expectCode(() => worker.opener('t'), 'invalid_channel', /closed/);
  });

  it.each([
    { name: 'empty', channel: '' },
    { name: 'oversized', channel: 'x'.repeat(513) },
  ])('an $name channel id is refused', ({ channel }) => {
    const { planner } = pair();
    expectCode(() => planner.sealer(channel), 'invalid_channel');
    expectCode(() => planner.opener(channel), 'invalid_channel');
  });
});

describe('pairing keys', () => {
  it('generatePairingKey makes 32 random bytes as base64url text', () => {
    const a = generatePairingKey();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(generatePairingKey());
    expect(parsePairingKey(a)).toHaveLength(32);
  });

  it('parsePairingKey trims whitespace and accepts standard base64', () => {
    const bytes = Buffer.alloc(32, 0xfb);
    expect(hex(parsePairingKey(`  ${bytes.toString('base64url')}\n`))).toBe(bytes.toString('hex'));
    expect(hex(parsePairingKey(`${bytes.toString('base64')}\n`))).toBe(bytes.toString('hex'));
  });

  it.each([
    { name: 'empty file', input: '\n', message: /empty.*--e2ee-key-file/ },
    {
      name: 'too short',
      input: Buffer.alloc(16).toString('base64url'),
      message: /32 bytes.*--e2ee-key-file/,
    },
    { name: 'too long', input: Buffer.alloc(33).toString('base64url'), message: /32 bytes.*--e2ee-key-file/ },
    { name: 'not base64', input: `${'!'.repeat(43)}`, message: /--e2ee-key-file/ },
  ])('parsePairingKey refuses $name, naming --e2ee-key-file', ({ input, message }) => {
    expectCode(() => parsePairingKey(input), 'invalid_pairing_key', message);
  });

  it('a pairing key of the wrong length is refused by the handshake', () => {
    expectCode(
      () =>
        new E2eeHandshake({
          role: 'initiator',
          localId: PLANNER,
          remoteId: WORKER,
          pairingKey: new Uint8Array(16),
        }),
      'invalid_pairing_key',
      /--e2ee-key-file/,
    );
  });
});

it('plaintextRefused names the flag', () => {
  const err = plaintextRefused(WORKER);
  expect(err.code).toBe('plaintext_refused');
  expect(err.message).toMatch(/--a2a-e2ee/);
  expect(err.message).toMatch(/--a2a-e2ee=false/);
});
