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
let results = [], picked = new Set(), reference = null;
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
    r.name, r.source === 'kiosk' ? h('span', { className: 'badge' }, 'kiosk') : null,
    h('span', { className: 'muted small' }, r.uploaded_at ? ' ' + TF.dateTime(r.uploaded_at) : ''))));

  const chosen = results.map((r, i) => [r, TFChart.PALETTE[i % TFChart.PALETTE.length]]).filter(([r]) => picked.has(r.name));
  const groups = phaseNames(chosen.map(([r]) => r));
  const series = chosen.map(([r, color]) => ({ label: r.name, color, values: groups.map((g) => {
    const p = r.report.phases.find((x) => x.phase === g); return p ? p.throughput : null; }) }));
  if (reference && groups.includes(reference.phase)) {
    series.push({ label: 'reference design', color: REFERENCE_COLOUR,
      values: groups.map((g) => (g === reference.phase ? reference.reservations_per_s : null)) });
  }
  TFChart.bars($('#chart-compare'), { groups, series, empty: results.length ? 'Select a result above' : 'No results uploaded yet' });

  const tbody = $('#results-table tbody');
  const rows = [];
  for (const g of groups) {
    const best = Math.max(...chosen.map(([r]) => (r.report.phases.find((x) => x.phase === g) || {}).throughput || 0));
    for (const [r] of chosen) {
      const p = r.report.phases.find((x) => x.phase === g);
      if (!p) continue;
      const errs = Object.entries(p.errors || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
      rows.push(h('tr', { dataset: { result: r.name, phase: g } },
        h('td', {}, h('b', {}, g)), h('td', {}, r.name, r.source === 'kiosk' ? [' ', h('span', { className: 'badge', title: kioskRunText(r) }, 'kiosk')] : null),
        h('td', { className: 'small' }, machineOf(r), r.report.tigerfans_version ? ` · v${r.report.tigerfans_version}` : ''),
        h('td', { className: 'num' }, `${int(p.ok)} / ${int(p.total)}`),
        h('td', { className: 'num', title: errs }, errs ? int(Object.values(p.errors).reduce((a, b) => a + b, 0)) : '0'),
        h('td', { className: 'num' }, p.throughput === best && chosen.length > 1 ? h('b', {}, int(Math.round(p.throughput)), ' ★') : int(Math.round(p.throughput)),
          reference && g === reference.phase ? h('span', { className: 'muted small' }, ' ' + timesReference(p.throughput)) : null),
        h('td', { className: 'num' }, ms(p.p50_ms)), h('td', { className: 'num' }, ms(p.p90_ms)),
        h('td', { className: 'num' }, ms(p.p99_ms)), h('td', { className: 'num' }, ms(p.max_ms)),
        h('td', { className: 'num' }, Number.isFinite(p.tb_batch_avg) ? p.tb_batch_avg.toFixed(1) : '–'),
        h('td', { className: 'num' }, Number.isFinite(p.store_commit_avg) ? p.store_commit_avg.toFixed(1) : '–'),
        h('td', { className: 'num' }, p.server_rss_bytes ? mb(p.server_rss_bytes) : '–')));
    }
  }
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: 13, className: 'empty' },
    results.length ? 'Select a result above.' : 'No results yet: run one above, or upload a tigerfans bench --json file.')));
  // The reference's figures, after the results of its phase (or last).
  if (reference) {
    const after = rows.map((row) => row.dataset.phase).lastIndexOf(reference.phase);
    rows.splice(after < 0 ? rows.length : after + 1, 0, referenceRow(reference));
  }
  tbody.replaceChildren(...rows);
}

