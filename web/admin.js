// The script of admin.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, h, setText, int, money } = TF;
const STATUSES = ['PENDING', 'PAID', 'PAID_UNFULFILLED', 'FAILED', 'CANCELED', 'EXPIRED'];
const MAX_HOLD_ROWS = 200;
const LIST_MAX = 500;          // the most /api/admin/orders answers at once (newest first, no paging)
let currency = '', classNames = {}, ready = false;
TF.event().then((ev) => {
  currency = ev.currency;
  for (const c of ev.classes) classNames[c.id] = c.name;
}).catch(() => {});
TF.brand();

// --- auth -----------------------------------------------------------------------------------
function toLogin() { location.href = '/admin/login'; }
async function loadCsrf() {
  const r = await TF.api('/api/admin/csrf');
  if (r.status === 401) return toLogin();
  if (r.ok && r.data.csrf) {
    $('#logout input[name=csrf]').value = r.data.csrf;
    $('#logout button').disabled = false;
  } else setTimeout(loadCsrf, 3000);
}
loadCsrf();

// --- keyed table rows: update cells in place, so the table does not flicker every second ----
const seen = new WeakMap();   // tbody → keys ever shown, so a row re-shown by a filter does not flash
function syncRows(tbody, items, key, build, update, empty) {
  if (!seen.has(tbody) || seen.get(tbody).size > 20000) seen.set(tbody, new Set());
  const known = seen.get(tbody);
  const old = new Map();
  for (const tr of Array.from(tbody.children)) {
    if (tr.dataset.key === undefined) tr.remove(); else old.set(tr.dataset.key, tr);
  }
  items.forEach((item, i) => {
    const k = String(key(item));
    let tr = old.get(k);
    if (tr) old.delete(k);
    else { tr = build(item); tr.dataset.key = k; if (ready && !known.has(k)) tr.classList.add('fresh'); }
    known.add(k);
    update(tr, item);
    const at = tbody.children[i];
    if (at !== tr) tbody.insertBefore(tr, at || null);
  });
  for (const tr of old.values()) tr.remove();
  if (!items.length) tbody.appendChild(h('tr', {}, h('td', { colspan: tbody.parentNode.tHead.rows[0].cells.length, className: 'empty' }, empty)));
}
const cells = (n, nums) => Array.from({ length: n }, (_, i) => h('td', { className: nums && nums.includes(i) ? 'num' : '' }));
function setCells(tr, values) { values.forEach((v, i) => setText(tr.cells[i], v)); }
const clsLabel = (id) => (classNames[id] ? `${id} · ${classNames[id]}` : id);

// --- panels ---------------------------------------------------------------------------------
function renderCounts(counts) {
  const box = $('#counts');
  const keys = STATUSES.concat(Object.keys(counts).filter((k) => !STATUSES.includes(k)));
  const total = keys.reduce((s, k) => s + (Number(counts[k]) || 0), 0);
  const tiles = [['TOTAL', total]].concat(keys.map((k) => [k, counts[k] || 0]));
  if (box.children.length !== tiles.length) {
    box.replaceChildren(...tiles.map(([k]) => h('div', { className: 'stat', dataset: { status: k } },
      h('div', { className: 'label' }, k === 'TOTAL' ? 'Orders' : k), h('div', { className: 'value' }))));
  }
  tiles.forEach(([, v], i) => setText(box.children[i].querySelector('.value'), int(v)));
}

function renderInventory(inv) {
  const rows = Object.entries(inv).filter(([k]) => k !== 'goodies' && k !== 'error').map(([id, c]) => Object.assign({ id }, c));
  heldTotal = rows.reduce((s, c) => s + (Number(c.active_holds) || 0), 0);
  renderHoldsCount();
  syncRows($('#inventory tbody'), rows, (c) => c.id,
    (c) => h('tr', { dataset: { cls: c.id } }, cells(5, [1, 2, 3, 4])),
    (tr, c) => {
      setCells(tr, [`${c.id} · ${c.name}`, int(c.capacity), int(c.sold), int(c.active_holds), c.sold_out ? 'Sold out' : int(c.available)]);
      tr.cells[4].classList.toggle('sold-out-cell', !!c.sold_out);
      tr.dataset.soldOut = c.sold_out ? 'true' : 'false';
    }, 'No ticket classes.');
  if (inv.goodies) renderGoodies(inv.goodies);
}

function renderGoodies(g) {
  setText($('#goodies-used'), int(g.used));
  setText($('#goodies-limit'), int(g.limit));
  setText($('#goodies-held'), int(g.active_holds));
  setText($('#goodies-available'), int(g.available));
  $('#goodies-meter').style.width = (g.limit > 0 ? Math.min(100, 100 * g.used / g.limit) : 0).toFixed(1) + '%';
}

