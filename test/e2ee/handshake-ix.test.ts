import { describe, expect, it } from 'vitest';
import { E2eeError, E2eeHandshake, generatePairingKey, parsePairingKey } from '../../src/protocol/e2ee.js';
import {
  generateX25519,
  NOISE_IX,
  NOISE_IXPSK0,
  NoiseCipherState,
  NoiseHandshake,
  x25519FromPrivate,
  x25519PrivateBytes,
} from '../../src/protocol/e2ee-noise.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

describe('Noise IX against published test vectors (flynn/noise vectors.txt)', () => {
  // Noise_IX / Noise_IXpsk0 _25519_AESGCM_SHA256, empty prologue and payloads, from github.com/flynn/noise
  // vectors.txt; msg_2 and msg_3 are transport messages under the two Split() keys.
  const keys = {
    initStatic: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
    respStatic: '0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20',
    initEphemeral: '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f',
    respEphemeral: '4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60',
    psk: '2176657279736563726574766572797365637265747665727973656372657421',
  };
  const msg2 = '79656c6c6f777375626d6172696e65';
  const msg3 = '7375626d6172696e6579656c6c6f77';
  const vectors = [
    {
      name: NOISE_IX,
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd1662548f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466dafa2f50bec421c6e061a97013b8d9d582911be531e7e463f108e9389c74d589e2173945cfe456788f1608bdbf6a9c2b34c089108e662e613ac961e8dbc9973b',
        '40c12ccfdf59f44d7cfc8c7dfe8a1bf739107c31aebcfc9f4caee7dc9099c1',
        'c3beff2f2144bb23f7fae6fd03578c40f1ef01140d1721a9e895958d52d749',
      ],
    },
    {
      name: NOISE_IXPSK0,
      ciphertexts: [
        '358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254a91f197ee337c37f7558ccd2074c61fa06784cb2e6325bde19d184ae68e6e2f7c5fbaa3a25628896bcd7c942ae437a7a87c84b7586565643e6ee0655cda423d7',
        '64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d484661b13bcef5c9664ec91e1fe0a4cc3e93850404c874f059b5f5b83d938d3f52f3e20d6a62ed81ee66161a8c14b2863f63ca88e762840a3c3700c6b382593438f14',
        '55e01923ed15f82aaf69393cd6b0d110fd22ba39dcf8207e5c8fb4195a70b2',
        '5f5e31e3d5052cfc8537d909b3a5fcc1ccb0cab5d18d251ebeef84a4b1291e',
      ],
    },
  ];

  it.each(vectors)('$name', (v) => {
    const common = {
      prologue: new Uint8Array(0),
      psk: v.name === NOISE_IXPSK0 ? unhex(keys.psk) : undefined,
    };
    const initStatic = x25519FromPrivate(unhex(keys.initStatic));
    const respStatic = x25519FromPrivate(unhex(keys.respStatic));
    const init = new NoiseHandshake({
      ...common,
      initiator: true,
      s: initStatic,
      ephemeral: x25519FromPrivate(unhex(keys.initEphemeral)),
    });
    const resp = new NoiseHandshake({
      ...common,
      initiator: false,
      s: respStatic,
      ephemeral: x25519FromPrivate(unhex(keys.respEphemeral)),
    });
    expect(init.protocolName).toBe(v.name);
    const m0 = init.writeMessage(new Uint8Array(0));
    expect(hex(m0)).toBe(v.ciphertexts[0]);
    expect(resp.readMessage(m0)).toHaveLength(0);
    expect(hex(resp.remoteStatic!)).toBe(hex(initStatic.publicKey));
    const m1 = resp.writeMessage(new Uint8Array(0));
    expect(hex(m1)).toBe(v.ciphertexts[1]);
    expect(init.readMessage(m1)).toHaveLength(0);
    expect(hex(init.remoteStatic!)).toBe(hex(respStatic.publicKey));
    expect(hex(init.handshakeHash)).toBe(hex(resp.handshakeHash));
    const i = init.split();
    const empty = new Uint8Array(0);
    expect(hex(new NoiseCipherState(i.initiatorToResponder).encryptWithAd(empty, unhex(msg2)))).toBe(
      v.ciphertexts[2],
    );
    expect(hex(new NoiseCipherState(i.responderToInitiator).encryptWithAd(empty, unhex(msg3)))).toBe(
      v.ciphertexts[3],
    );
  });

  it('a static key survives being stored as its raw private scalar', () => {
    const key = generateX25519();
    expect(hex(x25519FromPrivate(x25519PrivateBytes(key)).publicKey)).toBe(hex(key.publicKey));
  });
});

describe('e2ee handshake - static keys', () => {
  const ids = (role: 'initiator' | 'responder') =>
    role === 'initiator' ? { role, localId: 'p', remoteId: 'w' } : { role, localId: 'w', remoteId: 'p' };

  it.each([
    { name: 'without a pairing key', pairingKey: undefined },
    { name: 'with a pairing key', pairingKey: parsePairingKey(generatePairingKey()) },
  ])('$name: each end learns the other static key, authenticated', ({ pairingKey }) => {
    const planner = generateX25519();
    const worker = generateX25519();
    const i = new E2eeHandshake({ ...ids('initiator'), pairingKey, staticKey: planner });
    const r = new E2eeHandshake({ ...ids('responder'), pairingKey, staticKey: worker });
    r.readMessage(i.writeMessage());
    expect(hex(r.remoteStatic!)).toBe(hex(planner.publicKey));
    i.readMessage(r.writeMessage());
    expect(hex(i.remoteStatic!)).toBe(hex(worker.publicKey));
    // Only the holder of the initiator's static key gets the keys the responder derived.
    const sealed = i.session().sealer('t').seal(new TextEncoder().encode('x'));
    expect(new TextDecoder().decode(r.session().opener('t').open(sealed.seq, sealed.ciphertext))).toBe('x');
  });

  it('a relay that answers with its own key is seen as that key (what pinning compares)', () => {
    const worker = generateX25519();
    const relay = generateX25519();
    const i = new E2eeHandshake({ ...ids('initiator'), staticKey: generateX25519() });
    const mitm = new E2eeHandshake({ ...ids('responder'), staticKey: relay });
    mitm.readMessage(i.writeMessage());
    i.readMessage(mitm.writeMessage());
    expect(hex(i.remoteStatic!)).toBe(hex(relay.publicKey));
    expect(hex(i.remoteStatic!)).not.toBe(hex(worker.publicKey));
  });

  it('a static key swapped in message 2 does not authenticate (the es token binds it)', () => {
    const i = new E2eeHandshake({ ...ids('initiator') });
    const r = new E2eeHandshake({ ...ids('responder') });
    r.readMessage(i.writeMessage());
    const m2 = Uint8Array.from(r.writeMessage());
    m2[1 + 32 + 5]! ^= 0x01; // inside the encrypted static key
    expect(() => i.readMessage(m2)).toThrow(E2eeError);
    expect(i.complete).toBe(false);
  });
});
