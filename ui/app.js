/* tern web UI: plain JavaScript, no build step. Every screen is a function of the hash
 * (#/instances, #/instance/ID, #/task/ID, ...) that reads the HTTP API with the token the
 * person gave (kept in sessionStorage) and polls while it is shown. */
'use strict';

const API = '/api/v1';
const POLL_MS = 1500;
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const STATE_COLOR = {
  SUCCESS: '#2e9e4f', FORCED_SUCCESS: '#2e9e4f', RUNNING_EXECUTION: '#2f6fdf',
  DISPATCH: '#5b8ff0', SUBMITTED_SUCCESS: '#9aa3b5', DELAY_EXECUTION: '#9aa3b5',
  FAILURE: '#d64545', NEED_FAULT_TOLERANCE: '#d64545', KILL: '#d64545',
  PAUSE: '#e0a030', READY_PAUSE: '#e0a030', STOP: '#8a5cc2', READY_STOP: '#8a5cc2',
};

let me = null;        /* {name, role} of the token */
let timer = null;     /* the shown screen's poll */
let screenGen = 0;    /* bumped at each screen change: late answers of an old one are dropped */

const $ = (sel) => document.querySelector(sel);
const main = () => $('#main');

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function stateBadge(s) {
  return `<span class="state s-${esc(s)}">${esc(s)}</span>`;
}

function fmtTime(t) {
  return t ? esc(t.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))
    : '<span class="muted">-</span>';
}

