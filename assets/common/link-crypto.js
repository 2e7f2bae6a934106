// Link keys in the browser: the key travels in the URL fragment (never sent to the relay); subkeys and the
// access token come from HKDF-SHA256, frames are AES-256-GCM (WebCrypto). The Node side of the same is
// src/protocol/link-crypto.ts; used by the nfltr ai page and the dashboard.
window.nfltrLinkCrypto = (() => {
  const enc = new TextEncoder();
  const b64url = (s) =>
    Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const toB64url = (u8) => {
    let bin = '';
    for (let i = 0; i < u8.length; i += 0x8000) bin += String.fromCharCode(...u8.subarray(i, i + 0x8000));
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  /** The 32-byte key of `#k=…`, or undefined. */
  const linkKey = (params) => {
    try {
      const k = b64url(params.get('k') || '');
      return k.length === 32 ? k : undefined;
    } catch {
      return undefined;
    }
  };
  /** A subkey for `usage` ('encrypt' / 'decrypt'), or raw bits when no usage is given (a token). */
  async function hkdf(k, salt, info, usage) {
    const base = await crypto.subtle.importKey('raw', k, 'HKDF', false, ['deriveBits', 'deriveKey']);
    const alg = { name: 'HKDF', hash: 'SHA-256', salt, info: enc.encode(info) };
    if (!usage) return new Uint8Array(await crypto.subtle.deriveBits(alg, base, 256));
    const usages = usage === 'both' ? ['encrypt', 'decrypt'] : [usage];
    return crypto.subtle.deriveKey(alg, base, { name: 'AES-GCM', length: 256 }, false, usages);
  }
  const token = async (k, info) => toB64url(await hkdf(k, new Uint8Array(0), info));
  /** AES-GCM: ciphertext ‖ tag. */
  const seal = async (key, iv, aad, plain) =>
    new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, plain));
  /** Throws when the frame fails authentication. */
  const open = async (key, iv, aad, sealed) =>
    new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, sealed));
  return { b64url, toB64url, linkKey, hkdf, token, seal, open };
})();
