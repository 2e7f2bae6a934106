// The nfltr ai page: opens the session key from the URL fragment (never sent to the relay), derives the
// access token and the frame keys with WebCrypto, and mirrors the terminal. Wire format and key schedule:
// src/protocol/ai-session.ts (the Node side of the same protocol).
(() => {
  const A2V = { output: 0x01, state: 0x02, reset: 0x03, exit: 0x04 };
  const V2A = { hello: 0x11, input: 0x12, resize: 0x13, takeControl: 0x14 };
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const $ = (id) => document.getElementById(id);
  const agentId = decodeURIComponent(location.pathname.split('/')[2] || '');
  const params = new URLSearchParams(location.hash.slice(1));

  const banner = (text, kind) => {
    const b = $('banner');
    b.textContent = text;
    b.dataset.kind = kind || 'error';
    b.hidden = false;
  };
  const { linkKey, hkdf, token: linkToken, seal, open } = window.nfltrLinkCrypto;
  const nonce = (ctr) => {
    const n = new Uint8Array(12);
    new DataView(n.buffer).setBigUint64(4, ctr);
    return n;
  };

  async function main() {
    const k = linkKey(params);
    if (!k) return banner('This link has no session key (#k=…): open the full link nfltr ai printed.');
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const token = await linkToken(k, 'nfltr-ai access');
    const a2v = await hkdf(k, new Uint8Array(0), 'nfltr-ai a2v', 'decrypt');
    const v2a = await hkdf(k, salt, 'nfltr-ai v2a', 'encrypt');
    const aadIn = enc.encode(`nfltr-ai/1 a2v ${agentId}`);
    const aadOut = enc.encode(`nfltr-ai/1 v2a ${agentId}`);
    let outCtr = 0n;
    let lastIn = -1n;

    const term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($('term'));
    fit.fit();
    window.nfltrTerm = term; // for tests and the console: the screen's text is term.buffer

    let me,
      writer,
      readOnly,
      ended = false,
      ws,
      sendChain = Promise.resolve();
    const setRole = () => {
      const role = $('role');
      const mine = me !== undefined && writer === me;
      role.dataset.role = mine ? 'writer' : 'viewer';
      role.textContent = mine ? 'you have control' : readOnly ? 'read-only session' : 'watching (read-only)';
      $('take').hidden = ended || readOnly || mine;
      term.options.disableStdin = !mine;
    };
    // Frames are sealed in order: counters must reach the agent increasing.
    const send = (type, body) => {
      sendChain = sendChain.then(async () => {
        if (ws?.readyState !== 1) return;
        const plain = new Uint8Array(1 + (body ? body.length : 0));
        plain[0] = type;
        if (body) plain.set(body, 1);
        const ctr = outCtr++;
        const ct = await seal(v2a, nonce(ctr), aadOut, plain);
        const frame = new Uint8Array(16 + 8 + ct.length);
        frame.set(salt, 0);
        new DataView(frame.buffer).setBigUint64(16, ctr);
        frame.set(ct, 24);
        ws.send(frame);
      });
    };
    const sendResize = () =>
      send(V2A.resize, enc.encode(JSON.stringify({ cols: term.cols, rows: term.rows })));
    term.onData((d) => {
      if (writer === me) send(V2A.input, enc.encode(d));
    });
    window.addEventListener('resize', () => {
      fit.fit();
      if (writer === me) sendResize();
    });
    $('take').addEventListener('click', () => send(V2A.takeControl));

    let recvChain = Promise.resolve();
    const onFrame = async (buf) => {
      const u8 = new Uint8Array(buf);
      const ctr = new DataView(u8.buffer).getBigUint64(0);
      if (ctr <= lastIn) return;
      let plain;
      try {
        plain = await open(a2v, nonce(ctr), aadIn, u8.subarray(8));
      } catch {
        return banner('A frame failed to decrypt: the link key is wrong or the data was altered.');
      }
      lastIn = ctr;
      const body = plain.subarray(1);
      switch (plain[0]) {
        case A2V.output:
          term.write(body);
          break;
        case A2V.reset:
          term.reset();
          break;
        case A2V.state: {
          const s = JSON.parse(dec.decode(body));
          if (s.you) me = s.you;
          const wasMine = writer === me;
          writer = s.writer;
          readOnly = s.read_only;
          setRole();
          if (!wasMine && writer === me) {
            sendResize();
            term.focus();
          }
          break;
        }
        case A2V.exit: {
          const e = JSON.parse(dec.decode(body));
          ended = true;
          setRole();
          banner(
            `Session ended: the command exited with code ${e.code}${e.signal ? ` (signal ${e.signal})` : ''}.`,
            'info',
          );
          break;
        }
      }
    };

    let backoff = 500;
    const connect = () => {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const auth = params.get('key') ? `key=${encodeURIComponent(params.get('key'))}` : `t=${token}`;
      ws = new WebSocket(`${proto}//${location.host}/ai/${encodeURIComponent(agentId)}/ws?${auth}`);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        backoff = 500;
        if (!ended) $('banner').hidden = true;
        send(V2A.hello);
      };
      ws.onmessage = (ev) => {
        recvChain = recvChain.then(() => onFrame(ev.data));
      };
      ws.onclose = (ev) => {
        if (ended || ev.code === 1000) {
          ended = true;
          setRole();
          if (!$('banner').textContent) banner('Session ended.', 'info');
          return;
        }
        if (ev.code === 4403 || ev.code === 4410 || ev.code === 4001) {
          ended = true;
          setRole();
          return banner(`Session closed: ${ev.reason}.`);
        }
        banner(`Disconnected${ev.reason ? ` (${ev.reason})` : ''}; reconnecting…`);
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 10000);
      };
    };
    setRole();
    connect();
  }
  main().catch((err) => banner(`nfltr ai page failed: ${err.message}`));
})();