function flash(msg, kind) {
  const f = $('#flash');
  f.textContent = msg;
  f.className = kind || '';
  f.hidden = !msg;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/* An API call: its JSON answer (the text when asText, as for an SVG); a failure throws
 * an ApiError with the server's message. */
async function api(method, path, body, asText) {
  const token = sessionStorage.getItem('tern-token');
  const opts = { method, headers: { Authorization: 'Bearer ' + token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, opts);
  const text = await r.text();
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch (e) { j = null; }
  if (!r.ok) {
    const msg = j && j.error ? j.error.message : text || r.statusText;
    if (r.status === 401) { signOut(msg); }
    throw new ApiError(r.status, msg);
  }
  return asText ? text : j;
}

function may(role) {
  return me && ROLE_RANK[me.role] >= ROLE_RANK[role];
}

/* A control button: shown only to a role that may press it; the answer (or why it was
 * refused) shows in the flash bar. method is POST unless given (DELETE asks first). */
function controlButton(label, path, role, danger, method) {
  if (!may(role)) return '';
  return `<button class="${danger ? 'danger' : ''}" data-post="${esc(path)}"
    data-method="${esc(method || 'POST')}" data-label="${esc(label)}">${esc(label)}</button>`;
}

function wireControls(root, after) {
  root.querySelectorAll('button[data-post]').forEach((b) => {
    b.onclick = async (ev) => {
      ev.stopPropagation(); /* a button in a row that opens something when clicked */
      const method = b.dataset.method || 'POST';
      if (method === 'DELETE' && !confirm(`${b.dataset.label} ${b.dataset.post}?`)) return;
      b.disabled = true;
      try {
        const r = await api(method, b.dataset.post);
        flash(`${b.dataset.label}: ${(r && r.message) || 'accepted'}`, 'info');
        if (after) after(r);
      } catch (e) {
        flash(e.status === 403
          ? `${b.dataset.label} refused: your token (${me.role}) may not do this. ${e.message}`
          : `${b.dataset.label} failed: ${e.message}`);
      } finally {
        b.disabled = false;
      }
    };
  });
}

/* Run fn now and every POLL_MS while this screen is shown. */
function poll(fn) {
  const gen = screenGen;
  const tick = async () => {
    if (gen !== screenGen) return;
    try {
      await fn(() => gen !== screenGen);
    } catch (e) {
      if (gen === screenGen && e.status !== 401) flash(e.message);
    }
    if (gen === screenGen) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

/* ---- instances ------------------------------------------------------------------ */

function instancesScreen(params) {
  const state = params.get('state') || '', wf = params.get('workflow') || '';
  const states = ['', 'RUNNING_EXECUTION', 'SUCCESS', 'FAILURE', 'STOP', 'PAUSE',
    'SERIAL_WAIT', 'READY_STOP', 'READY_PAUSE', 'SUBMITTED_SUCCESS', 'FAILOVER'];
  main().innerHTML = `<h2>Instances</h2>
    <form class="filters" id="filters">
      <label>State <select id="f-state">${states.map((s) =>
        `<option value="${s}" ${s === state ? 'selected' : ''}>${s || 'any'}</option>`).join('')}
      </select></label>
      <label>Workflow <input id="f-wf" value="${esc(wf)}" placeholder="any"></label>
      <button type="submit">Filter</button>
      ${may('operator') ? '<span class="muted">|</span><input id="start-wf" placeholder="workflow"><button type="button" id="start">Start</button>' : ''}
    </form>
    <table id="instances"><thead><tr><th>ID</th><th>Workflow</th><th>State</th><th>Run</th>
      <th>Version</th><th>Created</th><th>Started</th><th>Ended</th></tr></thead>
      <tbody></tbody></table>
    <p class="muted" id="more"></p>`;
  $('#filters').onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if ($('#f-state').value) q.set('state', $('#f-state').value);
    if ($('#f-wf').value) q.set('workflow', $('#f-wf').value);
    location.hash = '#/instances' + (q.toString() ? '?' + q : '');
  };
  if ($('#start')) {
    $('#start').onclick = async () => {
      try {
        const r = await api('POST', '/instances', { workflow: $('#start-wf').value });
        flash(r.message || `instance ${r.id} started`, 'info');
      } catch (e) {
        flash(e.status === 403 ? `Start refused: your token (${me.role}) may not start instances.`
          : `Start failed: ${e.message}`);
      }
    };
  }
  poll(async (stale) => {
    /* the newest first: walk the pages (ids ascending) and keep the last 200 */
    let all = [], after = 0;
    for (let page = 0; page < 50; page++) {
      const q = new URLSearchParams({ limit: 1000, after });
      if (state) q.set('state', state);
      if (wf) q.set('workflow', wf);
      const r = await api('GET', '/instances?' + q);
      all = all.concat(r.instances).slice(-200);
      if (r.next_after === null) break;
      after = r.next_after;
    }
    if (stale()) return;
    all.reverse();
    $('#instances tbody').innerHTML = all.map((i) =>
      `<tr class="link" data-id="${i.id}"><td>${i.id}</td><td>${esc(i.name)}</td>
       <td>${stateBadge(i.state)}</td><td>${i.run}</td><td>${i.version}</td>
       <td>${fmtTime(i.created_at)}</td><td>${fmtTime(i.started_at)}</td>
       <td>${fmtTime(i.ended_at)}</td></tr>`).join('') ||
      '<tr><td colspan="8" class="muted">no instance</td></tr>';
    $('#more').textContent = all.length >= 200 ? 'the newest 200 are shown' : '';
    document.querySelectorAll('#instances tr.link').forEach((tr) => {
      tr.onclick = () => { location.hash = '#/instance/' + tr.dataset.id; };
    });
  });
}

/* ---- one instance: DAG, Gantt, audit ---------------------------------------------- */

/* Layers by longest path from the roots; x by layer, y by order in the layer. */
function layout(deps) {
  const names = Object.keys(deps), depth = {};
  const visit = (n, seen) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0; /* a cycle cannot be applied; stay finite anyway */
    seen.add(n);
    let d = 0;
    for (const u of deps[n] || []) if (deps[u]) d = Math.max(d, visit(u, seen) + 1);
    depth[n] = d;
    return d;
  };
  names.forEach((n) => visit(n, new Set()));
  const layers = [];
  names.forEach((n) => { (layers[depth[n]] = layers[depth[n]] || []).push(n); });
  const W = 150, H = 34, GX = 60, GY = 18, pos = {};
  layers.forEach((l, x) => l.forEach((n, y) => {
    pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) };
  }));
  const width = 20 + layers.length * (W + GX);
  const height = 20 + Math.max(1, ...layers.map((l) => l.length)) * (H + GY);
  return { pos, W, H, width, height };
}

