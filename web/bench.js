// The script of bench.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, h, setText, int } = TF;
const POINTS = 120;

// --- Prometheus text → [{name, labels, value}] ----------------------------------------------
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
function sum(ms, name, where) {
  let s = 0;
  for (const m of ms) if (m.name === name && (!where || Object.entries(where).every(([k, v]) => m.labels[k] === v))) s += m.value;
  return s;
}
function sample(ms) {
  const lat = (route) => ({ sum: sum(ms, 'tigerfans_http_request_microseconds_sum', { route }), count: sum(ms, 'tigerfans_http_request_microseconds_count', { route }) });
  return {
    t: performance.now(),
    req: sum(ms, 'tigerfans_http_requests_total'),
    reqCheckout: sum(ms, 'tigerfans_http_requests_total', { route: 'checkout' }),
    reqWebhook: sum(ms, 'tigerfans_http_requests_total', { route: 'webhook' }),
    checkout: lat('checkout'), webhook: lat('webhook'),
    batch: { sum: sum(ms, 'tigerfans_tb_batch_transfers_sum'), count: sum(ms, 'tigerfans_tb_batch_transfers_count') },
    commit: { sum: sum(ms, 'tigerfans_store_commit_writes_sum'), count: sum(ms, 'tigerfans_store_commit_writes_count') },
    inflight: sum(ms, 'tigerfans_tb_in_flight'),
    rss: sum(ms, 'process_resident_memory_bytes'),
    checkouts: sum(ms, 'tigerfans_checkouts_total'),
    soldOut: sum(ms, 'tigerfans_sold_out_total'),
  };
}

const series = {};
for (const k of ['rps', 'rpsCheckout', 'rpsWebhook', 'latCheckout', 'latWebhook', 'batch', 'commit']) series[k] = Array(POINTS).fill(null);
const push = (k, v) => { series[k].push(Number.isFinite(v) ? v : null); if (series[k].length > POINTS) series[k].shift(); };
const rate = (a, b, dt) => (b >= a && dt > 0 ? (b - a) / dt : null);      // null across a restart (counter reset)
const mean = (a, b) => { const dc = b.count - a.count, ds = b.sum - a.sum; return dc > 0 && ds >= 0 ? ds / dc : null; };
const show = (v, d, unit) => (Number.isFinite(v) ? (v >= 1000 ? int(Math.round(v)) : v.toFixed(d)) + (unit || '') : '–');
const mb = (b) => (b > 0 ? (b / 1048576).toFixed(0) + ' MiB' : '–');

