// The jobs dashboard: plain JavaScript, no framework, no build step, nothing fetched but
// this server's own API (see /api/v1/jobs/openapi.json).
//
// Pages are hash routes (#/overview, #/jobs, #/jobs/<id>, #/schedules, #/dlq, #/enqueue)
// rendered into <main>. One ticker refreshes the current page every few seconds.

const API = 'api/v1/jobs';
const REFRESH_MS = 3000;
const TOKEN_KEY = 'jobs.dashboard.token';
const SAMPLES_KEY = 'jobs.dashboard.samples.v1';
const PRIORITIES = ['critical', 'high', 'normal', 'low'];
const HOUR_MS = 3600_000;
const MINUTE_MS = 60_000;

// ---------------------------------------------------------------------------------------
// DOM helpers

/** Creates an element: h('a', {href: '#'}, 'text', child, [more]). Text is never HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`, skipping null and flattening arrays (unlike replaceChildren). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------------------
// Formatting

function fmtNum(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/** 2025-01-01 08:00:00 UTC */
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} UTC`;
}

function fmtDuration(secs) {
  const a = Math.abs(secs);
  if (a < 1) return `${Math.round(a * 1000)} ms`;
  if (a < 60) return `${Math.round(a)} s`;
  if (a < 3600) return `${Math.round(a / 60)} min`;
  if (a < 86400 * 2) return `${Math.round(a / 3600)} h`;
  return `${Math.round(a / 86400)} days`;
}

function relTime(iso, now = Date.now()) {
  if (!iso) return '';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const secs = (t - now) / 1000;
  if (Math.abs(secs) < 1.5) return 'now';
  return secs > 0 ? `in ${fmtDuration(secs)}` : `${fmtDuration(secs)} ago`;
}

/** A <time> element: absolute UTC, with the relative time after it. */
function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const rel = relTime(iso);
  return h('time', { datetime: iso, title: iso }, fmtTime(iso),
    rel ? h('span', { class: 'rel' }, ` (${rel})`) : null);
}

function fmtSeconds(n) {
  if (typeof n !== 'number' || Number.isNaN(n)) return '–';
  if (n >= 120) return `${fmtNum(n)} s (${fmtDuration(n)})`;
  if (n >= 1 || n === 0) return `${Math.round(n * 100) / 100} s`;
  return `${Math.round(n * 1000)} ms`;
}

function pretty(v) {
  return JSON.stringify(v, null, 2);
}

// The id's last 8 hex digits: a UUIDv7 begins with its timestamp, so jobs created in the
// same second share their first digits, while its tail is random. The full id stays in the
// link's target and title.
function shortId(id) {
  return String(id).slice(-8);
}

// ---------------------------------------------------------------------------------------
// Schedules in words

const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTH_NAMES = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
  'September', 'October', 'November', 'December'];
const DOW_ALIASES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const MON_ALIASES = { jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

function plural(n, unit) {
  return n === 1 ? unit : `${n} ${unit}s`;
}

/** "every 5 minutes", "every hour", "every 90 seconds". */
function intervalWords(secs) {
  if (!Number.isFinite(secs) || secs <= 0) return `every ${secs} seconds`;
  for (const [size, unit] of [[86400, 'day'], [3600, 'hour'], [60, 'minute']]) {
    if (secs % size === 0) return `every ${plural(secs / size, unit)}`;
  }
  return `every ${plural(secs, 'second')}`;
}

function ordinal(n) {
  const r10 = n % 10, r100 = n % 100;
  if (r10 === 1 && r100 !== 11) return `${n}st`;
  if (r10 === 2 && r100 !== 12) return `${n}nd`;
  if (r10 === 3 && r100 !== 13) return `${n}rd`;
  return `${n}th`;
}

/** A list of plain numbers ("5", "1,3", "1-5"), or null when the field is not one. */
function expandField(field, lo, hi, aliases) {
  const out = [];
  for (const part of field.toLowerCase().split(',')) {
    const m = part.match(/^([a-z0-9]+)(?:-([a-z0-9]+))?$/);
    if (!m) return null;
    const num = (x) => (aliases && x in aliases ? aliases[x] : /^\d+$/.test(x) ? Number(x) : NaN);
    const a = num(m[1]);
    const b = m[2] === undefined ? a : num(m[2]);
    if (Number.isNaN(a) || Number.isNaN(b) || a < lo || b > hi || a > b) return null;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return [...new Set(out)].sort((x, y) => x - y);
}

function joinWords(items) {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function daysWords(dows) {
  const set = new Set(dows.map((d) => d % 7));
  const sorted = [...set].sort((a, b) => a - b);
  const key = sorted.join(',');
  if (key === '1,2,3,4,5') return 'weekdays';
  if (key === '0,6') return 'weekends';
  if (sorted.length === 7) return null;
  // Monday first reads better in a list.
  const order = sorted.filter((d) => d !== 0).concat(sorted.includes(0) ? [0] : []);
  return joinWords(order.map((d) => `${DAY_NAMES[d]}s`));
}

/**
 * A 5-field cron expression in words: "every 5 minutes", "daily at 08:00 UTC",
 * "Sundays at 04:00 UTC". Falls back to the expression itself when it has no short reading.
 */
function cronWords(expr, tz) {
  const zone = tz && tz !== 'UTC' ? tz : 'UTC';
  const f = String(expr || '').trim().split(/\s+/);
  if (f.length !== 5) return `cron ${expr}`;
  const [min, hour, dom, mon, dow] = f;
  const raw = `cron ${expr}${zone === 'UTC' ? '' : ` (${zone})`}`;
  const anyDay = dom === '*' && mon === '*' && dow === '*';

  // Minute-level repetition.
  if (anyDay && hour === '*') {
    if (min === '*') return 'every minute';
    let m = min.match(/^(?:\*|0)\/(\d+)$/);
    if (m) return intervalWords(Number(m[1]) * 60);
    const mins = expandField(min, 0, 59);
    if (mins && mins.length === 1) return `every hour at :${pad2(mins[0])}`;
    if (mins) return `every hour at ${joinWords(mins.map((x) => `:${pad2(x)}`))}`;
    return raw;
  }
  const mins = expandField(min, 0, 59);
  if (!mins || mins.length !== 1) return raw;
  const mm = pad2(mins[0]);

  // Hour-level repetition.
  const step = hour.match(/^(?:\*|0)\/(\d+)$/);
  if (anyDay && step) {
    const n = Number(step[1]);
    return `every ${plural(n, 'hour')} at :${mm}${zone === 'UTC' ? '' : ` (${zone})`}`;
  }
  const hours = expandField(hour, 0, 23);
  if (!hours) return raw;
  const at = `at ${joinWords(hours.map((x) => `${pad2(x)}:${mm}`))} ${zone}`;

  if (anyDay) return `daily ${at}`;
  if (dom === '*' && mon === '*') {
    const dows = expandField(dow, 0, 7, DOW_ALIASES);
    if (!dows) return raw;
    const days = daysWords(dows);
    return days ? `${days[0].toUpperCase()}${days.slice(1)} ${at}` : `daily ${at}`;
  }
  if (dow === '*') {
    const doms = expandField(dom, 1, 31);
    if (!doms) return raw;
    const on = `on the ${joinWords(doms.map(ordinal))}`;
    if (mon === '*') return `monthly ${on} ${at}`;
    const mons = expandField(mon, 1, 12, MON_ALIASES);
    if (!mons) return raw;
    if (mons.length === 1 && doms.length === 1) return `yearly on ${MONTH_NAMES[mons[0] - 1]} ${doms[0]} ${at}`;
    return `${on} of ${joinWords(mons.map((x) => MONTH_NAMES[x - 1]))} ${at}`;
  }
  return raw;
}

/** Reads a schedule in either the API's shape ({schedule: {type, ...}}) or the flat one. */
function scheduleParts(task) {
  const sch = task.schedule && typeof task.schedule === 'object' ? task.schedule : {};
  const type = sch.type || task.schedule_type;
  return {
    type,
    seconds: sch.seconds ?? task.interval_seconds,
    expression: sch.expression ?? task.cron_expression,
    timezone: sch.timezone ?? task.timezone,
    at: sch.at ?? task.run_at,
  };
}

function scheduleWords(task) {
  const p = scheduleParts(task);
  if (p.type === 'interval') return intervalWords(Number(p.seconds));
  if (p.type === 'cron') return cronWords(p.expression, p.timezone);
  if (p.type === 'once') return `once, at ${fmtTime(p.at)}`;
  return String(p.type || 'unknown');
}

function scheduleRaw(task) {
  const p = scheduleParts(task);
  if (p.type === 'interval') return `interval ${p.seconds}s`;
  if (p.type === 'cron') return `${p.expression}${p.timezone ? ` ${p.timezone}` : ''}`;
  if (p.type === 'once') return p.at || '';
  return '';
}

// ---------------------------------------------------------------------------------------
// The API client

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let tokenPrompt = null;

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Asks for the token once, however many requests are waiting for it. */
function askToken(rejected) {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      const dlg = $('#token-dialog');
      const input = $('#token-input');
      const err = $('#token-error');
      err.hidden = !rejected;
      err.textContent = rejected ? 'That token was refused. Try again.' : '';
      input.value = '';
      const done = (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        if (!v) return;
        sessionStorage.setItem(TOKEN_KEY, v);
        $('#token-form').removeEventListener('submit', done);
        dlg.close();
        tokenPrompt = null;
        $('#signout').hidden = false;
        resolve(v);
      };
      $('#token-form').addEventListener('submit', done);
      // Escape must not leave the page without a way to sign in.
      dlg.addEventListener('cancel', (ev) => ev.preventDefault(), { once: true });
      dlg.showModal();
      input.focus();
    });
  }
  return tokenPrompt;
}

async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(`${API}/${path}`, init);
    } catch (e) {
      throw new ApiError(0, 'network', `cannot reach the server: ${e.message}`);
    }
    if (res.status === 401 && attempt < 20) {
      await askToken(Boolean(t));
      continue;
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      const e = data && data.error ? data.error : {};
      throw new ApiError(res.status, e.code || `http_${res.status}`, e.message || text || res.statusText);
    }
    return data;
  }
}

// ---------------------------------------------------------------------------------------
// Throughput: per-minute buckets of processed and failed jobs over the last hour.
//
// Preferred source: the backend's time-bucketed counters (GET stats/throughput), which every
// runner feeds and which survive a reload. Until the server has them, the dashboard keeps its
// own samples of the deployment's monotonic counters (from `stats`) in localStorage and
// charts their differences, so the chart still works and a reload keeps what was seen.

const throughput = {
  source: 'unknown', // 'backend' | 'samples'
  samples: loadSamples(),
};

function loadSamples() {
  try {
    const raw = JSON.parse(localStorage.getItem(SAMPLES_KEY) || '[]');
    const cutoff = Date.now() - HOUR_MS - 5 * MINUTE_MS;
    return Array.isArray(raw) ? raw.filter((x) => x && x.t > cutoff) : [];
  } catch {
    return [];
  }
}

function recordSample(counters) {
  if (!counters) return;
  const now = Date.now();
  const last = throughput.samples[throughput.samples.length - 1];
  if (last && now - last.t < 2000) return;
  throughput.samples.push({ t: now, c: counters.completed, f: counters.failed });
  const cutoff = now - HOUR_MS - 5 * MINUTE_MS;
  while (throughput.samples.length && throughput.samples[0].t < cutoff) throughput.samples.shift();
  try {
    localStorage.setItem(SAMPLES_KEY, JSON.stringify(throughput.samples));
  } catch {
    /* storage full or disabled: keep the samples in memory */
  }
}

/** 60 buckets, oldest first: {start (ms), processed, failed}. */
function bucketsFromSamples(samples, now = Date.now()) {
  const end = Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  const start = end - 60 * MINUTE_MS;
  const buckets = Array.from({ length: 60 }, (_, i) => ({ start: start + i * MINUTE_MS, processed: 0, failed: 0, known: false }));
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dc = b.c - a.c, df = b.f - a.f;
    if (dc < 0 || df < 0 || b.t <= a.t) continue; // counters reset (namespace flushed)
    // Spread the difference over the minutes between the two samples.
    const from = Math.max(a.t, start), to = b.t;
    if (to <= from) continue;
    const span = b.t - a.t;
    for (let t = Math.floor(from / MINUTE_MS) * MINUTE_MS; t < to; t += MINUTE_MS) {
      const idx = (t - start) / MINUTE_MS;
      if (idx < 0 || idx >= 60) continue;
      const overlap = Math.min(to, t + MINUTE_MS) - Math.max(a.t, t);
      if (overlap <= 0) continue;
      const share = overlap / span;
      buckets[idx].processed += (dc + df) * share;
      buckets[idx].failed += df * share;
      buckets[idx].known = true;
    }
  }
  for (const b of buckets) {
    b.processed = Math.round(b.processed);
    b.failed = Math.round(b.failed);
  }
  return buckets;
}

/** Normalises the backend's answer to the same buckets, or null when it has none. */
function bucketsFromBackend(data) {
  if (!data || !Array.isArray(data.buckets)) return null;
  return data.buckets.map((b) => {
    const completed = Number(b.completed ?? 0);
    const failed = Number(b.failed ?? 0);
    const processed = b.processed !== undefined ? Number(b.processed) : completed + failed;
    return { start: new Date(b.start).getTime(), processed, failed, known: true };
  });
}

async function loadThroughput() {
  if (throughput.source !== 'samples') {
    try {
      const data = await api('GET', 'stats/throughput?minutes=60');
      const buckets = bucketsFromBackend(data);
      if (buckets) {
        throughput.source = 'backend';
        return buckets;
      }
    } catch (e) {
      if (e.status !== 404 && e.status !== 405 && e.status !== 501) throw e;
    }
    throughput.source = 'samples';
  }
  return bucketsFromSamples(throughput.samples);
}

function niceMax(v) {
  if (v <= 4) return 4;
  const mag = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= v) return m * mag;
  return 10 * mag;
}

/** The throughput chart as inline SVG: bars of processed jobs, failed ones in red. */
function throughputChart(buckets, width) {
  const W = Math.max(360, Math.round(width || 720)), H = 220, L = 44, R = 8, T = 12, B = 28;
  const iw = W - L - R, ih = H - T - B;
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.processed)));
  const bw = iw / buckets.length;
  const y = (v) => T + ih - (v / max) * ih;
  const total = buckets.reduce((a, b) => a + b.processed, 0);
  const failed = buckets.reduce((a, b) => a + b.failed, 0);
  const label = `Jobs per minute over the last hour: ${total} processed, ${failed} failed.`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label, width: W, height: H });
  svg.append(s('title', {}, label));
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmtNum(Math.round(v * 10) / 10)));
  }
  buckets.forEach((b, i) => {
    const x = L + i * bw + 1;
    const w = Math.max(1, bw - 2);
    const g = s('g', { class: 'bucket' });
    const d = new Date(b.start);
    g.append(s('title', {}, `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())} UTC: ${b.processed} processed, ${b.failed} failed`));
    // A transparent hit area makes the tooltip reachable on empty minutes too.
    g.append(s('rect', { x: x - 1, y: T, width: bw, height: ih, class: 'hit' }));
    if (b.processed > 0) g.append(s('rect', { x, y: y(b.processed), width: w, height: y(0) - y(b.processed), class: 'bar ok' }));
    if (b.failed > 0) g.append(s('rect', { x, y: y(b.failed), width: w, height: y(0) - y(b.failed), class: 'bar failed' }));
    svg.append(g);
  });
  for (const [i, text] of [[0, '-60 min'], [15, '-45'], [30, '-30'], [45, '-15'], [59, 'now']]) {
    svg.append(s('text', { x: L + i * bw + bw / 2, y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 59 ? 'end' : 'middle', class: 'axis' }, text));
  }
  svg.append(s('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), class: 'baseline' }));
  return svg;
}

// ---------------------------------------------------------------------------------------
// Shared page pieces

function flash(message, kind = 'ok', link) {
  const el = $('#flash');
  fill(el, [h('span', {}, message), link || null,
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => { el.hidden = true; } }, '×')]);
  el.className = `flash ${kind}`;
  el.hidden = false;
  clearTimeout(flash.timer);
  if (kind === 'ok') flash.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' },
    h('strong', {}, e.status ? `${e.status} ${e.code}` : 'Error'), ': ', e.message);
}

function confirmDialog(text, yes = 'Confirm') {
  return new Promise((resolve) => {
    const dlg = $('#confirm-dialog');
    $('#confirm-text').textContent = text;
    $('#confirm-yes').textContent = yes;
    dlg.returnValue = '';
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    $('#confirm-no').focus();
  });
}

function statusPill(status) {
  return h('span', { class: `pill status-${status}` }, status);
}

function priorityPill(p) {
  return h('span', { class: `pill prio-${p}` }, p);
}

function jobLink(id, text) {
  return h('a', { href: `#/jobs/${encodeURIComponent(id)}`, class: 'mono', title: id }, text || shortId(id));
}