// --- the reference design's published figures (from the server: src/bench/reference.rs) --
const REFERENCE_COLOUR = '#8a8d94';
const timesReference = (throughput) => (reference && throughput > 0 ? (throughput / reference.reservations_per_s).toFixed(1) + '× ref' : '');
const referenceText = (ref) => `${int(ref.reservations_per_s)} reservations/s, TigerBeetle batches of ${ref.batch_min}–${ref.batch_max}, ${ref.vcpus} vCPUs`;
function referenceRow(ref) {
  const none = () => h('td', { className: 'num' }, '–');
  return h('tr', { dataset: { result: 'reference', phase: ref.phase }, title: ref.source },
    h('td', {}, h('b', {}, ref.phase)), h('td', {}, ref.name, ' ', h('span', { className: 'badge' }, 'published')),
    h('td', { className: 'small' }, `${ref.vcpus} vCPUs`), none(), none(),
    h('td', { className: 'num' }, h('b', {}, int(ref.reservations_per_s))), none(), none(), none(), none(),
    h('td', { className: 'num' }, `${ref.batch_min}–${ref.batch_max}`), none(), none());
}
function kioskRunText(r) {
  const run = r.run || {};
  return `run on this server by its admin: ${run.phase || '?'} for ${run.duration_s || '?'} s, ${run.concurrency || '?'} connections, class ${run.cls || '?'}, payments declined${run.state === 'stopped' ? ', stopped early' : ''}`;
}