// Holds count down on the client: deadline = when we received it + expires_in_ms.
let holds = [];
function renderHolds(list, serverTime) {
  const now = Date.now();
  holds = list.map((x) => {
    let ms = Number(x.expires_in_ms);
    if (!Number.isFinite(ms) && serverTime) { const e = TF.toDate(x.expires_at); if (e) ms = e.getTime() - Number(serverTime); }
    return Object.assign({ deadline: now + (Number.isFinite(ms) ? ms : 0) }, x);
  }).sort((a, b) => a.deadline - b.deadline);
  renderHoldsCount();
  syncRows($('#holds tbody'), holds.slice(0, MAX_HOLD_ROWS), (x) => x.order_id,
    (x) => h('tr', { dataset: { orderId: x.order_id } }, h('td', {}, h('code', { className: 'id', title: x.order_id })), h('td'), h('td', { className: 'email' }), h('td', { className: 'num time-left' })),
    (tr, x) => { setText(tr.cells[0].firstChild, x.order_id); setText(tr.cells[1], x.cls); tr.cells[1].title = classNames[x.cls] || ''; setText(tr.cells[2], x.email); tr.dataset.deadline = x.deadline; },
    'No active holds.');
  tickHolds();
}
// The lists are capped by the server; the inventory's held counts are the real total.
let heldTotal = null;
function renderHoldsCount() {
  const total = heldTotal !== null ? Math.max(heldTotal, holds.length) : holds.length;
  setText($('#holds-count'), int(total));
  const shown = Math.min(holds.length, MAX_HOLD_ROWS);
  setText($('#holds-more'), total > shown ? `Showing the ${int(shown)} that expire first of ${int(total)}.` : '');
}
function tickHolds() {
  const now = Date.now();
  for (const tr of $('#holds tbody').rows) {
    if (!tr.dataset.deadline) continue;
    const left = Number(tr.dataset.deadline) - now;
    setText(tr.cells[3], TF.mmss(left));
  }
}
setInterval(tickHolds, 500);

function renderExpired(list) {
  syncRows($('#expired tbody'), list, (x) => x.order_id,
    (x) => h('tr', { dataset: { orderId: x.order_id } }, h('td'), h('td', {}, h('code', { className: 'id', title: x.order_id })), h('td'), h('td', { className: 'email' })),
    (tr, x) => { setText(tr.cells[0], TF.time(x.expired_at)); setText(tr.cells[1].firstChild, x.order_id); setText(tr.cells[2], x.cls); tr.cells[2].title = classNames[x.cls] || ''; setText(tr.cells[3], x.email); },
    'None yet.');
}

// --- orders: the newest 50 from the live snapshot + whatever "load more" fetched ------------
let liveOrders = [], extraOrders = new Map(), noMore = false, capped = false, total = null;
const filterSel = $('#filter-status'), search = $('#search');
const ts = (o) => { const d = TF.toDate(o.created_at); return d ? d.getTime() : 0; };
function matches(o, status, q) {
  if (status && o.status !== status) return false;
  if (!q) return true;
  return [o.email, o.ticket_code, o.order_id].some((s) => s && String(s).toLowerCase().includes(q));
}
function renderOrders() {
  const merged = new Map(extraOrders);
  for (const o of liveOrders) merged.set(o.order_id, o);
  const status = filterSel.value, q = search.value.trim().toLowerCase();
  const rows = Array.from(merged.values()).filter((o) => matches(o, status, q))
    .sort((a, b) => ts(b) - ts(a) || String(b.order_id).localeCompare(String(a.order_id)));
  syncRows($('#orders tbody'), rows, (o) => o.order_id,
    (o) => h('tr', { dataset: { orderId: o.order_id } },
      h('td', { className: 'tabular' }), h('td', {}, h('span', { className: 'badge' })), h('td'),
      h('td', { className: 'email' }), h('td', { className: 'num' }), h('td', {}, h('code')), h('td'), h('td')),
    (tr, o) => {
      tr.dataset.status = o.status;
      setText(tr.cells[0], TF.time(o.created_at));
      tr.cells[0].title = o.paid_at ? 'Paid ' + TF.dateTime(o.paid_at) : '';
      const badge = tr.cells[1].firstChild;
      badge.className = 'badge s-' + o.status; setText(badge, o.status);
      setText(tr.cells[2], clsLabel(o.cls));
      setText(tr.cells[3], o.email);
      setText(tr.cells[4], money(o.amount, o.currency || currency));
      setText(tr.cells[5].firstChild, o.ticket_code || '—');
      setText(tr.cells[6], o.got_goodie ? 'yes' : '—');
      syncRefundButton(tr.cells[7], o);
    }, status || q ? 'No order matches among the ones loaded. Try "Load more".' : 'No orders yet.');
  setText($('#orders-info'), `Showing ${int(rows.length)} of ${int(merged.size)} loaded orders` +
    (total !== null ? ` (${int(total)} in total).` : '.') + ' The newest 50 update live.');
  const btn = $('#load-more');
  btn.disabled = noMore;
  setText(btn, noMore ? (capped ? 'Newest 500 loaded' : 'No more orders') : 'Load more');
  btn.title = capped ? 'The server lists at most the newest 500 matching orders: filter by status or search to narrow it.' : '';
}
filterSel.addEventListener('change', () => { noMore = capped = false; renderOrders(); updateExports(); });
search.addEventListener('input', () => { noMore = capped = false; renderOrders(); });