function card(label, value, opts = {}) {
  return h('div', { class: `card ${opts.class || ''}`, dataset: { stat: opts.key || label } },
    h('div', { class: 'card-label' }, label),
    h('div', { class: 'card-value', dataset: { value: String(value ?? '') } }, opts.href
      ? h('a', { href: opts.href }, fmtNum(value)) : fmtNum(value)),
    opts.sub ? h('div', { class: 'card-sub' }, opts.sub) : null);
}

function table(caption, head, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows)));
}

/** Runs `fn` with the button disabled, reporting a failure in the flash. */
async function busy(btn, fn) {
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    await fn();
  } catch (e) {
    flash(e.message, 'bad');
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------
// Pages. Each is {title, render(root, params), refresh?(root, params)}; refresh is called
// by the ticker and must not disturb what the user is typing.

const state = { stats: null, lastStatsAt: 0 };

async function loadStats() {
  const stats = await api('GET', 'stats');
  state.stats = stats;
  state.lastStatsAt = Date.now();
  recordSample(stats.queue && stats.queue.counters);
  const n = stats.queue ? stats.queue.dead_letter : 0;
  const badge = $('#nav-dlq');
  badge.textContent = n ? fmtNum(n) : '';
  badge.hidden = !n;
  return stats;
}

const pages = {};

pages.overview = {
  title: 'Overview',
  render(root) {
    root.append(
      h('h1', {}, 'Overview'),
      h('section', { 'aria-labelledby': 'q-title' },
        h('h2', { id: 'q-title' }, 'Queues'),
        h('div', { id: 'queue-cards', class: 'cards' }),
        h('h3', { class: 'sub-head' }, 'Totals since the deployment started'),
        h('div', { id: 'total-cards', class: 'cards' })),
      h('section', { 'aria-labelledby': 't-title' },
        h('div', { class: 'section-head' },
          h('h2', { id: 't-title' }, 'Throughput, last hour'),
          h('div', { class: 'legend' },
            h('span', { class: 'key ok' }), 'processed per minute',
            h('span', { class: 'key failed' }), 'failed')),
        h('div', { id: 'chart', class: 'chart-wrap' }),
        h('p', { id: 'chart-note', class: 'muted small' })),
      h('section', { 'aria-labelledby': 'w-title' },
        h('h2', { id: 'w-title' }, 'Workers'),
        h('div', { id: 'workers' })),
      h('section', { 'aria-labelledby': 's-title' },
        h('h2', { id: 's-title' }, 'Scheduler'),
        h('div', { id: 'scheduler-cards', class: 'cards' })),
    );
  },
  async refresh(root) {
    const stats = await loadStats();
    const q = stats.queue;
    const c = q.counters || {};
    $('#queue-cards', root).replaceChildren(
      ...PRIORITIES.map((p) => card(p[0].toUpperCase() + p.slice(1), q.pending[p], {
        key: `pending-${p}`, class: `prio-${p}`, href: `#/jobs?priority=${p}`, sub: 'pending' })),
      card('Scheduled', q.scheduled, { key: 'scheduled', sub: `${fmtNum(q.retrying || 0)} of them retrying` }),
      card('Processing', q.processing, { key: 'processing', sub: 'running now' }),
      card('Dead letters', q.dead_letter, { key: 'dead_letter', class: q.dead_letter ? 'alert' : '', href: '#/dlq', sub: 'failed for good' }),
    );
    $('#total-cards', root).replaceChildren(
      card('Enqueued', c.enqueued, { key: 'enqueued', sub: 'total' }),
      card('Completed', c.completed, { key: 'completed', sub: 'total' }),
      card('Failed', c.failed, { key: 'failed', sub: 'attempts, total' }),
      card('Retried', c.retried, { key: 'retried', sub: 'total' }),
      card('Dead-lettered', c.dead, { key: 'dead', sub: 'total' }),
      card('Cancelled', c.cancelled, { key: 'cancelled', sub: 'total' }),
    );
    const buckets = await loadThroughput();
    const chartBox = $('#chart', root);
    chartBox.replaceChildren(throughputChart(buckets, chartBox.clientWidth - 16));
    $('#chart-note', root).textContent = throughput.source === 'backend'
      ? 'Per-minute counters kept by the backend, for every runner of the deployment.'
      : 'Measured by this browser from the deployment\'s counters while a dashboard page was open; minutes without a sample show nothing.';
    const workers = stats.workers || [];
    $('#workers', root).replaceChildren(table('Live workers', [
      'Worker', 'Status', 'Host', 'Running', 'Processed', 'Succeeded', 'Failed', 'Success rate', 'Avg. time', 'Started',
    ], workers.map((w) => h('tr', { dataset: { worker: w.worker_id } },
      h('td', { class: 'mono' }, w.worker_id),
      h('td', {}, statusPill(w.status)),
      h('td', {}, `${w.host ?? ''}${w.pid ? ` (pid ${w.pid})` : ''}`),
      h('td', { class: 'num' }, `${fmtNum(w.in_flight)} / ${fmtNum(w.concurrency)}`),
      h('td', { class: 'num' }, fmtNum(w.jobs_processed)),
      h('td', { class: 'num' }, fmtNum(w.jobs_succeeded)),
      h('td', { class: 'num' }, fmtNum(w.jobs_failed)),
      h('td', { class: 'num' }, `${(Math.round((w.success_rate ?? 0) * 100) / 100).toFixed(2)} %`),
      h('td', { class: 'num' }, fmtSeconds(w.average_processing_time)),
      h('td', {}, timeEl(w.started_at)))), 'No live workers: no runner has sent a heartbeat lately.'));
    const sch = stats.scheduler;
    $('#scheduler-cards', root).replaceChildren(...(sch ? [
      card('Schedules', sch.total_tasks, { key: 'total_tasks', href: '#/schedules', sub: sch.running ? 'scheduler running here' : 'scheduler not running here' }),
      card('Enabled', sch.enabled_tasks, { key: 'enabled_tasks' }),
      card('Disabled', sch.disabled_tasks, { key: 'disabled_tasks' }),
      card('Due now', sch.due_tasks, { key: 'due_tasks' }),
    ] : [h('p', { class: 'muted wide-cell' }, 'This server has no scheduler.')]));
  },
};

// The states the Jobs page has a tab for (`GET jobs?state=`), with what their time column
// shows and how a count is read from the queue stats (completed and cancelled jobs are not
// counted: one retention index holds both).
const STATES = [
  { name: 'pending', label: 'Pending', count: (q) => q.total_pending },
  { name: 'scheduled', label: 'Scheduled', time: ['Due', 'scheduled_at'], count: (q) => q.scheduled - q.retrying, about: 'delayed jobs, latest due first' },
  { name: 'retrying', label: 'Retries', time: ['Next attempt', 'scheduled_at'], count: (q) => q.retrying, about: 'failed attempts waiting for their backoff, latest due first' },
  { name: 'running', label: 'Busy', time: ['Started', 'started_at'], count: (q) => q.processing, about: 'leased to a worker, by lease deadline' },
  { name: 'completed', label: 'Completed', time: ['Finished', 'completed_at'], about: 'within the retention period, newest first' },
  { name: 'cancelled', label: 'Cancelled', time: ['Finished', 'completed_at'], about: 'within the retention period, newest first' },
  { name: 'failed', label: 'Dead', time: ['Failed', 'completed_at'], count: (q) => q.dead_letter, about: 'the dead-letter queue, newest first' },
];

function stateOf(params) {
  const s = params.get('state');
  return STATES.find((x) => x.name === s) || STATES[0];
}

/** `#/jobs?…` with `params` changed by `set` (null removes a key). */
function jobsHref(params, set) {
  const p = new URLSearchParams(params);
  p.delete('id');
  for (const [k, v] of Object.entries(set)) {
    if (v === null || v === '') p.delete(k); else p.set(k, v);
  }
  const q = p.toString();
  return q ? `#/jobs?${q}` : '#/jobs';
}

pages.jobs = {
  title: 'Jobs',
  render(root, params) {
    const st = stateOf(params);
    const prio = PRIORITIES.includes(params.get('priority')) ? params.get('priority') : '';
    const lookup = h('form', { class: 'inline-form', id: 'lookup', onsubmit: (ev) => {
      ev.preventDefault();
      const id = $('#lookup-id').value.trim();
      const err = $('#lookup-error');
      if (!/^[0-9a-fA-F-]{32,36}$/.test(id)) {
        err.textContent = 'A job id is a UUID, like 0190f5c2-7a3b-7c1d-9e2f-0123456789ab.';
        err.hidden = false;
        $('#lookup-id').setAttribute('aria-invalid', 'true');
        return;
      }
      location.hash = `#/jobs/${encodeURIComponent(id)}`;
    } },
    h('label', { for: 'lookup-id' }, 'Look up a job by id'),
    h('input', { id: 'lookup-id', name: 'id', type: 'search', placeholder: 'job id (UUID)', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'lookup-error', required: true, class: 'mono wide' }),
    h('button', { type: 'submit', class: 'primary' }, 'Look up'),
    h('p', { id: 'lookup-error', class: 'field-error', hidden: true }));
    const stateTabs = h('nav', { class: 'tabs', id: 'state-tabs', 'aria-label': 'Job state' },
      STATES.map((x) => h('a', {
        href: x.name === 'pending' ? '#/jobs' : `#/jobs?state=${x.name}`,
        class: x === st ? 'tab current' : 'tab',
        'aria-current': x === st ? 'page' : null,
        dataset: { state: x.name },
      }, x.label, h('span', { class: 'count', dataset: { stateCount: x.name } }))));
    root.append(h('h1', {}, 'Jobs'), lookup, stateTabs);
    if (st.name === 'pending') {
      const filter = h('div', { class: 'tabs', role: 'group', 'aria-label': 'Priority' },
        ['', ...PRIORITIES].map((p) => h('a', {
          href: p ? `#/jobs?priority=${p}` : '#/jobs',
          class: p === prio ? 'tab current' : 'tab',
          'aria-current': p === prio ? 'page' : null,
          dataset: { priority: p || 'all' },
        }, p || 'all', h('span', { class: 'count', dataset: { countFor: p || 'all' } }))));
      root.append(
        h('section', { 'aria-labelledby': 'p-title' },
          h('h2', { id: 'p-title' }, 'Pending', prio ? ` (${prio})` : '', h('span', { class: 'muted small' }, ' ready to run, in the order they will run')),
          filter,
          h('div', { id: 'pending' }),
          h('p', { id: 'elsewhere', class: 'muted small' })));
      return;
    }
    const filters = h('form', { class: 'inline-form', id: 'state-filter', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = jobsHref(params, { name: $('#filter-name').value.trim(), user_id: $('#filter-user').value.trim(), cursor: null });
    } },
    h('label', { for: 'filter-name' }, 'Handler'),
    h('input', { id: 'filter-name', name: 'name', type: 'search', value: params.get('name') || '', autocomplete: 'off', spellcheck: 'false' }),
    h('label', { for: 'filter-user' }, 'User'),
    h('input', { id: 'filter-user', name: 'user_id', type: 'search', value: params.get('user_id') || '', autocomplete: 'off', spellcheck: 'false' }),
    h('button', { type: 'submit' }, 'Filter'));
    root.append(
      h('section', { 'aria-labelledby': 's-title' },
        h('h2', { id: 's-title' }, st.label, h('span', { class: 'muted small' }, ` ${st.about}`)),
        filters,
        h('div', { id: 'bulk-actions', class: 'actions' }),
        h('div', { id: 'state-jobs' }, h('p', { class: 'muted' }, 'Loading…')),
        h('p', { id: 'state-pager', class: 'small' })));
  },
  async refresh(root, params) {
    const st = stateOf(params);
    const countTabs = (q) => {
      for (const el of root.querySelectorAll('[data-state-count]')) {
        const x = STATES.find((y) => y.name === el.dataset.stateCount);
        el.textContent = x && x.count ? ` ${fmtNum(x.count(q))}` : '';
      }
    };
    if (st.name !== 'pending') {
      const query = new URLSearchParams({ state: st.name, limit: '100' });
      for (const k of ['name', 'user_id', 'cursor']) if (params.get(k)) query.set(k, params.get(k));
      const [stats, page] = await Promise.all([loadStats(), api('GET', `jobs?${query}`)]);
      countTabs(stats.queue);
      const [timeLabel, timeField] = st.time;
      const retryable = st.name === 'retrying' || st.name === 'failed';
      const filtered = params.get('name') || params.get('user_id');
      $('#state-jobs', root).replaceChildren(table(`${st.label} jobs`, ['Id', 'Handler', 'User', timeLabel, 'Attempt', 'Retries', 'Error', 'Arguments', ''],
        page.jobs.map((j) => h('tr', { dataset: { job: j.id } },
          h('td', {}, jobLink(j.id)),
          h('td', {}, j.name),
          h('td', {}, j.user_id || ''),
          h('td', {}, timeEl(j[timeField])),
          h('td', { class: 'num' }, String(j.attempt)),
          h('td', { class: 'num' }, `${j.retry_count} / ${j.max_retries}`),
          h('td', { class: 'err' }, j.error || ''),
          h('td', { class: 'mono clip', title: JSON.stringify(j.args) }, JSON.stringify(j.args)),
          h('td', {}, retryable ? h('button', { type: 'button', class: 'primary', 'aria-label': `Retry job ${j.id} now`, onclick: (ev) => busy(ev.currentTarget, async () => {
            await api('POST', `job/${encodeURIComponent(j.id)}/retry`);
            flash('The job is back in its queue: ', 'ok', jobLink(j.id, j.id));
            await pages.jobs.refresh(root, params);
          }) }, 'Retry now') : ''))),
        page.next_cursor
          ? `No ${filtered ? 'matching ' : ''}jobs among the 1,000 looked at: see the older ones.`
          : `No ${filtered ? 'matching ' : ''}jobs here (${st.about}).`));
      // One action on every job of this page (the same state, filters and cursor), each
      // in its own step on the server; a job that moved on meanwhile is reported.
      const bulk = (action, label, cls) => h('button', { type: 'button', class: cls, dataset: { bulk: action }, onclick: async (ev) => {
        const btn = ev.currentTarget;
        const n = page.jobs.length;
        if (!(await confirmDialog(`${label} the ${fmtNum(n)} ${st.label.toLowerCase()} job${n === 1 ? '' : 's'} shown?${action === 'delete' ? ' This cannot be undone.' : ''}`, label))) return;
        await busy(btn, async () => {
          const body = { action, state: st.name, limit: 100 };
          for (const k of ['name', 'user_id', 'cursor']) if (params.get(k)) body[k] = params.get(k);
          const r = await api('POST', 'jobs/bulk', body);
          const missed = r.failures.length ? ` ${fmtNum(r.failures.length)} had moved on: ${r.failures[0].error}` : '';
          flash(`${label}: ${fmtNum(r.succeeded)} of ${fmtNum(r.matched)} jobs.${missed}`, r.failures.length ? 'bad' : 'ok');
          await pages.jobs.refresh(root, params);
        });
      } }, `${label} ${fmtNum(page.jobs.length)} shown`);
      const actions = [];
      if (page.jobs.length) {
        if (retryable) actions.push(bulk('retry', 'Retry', 'primary'));
        if (['scheduled', 'retrying', 'running'].includes(st.name)) actions.push(bulk('cancel', 'Cancel', ''));
        if (['completed', 'cancelled', 'failed'].includes(st.name)) actions.push(bulk('delete', 'Delete', 'danger'));
      }
      $('#bulk-actions', root).replaceChildren(...actions);
      const pager = [];
      if (params.get('cursor')) pager.push(h('a', { href: jobsHref(params, { cursor: null }), id: 'state-newest' }, '← Newest'), ' ');
      if (page.next_cursor) pager.push(h('a', { href: jobsHref(params, { cursor: page.next_cursor }), id: 'state-older' }, 'Older →'));
      fill($('#state-pager', root), ...pager);
      return;
    }
    const prio = PRIORITIES.includes(params.get('priority')) ? params.get('priority') : '';
    const [stats, list] = await Promise.all([
      loadStats(),
      api('GET', `pending?limit=100${prio ? `&priority=${prio}` : ''}`),
    ]);
    countTabs(stats.queue);
    const pend = stats.queue.pending;
    const q = stats.queue;
    fill($('#elsewhere', root), `Not listed here: ${fmtNum(q.scheduled)} scheduled for later (${fmtNum(q.retrying)} of them retrying), `,
      `${fmtNum(q.processing)} running, and `, h('a', { href: '#/dlq' }, `${fmtNum(q.dead_letter)} in the dead-letter queue`), ': see their tabs.');
    for (const el of root.querySelectorAll('[data-count-for]')) {
      const k = el.dataset.countFor;
      el.textContent = ` ${fmtNum(k === 'all' ? stats.queue.total_pending : pend[k])}`;
    }
    $('#pending', root).replaceChildren(table('Pending jobs', ['Id', 'Handler', 'Priority', 'Created', 'Due', 'Retries', 'Arguments'],
      list.jobs.map((j) => h('tr', { dataset: { job: j.id } },
        h('td', {}, jobLink(j.id)),
        h('td', {}, j.name),
        h('td', {}, priorityPill(j.priority)),
        h('td', {}, timeEl(j.created_at)),
        h('td', {}, timeEl(j.scheduled_at)),
        h('td', { class: 'num' }, `${j.retry_count} / ${j.max_retries}`),
        h('td', { class: 'mono clip', title: JSON.stringify(j.args) }, JSON.stringify(j.args)))),
      'No jobs waiting: the workers are keeping up.'));
  },
};

