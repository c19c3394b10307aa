// Petrel dashboard: plain JavaScript over the JSON API (/api/v1). No build step, no dependencies.
// Every value from the broker (Client IDs, topics, payloads) goes into the page as text, never as HTML.

const TOKEN_KEY = 'petrel-api-token';
const $ = (selector) => document.querySelector(selector);

/** An element: h('td', { class: 'x', onclick: fn }, 'text', child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// ---- the API ----

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    setStatus(false, 'broker unreachable');
    throw err;
  }
  setStatus(true);
  if (res.status === 401) throw new Unauthorized();
  if (res.status === 204) return undefined;
  const json = await res.json();
  if (!res.ok) throw new Error(json.message ?? `HTTP ${res.status}`);
  return json;
}

function setStatus(ok, text) {
  const el = $('#status');
  el.textContent = ok ? 'live' : text;
  el.className = `status ${ok ? 'ok' : 'down'}`;
}

// ---- formatting ----

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const number = (n) => new Intl.NumberFormat('en').format(Math.round(n));
const VERSIONS = { 3: '3.1', 4: '3.1.1', 5: '5.0' };

function ago(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

const clock = (iso) => new Date(iso).toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(new Date(iso).getMilliseconds()).padStart(3, '0');
const clientHref = (id) => `#/clients/${encodeURIComponent(id)}`;

/** What a history entry says, in words: [title, detail, kind]. */
function describe(e) {
  if (e.event === 'connect') {
    const who = e.username !== undefined ? ` as ${e.username}` : '';
    return [`CONNECT from ${e.address}${who}`, `MQTT ${VERSIONS[e.protocolVersion] ?? e.protocolVersion} · ${e.clean ? 'clean start' : 'resume session'} · keep alive ${e.keepAlive} s · ${e.listener}`, 'connect'];
  }
  if (e.event === 'connack') {
    if (e.accepted) return ['Connected (CONNACK 0x00)', e.sessionPresent ? 'session resumed' : 'new session', 'accepted'];
    return [`Refused: CONNACK ${e.code} ${e.codeName}`, e.reason ?? '', 'refused'];
  }
  const cause = e.cause.replace(/_/g, ' ');
  const code = e.code ? ` (${e.code} ${e.codeName})` : '';
  const detail = [e.reason, e.will ? 'will message sent' : ''].filter(Boolean).join(' · ');
  const kind = e.cause === 'client_disconnect' ? 'closed' : 'dropped';
  return [`Disconnected: ${cause}${code}`, detail, kind];
}

// ---- a small line chart on a canvas ----

/** The next round number at or above `v`: 1, 2 or 5 times a power of `base` (10, or 1024 for bytes). */
function niceCeiling(v, base) {
  const power = base ** Math.floor(Math.log(v) / Math.log(base));
  for (const m of [1, 2, 4, 5, 8, 10, 20, 40, 50, 80, 100, 200, 400, 500, 800, base]) if (m * power >= v) return m * power;
  return base * power;
}

class LineChart {
  constructor(canvas, series, { unit = '', format = number } = {}) {
    this.canvas = canvas;
    this.series = series; // [{ label, color }]
    this.values = series.map(() => []);
    this.unit = unit;
    this.format = format;
    this.capacity = 60;
  }