function dagSvg(deps, tasks) {
  const L = layout(deps), byName = {};
  tasks.forEach((t) => { byName[t.name] = t; });
  let edges = '', nodes = '';
  for (const [n, ups] of Object.entries(deps)) {
    for (const u of ups) {
      if (!L.pos[u]) continue;
      const a = L.pos[u], b = L.pos[n];
      const x1 = a.x + L.W, y1 = a.y + L.H / 2, x2 = b.x, y2 = b.y + L.H / 2;
      const col = byName[u] ? (STATE_COLOR[byName[u].state] || '#9aa3b5') : '#c5cad6';
      edges += `<path d="M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}"
        fill="none" stroke="${col}" stroke-width="2" marker-end="url(#arrow)"/>`;
    }
  }
  for (const n of Object.keys(deps)) {
    const p = L.pos[n], t = byName[n];
    const st = t ? t.state : 'not created';
    const col = t ? (STATE_COLOR[t.state] || '#9aa3b5') : '#ffffff';
    const fg = t ? '#fff' : '#6b7385';
    nodes += `<g class="node" data-task="${esc(n)}" data-id="${t ? t.id : ''}"
      data-state="${esc(st)}" transform="translate(${p.x},${p.y})">
      <title>${esc(n)}: ${esc(st)}</title>
      <rect width="${L.W}" height="${L.H}" rx="6" fill="${col}" stroke="#6b7385"
        stroke-dasharray="${t ? '' : '4 3'}"/>
      <text x="8" y="14" fill="${fg}" font-weight="600">${esc(n.slice(0, 20))}</text>
      <text x="8" y="28" fill="${fg}">${esc(st)}</text></g>`;
  }
  return `<svg width="${L.width}" height="${L.height}" id="dag-svg">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"
      markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7385"/></marker></defs>
    ${edges}${nodes}</svg>`;
}

/* Each task's attempts from the audit: an attempt runs from its dispatch to a worker
 * (DISPATCH or RUNNING_EXECUTION, whichever the log has first) to its next transition
 * out of those. */
const RUNNING = new Set(['DISPATCH', 'RUNNING_EXECUTION']);

function parseTime(t) {
  return Date.parse(String(t).replace(/(\.\d{3})\d*Z$/, '$1Z')); /* ns: ms suffice */
}

function attempts(audit, tasks) {
  const names = {}, bars = [], open = {};
  tasks.forEach((t) => { names[t.id] = t.name; });
  for (const ev of audit) {
    if (ev.machine !== 'task' || !names[ev.id]) continue;
    const at = parseTime(ev.at);
    if (RUNNING.has(ev.to) && !open[ev.id]) {
      open[ev.id] = { id: ev.id, task: names[ev.id], start: at, end: null, state: ev.to };
      bars.push(open[ev.id]);
    } else if (open[ev.id] && RUNNING.has(ev.to)) {
      open[ev.id].state = ev.to;
    } else if (open[ev.id]) {
      open[ev.id].end = at;
      open[ev.id].state = ev.to;
      delete open[ev.id];
    }
  }
  return bars;
}

function gantt(audit, tasks) {
  const bars = attempts(audit, tasks);
  if (!bars.length) return '<p class="muted">no attempt has run yet</p>';
  const now = Date.now();
  const t0 = Math.min(...bars.map((b) => b.start));
  const t1 = Math.max(...bars.map((b) => b.end || now), t0 + 1000);
  const span = t1 - t0;
  return `<div class="muted">${((span) / 1000).toFixed(1)} s from the first start</div>` +
    bars.map((b) => {
      const l = ((b.start - t0) / span) * 100, w = Math.max(0.5, (((b.end || now) - b.start) / span) * 100);
      const secs = (((b.end || now) - b.start) / 1000).toFixed(1);
      return `<div class="row"><span class="label">${esc(b.task)}</span><div class="track">
        <div class="bar" title="${esc(b.task)}: ${esc(b.state)}, ${secs} s"
          style="left:${l}%;width:${w}%;background:${STATE_COLOR[b.state] || '#9aa3b5'}"></div>
        </div></div>`;
    }).join('');
}