const FINISHED = new Set(['completed', 'failed', 'cancelled']);

pages.job = {
  title: 'Job',
  render(root, params) {
    root.append(
      h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
      h('h1', {}, 'Job ', h('span', { class: 'mono' }, params.get('id'))),
      h('div', { id: 'job-detail' }, h('p', { class: 'muted' }, 'Loading…')));
  },
  async refresh(root, params) {
    const id = params.get('id');
    const box = $('#job-detail', root);
    let job;
    try {
      job = await api('GET', `job/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404 || e.status === 400) {
        box.replaceChildren(errorBox(e));
        return;
      }
      throw e;
    }
    const key = JSON.stringify(job);
    if (box.dataset.key === key) {
      // Only the relative times move.
      for (const t of box.querySelectorAll('time .rel')) t.textContent = ` (${relTime(t.parentElement.getAttribute('datetime'))})`;
      return;
    }
    box.dataset.key = key;
    const canCancel = !FINISHED.has(job.status);
    const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-job', onclick: async (ev) => {
      const btn = ev.currentTarget;
      const running = job.status === 'running';
      if (!(await confirmDialog(running
        ? `Job ${job.id} is running: ask its worker to stop it?`
        : `Cancel job ${job.id}? It will never run.`, running ? 'Ask to stop' : 'Cancel job'))) return;
      await busy(btn, async () => {
        const r = await api('POST', `job/${encodeURIComponent(job.id)}/cancel`);
        flash(r.outcome === 'requested' ? 'The worker has been asked to stop the job.' : 'Job cancelled.');
        box.dataset.key = '';
        await pages.job.refresh(root, params);
      });
    } }, job.status === 'running' ? 'Ask to stop' : 'Cancel job');
    const field = (k, v) => [h('dt', {}, k), h('dd', { dataset: { field: k } }, v)];
    fill(box,
      h('div', { class: 'job-head' }, statusPill(job.status), priorityPill(job.priority), h('strong', {}, job.name),
        canCancel ? cancel : null),
      job.error ? h('div', { class: 'error', role: 'note' }, h('strong', {}, 'Error: '), job.error) : null,
      h('dl', { class: 'fields' },
        field('id', h('span', { class: 'mono' }, job.id)),
        field('name', job.name),
        field('status', job.status),
        field('priority', job.priority),
        field('queue', job.queue ?? 'default'),
        field('attempt', fmtNum(job.attempt)),
        field('retries', `${job.retry_count} of ${job.max_retries}`),
        field('timeout', fmtSeconds(Number(job.timeout))),
        field('user', job.user_id ?? '–'),
        field('created', timeEl(job.created_at)),
        field('scheduled', timeEl(job.scheduled_at)),
        field('started', timeEl(job.started_at)),
        field('finished', timeEl(job.completed_at)),
        job.progress ? field('progress', h('span', { class: 'progress-field' },
          h('progress', { max: '100', value: String(job.progress.percent), 'aria-label': 'progress' }),
          ` ${Math.round(job.progress.percent * 10) / 10}%`,
          job.progress.message ? ` ${job.progress.message}` : '')) : null),
      h('div', { class: 'json-pair' },
        h('section', { 'aria-labelledby': 'args-title' }, h('h2', { id: 'args-title' }, 'Arguments'),
          h('pre', { class: 'json', id: 'job-args', tabindex: '0' }, pretty(job.args))),
        h('section', { 'aria-labelledby': 'result-title' }, h('h2', { id: 'result-title' }, 'Result'),
          job.result === null || job.result === undefined
            ? h('p', { class: 'muted' }, job.status === 'completed' ? 'The handler returned nothing.' : 'No result yet.')
            : h('pre', { class: 'json', id: 'job-result', tabindex: '0' }, pretty(job.result)))));
  },
};

pages.schedules = {
  title: 'Schedules',
  render(root) {
    root.append(h('h1', {}, 'Schedules'), h('div', { id: 'schedules' }, h('p', { class: 'muted' }, 'Loading…')));
  },
  async refresh(root) {
    const box = $('#schedules', root);
    let data;
    try {
      data = await api('GET', 'scheduled');
    } catch (e) {
      if (e.status === 501) {
        box.replaceChildren(h('p', { class: 'muted' }, 'This server has no scheduler.'));
        return;
      }
      throw e;
    }
    const tasks = data.tasks || [];
    const action = (label, cls, path, done) => h('button', { type: 'button', class: cls, onclick: (ev) => busy(ev.currentTarget, async () => {
      const r = await api('POST', path);
      done(r);
      await pages.schedules.refresh(root);
    }) }, label);
    box.replaceChildren(table('Schedules', ['Name', 'Job', 'When', 'Priority', 'State', 'Last run', 'Next run', 'Runs', 'Actions'],
      tasks.map((t) => {
        const n = encodeURIComponent(t.name);
        return h('tr', { dataset: { schedule: t.name } },
          h('th', { scope: 'row' }, t.name),
          h('td', {}, t.job_name),
          h('td', {}, h('span', { class: 'words' }, scheduleWords(t)), h('br'), h('code', { class: 'small muted' }, scheduleRaw(t))),
          h('td', {}, priorityPill(t.priority)),
          h('td', {}, h('span', { class: `pill ${t.enabled ? 'on' : 'off'}`, dataset: { enabled: String(t.enabled) } }, t.enabled ? 'enabled' : 'disabled')),
          h('td', {}, timeEl(t.last_run), t.last_job_id ? [h('br'), jobLink(t.last_job_id, `job ${shortId(t.last_job_id)}`)] : null),
          h('td', {}, t.enabled ? timeEl(t.next_run) : h('span', { class: 'muted' }, '–')),
          h('td', { class: 'num' }, fmtNum(t.run_count)),
          h('td', {}, h('div', { class: 'actions' },
            t.enabled
              ? action('Disable', '', `scheduled/${n}/disable`, () => flash(`Schedule ${t.name} disabled.`))
              : action('Enable', '', `scheduled/${n}/enable`, () => flash(`Schedule ${t.name} enabled.`)),
            action('Run now', 'primary', `scheduled/${n}/run`, (r) => flash(`Schedule ${t.name} enqueued a job: `, 'ok', jobLink(r.job_id, r.job_id))))));
      }), 'No schedules registered.'));
  },
};

pages.queues = {
  title: 'Queues',
  render(root) {
    root.append(
      h('h1', {}, 'Queues'),
      h('p', { class: 'muted' }, 'Ready jobs per queue and priority. A paused queue keeps its jobs, in order, and takes enqueues; no worker of any runner takes its jobs until it is resumed.'),
      h('div', { id: 'queues' }, h('p', { class: 'muted' }, 'Loading…')));
  },
  async refresh(root) {
    const data = await api('GET', 'queues');
    const toggle = (q) => {
      const n = encodeURIComponent(q.name);
      const label = q.paused ? 'Resume' : 'Pause…';
      return h('button', { type: 'button', class: q.paused ? 'primary' : '', 'aria-label': `${q.paused ? 'Resume' : 'Pause'} queue ${q.name}`, onclick: async (ev) => {
        const btn = ev.currentTarget;
        if (!q.paused && !(await confirmDialog(`Pause queue ${q.name}? No worker takes its jobs until it is resumed.`, 'Pause'))) return;
        await busy(btn, async () => {
          const r = await api('POST', `queues/${n}/${q.paused ? 'resume' : 'pause'}`);
          flash(`Queue ${r.name} ${r.paused ? 'paused' : 'resumed'}${r.changed ? '' : ' (it was already)'}.`);
          await pages.queues.refresh(root);
        });
      } }, label);
    };
    $('#queues', root).replaceChildren(table('Queues', ['Queue', 'State', 'Ready', ...PRIORITIES.map((p) => p[0].toUpperCase() + p.slice(1)), ''],
      (data.queues || []).map((q) => h('tr', { dataset: { queue: q.name } },
        h('th', { scope: 'row' }, q.name),
        h('td', {}, h('span', { class: `pill ${q.paused ? 'off' : 'on'}`, dataset: { paused: String(q.paused) } }, q.paused ? 'paused' : 'active')),
        h('td', { class: 'num', dataset: { total: String(q.total_pending) } }, fmtNum(q.total_pending)),
        ...PRIORITIES.map((p) => h('td', { class: 'num' }, fmtNum(q.pending[p]))),
        h('td', {}, h('div', { class: 'actions' }, toggle(q))))),
      'No queues.'));
  },
};

pages.limits = {
  title: 'Limits',
  render(root) {
    root.append(
      h('h1', {}, 'Limits'),
      h('p', { class: 'muted' }, 'The rate and concurrency limiters in use, for every runner of the deployment: the starts in the current window (rate) or the jobs holding a slot (concurrency), and the jobs parked waiting for a slot. A parked job is pending; it never holds up other keys.'),
      h('p', { id: 'limits-parked', class: 'muted' }),
      h('div', { id: 'limits' }, h('p', { class: 'muted' }, 'Loading…')));
  },
  async refresh(root) {
    const data = await api('GET', 'limits');
    $('#limits-parked', root).textContent = `${fmtNum(data.parked)} job${data.parked === 1 ? '' : 's'} parked in all.`;
    const when = (t) => (t ? fmtTime(t) : '—');
    $('#limits', root).replaceChildren(table('Limiters', ['Key', 'Kind', 'Limit', 'In use', 'Parked', 'Next slot', 'Held until'],
      (data.limiters || []).map((l) => h('tr', { dataset: { limiter: l.name } },
        h('th', { scope: 'row' }, h('code', {}, l.key)),
        h('td', {}, l.kind),
        h('td', { class: 'num' }, l.per_ms == null ? `${fmtNum(l.max)} at once` : `${fmtNum(l.max)} / ${fmtNum(l.per_ms)} ms`),
        h('td', { class: 'num', dataset: { inUse: String(l.in_use) } }, fmtNum(l.in_use)),
        h('td', { class: 'num', dataset: { parked: String(l.parked) } }, fmtNum(l.parked)),
        h('td', {}, when(l.next_slot_at)),
        h('td', {}, when(l.blocked_until)))),
      'No limiter in use.'));
  },
};

pages.dlq = {
  title: 'Dead letters',
  render(root) {
    root.append(
      h('div', { class: 'section-head' },
        h('h1', {}, 'Dead letters'),
        h('button', { type: 'button', class: 'danger', id: 'clear-dlq', onclick: async (ev) => {
          const btn = ev.currentTarget;
          const n = state.stats ? state.stats.queue.dead_letter : null;
          const text = `Delete ${n === null ? 'every' : `all ${fmtNum(n)}`} dead-letter job${n === 1 ? '' : 's'}? This cannot be undone.`;
          if (!(await confirmDialog(text, 'Delete all'))) return;
          await busy(btn, async () => {
            const r = await api('DELETE', 'dlq');
            flash(`Deleted ${fmtNum(r.cleared)} dead-letter job${r.cleared === 1 ? '' : 's'}.`);
            await pages.dlq.refresh(root);
          });
        } }, 'Clear all…')),
      h('p', { class: 'muted' }, 'Jobs that failed their last attempt. Retry puts one back in its queue with its retries reset.'),
      h('div', { id: 'dlq' }, h('p', { class: 'muted' }, 'Loading…')));
  },
  async refresh(root) {
    const [, data] = await Promise.all([loadStats(), api('GET', 'dlq?limit=200')]);
    $('#clear-dlq', root).disabled = data.jobs.length === 0;
    $('#dlq', root).replaceChildren(table('Dead-letter jobs', ['Id', 'Handler', 'Error', 'Retries', 'Failed', 'Priority', ''],
      data.jobs.map((j) => h('tr', { dataset: { job: j.id } },
        h('td', {}, jobLink(j.id)),
        h('td', {}, j.name),
        h('td', { class: 'err' }, j.error || ''),
        h('td', { class: 'num' }, `${j.retry_count} / ${j.max_retries}`),
        h('td', {}, timeEl(j.completed_at)),
        h('td', {}, priorityPill(j.priority)),
        h('td', {}, h('button', { type: 'button', class: 'primary', 'aria-label': `Retry job ${j.id}`, onclick: (ev) => busy(ev.currentTarget, async () => {
          await api('POST', `dlq/${encodeURIComponent(j.id)}/retry`);
          flash('The job is back in its queue: ', 'ok', jobLink(j.id, j.id));
          await pages.dlq.refresh(root);
        }) }, 'Retry')))),
      'The dead-letter queue is empty.'));
  },
};

// ---------------------------------------------------------------------------------------
// Enqueue: a form built from the handler's argument schema, or a JSON editor.

/** Whether `schema` describes an object with properties a form can show. */
function formable(schema) {
  if (!schema || typeof schema !== 'object') return false;
  const types = [].concat(schema.type || []);
  return (types.includes('object') || schema.properties) && schema.properties && Object.keys(schema.properties).length > 0;
}

function resolveRef(schema, root) {
  if (schema && schema.$ref && typeof schema.$ref === 'string') {
    const path = schema.$ref.replace(/^#\//, '').split('/');
    let cur = root;
    for (const p of path) cur = cur && cur[p];
    return cur || schema;
  }
  // Option<T> from schemars: anyOf [T, null].
  if (schema && Array.isArray(schema.anyOf)) {
    const real = schema.anyOf.filter((x) => x.type !== 'null');
    if (real.length === 1) return { ...resolveRef(real[0], root), nullable: true, description: schema.description };
  }
  return schema || {};
}

function fieldKind(sch) {
  const types = [].concat(sch.type || []).filter((t) => t !== 'null');
  if (Array.isArray(sch.enum)) return 'enum';
  if (types.length !== 1) return 'json';
  const t = types[0];
  if (t === 'array' && sch.items && [].concat(sch.items.type || []).includes('string')) return 'list';
  if (['string', 'integer', 'number', 'boolean'].includes(t)) return t;
  return 'json';
}

function buildArgsForm(schema) {
  const required = new Set(schema.required || []);
  const wrap = h('div', { class: 'args-form', id: 'args-form' });
  for (const [name, raw] of Object.entries(schema.properties)) {
    const sch = resolveRef(raw, schema);
    const kind = fieldKind(sch);
    const id = `arg-${name}`;
    const req = required.has(name);
    const help = sch.description || sch.title || '';
    let input;
    if (kind === 'boolean') {
      input = h('input', { id, type: 'checkbox', dataset: { arg: name, kind }, checked: sch.default === true });
    } else if (kind === 'enum') {
      input = h('select', { id, dataset: { arg: name, kind } },
        req ? null : h('option', { value: '' }, '(not set)'),
        sch.enum.filter((v) => v !== null).map((v) => h('option', { value: JSON.stringify(v), selected: sch.default === v }, String(v))));
    } else if (kind === 'json') {
      input = h('textarea', { id, rows: 3, class: 'mono', dataset: { arg: name, kind }, spellcheck: 'false', placeholder: 'JSON' },
        sch.default !== undefined ? JSON.stringify(sch.default) : '');
    } else {
      input = h('input', {
        id, dataset: { arg: name, kind },
        type: kind === 'integer' || kind === 'number' ? 'number' : 'text',
        step: kind === 'integer' ? '1' : kind === 'number' ? 'any' : null,
        min: sch.minimum, max: sch.maximum,
        placeholder: kind === 'list' ? 'comma-separated' : null,
        value: sch.default !== undefined && sch.default !== null ? (Array.isArray(sch.default) ? sch.default.join(', ') : sch.default) : null,
        required: req && kind !== 'list',
      });
    }
    input.setAttribute('aria-describedby', `${id}-error ${help ? `${id}-help` : ''}`.trim());
    wrap.append(h('div', { class: `field ${kind === 'boolean' ? 'check' : ''}`, dataset: { fieldFor: `args.${name}` } },
      h('label', { for: id }, name, req ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null,
        h('span', { class: 'muted small' }, ` ${kind === 'json' ? 'JSON' : kind}${req ? '' : ', optional'}`)),
      input,
      help ? h('p', { class: 'help', id: `${id}-help` }, help) : null,
      h('p', { class: 'field-error', id: `${id}-error`, hidden: true })));
  }
  return wrap;
}

/** Reads the generated form into an args object; throws {field, message} on bad input. */
function readArgsForm(form) {
  const args = {};
  for (const el of form.querySelectorAll('[data-arg]')) {
    const name = el.dataset.arg;
    const kind = el.dataset.kind;
    const field = `args.${name}`;
    if (kind === 'boolean') {
      args[name] = el.checked;
      continue;
    }
    const v = el.value.trim();
    if (v === '') continue; // absent: the handler's type decides whether that is allowed
    if (kind === 'integer' || kind === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n) || (kind === 'integer' && !Number.isInteger(n))) throw { field, message: `must be ${kind === 'integer' ? 'a whole number' : 'a number'}` };
      args[name] = n;
    } else if (kind === 'list') {
      args[name] = v.split(',').map((x) => x.trim()).filter(Boolean);
    } else if (kind === 'enum') {
      args[name] = JSON.parse(v);
    } else if (kind === 'json') {
      try {
        args[name] = JSON.parse(v);
      } catch (e) {
        throw { field, message: `not valid JSON: ${e.message}` };
      }
    } else {
      args[name] = v;
    }
  }
  return args;
}

/**
 * Which form field an API error is about: `field \`x\``, `missing field \`x\``,
 * `unknown field \`x\`` in the message. Request fields map to themselves, argument fields to
 * `args.<name>` (or to the JSON editor).
 */
function errorField(e, requestFields) {
  const msg = e.message || '';
  if (e.code === 'handler_not_found') return 'name';
  if (e.code === 'invalid_queue') return 'queue';
  const argsPrefix = /invalid arguments for job/.test(msg) || e.code === 'invalid_args';
  let m = msg.match(/field `([^`]+)`/);
  if (!m) return argsPrefix ? 'args' : null;
  let path = m[1].replace(/^\./, '');
  if (!argsPrefix) {
    const top = path.split(/[.[]/)[0];
    if (top === 'args') {
      const rest = path.slice(4).replace(/^\./, '').split(/[.[]/)[0];
      return rest ? `args.${rest}` : 'args';
    }
    return requestFields.includes(top) ? top : null;
  }
  return `args.${path.split(/[.[]/)[0]}`;
}

pages.enqueue = {
  title: 'Enqueue',
  render(root, params) {
    root.append(h('h1', {}, 'Enqueue a job'), h('div', { id: 'enqueue' }, h('p', { class: 'muted' }, 'Loading handlers…')));
    this.build(root, params).catch((e) => $('#enqueue', root).replaceChildren(errorBox(e)));
  },
  async build(root, params) {
    const { handlers } = await api('GET', 'handlers');
    const box = $('#enqueue', root);
    if (!handlers.length) {
      box.replaceChildren(h('p', { class: 'muted' }, 'No handlers are linked into this server.'));
      return;
    }
    const pick = params.get('handler');
    const select = h('select', { id: 'f-name', name: 'name', required: true, 'aria-describedby': 'f-name-error f-name-help' },
      handlers.map((hd) => h('option', { value: hd.name, selected: hd.name === pick }, hd.name)));
    const info = h('p', { class: 'help', id: 'f-name-help' });
    const argsBox = h('div', { id: 'args-box' });
    const priority = h('select', { id: 'f-priority', name: 'priority', 'aria-describedby': 'f-priority-error' });
    const result = h('div', { id: 'enqueue-result', role: 'status', 'aria-live': 'polite' });
    let mode = 'form';
    let current = null;

    const fieldBox = (key, label, control, help) => h('div', { class: 'field', dataset: { fieldFor: key } },
      h('label', { for: control.id }, label), control,
      help ? h('p', { class: 'help', id: `${control.id}-help` }, help) : null,
      h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true }));

    const jsonEditor = (value) => h('div', { class: 'field', dataset: { fieldFor: 'args' } },
      h('label', { for: 'f-args' }, 'Arguments (JSON)'),
      h('textarea', { id: 'f-args', name: 'args', rows: 8, class: 'mono', spellcheck: 'false', 'aria-describedby': 'f-args-error f-args-help' }, value),
      h('p', { class: 'help', id: 'f-args-help' }, `Checked against the handler's argument type ${current.args_type} when you submit.`),
      h('p', { class: 'field-error', id: 'f-args-error', hidden: true }));

    const showArgs = (args) => {
      if (!current.takes_args) {
        mode = 'none';
        argsBox.replaceChildren(h('div', { class: 'field', dataset: { fieldFor: 'args' } },
          h('p', { class: 'help', id: 'no-args' }, `${current.name} takes no arguments.`),
          h('p', { class: 'field-error', id: 'f-args-error', hidden: true })));
        return;
      }
      const schema = current.args_schema;
      const canForm = formable(schema);
      if (!canForm) mode = 'json';
      const toggle = canForm ? h('button', { type: 'button', class: 'link', id: 'args-mode', onclick: () => {
        let value = {};
        try {
          value = mode === 'form' ? readArgsForm($('#args-form')) : JSON.parse($('#f-args').value || '{}');
        } catch {
          value = undefined;
        }
        mode = mode === 'form' ? 'json' : 'form';
        showArgs(value);
      } }, mode === 'form' ? 'Edit as JSON' : 'Use the form') : null;
      if (mode === 'form' && canForm) {
        const form = buildArgsForm(schema);
        if (args && typeof args === 'object') {
          for (const el of form.querySelectorAll('[data-arg]')) {
            const v = args[el.dataset.arg];
            if (v === undefined) continue;
            if (el.dataset.kind === 'boolean') el.checked = Boolean(v);
            else if (el.dataset.kind === 'list' && Array.isArray(v)) el.value = v.join(', ');
            else if (el.dataset.kind === 'json' || el.dataset.kind === 'enum') el.value = JSON.stringify(v);
            else el.value = v;
          }
        }
        argsBox.replaceChildren(h('fieldset', {}, h('legend', {}, 'Arguments ', toggle), form));
      } else {
        argsBox.replaceChildren(h('fieldset', {}, h('legend', {}, 'Arguments ', toggle),
          jsonEditor(args === undefined ? '{}' : pretty(args ?? {}))));
      }
    };

    const choose = () => {
      current = handlers.find((x) => x.name === select.value) || handlers[0];
      mode = 'form';
      fill(info,
        'Defaults: priority ', h('strong', {}, current.priority),
        `, ${current.max_retries} retries, timeout ${fmtSeconds(Number(current.timeout))}. Arguments: `,
        h('code', {}, current.args_type), current.location ? h('span', { class: 'muted' }, ` — ${current.location}`) : null);
      queueInput.placeholder = `handler's (${current.queue || 'default'})`;
      priority.replaceChildren(h('option', { value: '' }, `default (${current.priority})`),
        ...PRIORITIES.map((p) => h('option', { value: p }, p)));
      showArgs({});
      clearErrors();
    };

    const queueInput = h('input', { id: 'f-queue', name: 'queue', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'f-queue-error' });
    const form = h('form', { id: 'enqueue-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); submit(ev.submitter); } },
      fieldBox('name', 'Handler', select),
      info,
      argsBox,
      h('div', { class: 'row' },
        fieldBox('priority', 'Priority', priority),
        fieldBox('delay_seconds', 'Delay (seconds)', h('input', { id: 'f-delay', name: 'delay_seconds', type: 'number', min: '0', step: 'any', inputmode: 'decimal', placeholder: '0 = now', 'aria-describedby': 'f-delay-error f-delay-help' }), 'Run after this many seconds.'),
        fieldBox('max_retries', 'Max retries', h('input', { id: 'f-retries', name: 'max_retries', type: 'number', min: '0', step: '1', placeholder: 'handler default', 'aria-describedby': 'f-retries-error' })),
        fieldBox('user_id', 'User id', h('input', { id: 'f-user', name: 'user_id', type: 'text', placeholder: 'optional', 'aria-describedby': 'f-user-error' })),
        fieldBox('queue', 'Queue', queueInput)),
      h('p', { class: 'field-error', id: 'form-error', role: 'alert', hidden: true }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'enqueue-submit' }, 'Enqueue')),
      result);

    const controlFor = (key) => form.querySelector(`[data-field-for="${CSS.escape(key)}"]`);
    function clearErrors() {
      for (const el of form.querySelectorAll('.field-error')) {
        el.hidden = true;
        el.textContent = '';
      }
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    }
    function showError(key, message) {
      let box = key && controlFor(key);
      if (!box && key && key.startsWith('args')) box = controlFor('args') || controlFor(key.split('.')[0]);
      const target = box ? box.querySelector('.field-error') : $('#form-error', form);
      target.textContent = message;
      target.hidden = false;
      const input = box && box.querySelector('input, select, textarea');
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    }

    async function submit(btn) {
      clearErrors();
      result.replaceChildren();
      const body = { name: select.value };
      try {
        if (mode === 'none') body.args = {};
        else if (mode === 'form' && $('#args-form', form)) body.args = readArgsForm($('#args-form', form));
        else {
          const raw = $('#f-args', form).value.trim();
          try {
            body.args = raw === '' ? {} : JSON.parse(raw);
          } catch (e) {
            throw { field: 'args', message: `not valid JSON: ${e.message}` };
          }
        }
      } catch (e) {
        showError(e.field, e.message);
        return;
      }
      if (priority.value) body.priority = priority.value;
      const delay = $('#f-delay', form).value.trim();
      if (delay !== '') {
        const d = Number(delay);
        if (!Number.isFinite(d) || d < 0) {
          showError('delay_seconds', 'must be a number of seconds, 0 or more');
          return;
        }
        if (d > 0) body.delay_seconds = d;
      }
      const retries = $('#f-retries', form).value.trim();
      if (retries !== '') {
        const r = Number(retries);
        if (!Number.isInteger(r) || r < 0) {
          showError('max_retries', 'must be a whole number, 0 or more');
          return;
        }
        body.max_retries = r;
      }
      const user = $('#f-user', form).value.trim();
      if (user) body.user_id = user;
      const queueName = queueInput.value.trim();
      if (queueName) body.queue = queueName;
      await busy(btn || $('#enqueue-submit', form), async () => {
        try {
          const r = await api('POST', 'enqueue', body);
          // 200 with `duplicate`: the handler is unique and a job with the same key holds
          // its lock; nothing new was queued (`replaced`: that job took these arguments).
          const said = r.duplicate
            ? (r.replaced ? 'Not enqueued: the queued job with the same key took these arguments, job '
              : 'Not enqueued: a job with the same uniqueness key is already there, job ')
            : 'Enqueued job ';
          result.replaceChildren(h('p', { class: 'ok-box' }, said, jobLink(r.job_id, r.job_id), '.'));
          flash(said, 'ok', jobLink(r.job_id, r.job_id));
        } catch (e) {
          if (e.status === 400 || e.status === 404 || e.status === 413 || e.status === 422) {
            const key = errorField(e, ['name', 'args', 'priority', 'delay_seconds', 'max_retries', 'user_id', 'queue', 'timeout', 'scheduled_at']);
            const msg = e.message.replace(/^invalid arguments for job `[^`]*`: /, '');
            showError(key && (key === 'args' || key.startsWith('args.')) && mode === 'json' ? 'args' : key, msg);
          } else {
            throw e;
          }
        }
      });
    }

    select.addEventListener('change', choose);
    box.replaceChildren(form);
    choose();
  },
};

// ---------------------------------------------------------------------------------------
// Routing and the ticker

function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'jobs' && parts[1]) {
    params.set('id', parts[1]);
    return { name: 'job', nav: 'jobs', params };
  }
  if (parts[0] === 'enqueue' && parts[1]) params.set('handler', parts[1]);
  const name = pages[parts[0]] && parts[0] !== 'job' ? parts[0] : 'overview';
  return { name, nav: name, params };
}

let current = null;
let ticking = false;

async function tick() {
  if (!current || ticking) return;
  const page = pages[current.name];
  ticking = true;
  const mine = current;
  try {
    // Pages without their own refresh still keep the health and the DLQ badge current.
    await (page.refresh ? page.refresh(mine.root, mine.params) : loadStats());
    setHealth(true);
  } catch (e) {
    if (mine === current) {
      setHealth(false, e.message);
      const box = $('#page-error', mine.root);
      if (box) box.replaceChildren(errorBox(e));
    }
  } finally {
    ticking = false;
  }
  if (mine === current) {
    const box = $('#page-error', mine.root);
    if (box && !$('.health.bad')) box.replaceChildren();
  }
}

function setHealth(ok, message) {
  const el = $('#health');
  el.className = `health ${ok ? 'good' : 'bad'}`;
  el.textContent = ok ? `updated ${new Date().toLocaleTimeString('en-GB', { timeZone: 'UTC' })} UTC` : `error: ${message}`;
}

function show() {
  const r = route();
  const main = $('#main');
  const root = h('div', { class: `page page-${r.name}`, dataset: { page: r.name } });
  main.replaceChildren(h('div', { id: 'page-error' }), root);
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${pages[r.name].title} · Jobs dashboard`;
  current = { ...r, root };
  pages[r.name].render(root, r.params);
  ticking = false;
  tick();
}

function start() {
  if (token()) $('#signout').hidden = false;
  $('#signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('#signout').hidden = true;
    location.reload();
  });
  window.addEventListener('hashchange', show);
  setInterval(() => {
    if (!$('#auto-refresh').checked || document.hidden) return;
    if (document.querySelector('dialog[open]')) return;
    tick();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
  if (!location.hash) history.replaceState(null, '', '#/overview');
  show();
}

// For the browser tests and the curious: the pure helpers.
window.jobsDashboard = { shortId, cronWords, intervalWords, scheduleWords, bucketsFromSamples, bucketsFromBackend, errorField, api };

start();
