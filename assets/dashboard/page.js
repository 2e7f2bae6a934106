// The Control Tower page: opens the dashboard key from the URL fragment (never sent to the relay),
// decrypts the planner's sealed task digests with WebCrypto, follows the relay's live feed (Server-Sent
// Events) and seals the commands it sends (answer, cancel). Wire format and key schedule:
// src/protocol/dashboard.ts. Without the key the relay tells only that tasks exist, and so does the page.
(() => {
  const API = '/api/v1/orchestration';
  const OUTCOMES_ID = '_commands';
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const { linkKey, hkdf, token: linkToken, seal, open, b64url, toB64url } = window.nfltrLinkCrypto;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, v);
    for (const kid of kids) e.append(kid);
    return e;
  };
  const params = () => new URLSearchParams(location.hash.slice(1));

  const tasks = new Map(); // task_id → { rec, digest | undefined }
  let fleet = [];
  let keys; // { digest, command } when the link has k
  let auth; // { headers, query }
  let openTask = params().get('task') || undefined;
  const sent = new Map(); // command id → what it was, until its outcome arrives
  const seenOutcomes = new Set();
  let opened = 0; // digests this link's key opened

  const banner = (text, kind) => {
    const b = $('banner');
    b.textContent = text;
    b.dataset.kind = kind || 'error';
    b.hidden = !text;
  };
  const toast = (text, ok) => {
    const t = $('toast');
    t.textContent = text;
    t.dataset.ok = String(ok);
    t.hidden = false;
  };
  const ago = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 60
      ? `${s}s`
      : s < 3600
        ? `${Math.floor(s / 60)}m ${s % 60}s`
        : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  };
  const size = (n) =>
    n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;

  async function openDigest(rec) {
    if (!keys) return undefined;
    try {
      const b = b64url(rec.sealed);
      const aad = enc.encode(`nfltr-dash/1 digest ${rec.planner_id} ${rec.task_id}`);
      const d = JSON.parse(dec.decode(await open(keys.digest, b.subarray(0, 12), aad, b.subarray(12))));
      return d.task_id === rec.task_id ? d : undefined;
    } catch {
      return undefined;
    }
  }

  async function onDigest(rec) {
    const digest = await openDigest(rec);
    if (rec.task_id === OUTCOMES_ID) return digest && onOutcomes(digest.outcomes || []);
    tasks.set(rec.task_id, { rec, digest });
    if (digest) opened++;
    // With an API key the account's other planners are listed too: only none opening is a wrong key.
    if (keys && opened === 0)
      banner('No digest decrypts with this link: it holds another key, or the data was altered.');
    else if (keys && $('banner').dataset.kind === 'error') banner('');
    scheduleRender();
  }

  function onOutcomes(outcomes) {
    for (const o of outcomes) {
      if (seenOutcomes.has(o.id) || !sent.has(o.id)) continue;
      seenOutcomes.add(o.id);
      sent.delete(o.id);
      toast(`${o.type} ${o.task_id || ''}: ${o.ok ? 'done' : 'refused'} — ${o.note}`, o.ok);
    }
  }

  let pending = false;
  const scheduleRender = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };

  const stateOf = (t) => (t.digest ? t.digest.state || 'dispatching' : 'sealed');
  const progressOf = (d) => {
    const ev = (d.events || [])
      .slice()
      .reverse()
      .find((e) => e.message || e.progress !== undefined);
    if (!ev) return d.level === 'status' ? `${d.counts.events} events` : '';
    const frac = ev.total
      ? ` ${ev.progress}/${ev.total}`
      : ev.progress !== undefined
        ? ` ${ev.progress}`
        : '';
    return `${ev.message || ''}${frac}`.trim();
  };
  const elapsedOf = (d) => (TERMINAL.has(d.state) ? d.updated_at : Date.now()) - d.created_at;

  function render() {
    const activeOnly = $('active-only').checked;
    const list = [...tasks.values()]
      .filter((t) => !activeOnly || !TERMINAL.has(stateOf(t)))
      .sort((a, b) => {
        const ta = TERMINAL.has(stateOf(a)),
          tb = TERMINAL.has(stateOf(b));
        if (ta !== tb) return ta ? 1 : -1;
        return b.rec.rev - a.rec.rev;
      });
    $('task-count').textContent = `(${tasks.size})`;
    // Rows are updated in place (keyed by task id): a row being clicked is never swapped under the pointer.
    const ul = $('tasks');
    const rows = new Map([...ul.children].map((li) => [li.dataset.task, li]));
    list.forEach((t, i) => {
      const id = t.rec.task_id;
      let li = rows.get(id);
      if (!li) {
        li = el(
          'li',
          { 'data-task': id },
          el('span', { class: 'tid' }, id),
          el('span', { class: 'state' }),
          el('span', { class: 'sub' }),
        );
        li.onclick = () => setOpen(id);
      }
      rows.delete(id);
      const d = t.digest;
      const state = stateOf(t);
      const sub = d
        ? `${d.worker} · ${ago(elapsedOf(d))} · ${progressOf(d)}`
        : `sealed · updated ${new Date(t.rec.updated_at).toLocaleTimeString()}`;
      if (li.dataset.state !== state) {
        li.dataset.state = state;
        li.children[1].dataset.state = state;
        li.children[1].textContent = state;
      }
      if (li.children[2].textContent !== sub) li.children[2].textContent = sub;
      li.setAttribute('aria-current', String(openTask === id));
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    });
    for (const li of rows.values()) li.remove();
    renderFleet();
    renderDrawer();
  }

  function renderFleet() {
    const busy = new Map();
    for (const t of tasks.values())
      if (t.digest && !TERMINAL.has(t.digest.state))
        busy.set(t.digest.worker, (busy.get(t.digest.worker) || 0) + 1);
    $('fleet-count').textContent = `(${fleet.length})`;
    $('fleet').replaceChildren(
      ...fleet.map((w) => {
        const seen = Date.now() - Date.parse(w.last_seen);
        const own = Object.entries(w.labels).filter(
          ([k]) => !k.startsWith('coord.') && !k.startsWith('nfltr.'),
        );
        const free = w.max_tasks === null ? '?' : Math.max(0, w.max_tasks - (busy.get(w.agent_id) || 0));
        return el(
          'div',
          { class: 'worker', 'data-worker': w.agent_id, 'data-live': String(seen < 90_000) },
          el('div', {}, el('span', { class: 'dot' }, '● '), el('span', { class: 'name' }, w.agent_id)),
          el('div', { class: 'labels' }, own.map(([k, v]) => `${k}=${v}`).join(', ') || 'no labels'),
          el(
            'div',
            { class: 'labels' },
            `free slots ${free}/${w.max_tasks ?? '?'} · load ${w.load_pct ?? '?'}% · seen ${ago(seen)} ago`,
          ),
        );
      }),
    );
  }

  let formFor = '';
  function renderDrawer() {
    const t = openTask && tasks.get(openTask);
    $('drawer').hidden = !t;
    document.body.classList.toggle('drawer-open', !!t);
    if (!t) return;
    const d = t.digest;
    $('d-title').textContent = openTask;
    const state = stateOf(t);
    $('drawer').dataset.state = state;
    if (!d) {
      $('d-meta').textContent = `sealed: this link has no key to read it (updated ${t.rec.updated_at})`;
      for (const id of ['d-question', 'd-result-box', 'd-artifacts-box']) $(id).hidden = true;
      $('d-objective').textContent = '';
      $('d-timeline').replaceChildren();
      return;
    }
    $('d-meta').textContent =
      `${state} · worker ${d.worker} · ${ago(elapsedOf(d))}${d.timeout_ms ? ` of ${ago(d.timeout_ms)}` : ''} · ${d.counts.events} events${d.reason ? ` · ${d.reason}` : ''}${d.usage ? ` · usage ${JSON.stringify(d.usage)}` : ''}`;
    $('d-objective').textContent =
      d.objective || (d.level === 'status' ? '(status-only digest: --dashboard-digest status)' : '');
    $('d-timeline').replaceChildren(
      ...(d.events || []).map((e) =>
        el(
          'li',
          { 'data-seq': String(e.seq) },
          el('span', { class: 'seq' }, `#${e.seq}`),
          `${new Date(e.time).toLocaleTimeString()} ${e.state}`,
          e.message ? ` — ${e.message}` : '',
          e.total ? ` (${e.progress}/${e.total})` : '',
          e.question ? ` — asks: ${e.question}` : '',
          e.reason ? ` (${e.reason})` : '',
        ),
      ),
    );
    const q = d.pending;
    $('d-question').hidden = !q;
    if (q) {
      $('d-question-text').textContent = q.question;
      const key = `${openTask}#${q.seq}`;
      if (formFor !== key) {
        formFor = key;
        window.nfltrSchemaForm.render($('d-form'), q.schema, (content) =>
          send({ type: 'answer', task_id: openTask, seq: q.seq, content }),
        );
      }
    } else formFor = '';
    $('d-result-box').hidden = !d.result;
    if (d.result) $('d-result').textContent = `${d.result.text}${d.result.truncated ? '\n…(truncated)' : ''}`;
    const arts = d.artifacts || [];
    $('d-artifacts-box').hidden = arts.length === 0;
    $('d-artifacts').replaceChildren(
      ...arts.map((a) =>
        el(
          'tr',
          {},
          el('td', {}, a.name),
          el('td', {}, size(a.size)),
          el('td', { title: a.sha256 }, a.sha256.slice(0, 16)),
        ),
      ),
    );
    $('d-cancel').hidden = TERMINAL.has(d.state);
    $('d-reason').hidden = TERMINAL.has(d.state);
  }

  function setOpen(id) {
    openTask = id;
    const p = params();
    if (id) p.set('task', id);
    else p.delete('task');
    history.replaceState(null, '', `#${p.toString()}`);
    render();
  }

  async function send(body) {
    const t = tasks.get(body.task_id);
    if (!keys || !t) return;
    const id = toB64url(crypto.getRandomValues(new Uint8Array(9)));
    const plain = enc.encode(JSON.stringify({ v: 1, id, at: Date.now(), ...body }));
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const aad = enc.encode(`nfltr-dash/1 command ${t.rec.planner_id}`);
    const ct = await seal(keys.command, nonce, aad, plain);
    const sealed = new Uint8Array(12 + ct.length);
    sealed.set(nonce);
    sealed.set(ct, 12);
    const res = await fetch(`${API}/planners/${encodeURIComponent(t.rec.planner_id)}/commands`, {
      method: 'POST',
      headers: { ...auth.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ sealed: toB64url(sealed) }),
    });
    if (!res.ok) {
      const e = await res.json().catch(() => ({}));
      return toast(`${body.type} not sent: ${e.error?.message || res.status}`, false);
    }
    sent.set(id, body);
    toast(`${body.type} sent to the planner; waiting for it to run…`, true);
  }

  async function main() {
    const p = params();
    const k = linkKey(p);
    const apiKey = p.get('key');
    if (k) {
      keys = {
        digest: await hkdf(k, new Uint8Array(0), 'nfltr-dash digest', 'decrypt'),
        command: await hkdf(k, new Uint8Array(0), 'nfltr-dash command', 'encrypt'),
      };
    }
    if (apiKey)
      auth = { headers: { authorization: `ApiKey ${apiKey}` }, query: `key=${encodeURIComponent(apiKey)}` };
    else if (k) {
      const t = await linkToken(k, 'nfltr-dash access');
      auth = { headers: { 'x-dashboard-token': t }, query: `t=${t}` };
    } else
      return banner(
        'This link has no dashboard key (#k=…): open the full link nfltr mcp printed (or nfltr orch dashboard).',
      );
    if (!k) banner('No dashboard key in this link: the relay shows only that tasks exist.', 'info');

    $('active-only').onchange = render;
    $('d-close').onclick = () => setOpen(undefined);
    $('d-cancel').onclick = () =>
      send({ type: 'cancel', task_id: openTask, reason: $('d-reason').value || undefined });
    window.addEventListener('hashchange', () => {
      const id = params().get('task') || undefined;
      if (id !== openTask) {
        openTask = id;
        render();
      }
    });

    let rev = 0;
    for (;;) {
      const res = await fetch(`${API}/tasks?after=${rev}`, { headers: auth.headers });
      const body = await res.json();
      if (!res.ok) return banner(`The relay refused: ${body.error?.message || res.status}`);
      if (body.planner_id) $('planner').textContent = body.planner_id;
      for (const rec of body.tasks) await onDigest(rec);
      rev = body.rev;
      if (!body.more) break;
    }
    const feed = new EventSource(`${API}/events?after=${rev}&${auth.query}`);
    feed.onopen = () => {
      $('live').dataset.state = 'live';
      $('live').textContent = 'live';
    };
    feed.onerror = () => {
      $('live').dataset.state = 'down';
      $('live').textContent = 'reconnecting…';
    };
    let chain = Promise.resolve();
    feed.addEventListener('digest', (ev) => {
      const rec = JSON.parse(ev.data);
      chain = chain.then(() => onDigest(rec));
    });
    feed.addEventListener('fleet', (ev) => {
      fleet = JSON.parse(ev.data).workers;
      scheduleRender();
    });
    setInterval(scheduleRender, 1000); // elapsed times
    render();
  }
  main().catch((err) => banner(`dashboard failed: ${err.message}`));
})();