function instanceScreen(id) {
  main().innerHTML = `<h2>Instance ${esc(id)} <span id="wf-name"></span>
      <span id="wf-state"></span></h2>
    <div class="actions" id="wf-actions">
      ${controlButton('Pause', `/instances/${id}/pause`, 'operator')}
      ${controlButton('Resume', `/instances/${id}/resume`, 'operator')}
      ${controlButton('Stop', `/instances/${id}/stop`, 'operator', true)}
      ${controlButton('Rerun', `/instances/${id}/rerun`, 'operator')}
      ${controlButton('Recover', `/instances/${id}/recover`, 'operator')}
    </div>
    <div class="card dag" id="dag"></div>
    <div class="grid2">
      <div><h3>Tasks</h3><table id="tasks"><thead><tr><th>ID</th><th>Task</th><th>State</th>
        <th>Attempts</th><th>Worker</th><th>Started</th><th>Ended</th><th></th></tr></thead>
        <tbody></tbody></table>
        <h3>Gantt</h3><div class="card gantt" id="gantt"></div></div>
      <div><h3>Audit</h3><table id="audit"><thead><tr><th>Time</th><th>What</th><th>Event</th>
        <th>From → To</th><th>Actor</th></tr></thead><tbody></tbody></table></div>
    </div>`;
  wireControls($('#wf-actions'));
  let deps = null, defKey = '';
  poll(async (stale) => {
    const [st, audit] = await Promise.all([api('GET', `/instances/${id}`),
      api('GET', `/instances/${id}/audit`)]);
    if (stale()) return;
    const w = st.workflow, tasks = st.tasks;
    const key = w.name + '@' + (st.workflow.version || '');
    if (!deps || key !== defKey) {
      const d = await api('GET', `/definitions/${encodeURIComponent(w.name)}`);
      deps = d.deps || {};
      defKey = key;
    }
    if (stale()) return;
    $('#wf-name').textContent = w.name;
    $('#wf-state').innerHTML = stateBadge(w.state);
    $('#wf-state').dataset.state = w.state;
    /* tasks of this run not in the definition (a newer version's) still show */
    const shown = Object.assign({}, deps);
    tasks.forEach((t) => { if (!shown[t.name]) shown[t.name] = []; });
    $('#dag').innerHTML = dagSvg(shown, tasks);
    $('#dag').querySelectorAll('g.node').forEach((g) => {
      g.onclick = () => { if (g.dataset.id) location.hash = '#/task/' + g.dataset.id; };
    });
    const span = {}; /* first start and last end of each task's attempts */
    attempts(audit, tasks).forEach((b) => {
      span[b.id] = span[b.id] || { start: b.start };
      span[b.id].end = b.end;
    });
    const iso = (ms) => (ms ? new Date(ms).toISOString() : null);
    $('#tasks tbody').innerHTML = tasks.map((t) => `<tr data-task="${esc(t.name)}">
      <td>${t.id}</td><td><a href="#/task/${t.id}">${esc(t.name)}</a></td>
      <td>${stateBadge(t.state)}</td><td>${t.attempts}</td><td>${esc(t.worker)}</td>
      <td>${fmtTime(iso(span[t.id] && span[t.id].start))}</td>
      <td>${fmtTime(iso(span[t.id] && span[t.id].end))}</td>
      <td><a href="#/task/${t.id}">log</a></td></tr>`).join('');
    $('#gantt').innerHTML = gantt(audit, tasks);
    $('#audit tbody').innerHTML = audit.slice(-200).reverse().map((e) => `<tr>
      <td>${fmtTime(e.at)}</td><td>${esc(e.machine)} ${e.id}</td><td>${esc(e.event)}</td>
      <td>${esc(e.from)} → ${esc(e.to)}</td><td>${esc(e.actor)}</td></tr>`).join('');
  });
}