$('#load-more').addEventListener('click', async () => {
  const btn = $('#load-more');
  const status = filterSel.value, q = search.value.trim();
  const have = Array.from(new Map([...extraOrders, ...liveOrders.map((o) => [o.order_id, o])]).values())
    .filter((o) => matches(o, status, q.toLowerCase())).length;
  const limit = Math.min(LIST_MAX, have + 100);
  btn.disabled = true; setText(btn, 'Loading…');
  const qs = new URLSearchParams({ limit: String(limit) });
  if (status) qs.set('status', status);
  if (q) qs.set('q', q);
  const r = await TF.api('/api/admin/orders?' + qs);
  if (r.status === 401) return toLogin();
  if (!r.ok) { TF.notice($('#more-error'), 'error', 'Could not load more orders.', r.data.detail || ''); btn.disabled = false; setText(btn, 'Load more'); return; }
  $('#more-error').replaceChildren();
  const got = r.data.orders || [];
  if (extraOrders.size + got.length > 5000) extraOrders = new Map();
  for (const o of got) extraOrders.set(o.order_id, o);
  noMore = got.length < limit || limit >= LIST_MAX;
  capped = got.length >= LIST_MAX;
  renderOrders();
});

// --- data in: the SSE stream, with plain polling while it is down ---------------------------
// The live error box changes only when its text does: it is an alert, which a screen reader
// announces each time it is rebuilt, and snapshots come every second.
let liveError = '';
function setLiveError(title, ...lines) {
  const text = [title, ...lines].join('\n');
  if (text === liveError) return;
  liveError = text;
  if (title) TF.notice($('#admin-error'), 'error', title, ...lines); else $('#admin-error').replaceChildren();
}

function apply(s) {
  if (s.inventory && s.inventory.error) setLiveError('Inventory unavailable (TigerBeetle).', String(s.inventory.error));
  else if (s.inventory) { setLiveError(''); renderInventory(s.inventory); }
  if (s.counts) {
    renderCounts(s.counts); total = Object.values(s.counts).reduce((a, b) => a + (Number(b) || 0), 0);
    if (toRefundSeen !== (s.counts.PAID_UNFULFILLED || 0)) { toRefundSeen = s.counts.PAID_UNFULFILLED || 0; loadToRefund(); }
  }
  if (s.holds) renderHolds(s.holds, s.server_time);
  if (s.expired) renderExpired(s.expired);
  if (s.orders) {
    liveOrders = s.orders;
    for (const o of liveOrders) if (extraOrders.has(o.order_id)) extraOrders.set(o.order_id, o);
    renderOrders();
  }
  ready = true;
}