let prev = null, paused = false;
async function scrape() {
  if (paused) return;
  let text;
  try {
    const res = await fetch('/metrics', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    text = await res.text();
  } catch (e) {
    setText($('#metrics-status'), 'Cannot read /metrics: ' + e.message);
    for (const k of Object.keys(series)) push(k, null);
    prev = null; draw(); return;
  }
  setText($('#metrics-status'), '');
  const cur = sample(parseMetrics(text));
  if (prev) {
    const dt = (cur.t - prev.t) / 1000;
    const rps = rate(prev.req, cur.req, dt);
    push('rps', rps);
    push('rpsCheckout', rate(prev.reqCheckout, cur.reqCheckout, dt));
    push('rpsWebhook', rate(prev.reqWebhook, cur.reqWebhook, dt));
    const lc = mean(prev.checkout, cur.checkout), lw = mean(prev.webhook, cur.webhook);
    push('latCheckout', lc === null ? null : lc / 1000);
    push('latWebhook', lw === null ? null : lw / 1000);
    const b = mean(prev.batch, cur.batch), c = mean(prev.commit, cur.commit);
    push('batch', b); push('commit', c);
    setText($('#r-rps'), show(rps, 1));
    setText($('#r-checkout'), show(lc === null ? null : lc / 1000, 2, ' ms'));
    setText($('#r-batch'), show(b, 1));
    setText($('#r-commit'), show(c, 1));
  }
  setText($('#r-inflight'), int(cur.inflight));
  setText($('#r-rss'), mb(cur.rss));
  setText($('#r-checkouts'), int(cur.checkouts));
  setText($('#r-soldout'), int(cur.soldOut));
  prev = cur;
  draw();
}
const lastOf = (a, d) => { const v = a[a.length - 1]; return Number.isFinite(v) ? show(v, d) : '–'; };
function draw() {
  const P = TFChart.PALETTE;
  TFChart.line($('#chart-throughput'), { points: POINTS, series: [
    { label: 'all', color: P[0], values: series.rps, last: lastOf(series.rps, 0) },
    { label: 'checkout', color: P[1], values: series.rpsCheckout, last: lastOf(series.rpsCheckout, 0) },
    { label: 'webhook', color: P[2], values: series.rpsWebhook, last: lastOf(series.rpsWebhook, 0) }] });
  TFChart.line($('#chart-latency'), { points: POINTS, series: [
    { label: 'checkout', color: P[1], values: series.latCheckout, last: lastOf(series.latCheckout, 2) },
    { label: 'webhook', color: P[2], values: series.latWebhook, last: lastOf(series.latWebhook, 2) }] });
  TFChart.line($('#chart-batch'), { points: POINTS, series: [
    { label: 'TigerBeetle transfers/batch', color: P[0], values: series.batch, last: lastOf(series.batch, 1) },
    { label: 'store writes/commit', color: P[3], values: series.commit, last: lastOf(series.commit, 1) }] });
}
$('#pause').addEventListener('click', () => {
  paused = !paused; prev = null;
  setText($('#pause'), paused ? 'Resume' : 'Pause');
});
TF.every(1000, scrape);

// --- recorded results -----------------------------------------------------------------------
let results = [], picked = new Set();
const resultsBox = $('#results-status');
const machineOf = (r) => { const m = (r.report && r.report.machine) || {}; return [m.cpu_model, m.cores ? m.cores + ' cores' : '', m.kernel].filter(Boolean).join(', '); };
const ms = (v) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(2)) : '–');

function phaseNames(list) {
  const names = [];
  for (const r of list) for (const p of (r.report && r.report.phases) || []) if (!names.includes(p.phase)) names.push(p.phase);
  return names;
}

// A colour swatch. Its colour is set through the CSSOM: a style attribute is inline style,
// which the page's Content-Security-Policy refuses.
function swatch(colour) {
  const span = h('span', { className: 'swatch' });
  span.style.background = colour;
  return span;
}

