// The Perdure dashboard: a single-page app over the host's own API.
//
// Invariants: every API request sends the `x-perdure-dashboard` header
// (with the HttpOnly session cookie, that is what authenticates it); data
// reaches the page only through textContent, never as HTML; no key is ever
// read, kept or shown by this code.

import { renderTimeline } from './timeline.js';

const DURABLE = '/runtime/webhooks/durabletask';
const STATUSES = ['Pending', 'Running', 'Completed', 'Failed', 'Terminated', 'Suspended', 'ContinuedAsNew'];
const FINISHED = new Set(['Completed', 'Failed', 'Terminated']);
const PAGE_SIZE = 50;
const REFRESH_MS = 2000;

const view = document.getElementById('view');
let timers = [];
// Counts navigations: a page that finishes loading after the next
// navigation began shows nothing and keeps no timer.
let navigation = 0;

/** An element with attributes (`on*` are listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the host's API; resolves to { body, headers }. */
async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const response = await fetch(path, {
    method,
    body,
    credentials: 'same-origin',
    headers: { 'x-perdure-dashboard': '1', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
  });
  if (response.status === 401) {
    // The session ended: back to the login form.
    window.location.assign('/');
    throw new ApiError(401, 'the session has ended; log in again');
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  if (!response.ok) {
    const message = parsed && parsed.error ? parsed.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return { body: parsed, headers: response.headers };
}

function toast(message, bad = false) {
  const note = h('div', { class: bad ? 'toast bad' : 'toast', role: 'status' }, message);
  document.body.append(note);
  setTimeout(() => note.remove(), bad ? 8000 : 3500);
}

function time(iso) {
  if (!iso) return '–';
  const d = typeof iso === 'number' ? new Date(iso) : new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function pretty(value) {
  if (value === undefined) return '–';
  return JSON.stringify(value, null, 2);
}

function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

/** Runs `fn` every `ms` while the page of navigation `token` is shown. */
function every(token, ms, fn) {
  if (token !== navigation) return;
  timers.push(setInterval(fn, ms));
}

/** Shows `nodes` as the page of navigation `token`, unless it is stale. */
function show(token, ...nodes) {
  if (token !== navigation) return false;
  view.replaceChildren(...nodes);
  return true;
}

function failure(error) {
  return h('div', { class: 'panel error', role: 'alert' }, `Could not load: ${error.message}`);
}

// ---------------------------------------------------------------- dialogs

/** Shows the dialog with `fields`; resolves to their values, or null. */
function ask(title, fields, okLabel = 'OK', check = () => null) {
  const dialog = document.getElementById('dialog');
  const body = document.getElementById('dialog-body');
  const error = document.getElementById('dialog-error');
  document.getElementById('dialog-title').textContent = title;
  document.getElementById('dialog-ok').textContent = okLabel;
  error.hidden = true;
  const inputs = fields.map((f) => {
    const input = f.multiline
      ? h('textarea', { id: f.id, name: f.id }, f.value ?? '')
      : h('input', { id: f.id, name: f.id, value: f.value ?? '', placeholder: f.placeholder, required: f.required });
    return [f, input];
  });
  body.replaceChildren(...inputs.map(([f, input]) => h('div', { class: 'field' }, h('label', { for: f.id }, f.label), input)));
  return new Promise((resolve) => {
    const ok = document.getElementById('dialog-ok');
    const cancel = document.getElementById('dialog-cancel');
    const done = (values) => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dialog.close();
      resolve(values);
    };
    const onOk = (event) => {
      event.preventDefault();
      const values = Object.fromEntries(inputs.map(([f, input]) => [f.id, input.value]));
      const problem = check(values);
      if (problem) {
        error.textContent = problem;
        error.hidden = false;
        return;
      }
      done(values);
    };
    const onCancel = () => done(null);
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.showModal();
  });
}

function jsonProblem(text, what) {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    return `${what} is not valid JSON: ${e.message}`;
  }
}

// ---------------------------------------------------------------- instances

function hashParams() {
  const [, query = ''] = window.location.hash.split('?');
  return new URLSearchParams(query);
}

function isoFromLocal(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

async function countsPanel(token, selected) {
  const box = h('div', { class: 'counts', id: 'status-counts' });
  const fill = async () => {
    const { body } = await api('/admin/stats');
    box.replaceChildren(
      ...STATUSES.map((s) =>
        h(
          'div',
          {
            class: selected.includes(s) ? 'count selected' : 'count',
            dataset: { status: s },
            title: `show ${s} instances`,
            onclick: () => {
              window.location.hash = `#/instances?status=${s}`;
            },
          },
          h('div', { class: 'n' }, String(body.instances[s] ?? 0)),
          h('div', { class: 'label' }, s),
        ),
      ),
      h('div', { class: 'count', title: 'activity work items not yet completed' }, h('div', { class: 'n' }, String(body.workItems)), h('div', { class: 'label' }, 'work items queued')),
      h('div', { class: 'count', title: 'durable timers not yet fired' }, h('div', { class: 'n' }, String(body.timersPending)), h('div', { class: 'label' }, 'timers pending')),
    );
  };
  await fill();
  every(token, REFRESH_MS, () => fill().catch(() => {}));
  return box;
}

async function orchestratorNames() {
  const { body } = await api('/admin/functions');
  return body.apps.flatMap((app) => app.functions.filter((f) => f.kind === 'orchestrator').map((f) => f.name));
}

async function instancesPage(token) {
  const params = hashParams();
  const selected = (params.get('status') || '').split(',').filter(Boolean);
  const names = await orchestratorNames().catch(() => []);
  const counts = await countsPanel(token, selected);

  const nameInput = h('input', { id: 'filter-name', list: 'orchestrator-names', value: params.get('name') || '', placeholder: 'any' });
  const prefixInput = h('input', { id: 'filter-prefix', value: params.get('prefix') || '', placeholder: 'any' });
  const fromInput = h('input', { id: 'filter-from', type: 'datetime-local', value: params.get('from') || '' });
  const toInput = h('input', { id: 'filter-to', type: 'datetime-local', value: params.get('to') || '' });
  const boxes = STATUSES.map((s) => h('input', { type: 'checkbox', value: s, checked: selected.includes(s) }));
  const apply = (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const statuses = boxes.filter((b) => b.checked).map((b) => b.value);
    if (statuses.length) next.set('status', statuses.join(','));
    if (nameInput.value.trim()) next.set('name', nameInput.value.trim());
    if (prefixInput.value.trim()) next.set('prefix', prefixInput.value.trim());
    if (fromInput.value) next.set('from', fromInput.value);
    if (toInput.value) next.set('to', toInput.value);
    window.location.hash = `#/instances?${next}`;
  };
  const filters = h(
    'form',
    { class: 'panel row', id: 'filters', onsubmit: apply },
    h('div', {}, h('label', { for: 'filter-name' }, 'Orchestrator'), nameInput, h('datalist', { id: 'orchestrator-names' }, names.map((n) => h('option', { value: n })))),
    h('div', {}, h('label', {}, 'Status'), h('div', { class: 'statuses' }, boxes.map((b, i) => h('label', {}, b, STATUSES[i])))),
    h('div', {}, h('label', { for: 'filter-from' }, 'Created from'), fromInput),
    h('div', {}, h('label', { for: 'filter-to' }, 'Created to'), toInput),
    h('div', {}, h('label', { for: 'filter-prefix' }, 'Id prefix'), prefixInput),
    h('button', { type: 'submit', class: 'primary' }, 'Apply'),
    h('a', { href: '#/instances' }, 'Clear'),
  );

  const tbody = h('tbody', { id: 'instance-rows' });
  const pageInfo = h('span', { class: 'muted' });
  const prev = h('button', { type: 'button', id: 'page-prev' }, '← Previous');
  const next = h('button', { type: 'button', id: 'page-next' }, 'Next →');
  const tokens = [null];
  let page = 0;
  let nextToken = null;
  const load = async () => {
    const query = new URLSearchParams({ top: String(PAGE_SIZE) });
    if (selected.length) query.set('runtimeStatus', selected.join(','));
    if (params.get('name')) query.set('name', params.get('name'));
    if (params.get('prefix')) query.set('instanceIdPrefix', params.get('prefix'));
    const from = isoFromLocal(params.get('from'));
    const to = isoFromLocal(params.get('to'));
    if (from) query.set('createdTimeFrom', from);
    if (to) query.set('createdTimeTo', to);
    const headers = tokens[page] ? { 'x-ms-continuation-token': tokens[page] } : {};
    const { body, headers: answer } = await api(`${DURABLE}/instances?${query}`, { headers });
    nextToken = answer.get('x-ms-continuation-token');
    tbody.replaceChildren(
      ...body.map((i) =>
        h(
          'tr',
          { class: 'instance-row', dataset: { id: i.instanceId } },
          h('td', { class: 'mono' }, h('a', { href: `#/instance/${encodeURIComponent(i.instanceId)}` }, i.instanceId)),
          h('td', {}, i.name),
          h('td', {}, badge(i.runtimeStatus)),
          h('td', {}, time(i.createdTime)),
          h('td', {}, time(i.lastUpdatedTime)),
          h('td', { class: 'mono' }, i.customStatus === null || i.customStatus === undefined ? '' : JSON.stringify(i.customStatus).slice(0, 80)),
        ),
      ),
    );
    if (body.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No instances match.')));
    prev.disabled = page === 0;
    next.disabled = !nextToken;
    pageInfo.textContent = `page ${page + 1}`;
  };
  prev.addEventListener('click', () => {
    page = Math.max(0, page - 1);
    load().catch((e) => toast(e.message, true));
  });
  next.addEventListener('click', () => {
    if (!nextToken) return;
    tokens[page + 1] = nextToken;
    page += 1;
    load().catch((e) => toast(e.message, true));
  });
  await load();
  const table = h(
    'table',
    { id: 'instances' },
    h('thead', {}, h('tr', {}, ['Instance', 'Orchestrator', 'Status', 'Created', 'Updated', 'Custom status'].map((t) => h('th', {}, t)))),
    tbody,
  );
  show(
    token,
    h('h1', {}, 'Instances'),
    counts,
    filters,
    h('div', { class: 'panel' }, table, h('div', { class: 'pager' }, prev, next, pageInfo, h('button', { type: 'button', onclick: () => load().catch((e) => toast(e.message, true)) }, 'Refresh'))),
  );
}

// ---------------------------------------------------------------- one instance

function instancePath(id) {
  return `${DURABLE}/instances/${encodeURIComponent(id)}`;
}

function actionButtons(id, status, reload) {
  const finished = FINISHED.has(status);
  const run = async (label, call, after) => {
    try {
      const result = await call();
      toast(label);
      if (after) after(result);
      await reload();
    } catch (e) {
      toast(`${label} failed: ${e.message}`, true);
    }
  };
  const raise = async () => {
    const values = await ask(
      'Raise an event',
      [
        { id: 'event-name', label: 'Event name', placeholder: 'ApprovalEvent', required: true },
        { id: 'event-data', label: 'Data (JSON)', value: 'null', multiline: true },
      ],
      'Raise',
      (v) => (!v['event-name'].trim() ? 'Name the event.' : jsonProblem(v['event-data'] || 'null', 'The data')),
    );
    if (!values) return;
    const name = values['event-name'].trim();
    await run(`Event ${name} raised`, () => api(`${instancePath(id)}/raiseEvent/${encodeURIComponent(name)}`, { method: 'POST', body: values['event-data'] || 'null' }));
  };
  const terminate = async () => {
    const values = await ask('Terminate the instance', [{ id: 'terminate-reason', label: 'Reason', value: 'terminated from the dashboard' }], 'Terminate');
    if (!values) return;
    await run('Terminated', () => api(`${instancePath(id)}/terminate?reason=${encodeURIComponent(values['terminate-reason'])}`, { method: 'POST' }));
  };
  const purge = async () => {
    const values = await ask('Purge the instance', [{ id: 'purge-confirm', label: `Type the instance id to delete it and its history for good`, required: true }], 'Purge', (v) => (v['purge-confirm'] === id ? null : 'That is not the instance id.'));
    if (!values) return;
    try {
      await api(instancePath(id), { method: 'DELETE' });
      toast('Purged');
      window.location.hash = '#/instances';
    } catch (e) {
      toast(`Purge failed: ${e.message}`, true);
    }
  };
  const upgrade = () =>
    run('Upgrade checked', () => api(`/admin/instances/${encodeURIComponent(id)}/upgrade`, { method: 'POST' }), ({ body }) => {
      toast(body.upgraded ? `Upgraded to ${body.toDigest}` : body.reason);
    });
  return h(
    'div',
    { class: 'actions' },
    h('button', { id: 'action-raise', type: 'button', disabled: finished, onclick: raise }, 'Raise event…'),
    h('button', { id: 'action-suspend', type: 'button', disabled: finished || status === 'Suspended', onclick: () => run('Suspended', () => api(`${instancePath(id)}/suspend`, { method: 'POST' })) }, 'Suspend'),
    h('button', { id: 'action-resume', type: 'button', disabled: status !== 'Suspended', onclick: () => run('Resumed', () => api(`${instancePath(id)}/resume`, { method: 'POST' })) }, 'Resume'),
    h('button', { id: 'action-restart', type: 'button', onclick: () => run('Restarted', () => api(`${instancePath(id)}/restart`, { method: 'POST' }), ({ body }) => body && body.id && (window.location.hash = `#/instance/${encodeURIComponent(body.id)}`)) }, 'Restart'),
    h('button', { id: 'action-upgrade', type: 'button', disabled: finished, title: 'move to the app\'s current version if its journal replays identically', onclick: upgrade }, 'Upgrade (replay-checked)'),
    h('button', { id: 'action-terminate', type: 'button', class: 'danger', disabled: finished, onclick: terminate }, 'Terminate…'),
    h('button', { id: 'action-purge', type: 'button', class: 'danger', disabled: !finished, onclick: purge }, 'Purge…'),
  );
}

function logsPanel(id) {
  const tbody = h('tbody', { id: 'log-rows' });
  const more = h('button', { type: 'button', id: 'logs-more', hidden: true }, 'Load more');
  let after = 0;
  const load = async () => {
    const { body } = await api(`/admin/instances/${encodeURIComponent(id)}/logs?top=200&after=${after}`);
    for (const line of body.lines) {
      const source = line.taskId === null || line.taskId === undefined ? line.function : `${line.function} #${line.taskId} (attempt ${line.attempt})`;
      tbody.append(h('tr', {}, h('td', {}, time(line.time)), h('td', {}, h('span', { class: `lvl ${line.level}` }, line.level)), h('td', {}, source), h('td', { class: 'msg' }, line.message)));
      after = line.id;
    }
    more.hidden = !body.next;
    if (!tbody.children.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: 4, class: 'muted' }, 'Nothing logged yet.')));
  };
  more.addEventListener('click', () => load().catch((e) => toast(e.message, true)));
  const panel = h('div', { class: 'panel logs' }, h('h2', {}, 'Guest logs'), h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Level', 'From', 'Message'].map((t) => h('th', {}, t)))), tbody), more);
  return { panel, load };
}

async function instancePage(token, id) {
  const [status, timeline] = await Promise.all([api(`${instancePath(id)}?showInput=true`), api(`/admin/instances/${encodeURIComponent(id)}/timeline`)]);
  const s = status.body;
  const tl = timeline.body;
  const reload = () => route();
  const statusBadge = h('span', { id: 'instance-status', class: `badge ${s.runtimeStatus}` }, s.runtimeStatus);
  const details = h(
    'dl',
    { class: 'kv' },
    h('dt', {}, 'Orchestrator'), h('dd', {}, s.name),
    h('dt', {}, 'App'), h('dd', {}, tl.app),
    h('dt', {}, 'Version'), h('dd', { class: 'mono', title: tl.digest }, tl.digest.replace(/^sha256:/, '').slice(0, 16)),
    h('dt', {}, 'Created'), h('dd', {}, time(s.createdTime)),
    h('dt', {}, 'Updated'), h('dd', { id: 'instance-updated' }, time(s.lastUpdatedTime)),
    s.parentInstanceId ? [h('dt', {}, 'Parent'), h('dd', {}, h('a', { href: `#/instance/${encodeURIComponent(s.parentInstanceId)}` }, s.parentInstanceId))] : null,
  );
  const timelineBox = h('div', { id: 'timeline' });
  const logs = logsPanel(id);
  if (!show(
    token,
    h('p', {}, h('a', { href: '#/instances' }, '← Instances')),
    h('h1', {}, h('span', { class: 'mono' }, id), ' ', statusBadge),
    actionButtons(id, s.runtimeStatus, reload),
    h('div', { class: 'grid2' }, h('div', { class: 'panel' }, details), h('div', { class: 'panel' }, h('h2', {}, 'Custom status'), h('pre', { id: 'custom-status' }, pretty(s.customStatus)))),
    h('div', { class: 'grid2' }, h('div', { class: 'panel' }, h('h2', {}, 'Input'), h('pre', {}, pretty(s.input))), h('div', { class: 'panel' }, h('h2', {}, 'Output'), h('pre', { id: 'instance-output' }, pretty(s.output)))),
    h('div', { class: 'panel' }, h('h2', {}, 'Timeline'), timelineBox),
    logs.panel,
  )) return;
  const drawn = performance.now();
  renderTimeline(timelineBox, tl);
  document.body.dataset.timelineMs = String(Math.round(performance.now() - drawn));
  document.body.dataset.timelineBars = String(tl.bars.length);
  await logs.load().catch((e) => toast(e.message, true));
  if (!FINISHED.has(s.runtimeStatus)) {
    // While it runs: follow its status; redraw everything when it changes.
    every(token, REFRESH_MS, async () => {
      const { body } = await api(`${instancePath(id)}?showInput=false`).catch(() => ({ body: null }));
      if (body && (body.runtimeStatus !== s.runtimeStatus || body.lastUpdatedTime !== s.lastUpdatedTime)) route();
    });
  }
}

// ---------------------------------------------------------------- apps

async function appsPage(token) {
  const { body } = await api('/admin/functions');
  const panels = body.apps.map((app) => {
    const rows = app.functions.map((f) => {
      const counts = (app.invocations || {})[f.name] || { total: 0, failed: 0 };
      const rate = counts.total ? `${((100 * counts.failed) / counts.total).toFixed(1)} %` : '–';
      const route = f.http ? `/api/${f.http.route}` : '';
      return h(
        'tr',
        { class: 'function-row', dataset: { name: f.name } },
        h('td', { class: 'mono' }, f.name),
        h('td', {}, f.kind),
        h('td', { class: 'mono' }, route),
        h('td', {}, f.http ? (f.http.methods.length ? f.http.methods.join(', ') : 'any') : ''),
        h('td', {}, f.http ? f.http.authLevel : ''),
        h('td', { class: 'num' }, String(counts.total)),
        h('td', { class: 'num' }, String(counts.failed)),
        h('td', { class: 'num' }, rate),
      );
    });
    return h(
      'div',
      { class: 'panel app', dataset: { app: app.name } },
      h('h2', {}, app.name),
      h(
        'dl',
        { class: 'kv' },
        h('dt', {}, 'File'), h('dd', { class: 'mono' }, app.file),
        h('dt', {}, 'Digest'), h('dd', { class: 'mono' }, app.digest || '–'),
        h('dt', {}, 'Loaded'), h('dd', {}, app.loadedTime ? `${time(app.loadedTime)} (${app.loadMs?.toFixed?.(1) ?? '?'} ms, compiled code: ${app.compiledCode})` : '–'),
        app.lastError ? [h('dt', {}, 'Load error'), h('dd', { class: 'error' }, `${app.lastError.message} (${time(app.lastError.time)})`)] : null,
      ),
      rows.length
        ? h('table', {}, h('thead', {}, h('tr', {}, ['Function', 'Kind', 'Route', 'Methods', 'Auth', 'Invocations', 'Failed', 'Error rate'].map((t) => h('th', { class: ['Invocations', 'Failed', 'Error rate'].includes(t) ? 'num' : '' }, t)))), h('tbody', {}, rows))
        : h('p', { class: 'muted' }, 'No functions (the app failed to load).'),
    );
  });
  show(token, h('h1', {}, 'Apps & functions'), ...(panels.length ? panels : [h('p', { class: 'muted' }, 'No apps in the functions folder yet: drop a .wasm into it.')]));
}

// ---------------------------------------------------------------- entities

async function entitiesPage(token) {
  const { body } = await api('/admin/functions');
  const names = body.apps.flatMap((app) => app.functions.filter((f) => f.kind === 'entity').map((f) => f.name));
  const panels = await Promise.all(
    names.map(async (name) => {
      const { body: entities } = await api(`${DURABLE}/entities/${encodeURIComponent(name)}?fetchState=true&top=200`);
      const rows = entities.map((e) => h('tr', { class: 'entity-row', dataset: { key: e.entityId.key } }, h('td', { class: 'mono' }, e.entityId.key), h('td', {}, h('pre', {}, pretty(e.state))), h('td', {}, time(e.lastOperationTime))));
      return h(
        'div',
        { class: 'panel', dataset: { entity: name } },
        h('h2', {}, name),
        rows.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Key', 'State', 'Last operation'].map((t) => h('th', {}, t)))), h('tbody', {}, rows)) : h('p', { class: 'muted' }, 'No entities with state yet.'),
      );
    }),
  );
  show(token, h('h1', {}, 'Entities'), ...(panels.length ? panels : [h('p', { class: 'muted' }, 'No entity functions are loaded.')]));
}

// ---------------------------------------------------------------- cluster

async function clusterPage(token) {
  const { body } = await api('/admin/cluster');
  if (!body.shared) {
    show(token, h('h1', {}, 'Cluster'), h('p', { class: 'muted' }, 'This host has its database to itself (SQLite): there are no other hosts. Several hosts share a PostgreSQL database.'));
    return;
  }
  const hosts = body.hosts.map((host) =>
    h(
      'tr',
      { class: 'host-row', dataset: { host: host.id } },
      h('td', { class: 'mono' }, host.thisHost ? `${host.id} (this host)` : host.id),
      h('td', { class: 'mono' }, host.address),
      h('td', { class: host.alive ? '' : 'error' }, host.alive ? 'alive' : 'no live lease'),
      h('td', { class: 'num' }, String(host.partitions)),
      h('td', { class: 'num' }, String(host.activitiesLeased)),
      h('td', {}, time(host.lastHeartbeat)),
      h('td', {}, time(host.startedTime)),
    ),
  );
  const partitions = body.partitions.map((p) =>
    h(
      'tr',
      { class: 'partition-row', dataset: { partition: String(p.id) } },
      h('td', { class: 'num' }, String(p.id)),
      h('td', { class: 'mono' }, p.owner || '–'),
      h('td', { class: 'num' }, String(p.epoch)),
      h('td', { class: p.expired ? 'muted' : '' }, p.leaseUntil ? time(p.leaseUntil) : 'free'),
    ),
  );
  const table = (heads, rows, numeric) => h('table', {}, h('thead', {}, h('tr', {}, heads.map((t) => h('th', { class: numeric.includes(t) ? 'num' : '' }, t)))), h('tbody', {}, rows));
  show(
    token,
    h('h1', {}, 'Cluster'),
    h('p', { class: 'muted' }, `Lease ${body.leaseMs} ms; database time ${time(body.databaseTime)}.`),
    h('div', { class: 'panel' }, h('h2', {}, 'Hosts'), table(['Host', 'Address', 'Lease', 'Partitions', 'Activities', 'Last heartbeat', 'Started'], hosts, ['Partitions', 'Activities'])),
    h('div', { class: 'panel' }, h('h2', {}, 'Partitions'), table(['Partition', 'Owner', 'Epoch', 'Lease until'], partitions, ['Partition', 'Epoch'])),
  );
  timers.push(setInterval(() => { if (token === navigation) route(); }, REFRESH_MS * 2));
}

// ---------------------------------------------------------------- routing

async function route() {
  navigation += 1;
  const token = navigation;
  for (const t of timers) clearInterval(t);
  timers = [];
  const hash = window.location.hash || '#/instances';
  const [path] = hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean);
  for (const link of document.querySelectorAll('[data-nav]')) link.classList.toggle('active', link.dataset.nav === (parts[0] === 'instance' ? 'instances' : parts[0] || 'instances'));
  try {
    if (parts[0] === 'instance' && parts[1]) await instancePage(token, decodeURIComponent(parts.slice(1).join('/')));
    else if (parts[0] === 'apps') await appsPage(token);
    else if (parts[0] === 'entities') await entitiesPage(token);
    else if (parts[0] === 'cluster') await clusterPage(token);
    else await instancesPage(token);
    if (token !== navigation) return;
    document.body.dataset.page = parts[0] || 'instances';
    // Which navigation is shown (tests wait for it).
    document.body.dataset.route = hash;
  } catch (e) {
    if (e.status !== 401) show(token, failure(e));
  }
}

window.addEventListener('hashchange', route);
route();