let es = null, lastSnapshot = 0;
function setLive(on) {
  const el = $('#live');
  el.className = 'live ' + (on ? 'on' : 'off');
  el.dataset.state = on ? 'on' : 'off';
  setText(el, on ? 'live' : 'offline');
}
function connect() {
  es = new EventSource('/api/admin/events');
  es.addEventListener('snapshot', (e) => {
    lastSnapshot = Date.now(); setLive(true);
    try { apply(JSON.parse(e.data)); } catch (err) { console.error('bad snapshot', err); }
  });
  es.onerror = () => {
    setLive(false);
    // CLOSED: the server refused the stream (e.g. 401 after the session ended); find out, then retry.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      TF.api('/api/admin/goodies').then((r) => { if (r.status === 401) toLogin(); else setTimeout(connect, 3000); });
    }
  };
}
async function poll() {
  const [inv, orders, pending, goodies] = await Promise.all([
    TF.api('/api/inventory'), TF.api('/api/admin/orders?limit=50'), TF.api('/api/pending?limit=' + LIST_MAX), TF.api('/api/admin/goodies')]);
  if ([orders, pending, goodies].some((r) => r.status === 401)) return toLogin();
  if (inv.ok) renderInventory(inv.data);
  if (goodies.ok) renderGoodies(goodies.data);
  const s = {};
  if (orders.ok) s.orders = orders.data.orders || [];
  if (pending.ok) s.holds = pending.data.holds || [];
  apply(s);
  if (!inv.ok && !orders.ok) setLiveError('The server is not answering.', inv.data.detail || '', 'Retrying…');
  else if (!inv.ok) setLiveError('Inventory unavailable (TigerBeetle).', inv.data.detail || '');
  else setLiveError('');
}
poll();
connect();
// Watchdog: snapshots come every second; 5 s of silence means the stream is not working.
setInterval(() => {
  if (Date.now() - lastSnapshot > 5000) { setLive(false); if (!document.hidden) poll().catch(() => {}); }
}, 3000);

// --- staff JSON POSTs: the logout form's CSRF token, fetched again once if it was refused ----
async function csrfToken(fresh) {
  const field = $('#logout input[name=csrf]');
  if (field.value && !fresh) return field.value;
  const r = await TF.api('/api/admin/csrf');
  if (r.status === 401) { toLogin(); return ''; }
  if (r.ok && r.data.csrf) { field.value = r.data.csrf; $('#logout button').disabled = false; }
  return field.value;
}
async function adminPost(url, body) {
  const send = async (token) => TF.postJSON(url, body, { 'x-csrf-token': token });
  let r = await send(await csrfToken());
  if (r.status === 403 && /csrf/i.test(String(r.data.detail || ''))) r = await send(await csrfToken(true));
  if (r.status === 401) toLogin();
  return r;
}

// --- refunds -----------------------------------------------------------------------------------
const REFUNDABLE = ['PAID', 'PAID_UNFULFILLED'];
const refundButton = (id) => h('button', { type: 'button', className: 'refund small danger', dataset: { orderId: id } }, 'Refund');
function syncRefundButton(cell, o) {
  const btn = cell.querySelector('button.refund');
  if (REFUNDABLE.includes(o.status) && !btn) cell.appendChild(refundButton(o.order_id));
  else if (!REFUNDABLE.includes(o.status) && btn) btn.remove();
}
// The answer shows in the card the button is in (#refund-notice or #to-refund-notice).
async function refund(btn) {
  const id = btn.dataset.orderId;
  const box = btn.closest('section').querySelector('.notice.action');
  if (!confirm(`Refund order ${id}?\n\nIts ticket stops working at the door.`)) return;
  const reason = prompt('Reason for the refund (kept in the activity log):', '');
  if (reason === null) return;
  const url = '/api/admin/orders/' + encodeURIComponent(id) + '/refund';
  btn.disabled = true;
  let r = await adminPost(url, { reason: reason.trim(), force: false });
  // 409: the ticket was already used at the door; refunding it anyway is the admin's call.
  if (r.status === 409 && /admitted/.test((r.data && r.data.detail) || "")) {
    if (!confirm(`${r.data.detail || 'The ticket was admitted at the door.'}\n\nAlready admitted — refund anyway?`)) {
      btn.disabled = false;
      return TF.notice(box, '', 'Not refunded.', r.data.detail || '');
    }
    r = await adminPost(url, { reason: reason.trim(), force: true });
  }
  btn.disabled = false;
  if (r.status === 401) return;
  if (!r.ok) return TF.notice(box, 'error', `Order ${id} was not refunded.`, r.data.detail || `HTTP ${r.status}`);
  box.dataset.orderId = id;
  TF.notice(box, 'ok', `Order ${id} refunded.`, r.data.instruction || '');
  for (const o of [...liveOrders, ...extraOrders.values()]) if (o.order_id === id) Object.assign(o, r.data);
  renderOrders();
  loadToRefund();
  loadActivity();
}