/* ---- a task and its log ----------------------------------------------------------- */

function taskScreen(id) {
  main().innerHTML = `<h2>Task ${esc(id)} <span id="t-name"></span> <span id="t-state"></span></h2>
    <p><a id="t-back" href="#/instances">back to the instance</a></p>
    <div class="actions" id="t-actions">
      ${controlButton('Kill', `/tasks/${id}/kill`, 'operator', true)}
      ${controlButton('Force success', `/tasks/${id}/force-success`, 'operator')}
    </div>
    <p class="muted" id="log-status">reading the log…</p>
    <pre id="log"></pre>`;
  wireControls($('#t-actions'));
  const gen = screenGen;
  poll(async (stale) => {
    const t = await api('GET', `/tasks/${id}`);
    if (stale()) return;
    $('#t-name').textContent = t.name;
    $('#t-state').innerHTML = stateBadge(t.state);
    $('#t-back').href = '#/instance/' + t.workflow_instance;
  });
  /* follow: long polls from the last offset while the task runs */
  (async () => {
    let offset = 0;
    for (;;) {
      if (gen !== screenGen) return;
      let r;
      try {
        r = await api('GET', `/tasks/${id}/logs?follow=1&offset=${offset}`);
      } catch (e) {
        if (gen !== screenGen) return;
        $('#log-status').textContent = `no log yet: ${e.message}`;
        await new Promise((ok) => setTimeout(ok, POLL_MS));
        continue;
      }
      if (gen !== screenGen) return;
      if (r.data) {
        const pre = $('#log');
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent += r.data;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
      offset = r.next_offset;
      $('#log-status').textContent = `attempt ${r.attempt}, ${offset} bytes` +
        (r.running ? ', following' : ', the task has ended');
      if (!r.running && r.eof) {
        /* a rerun or retry may start a new attempt: look again, slowly */
        await new Promise((ok) => setTimeout(ok, POLL_MS * 2));
      }
    }
  })();
}

/* ---- definitions ------------------------------------------------------------------ */

function definitionsScreen() {
  main().innerHTML = `<h2>Definitions</h2><div class="grid2"><div><table id="defs"><thead><tr>
    <th>Workflow</th><th>Latest version</th></tr></thead><tbody></tbody></table></div>
    <div id="def"></div></div>`;
  const show = async (name, version) => {
    const d = await api('GET', `/definitions/${encodeURIComponent(name)}` +
      (version ? `?version=${version}` : ''));
    $('#def').innerHTML = `<h3>${esc(d.name)} version ${d.version} (${d.tasks} tasks)</h3>
      <p>Versions: ${d.versions.map((v) => `<a href="#" data-v="${v}">${v}</a>`).join(' ')}</p>
      <div class="card dag">${dagSvg(d.deps || {}, [])}</div><pre id="yaml"></pre>`;
    $('#yaml').textContent = d.yaml;
    $('#def').querySelectorAll('a[data-v]').forEach((a) => {
      a.onclick = (e) => { e.preventDefault(); show(name, a.dataset.v); };
    });
  };
  (async () => {
    const defs = await api('GET', '/definitions');
    $('#defs tbody').innerHTML = defs.map((d) => `<tr class="link" data-name="${esc(d.name)}">
      <td>${esc(d.name)}</td><td>${d.latest}</td></tr>`).join('') ||
      '<tr><td colspan="2" class="muted">none applied</td></tr>';
    document.querySelectorAll('#defs tr.link').forEach((tr) => {
      tr.onclick = () => show(tr.dataset.name).catch((e) => flash(e.message));
    });
  })().catch((e) => flash(e.message));
}

/* ---- schedules and backfills -------------------------------------------------------- */

function schedulesScreen() {
  main().innerHTML = `<h2>Schedules</h2><table id="schedules"><thead><tr><th>Workflow</th>
    <th>State</th><th>Cron</th><th>Zone</th><th>Next fire times</th><th>Fires</th>
    <th>Skips</th><th>Last fire</th><th></th></tr></thead><tbody></tbody></table>`;
  poll(async (stale) => {
    const list = await api('GET', '/schedules');
    const shown = await Promise.all(list.map((s) =>
      api('GET', `/schedules/${encodeURIComponent(s.workflow)}`).catch(() => s)));
    if (stale()) return;
    $('#schedules tbody').innerHTML = shown.map((s) => {
      const next = (s.next || []).slice(0, 3).map((n) => fmtTime(n.utc || n.at || n)).join('<br>');
      const w = encodeURIComponent(s.workflow);
      return `<tr data-wf="${esc(s.workflow)}"><td>${esc(s.workflow)}</td><td>${stateBadge(s.state)}</td>
        <td><code>${esc(s.cron)}</code></td><td>${esc(s.tz)}</td><td>${next || '-'}</td>
        <td>${s.fires ?? ''}</td><td>${s.skips ?? ''}</td><td>${fmtTime(s.last_fire)}</td>
        <td><div class="actions">${s.state === 'PAUSED'
          ? controlButton('Resume', `/schedules/${w}/resume`, 'operator')
          : controlButton('Pause', `/schedules/${w}/pause`, 'operator')}
          ${controlButton('Trigger', `/schedules/${w}/trigger`, 'operator')}
          ${controlButton('Remove', `/schedules/${w}`, 'operator', true, 'DELETE')}</div></td></tr>`;
    }).join('') || '<tr><td colspan="9" class="muted">no schedule (a workflow\'s schedule: block)</td></tr>';
    wireControls($('#schedules'));
  });
}

/* The backfill form's fields as the API's body: a range, or a list of dates. */
function backfillBody() {
  const v = (id) => $(id).value.trim();
  const body = { workflow: v('#bf-wf'), parallel: Number(v('#bf-parallel') || 1),
    order: $('#bf-order').value };
  if (v('#bf-dates')) body.dates = v('#bf-dates').split(',').map((d) => d.trim()).filter(Boolean);
  else { body.from = v('#bf-from'); body.to = v('#bf-to'); }
  if (v('#bf-tz')) body.tz = v('#bf-tz');
  return body;
}

function backfillForm() {
  if (!may('operator')) return '';
  return `<form class="card filters" id="bf-form">
    <strong>New backfill</strong>
    <label>Workflow <input id="bf-wf" required size="14"></label>
    <label>From <input id="bf-from" placeholder="YYYY-MM-DD" size="11"></label>
    <label>To <input id="bf-to" placeholder="YYYY-MM-DD" size="11"></label>
    <label>or dates <input id="bf-dates" placeholder="D1,D2,..." size="16"></label>
    <label>Zone <input id="bf-tz" placeholder="the schedule's" size="10"></label>
    <label>At a time <input id="bf-parallel" type="number" min="1" max="1000" value="1"
      style="width:4.5em"></label>
    <label>Order <select id="bf-order"><option>asc</option><option>desc</option></select></label>
    <button type="submit" id="bf-create">Create</button></form>`;
}

function backfillsScreen() {
  main().innerHTML = `<h2>Backfills</h2>${backfillForm()}
    <table id="backfills"><thead><tr><th>ID</th>
    <th>Workflow</th><th>State</th><th>Progress</th><th>At a time</th><th>First</th>
    <th>Last</th><th>Created</th><th></th></tr></thead><tbody></tbody></table><div id="bf"></div>`;
  let open = null;
  if ($('#bf-form')) {
    $('#bf-form').onsubmit = async (e) => {
      e.preventDefault();
      try {
        const r = await api('POST', '/backfills', backfillBody());
        open = String(r.id);
        flash(`backfill ${r.id} of ${r.workflow} started: ${r.dates.length} date` +
          (r.dates.length === 1 ? '' : 's'), 'info');
      } catch (err) {
        flash(err.status === 403
          ? `Create refused: your token (${me.role}) may not start backfills. ${err.message}`
          : `Create failed: ${err.message}`);
      }
    };
  }
  poll(async (stale) => {
    const list = await api('GET', '/backfills');
    const one = open ? await api('GET', `/backfills/${open}`) : null;
    if (stale()) return;
    $('#backfills tbody').innerHTML = list.map((b) => `<tr class="link" data-id="${b.id}">
      <td>${b.id}</td><td>${esc(b.workflow)}</td><td>${stateBadge(b.state)}</td>
      <td><span class="bar-outer"><span class="bar-inner" style="display:block;width:${b.total ? (100 * b.started) / b.total : 0}%"></span></span>
        ${b.started}/${b.total}</td><td>${b.parallel}</td><td>${fmtTime(b.first)}</td>
      <td>${fmtTime(b.last)}</td><td>${fmtTime(b.created_at)}</td>
      <td><div class="actions">${b.state === 'RUNNING'
        ? controlButton('Stop', `/backfills/${b.id}/stop`, 'operator', true)
        : b.state === 'STOPPED' ? controlButton('Resume', `/backfills/${b.id}/resume`, 'operator')
          : ''}</div></td></tr>`).join('') ||
      '<tr><td colspan="9" class="muted">no backfill</td></tr>';
    document.querySelectorAll('#backfills tr.link').forEach((tr) => {
      tr.onclick = () => { open = tr.dataset.id; };
    });
    wireControls($('#backfills'));
    $('#bf').innerHTML = one ? `<h3>Backfill ${one.id} of ${esc(one.workflow)}</h3>
      <table id="bf-dates-table"><thead><tr><th>#</th><th>Date</th><th>Instance</th><th>State</th></tr></thead>
      <tbody>${one.dates.map((d, i) => `<tr><td>${i + 1}</td><td>${fmtTime(d.date)}</td>
        <td>${d.instance ? `<a href="#/instance/${d.instance}">${d.instance}</a>` : '-'}</td>
        <td>${stateBadge(d.state)}</td></tr>`).join('')}</tbody></table>` : '';
  });
}

/* ---- state machines ----------------------------------------------------------------- */

/* The server's diagram (laid out by Graphviz) and the transitions of the generated table;
 * they change only with a new build, so the screen reads them once. */
function machinesScreen(name) {
  main().innerHTML = `<h2>State machines</h2><div class="actions" id="sm-tabs"></div>
    <div class="card sm-diagram" id="sm-svg"><span class="muted">laying out…</span></div>
    <div class="grid2"><div><h3>Transitions</h3><table id="sm-trans"><thead><tr><th>From</th>
      <th>Event</th><th>To</th></tr></thead><tbody></tbody></table></div>
      <div><h3>States</h3><table id="sm-states"><thead><tr><th>State</th><th></th></tr></thead>
      <tbody></tbody></table></div></div>`;
  const gen = screenGen;
  (async () => {
    const list = await api('GET', '/statemachines');
    const cur = name || (list[0] && list[0].name);
    if (gen !== screenGen || !cur) return;
    $('#sm-tabs').innerHTML = list.map((m) => `<a class="tab ${m.name === cur ? 'active' : ''}"
      href="#/machines/${encodeURIComponent(m.name)}">${esc(m.name)}</a>`).join('');
    const n = encodeURIComponent(cur);
    const [sm, svg] = await Promise.all([api('GET', `/statemachines/${n}`),
      api('GET', `/statemachines/${n}/svg`, undefined, true)]);
    if (gen !== screenGen) return;
    const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
    const el = document.importNode(doc.documentElement, true);
    el.id = 'sm-diagram';
    el.dataset.machine = sm.name;
    $('#sm-svg').replaceChildren(el);
    $('#sm-trans tbody').innerHTML = sm.transitions.map((t) => `<tr>
      <td>${stateBadge(t.from)}</td><td><code>${esc(t.event)}</code></td>
      <td>${stateBadge(t.to)}</td></tr>`).join('');
    $('#sm-states tbody').innerHTML = sm.states.map((s) => `<tr><td>${stateBadge(s.name)}</td>
      <td class="muted">${s.name === 'NEW' ? 'before it exists' : s.initial ? 'initial'
        : s.final ? 'final' : ''}</td></tr>`).join('');
  })().catch((e) => { if (gen === screenGen) flash(e.message); });
}

/* ---- workers ------------------------------------------------------------------------ */

function workersScreen() {
  main().innerHTML = `<h2>Workers</h2><table id="workers"><thead><tr><th>Name</th><th>Alive</th>
    <th>Groups</th><th>Slots used</th><th>Load</th><th>Free memory</th><th>Heartbeat</th>
    <th>Gauges</th><th>Last error</th></tr></thead><tbody></tbody></table>`;
  poll(async (stale) => {
    const r = await api('GET', '/workers');
    if (stale()) return;
    const list = Array.isArray(r) ? r : r.workers || [];
    $('#workers tbody').innerHTML = list.map((w) => `<tr><td>${esc(w.name)}</td>
      <td>${w.alive ? 'yes' : '<span class="err">no</span>'}</td><td>${esc(w.groups.join(', '))}</td>
      <td><span class="bar-outer"><span class="bar-inner" style="display:block;width:${w.slots ? (100 * w.running) / w.slots : 0}%"></span></span>
        ${w.running}/${w.slots}</td><td>${w.load.toFixed(2)}</td>
      <td>${(w.mem_free / 1048576).toFixed(0)} MiB</td><td>${w.last_heartbeat_s.toFixed(1)} s ago</td>
      <td class="muted">${Object.entries(w.gauges || {}).map(([k, v]) => esc(`${k}=${v}`))
        .join('<br>')}</td>
      <td class="err">${esc(w.last_error)}</td></tr>`).join('') ||
      '<tr><td colspan="9" class="muted">no worker</td></tr>';
  });
}

/* ---- sign in and routing ------------------------------------------------------------ */

function signOut(why) {
  sessionStorage.removeItem('tern-token');
  me = null;
  route(why);
}

function loginScreen(why) {
  main().innerHTML = '';
  main().appendChild($('#login-tpl').content.cloneNode(true));
  $('#login-err').textContent = why || '';
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login').onsubmit = async (e) => {
    e.preventDefault();
    sessionStorage.setItem('tern-token', $('#token').value.trim());
    try {
      me = await api('GET', '/whoami');
      route();
    } catch (err) {
      sessionStorage.removeItem('tern-token');
      loginScreen(err.message);
    }
  };
}

