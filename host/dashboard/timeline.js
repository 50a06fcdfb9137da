// An instance's timeline: one row per task (activity, timer,
// sub-orchestration, event wait, entity call), a bar from when it was
// scheduled to when its answer arrived. Tasks scheduled together (a
// fan-out) show as bars starting at the same time.
//
// Large histories stay responsive: the rows are virtualised (only the
// rows in view exist in the DOM), the overview strip is one canvas, and
// the per-name aggregate is computed once.

const ROW = 22;
const OVERSCAN = 10;
const KINDS = ['activity', 'timer', 'sub-orchestration', 'event', 'entity'];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A duration in ms as people read it. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function maxConcurrency(bars, end) {
  const edges = [];
  for (const b of bars) {
    edges.push([b.scheduledMs, 1]);
    edges.push([b.endedMs ?? end, -1]);
  }
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of edges) {
    now += d;
    if (now > max) max = now;
  }
  return max;
}

function aggregate(bars, end) {
  const groups = new Map();
  for (const b of bars) {
    const key = `${b.kind}\u0000${b.name}`;
    let g = groups.get(key);
    if (!g) {
      g = { kind: b.kind, name: b.name, count: 0, failed: 0, retries: 0, pending: 0, total: 0, max: 0 };
      groups.set(key, g);
    }
    const d = (b.endedMs ?? end) - b.scheduledMs;
    g.count += 1;
    g.total += d;
    g.max = Math.max(g.max, d);
    if (b.outcome === 'failed') g.failed += 1;
    if (b.outcome === 'pending') g.pending += 1;
    g.retries += (b.retries || []).length;
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

function summary(tl, bars, end) {
  const box = el('div', 'tl-summary');
  const byKind = KINDS.map((k) => [k, bars.filter((b) => b.kind === k).length]).filter(([, n]) => n > 0);
  const failed = bars.filter((b) => b.outcome === 'failed').length;
  const pending = bars.filter((b) => b.outcome === 'pending').length;
  const retries = bars.reduce((n, b) => n + (b.retries || []).length, 0);
  const parts = [
    `${bars.length} tasks` + (byKind.length ? ` (${byKind.map(([k, n]) => `${n} ${k}`).join(', ')})` : ''),
    `span ${duration(end - tl.startedMs)}`,
    `at most ${maxConcurrency(bars, end)} at once`,
  ];
  if (failed) parts.push(`${failed} failed`);
  if (retries) parts.push(`${retries} retried attempts`);
  if (pending) parts.push(`${pending} pending`);
  for (const p of parts) box.append(el('span', '', p));
  return box;
}

function legend() {
  const box = el('div', 'tl-legend');
  for (const k of KINDS) {
    const item = el('span');
    const swatch = el('i', `swatch-${k}`);
    item.append(swatch, k);
    box.append(item);
  }
  box.append(el('span', '', 'red: failed · striped: pending · faded: cancelled · tick: a failed attempt'));
  return box;
}

const COLORS = { activity: '#4c6ef5', timer: '#f59f00', 'sub-orchestration': '#12b886', event: '#e64980', entity: '#7950f2' };

function overview(bars, t0, span) {
  const canvas = el('canvas', 'tl-overview');
  canvas.setAttribute('aria-label', 'all tasks at a glance');
  requestAnimationFrame(() => {
    const width = canvas.clientWidth || 800;
    const height = canvas.clientHeight || 48;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const n = bars.length || 1;
    for (let i = 0; i < bars.length; i += 1) {
      const b = bars[i];
      const x = ((b.scheduledMs - t0) / span) * width;
      const w = Math.max(1, (((b.endedMs ?? t0 + span) - b.scheduledMs) / span) * width);
      const y = Math.floor((i / n) * height);
      ctx.fillStyle = b.outcome === 'failed' ? '#c92a2a' : COLORS[b.kind] || '#4c6ef5';
      ctx.fillRect(x, y, w, Math.max(1, height / n));
    }
  });
  return canvas;
}

function axis(t0, span) {
  const box = el('div', 'tl-axis');
  for (let i = 0; i <= 5; i += 1) {
    const tick = el('span', '', `+${duration((span * i) / 5)}`);
    tick.style.left = `${i * 20}%`;
    box.append(tick);
  }
  return box;
}

function aggregateTable(groups) {
  const details = el('details');
  details.append(el('summary', '', `By task name (${groups.length})`));
  const table = el('table');
  const head = el('tr');
  for (const t of ['Kind', 'Name', 'Count', 'Failed', 'Retries', 'Pending', 'Mean', 'Longest']) head.append(el('th', ['Count', 'Failed', 'Retries', 'Pending', 'Mean', 'Longest'].includes(t) ? 'num' : '', t));
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  for (const g of groups) {
    const tr = el('tr');
    tr.append(el('td', '', g.kind), el('td', 'mono', g.name), el('td', 'num', String(g.count)), el('td', 'num', String(g.failed)),
      el('td', 'num', String(g.retries)), el('td', 'num', String(g.pending)), el('td', 'num', duration(g.total / g.count)), el('td', 'num', duration(g.max)));
    tbody.append(tr);
  }
  table.append(thead, tbody);
  details.append(table);
  return details;
}

/**
 * Draws `tl` (the `/admin/instances/{id}/timeline` answer) into `root`.
 * `now` is the end of pending bars while the instance runs.
 */
export function renderTimeline(root, tl, now = Date.now()) {
  root.replaceChildren();
  const bars = tl.bars || [];
  const ends = bars.map((b) => b.endedMs ?? now);
  const end = tl.endedMs ?? Math.max(now, ...ends.slice(0, 1), tl.startedMs + 1);
  const last = bars.reduce((m, b) => Math.max(m, b.endedMs ?? end), end);
  const t0 = tl.startedMs;
  const span = Math.max(1, last - t0);
  root.append(summary(tl, bars, last), legend());
  if (bars.length === 0) {
    root.append(el('p', 'muted', 'This instance scheduled no tasks.'));
    return;
  }
  root.append(overview(bars, t0, span), axis(t0, span));

  const scroll = el('div', 'tl-scroll');
  scroll.setAttribute('role', 'list');
  const spacer = el('div', 'tl-spacer');
  spacer.style.height = `${bars.length * ROW}px`;
  // Short histories take only the room they need.
  scroll.style.height = `${Math.min(420, bars.length * ROW + 2)}px`;
  scroll.append(spacer);
  const tip = el('div', 'tl-tip');
  tip.hidden = true;

  const row = (i) => {
    const b = bars[i];
    const r = el('div', 'tl-row');
    r.setAttribute('role', 'listitem');
    r.style.top = `${i * ROW}px`;
    const label = el('div', 'tl-label');
    label.append(el('span', 'seq', `#${b.seq}`), b.name);
    label.title = `${b.kind} ${b.name}`;
    const track = el('div', 'tl-track');
    const bar = el('div', 'bar');
    bar.dataset.kind = b.kind;
    bar.dataset.outcome = b.outcome;
    bar.dataset.index = String(i);
    const to = b.endedMs ?? last;
    bar.style.left = `${((b.scheduledMs - t0) / span) * 100}%`;
    bar.style.width = `${Math.max(0.15, ((to - b.scheduledMs) / span) * 100)}%`;
    track.append(bar);
    for (const retry of b.retries || []) {
      const mark = el('div', 'retry');
      mark.style.left = `${((retry.failedMs - t0) / span) * 100}%`;
      mark.title = `attempt ${retry.attempt} failed: ${retry.error}`;
      track.append(mark);
    }
    r.append(label, track);
    return r;
  };

  let drawn = [-1, -1];
  const draw = () => {
    const first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - OVERSCAN);
    const count = Math.ceil((scroll.clientHeight || 420) / ROW) + 2 * OVERSCAN;
    const lastRow = Math.min(bars.length, first + count);
    if (drawn[0] === first && drawn[1] === lastRow) return;
    drawn = [first, lastRow];
    const rows = [];
    for (let i = first; i < lastRow; i += 1) rows.push(row(i));
    spacer.replaceChildren(...rows);
  };
  let queued = false;
  scroll.addEventListener('scroll', () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      draw();
    });
  });
  scroll.addEventListener('mouseover', (event) => {
    const target = event.target instanceof Element ? event.target.closest('.bar') : null;
    if (!target) {
      tip.hidden = true;
      return;
    }
    const b = bars[Number(target.dataset.index)];
    const lines = [
      `${b.kind} ${b.name} (#${b.seq})`,
      `scheduled +${duration(b.scheduledMs - t0)}`,
      b.endedMs === null || b.endedMs === undefined ? 'pending' : `${b.outcome} after ${duration(b.endedMs - b.scheduledMs)}`,
    ];
    if (b.detail) lines.push(b.detail);
    for (const r of b.retries || []) lines.push(`attempt ${r.attempt} failed: ${r.error}`);
    tip.textContent = lines.join('\n');
    tip.style.whiteSpace = 'pre-line';
    tip.style.left = `${event.clientX + 12}px`;
    tip.style.top = `${event.clientY + 12}px`;
    tip.hidden = false;
  });
  scroll.addEventListener('mouseleave', () => {
    tip.hidden = true;
  });
  root.append(scroll, tip);
  draw();
  if (bars.length > 1) root.append(aggregateTable(aggregate(bars, last)));
}