let toRefundSeen = null;
async function loadToRefund() {
  const r = await TF.api('/api/admin/orders?status=PAID_UNFULFILLED&limit=' + LIST_MAX);
  if (r.status === 401) return toLogin();
  if (!r.ok) return;
  const list = r.data.orders || [];
  setText($('#to-refund-count'), int(list.length));
  syncRows($('#to-refund tbody'), list, (o) => o.order_id,
    (o) => h('tr', { dataset: { orderId: o.order_id } }, h('td', { className: 'tabular' }), h('td', {}, h('code', { className: 'id', title: o.order_id })),
      h('td'), h('td', { className: 'email' }), h('td', { className: 'num' }), h('td', {}, refundButton(o.order_id))),
    (tr, o) => {
      setCells(tr, [TF.time(o.paid_at || o.created_at), o.order_id, o.cls, o.email, money(o.amount, o.currency || currency)]);
      tr.cells[2].title = classNames[o.cls] || '';
    }, 'Nothing to refund.');
}
TF.every(30000, loadToRefund);

// --- staff accounts ------------------------------------------------------------------------------
async function loadStaff() {
  const r = await TF.api('/api/admin/staff');
  if (r.status === 401) return toLogin();
  if (!r.ok) return TF.notice($('#staff-notice'), 'error', 'The staff list is unavailable.', r.data.detail || `HTTP ${r.status}`);
  syncRows($('#staff-list tbody'), r.data.staff || [], (s) => s.name,
    (s) => h('tr', { dataset: { name: s.name } }, h('td'), h('td'), h('td', { className: 'tabular' }),
      h('td', {}, h('button', { type: 'button', className: 'staff-remove small secondary', dataset: { name: s.name } }, 'Remove'))),
    (tr, s) => { setCells(tr, [s.name, s.role, TF.dateTime(s.created_at)]); tr.dataset.role = s.role; },
    'No staff accounts.');
}
$('#staff-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const box = $('#staff-notice'), btn = $('#staff-add');
  const body = { name: $('#staff-name').value.trim(), password: $('#staff-password').value, role: $('#staff-role').value };
  btn.disabled = true;
  const r = await adminPost('/api/admin/staff', body);
  btn.disabled = false;
  if (r.status === 401) return;
  if (!r.ok) return TF.notice(box, 'error', r.status === 409 ? `${body.name} exists already.` : 'The account was not added.', r.data.detail || `HTTP ${r.status}`);
  TF.notice(box, 'ok', `Added ${r.data.name || body.name} (${r.data.role || body.role}).`);
  $('#staff-form').reset();
  loadStaff();
  loadActivity();
});
async function removeStaff(btn) {
  const name = btn.dataset.name, box = $('#staff-notice');
  if (!confirm(`Remove the account ${name}?\n\nIts sessions end at once.`)) return;
  btn.disabled = true;
  const r = await adminPost('/api/admin/staff/' + encodeURIComponent(name) + '/remove', {});
  btn.disabled = false;
  if (r.status === 401) return;
  if (!r.ok) TF.notice(box, 'error', `${name} was not removed.`, r.data.detail || `HTTP ${r.status}`);
  else TF.notice(box, 'ok', `Removed ${name}.`);
  loadStaff();
  loadActivity();
}
// One listener for the buttons of rows that come and go.
document.addEventListener('click', (e) => {
  const btn = e.target.closest && e.target.closest('button.refund, button.staff-remove');
  if (!btn || btn.disabled) return;
  if (btn.classList.contains('refund')) refund(btn); else removeStaff(btn);
});
loadStaff();

// --- activity log and exports --------------------------------------------------------------------
let activityShown = '';
async function loadActivity() {
  const r = await TF.api('/api/admin/activity?limit=50');
  if (r.status === 401) return toLogin();
  setText($('#activity-note'), r.ok ? 'The newest 50 entries.' : 'Activity unavailable: ' + (r.data.detail || `HTTP ${r.status}`));
  if (!r.ok) return;
  const list = (r.data.entries || []).slice(0, 50);
  const text = JSON.stringify(list);
  if (text === activityShown) return;    // rebuilt only when it changed: keeps a selection
  activityShown = text;
  const detail = (d) => (d === null || d === undefined ? '' : typeof d === 'object' ? JSON.stringify(d) : String(d));
  $('#activity tbody').replaceChildren(...(list.length ? list.map((a) => h('tr', { dataset: { action: a.action } },
    h('td', { className: 'tabular', title: TF.dateTime(a.at) }, TF.time(a.at)), h('td', {}, a.staff), h('td', {}, a.action),
    h('td', { className: 'detail' }, detail(a.detail))))
    : [h('tr', {}, h('td', { colspan: 4, className: 'empty' }, 'Nothing yet.'))]));
}
TF.every(10000, loadActivity);

function updateExports() {
  const status = filterSel.value;
  $('#export-orders').href = '/api/admin/export/orders.csv' + (status ? '?status=' + encodeURIComponent(status) : '');
  setText($('#export-orders-filter'), status ? `(${status})` : '(all)');
}
updateExports();