function renderResults() {
  const pick = $('#results-pick');
  pick.replaceChildren(pick.querySelector('legend'), ...results.map((r, i) => h('label', { className: 'pick' },
    h('input', { type: 'checkbox', checked: picked.has(r.name), dataset: { name: r.name },
      onchange: (e) => { if (e.target.checked) picked.add(r.name); else picked.delete(r.name); renderResults(); } }),
    swatch(TFChart.PALETTE[i % TFChart.PALETTE.length]),
    r.name, h('span', { className: 'muted small' }, r.uploaded_at ? ' ' + TF.dateTime(r.uploaded_at) : ''))));

  const chosen = results.map((r, i) => [r, TFChart.PALETTE[i % TFChart.PALETTE.length]]).filter(([r]) => picked.has(r.name));
  const groups = phaseNames(chosen.map(([r]) => r));
  TFChart.bars($('#chart-compare'), {
    groups, empty: results.length ? 'Select a result above' : 'No results uploaded yet',
    series: chosen.map(([r, color]) => ({ label: r.name, color, values: groups.map((g) => {
      const p = r.report.phases.find((x) => x.phase === g); return p ? p.throughput : null; }) })),
  });

  const tbody = $('#results-table tbody');
  const rows = [];
  for (const g of groups) {
    const best = Math.max(...chosen.map(([r]) => (r.report.phases.find((x) => x.phase === g) || {}).throughput || 0));
    for (const [r] of chosen) {
      const p = r.report.phases.find((x) => x.phase === g);
      if (!p) continue;
      const errs = Object.entries(p.errors || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
      rows.push(h('tr', { dataset: { result: r.name, phase: g } },
        h('td', {}, h('b', {}, g)), h('td', {}, r.name),
        h('td', { className: 'small' }, machineOf(r), r.report.tigerfans_version ? ` · v${r.report.tigerfans_version}` : ''),
        h('td', { className: 'num' }, `${int(p.ok)} / ${int(p.total)}`),
        h('td', { className: 'num', title: errs }, errs ? int(Object.values(p.errors).reduce((a, b) => a + b, 0)) : '0'),
        h('td', { className: 'num' }, p.throughput === best && chosen.length > 1 ? h('b', {}, int(Math.round(p.throughput)), ' ★') : int(Math.round(p.throughput))),
        h('td', { className: 'num' }, ms(p.p50_ms)), h('td', { className: 'num' }, ms(p.p90_ms)),
        h('td', { className: 'num' }, ms(p.p99_ms)), h('td', { className: 'num' }, ms(p.max_ms)),
        h('td', { className: 'num' }, Number.isFinite(p.tb_batch_avg) ? p.tb_batch_avg.toFixed(1) : '–'),
        h('td', { className: 'num' }, Number.isFinite(p.store_commit_avg) ? p.store_commit_avg.toFixed(1) : '–'),
        h('td', { className: 'num' }, p.server_rss_bytes ? mb(p.server_rss_bytes) : '–')));
    }
  }
  tbody.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 13, className: 'empty' },
    results.length ? 'Select a result above.' : 'No results yet: upload a tigerfans bench --json file.'))]));
}

async function loadResults() {
  const r = await TF.api('/api/bench/results');
  if (!r.ok) { TF.notice(resultsBox, 'error', 'Cannot load recorded results.', r.data.detail || ''); renderResults(); return; }
  const known = new Set(results.map((x) => x.name));
  results = (r.data.results || []).filter((x) => x && x.report && Array.isArray(x.report.phases));
  // New results are selected; the first time, the 6 newest are.
  const fresh = results.filter((x) => !known.has(x.name));
  if (!known.size) fresh.slice(-6).forEach((x) => picked.add(x.name)); else fresh.forEach((x) => picked.add(x.name));
  renderResults();
}

async function upload(file) {
  const text = await file.text();
  let report;
  try { report = JSON.parse(text); } catch (e) { throw new Error(`${file.name} is not JSON.`); }
  if (!report || !Array.isArray(report.phases)) throw new Error(`${file.name} is not a tigerfans bench --json report (no "phases").`);
  const typed = $('#results-name').value.trim();
  let name = (typed && $('#results-upload').files.length === 1 ? typed : file.name.replace(/\.json$/i, ''));
  name = name.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 64).trim() || 'result';   // what the server keeps of it
  const r = await TF.postJSON('/api/bench/results', text, { 'x-result-name': name });
  if (!r.ok) throw new Error(`${name}: ${r.data.detail || 'HTTP ' + r.status}`);
  picked.add(name);
  return name;
}

$('#results-upload').addEventListener('change', async (e) => {
  const files = Array.from(e.target.files || []);
  if (!files.length) return;
  TF.notice(resultsBox, 'info', 'Uploading…');
  const done = [], failed = [];
  for (const f of files) {
    try { done.push(await upload(f)); } catch (err) { failed.push(err.message); }
  }
  if (failed.length) TF.notice(resultsBox, 'error', 'Upload failed.', ...failed, done.length ? 'Stored: ' + done.join(', ') : '');
  else TF.notice(resultsBox, 'ok', 'Stored: ' + done.join(', '));
  e.target.value = '';
  await loadResults();
});
loadResults();