  push(...points) {
    points.forEach((p, i) => {
      this.values[i].push(p);
      if (this.values[i].length > this.capacity) this.values[i].shift();
    });
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = c.clientWidth;
    const height = c.clientHeight;
    if (c.width !== width * ratio) c.width = width * ratio;
    if (c.height !== height * ratio) c.height = height * ratio;
    const g = c.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 56;
    const top = 10;
    const bottom = height - 22;
    const right = width - 10;
    const max = niceCeiling(Math.max(1, ...this.values.flat()) * 1.1, this.format === number ? 10 : 1024);
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    g.strokeStyle = '#e3e8ec';
    g.fillStyle = '#6b7a86';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - ((bottom - top) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(right, y);
      g.stroke();
      g.textAlign = 'right';
      g.fillText(this.format((max * i) / 4), left - 6, y);
    }
    g.textAlign = 'left';
    g.fillText(`last ${this.capacity} s${this.unit ? ' · ' + this.unit : ''}`, left, height - 8);
    const step = (right - left) / (this.capacity - 1);
    this.series.forEach((s, i) => {
      const v = this.values[i];
      if (v.length < 2) return;
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.beginPath();
      v.forEach((value, j) => {
        const x = right - (v.length - 1 - j) * step;
        const y = bottom - (value / max) * (bottom - top);
        if (j === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    });
    let x = right;
    g.textAlign = 'right';
    for (const s of [...this.series].reverse()) {
      const latest = this.values[this.series.indexOf(s)].at(-1);
      const text = `${s.label} ${latest === undefined ? '–' : this.format(latest)}`;
      g.fillStyle = s.color;
      g.fillText(text, x, top + 4);
      x -= g.measureText(text).width + 18;
    }
  }
}

// ---- pages ----

let stopPage = () => {};

/** Runs `tick` now and every `ms` until the page changes. */
function every(ms, tick) {
  let timer;
  let stopped = false;
  const run = async () => {
    try {
      await tick();
    } catch (err) {
      if (err instanceof Unauthorized) return showLogin('The token was refused; sign in again.');
      console.warn(err);
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function card(label, id, note) {
  return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value', id }, '–'), note ? h('div', { class: 'card-note', id: `${id}-note` }, note) : null);
}

function pageOverview(root) {
  root.append(
    h('h1', {}, 'Overview'),
    h('div', { class: 'cards' },
      card('Connected clients', 'stat-connected', ' '),
      card('Sessions', 'stat-sessions', ' '),
      card('Subscriptions', 'stat-subscriptions'),
      card('Retained messages', 'stat-retained'),
      card('Messages in / s', 'stat-in'),
      card('Messages out / s', 'stat-out'),
      card('Heap used', 'stat-heap', ' '),
      card('Uptime', 'stat-uptime', ' '),
    ),
    h('div', { class: 'grid2' },
      h('div', { class: 'panel' }, h('h2', {}, 'Message rates'), h('canvas', { id: 'rate-chart', class: 'chart' })),
      h('div', { class: 'panel' }, h('h2', {}, 'Memory'), h('canvas', { id: 'memory-chart', class: 'chart' })),
    ),
    h('div', { class: 'panel' }, h('h2', {}, 'Recent connection activity'), h('table', { class: 'table', id: 'activity' })),
  );
  const rates = new LineChart($('#rate-chart'), [{ label: 'in', color: '#0f7b8a' }, { label: 'out', color: '#e07a1f' }], { unit: 'messages per second' });
  const memory = new LineChart($('#memory-chart'), [{ label: 'heap', color: '#5a4fcf' }, { label: 'rss', color: '#9aa6b0' }], { format: (v) => bytes(v) });
  let previous;
  let activityAt = 0;
  return every(1000, async () => {
    const s = await api('GET', '/api/v1/stats');
    const c = s.counts;
    $('#stat-connected').textContent = number(c.connected);
    $('#stat-connected-note').textContent = `${number(c.connections - c.connected)} still connecting`;
    $('#stat-sessions').textContent = number(c.sessions);
    $('#stat-sessions-note').textContent = `${number(c.sessions - c.connected)} offline · ${number(c.queued)} queued`;
    $('#stat-subscriptions').textContent = number(c.subscriptions);
    $('#stat-retained').textContent = number(c.retained);
    $('#stat-heap').textContent = bytes(s.memory.heapUsed);
    $('#stat-heap-note').textContent = `RSS ${bytes(s.memory.rss)}`;
    $('#stat-uptime').textContent = s.uptime < 60 ? `${s.uptime} s` : s.uptime < 3600 ? `${Math.floor(s.uptime / 60)} min` : s.uptime < 172800 ? `${(s.uptime / 3600).toFixed(1)} h` : `${Math.floor(s.uptime / 86400)} d`;
    $('#stat-uptime-note').textContent = s.listeners.map((l) => `${l.type} :${l.port}`).join(' · ');
    if (previous) {
      const dt = Math.max(0.001, (Date.parse(s.time) - Date.parse(previous.time)) / 1000);
      const rin = (s.messages.publishReceived - previous.messages.publishReceived) / dt;
      const rout = (s.messages.publishSent - previous.messages.publishSent) / dt;
      $('#stat-in').textContent = number(rin);
      $('#stat-out').textContent = number(rout);
      rates.push(rin, rout);
    }
    memory.push(s.memory.heapUsed, s.memory.rss);
    previous = s;
    if (Date.now() - activityAt > 3000) {
      activityAt = Date.now();
      renderActivity(await api('GET', '/api/v1/history?limit=8'));
    }
  });
}

function renderActivity(history) {
  const rows = history.items.map(({ clientId, last }) => {
    const [title, detail, kind] = describe(last);
    return h('tr', {}, h('td', {}, h('a', { href: clientHref(clientId) }, clientId)), h('td', {}, h('span', { class: `badge ${kind}` }, title)), h('td', { class: 'muted' }, detail), h('td', { class: 'muted nowrap' }, ago(last.time)));
  });
  $('#activity').replaceChildren(h('thead', {}, h('tr', {}, h('th', {}, 'Client ID'), h('th', {}, 'Last event'), h('th', {}, 'Details'), h('th', {}, 'When'))), h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No connections yet.'))));
}

async function kick(clientId) {
  if (!confirm(`Disconnect ${clientId}? Its will is published; its session is kept.`)) return false;
  await api('DELETE', `/api/v1/clients/${encodeURIComponent(clientId)}`);
  return true;
}

function pageClients(root) {
  const search = h('input', { id: 'client-search', type: 'search', placeholder: 'Client ID or user name contains…', value: sessionStorage.getItem('petrel-client-search') ?? '' });
  const count = h('span', { class: 'muted', id: 'client-count' });
  const table = h('table', { class: 'table', id: 'clients' });
  root.append(h('h1', {}, 'Clients ', count), h('div', { class: 'toolbar' }, search), h('div', { class: 'panel' }, table));
  const refresh = async () => {
    const like = search.value.trim();
    sessionStorage.setItem('petrel-client-search', like);
    const page = await api('GET', `/api/v1/clients?limit=200${like ? `&like=${encodeURIComponent(like)}` : ''}`);
    count.textContent = `${number(page.total)} connected${page.total > page.items.length ? `, first ${page.items.length} shown` : ''}`;
    const rows = page.items.map((c) =>
      h('tr', { dataset: { clientId: c.clientId } },
        h('td', {}, h('a', { href: clientHref(c.clientId) }, c.clientId)),
        h('td', {}, c.username ?? h('span', { class: 'muted' }, '—')),
        h('td', { class: 'mono' }, c.remoteAddress),
        h('td', {}, c.listener),
        h('td', {}, VERSIONS[c.protocolVersion]),
        h('td', {}, c.keepAlive ? `${c.keepAlive} s` : 'off'),
        h('td', { class: 'nowrap' }, ago(c.connectedAt)),
        h('td', { class: 'actions' }, h('button', { class: 'danger small', 'data-kick': c.clientId, onclick: async () => (await kick(c.clientId)) && refresh() }, 'Kick')),
      ),
    );
    table.replaceChildren(
      h('thead', {}, h('tr', {}, ...['Client ID', 'User', 'Address', 'Listener', 'MQTT', 'Keep alive', 'Connected', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, like ? 'No connected client matches.' : 'No client is connected.'))),
    );
  };
  let typing;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(refresh, 200);
  });
  return every(2000, refresh);
}

function pageClient(root, clientId) {
  const status = h('span', { class: 'badge', id: 'client-status' });
  const kickButton = h('button', { class: 'danger', id: 'client-kick', hidden: true, onclick: async () => (await kick(clientId)) && refresh() }, 'Kick');
  const details = h('dl', { class: 'details', id: 'client-details' });
  const subs = h('div', { id: 'client-subscriptions' });
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/clients' }, 'Clients'), ' / '),
    h('h1', {}, h('span', { class: 'mono' }, clientId), ' ', status, ' ', kickButton),
    h('div', { class: 'grid2' }, h('div', { class: 'panel' }, h('h2', {}, 'Connection and session'), details, subs), h('div', { class: 'panel' }, h('h2', {}, 'Connection timeline'), h('p', { class: 'muted' }, 'Newest first; the broker keeps the last events of each Client ID.'), timeline)),
  );
  const refresh = async () => {
    const history = await api('GET', `/api/v1/clients/${encodeURIComponent(clientId)}/history`);
    let client;
    if (history.connected || history.session) {
      try {
        client = await api('GET', `/api/v1/clients/${encodeURIComponent(clientId)}`);
      } catch (err) {
        if (err instanceof Unauthorized) throw err; // else gone meanwhile
      }
    }
    status.textContent = client?.connected ? 'connected' : client ? 'offline session' : 'not connected';
    status.className = `badge ${client?.connected ? 'accepted' : 'closed'}`;
    kickButton.hidden = !client?.connected;
    const rows = [];
    const c = client?.connection;
    if (c) rows.push(['Address', c.remoteAddress], ['Listener', c.listener], ['User', c.username ?? '—'], ['MQTT', VERSIONS[c.protocolVersion]], ['Keep alive', c.keepAlive ? `${c.keepAlive} s` : 'off'], ['Connected', `${ago(c.connectedAt)} (${new Date(c.connectedAt).toLocaleString('en-GB')})`], ['TLS', c.secure ? `yes${c.certificateCN ? `, CN ${c.certificateCN}` : ''}` : 'no'], ['Output buffered', bytes(c.bufferedBytes)]);
    const s = client?.session;
    if (s) rows.push(['Session expiry', s.expiryInterval === 4294967295 ? 'never' : `${s.expiryInterval} s`], ['In flight', number(s.inflight)], ['Queued', `${number(s.queued)} (${bytes(s.queuedBytes)})`], ['Dropped', number(s.dropped)]);
    details.replaceChildren(...(rows.length ? rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]) : [h('dd', { class: 'muted' }, 'Not connected, and no session is kept for this Client ID.')]));
    subs.replaceChildren(
      ...(s?.subscriptions.length
        ? [h('h3', {}, 'Subscriptions'), h('ul', { class: 'plain' }, s.subscriptions.map((x) => h('li', {}, h('span', { class: 'mono' }, x.topicFilter), h('span', { class: 'muted' }, ` QoS ${x.qos}`))))]
        : []),
    );
    const items = [...history.events].reverse().map((e) => {
      const [title, detail, kind] = describe(e);
      return h('li', { class: `ev ${kind}` }, h('time', { datetime: e.time, title: e.time }, clock(e.time)), h('div', {}, h('div', { class: 'ev-title' }, title), detail ? h('div', { class: 'ev-detail' }, detail) : null));
    });
    timeline.replaceChildren(...(items.length ? items : [h('li', { class: 'muted' }, 'No connection seen for this Client ID.')]));
  };
  return every(2000, refresh);
}

function pageSubscriptions(root) {
  const topic = h('input', { id: 'sub-topic', type: 'search', placeholder: 'Who receives a message on this topic? e.g. sensors/1/temp' });
  const like = h('input', { id: 'sub-like', type: 'search', placeholder: 'Filter contains…' });
  const count = h('span', { class: 'muted' });
  const table = h('table', { class: 'table', id: 'subscriptions' });
  const error = h('p', { class: 'error' });
  root.append(h('h1', {}, 'Subscriptions ', count), h('div', { class: 'toolbar' }, topic, like), error, h('div', { class: 'panel' }, table));
  const refresh = async () => {
    const q = new URLSearchParams({ limit: '500' });
    if (topic.value.trim()) q.set('topic', topic.value.trim());
    if (like.value.trim()) q.set('like', like.value.trim());
    let page;
    try {
      page = await api('GET', `/api/v1/subscriptions?${q}`);
      error.textContent = '';
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      error.textContent = err.message;
      return;
    }
    count.textContent = `${number(page.total)}`;
    const flag = (on, text) => (on ? h('span', { class: 'tag' }, text) : null);
    table.replaceChildren(
      h('thead', {}, h('tr', {}, ...['Client ID', 'Topic filter', 'QoS', 'Options'].map((t) => h('th', {}, t)))),
      h('tbody', {}, page.items.length ? page.items.map((s) => h('tr', {}, h('td', {}, h('a', { href: clientHref(s.clientId) }, s.clientId)), h('td', { class: 'mono' }, s.topicFilter), h('td', {}, s.qos), h('td', {}, flag(s.shareGroup, `shared: ${s.shareGroup}`), flag(s.noLocal, 'no local'), flag(s.retainAsPublished, 'retain as published'), flag(s.retainHandling, `retain handling ${s.retainHandling}`)))) : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No subscription matches.'))),
    );
  };
  let typing;
  for (const input of [topic, like]) input.addEventListener('input', () => (clearTimeout(typing), (typing = setTimeout(refresh, 250))));
  return every(3000, refresh);
}

function pageRetained(root) {
  const filter = h('input', { id: 'retained-filter', type: 'search', value: '#', placeholder: 'Topic filter, e.g. sensors/#' });
  const count = h('span', { class: 'muted' });
  const table = h('table', { class: 'table', id: 'retained' });
  const error = h('p', { class: 'error' });
  const pubTopic = h('input', { id: 'publish-topic', placeholder: 'topic' });
  const pubPayload = h('input', { id: 'publish-payload', placeholder: 'payload (text)' });
  const pubRetain = h('input', { id: 'publish-retain', type: 'checkbox', checked: true });
  const pubForm = h('form', { class: 'inline-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/api/v1/publish', { topic: pubTopic.value, payload: pubPayload.value, retain: pubRetain.checked, qos: 1 });
      error.textContent = '';
      refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, pubTopic, pubPayload, h('label', {}, pubRetain, ' retain'), h('button', { type: 'submit' }, 'Publish'));
  root.append(h('h1', {}, 'Retained messages ', count), h('div', { class: 'toolbar' }, filter), error, h('div', { class: 'panel' }, table), h('div', { class: 'panel' }, h('h2', {}, 'Publish a message'), pubForm));
  const refresh = async () => {
    let page;
    try {
      page = await api('GET', `/api/v1/retained?limit=500&filter=${encodeURIComponent(filter.value.trim() || '#')}`);
      error.textContent = '';
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      error.textContent = err.message;
      return;
    }
    count.textContent = `${number(page.total)}`;
    const preview = (m) => (m.payload === null ? h('span', { class: 'muted' }, `binary, base64 ${m.payloadBase64.slice(0, 40)}${m.payloadBase64.length > 40 ? '…' : ''}`) : m.payload.length > 120 ? m.payload.slice(0, 120) + '…' : m.payload);
    table.replaceChildren(
      h('thead', {}, h('tr', {}, ...['Topic', 'QoS', 'Size', 'Payload', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, page.items.length ? page.items.map((m) => h('tr', {}, h('td', { class: 'mono' }, m.topic), h('td', {}, m.qos), h('td', { class: 'nowrap' }, bytes(m.payloadBytes)), h('td', { class: 'payload' }, preview(m)), h('td', { class: 'actions' }, h('button', { class: 'danger small', onclick: async () => {
        if (!confirm(`Delete the retained message of ${m.topic}?`)) return;
        await api('DELETE', `/api/v1/retained/${m.topic.split('/').map(encodeURIComponent).join('/')}`);
        refresh();
      } }, 'Delete')))) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No retained message matches.'))),
    );
  };
  let typing;
  filter.addEventListener('input', () => (clearTimeout(typing), (typing = setTimeout(refresh, 250))));
  return every(3000, refresh);
}

function pageBans(root) {
  const type = h('select', { id: 'ban-type' }, h('option', { value: 'clientId' }, 'Client ID'), h('option', { value: 'username' }, 'User name'), h('option', { value: 'address' }, 'Address or CIDR'));
  const value = h('input', { id: 'ban-value', placeholder: 'e.g. device-42, mallory, 203.0.113.0/24', required: true });
  const error = h('p', { class: 'error' });
  const lists = h('div', { class: 'grid3', id: 'bans' });
  const form = h('form', { class: 'inline-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const r = await api('POST', '/api/v1/bans', { type: type.value, value: value.value.trim() });
      error.textContent = r.disconnected.length ? `Disconnected: ${r.disconnected.join(', ')}` : '';
      value.value = '';
      refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, type, value, h('button', { type: 'submit', class: 'danger' }, 'Ban'));
  root.append(h('h1', {}, 'Bans'), h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Banned clients are refused at CONNECT (0x8A Banned); connected ones are disconnected. Bans added here last until the broker restarts: put lasting ones in the configuration.'), form, error), lists);
  const refresh = async () => {
    const bans = await api('GET', '/api/v1/bans');
    const list = (title, kind, items) =>
      h('div', { class: 'panel' }, h('h2', {}, title), items.length ? h('ul', { class: 'plain' }, items.map((v) => h('li', { class: 'ban' }, h('span', { class: 'mono' }, v), h('button', { class: 'small', onclick: async () => {
        await api('DELETE', `/api/v1/bans/${kind}/${encodeURIComponent(v)}`);
        refresh();
      } }, 'Lift')))) : h('p', { class: 'muted' }, 'None.'));
    lists.replaceChildren(list('Client IDs', 'clientId', bans.clientIds), list('User names', 'username', bans.usernames), list('Addresses', 'address', bans.addresses));
  };
  return every(5000, refresh);
}

// ---- routing and sign-in ----

function showLogin(message = '') {
  stopPage();
  sessionStorage.removeItem(TOKEN_KEY);
  $('#page').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#nav').hidden = true;
  $('#login-error').textContent = message;
  $('#token-input').focus();
}

function route() {
  stopPage();
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  $('#login').hidden = true;
  $('#logout').hidden = false;
  $('#nav').hidden = false;
  const page = $('#page');
  page.hidden = false;
  page.replaceChildren();
  const [, name = 'overview', arg] = /^#\/([^/]*)\/?(.*)$/.exec(location.hash) ?? [];
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === name);
  const pages = { overview: pageOverview, clients: pageClients, subscriptions: pageSubscriptions, retained: pageRetained, bans: pageBans };
  if (name === 'clients' && arg) stopPage = pageClient(page, decodeURIComponent(arg));
  else stopPage = (pages[name] ?? pageOverview)(page);
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('#token-input').value.trim());
  try {
    await api('GET', '/api/v1/stats');
    $('#token-input').value = '';
    route();
  } catch (err) {
    showLogin(err instanceof Unauthorized ? 'That token was refused.' : `The broker did not answer: ${err.message}`);
  }
});
$('#logout').addEventListener('click', () => showLogin());
window.addEventListener('hashchange', route);
route();