async function loadResults() {
  const r = await TF.api('/api/bench/results');
  if (!r.ok) { TF.notice(resultsBox, 'error', 'Cannot load recorded results.', r.data.detail || ''); renderResults(); return; }
  const known = new Set(results.map((x) => x.name));
  results = (r.data.results || []).filter((x) => x && x.report && Array.isArray(x.report.phases));
  reference = r.data.reference || null;
  showReference();
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

// --- the kiosk's own run ------------------------------------------------------------------
const kiosk = { running: false, run: null, limits: null, announced: null };
const kioskBox = $('#kiosk-status');

function showReference() {
  const ref = reference;
  if (!ref) return;
  const run = kiosk.run, p = run && (run.phases || []).find((x) => x.phase === ref.phase);
  const ours = p && p.throughput > 0
    ? ` This server's last run: ${int(Math.round(p.throughput))} ${ref.phase}s/s` +
      (Number.isFinite(p.tb_batch_avg) ? `, batches of ${p.tb_batch_avg.toFixed(1)}` : '') + `: ${timesReference(p.throughput)}.`
    : '';
  const el = $('#kiosk-reference');
  el.replaceChildren(h('b', {}, `The ${ref.name}: `), referenceText(ref), '.', ours);
  el.title = ref.source;
}

function effectText(limits) {
  return `A run buys class ${limits.cls} of this event through the online shop: real orders, real holds on its tickets ` +
    `(and on goodies while they last). Every payment is declined, so it sells nothing: webhook and flow runs release ` +
    `the holds they pay, a checkout run's holds expire after ${int(limits.hold_timeout_s)} s. Its orders stay in the ` +
    `admin's list as FAILED or EXPIRED. At most ${limits.duration_s_max} s and ${limits.concurrency_max} connections; ` +
    `the ${limits.results_kept} newest runs are kept (kiosk-01 to kiosk-${String(limits.results_kept).padStart(2, '0')}).`;
}

function drawRun(run) {
  const P = TFChart.PALETTE, tl = (run && run.timeline) || [];
  // A second not over yet (the one going on; the run's last, cut short by its end) would look
  // like a drop: only whole seconds are charted (the readout counts every answer).
  const seconds = run ? tl.filter((s) => s.t_s + 1 <= run.elapsed_s + 0.05) : [];
  const n = Math.max(2, (run ? run.duration_s + 1 : 10), seconds.length);
  const pad = (values) => values.concat(Array(Math.max(0, n - values.length)).fill(null));
  const col = (k) => pad(seconds.map((s) => s[k]));
  const xLabel = (i) => i + ' s';
  const last = (values, d) => { const v = values.filter(Number.isFinite).pop(); return Number.isFinite(v) ? show(v, d) : '–'; };
  const ok = col('ok'), err = col('errors'), p50 = col('p50_ms'), p99 = col('p99_ms');
  TFChart.line($('#chart-kiosk-throughput'), { points: n, xLabel, series: [
    { label: 'answered', color: P[2], values: ok, last: last(ok, 0) },
    { label: 'errors', color: P[6], values: err, last: last(err, 0) }] });
  TFChart.line($('#chart-kiosk-latency'), { points: n, xLabel, series: [
    { label: 'p50', color: P[1], values: p50, last: last(p50, 2) },
    { label: 'p99', color: P[0], values: p99, last: last(p99, 2) }] });
}

function showRun(data) {
  kiosk.limits = data.limits;
  const run = kiosk.run = data.run;
  const running = !!run && run.state === 'running';
  kiosk.running = running;
  $('#kiosk-start').disabled = running;
  $('#kiosk-stop').disabled = !running || run.stopping;
  const L = data.limits;
  $('#kiosk-duration').max = L.duration_s_max; $('#kiosk-duration').min = L.duration_s_min;
  $('#kiosk-concurrency').max = L.concurrency_max;
  setText($('#kiosk-effect'), effectText(L));
  const state = !run ? 'none yet' : running && run.stopping ? 'stopping' : run.state;
  setText($('#kiosk-state'), state);
  $('#kiosk-state').dataset.state = run ? run.state : '';
  setText($('#kiosk-phase-now'), run ? run.phase + (run.phase !== run.requested_phase ? ` (of ${run.requested_phase})` : '') : '–');
  setText($('#kiosk-elapsed'), run ? `${run.elapsed_s.toFixed(1)} s of ${run.duration_s} s` : '–');
  setText($('#kiosk-ok'), run ? int(run.ok) : '–');
  setText($('#kiosk-errors'), run ? int(run.errors) : '–');
  drawRun(run);
  showReference();
  if (running) {
    TF.notice(kioskBox, 'info', run.stopping ? 'Stopping…' : `Running: ${run.phase}, ${run.concurrency} connections, class ${run.cls}.`);
  } else if (run && kiosk.announced !== run.number) {
    kiosk.announced = run.number;
    announce(run);
  }
}

// A run that ended: say how, and show its stored result in the table.
async function announce(run) {
  const summary = (run.phases || []).map((p) => `${p.phase} ${int(Math.round(p.throughput))}/s (${int(p.ok)} of ${int(p.total)} ok)`).join(', ');
  if (run.state === 'failed') { TF.notice(kioskBox, 'error', 'The run failed.', run.detail || ''); return; }
  const how = run.state === 'stopped' ? 'Stopped' : 'Finished';
  const where = run.result ? `Stored as ${run.result}, in the table below.` : (run.detail || '');
  TF.notice(kioskBox, run.result ? 'ok' : 'error', `${how} after ${run.elapsed_s.toFixed(1)} s.`, summary && summary + '.', where);
  if (run.result) { picked.add(run.result); await loadResults(); }
}

async function pollRun() {
  const r = await TF.api('/api/admin/bench/run');
  if (!r.ok) { TF.notice(kioskBox, 'error', 'Cannot read the run.', r.data.detail || ''); return; }
  showRun(r.data);
}

$('#kiosk-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = { phase: $('#kiosk-phase').value, duration_s: Number($('#kiosk-duration').value), concurrency: Number($('#kiosk-concurrency').value) };
  $('#kiosk-start').disabled = true;
  const r = await TF.staff.post('/api/admin/bench/run', body);
  if (!r.ok) { TF.notice(kioskBox, 'error', 'Not started.', r.data.detail || 'HTTP ' + r.status); $('#kiosk-start').disabled = kiosk.running; return; }
  showRun(r.data);
});
$('#kiosk-stop').addEventListener('click', async () => {
  $('#kiosk-stop').disabled = true;
  const r = await TF.staff.post('/api/admin/bench/run/stop', {});
  if (!r.ok) TF.notice(kioskBox, 'error', 'Not stopped.', r.data.detail || 'HTTP ' + r.status);
  await pollRun();
});

async function kioskStart() {
  const me = await TF.api('/api/staff/me');
  const admin = me.ok && me.data.role === 'admin';
  $('#kiosk-signin').hidden = admin;
  $('#kiosk-form').hidden = !admin;
  if (!admin) { drawRun(null); return; }
  const r = await TF.api('/api/admin/bench/run');
  // A run that ended before this page opened is in the table already: announce only the
  // runs that end from now on.
  if (r.ok && r.data.run && r.data.run.state !== 'running') kiosk.announced = r.data.run.number;
  if (r.ok) showRun(r.data); else TF.notice(kioskBox, 'error', 'Cannot read the run.', r.data.detail || '');
  TF.every(1000, () => (kiosk.running ? pollRun() : null));
}

loadResults().then(kioskStart);