async function route(why) {
  screenGen++;
  clearTimeout(timer);
  if (!sessionStorage.getItem('tern-token')) return loginScreen(why);
  if (!me) {
    try { me = await api('GET', '/whoami'); } catch (e) { return; }
  }
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = `${me.name} (${me.role})`;
  const h = location.hash.slice(1) || '/instances';
  const [path, query] = h.split('?');
  const parts = path.split('/').filter(Boolean);
  document.querySelectorAll('#nav a').forEach((a) => {
    a.classList.toggle('active', a.getAttribute('href').slice(2) === parts[0] ||
      (parts[0] === 'instance' || parts[0] === 'task') && a.getAttribute('href') === '#/instances');
  });
  switch (parts[0]) {
    case 'instance': return instanceScreen(parts[1]);
    case 'task': return taskScreen(parts[1]);
    case 'definitions': return definitionsScreen();
    case 'schedules': return schedulesScreen();
    case 'backfills': return backfillsScreen();
    case 'workers': return workersScreen();
    case 'machines': return machinesScreen(parts[1] && decodeURIComponent(parts[1]));
    default: return instancesScreen(new URLSearchParams(query || ''));
  }
}

window.addEventListener('hashchange', () => { flash(''); route(); });
$('#logout').onclick = () => signOut();
route();
