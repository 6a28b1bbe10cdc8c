// The script of box-office.html: sells a ticket over the counter (cash or card, taken by the
// staff), shows it with its QR code to print, and the shift's takings. No inline script: the
// pages' Content-Security-Policy allows none.
'use strict';
const { $, h, setText, int, money } = TF;
const SELL_TIMEOUT_MS = 15000;
let currency = '', classes = [], picked = '', selling = false;
TF.brand();
TF.staff.csrf();
TF.staff.me().then((me) => {
  if (me && me.role === 'door') {
    TF.notice($('#bo-error'), 'error', 'This account is a door account.', 'It cannot sell tickets: sign in with a box office or admin account.');
  }
});

const payment = () => (($('input[name=payment]:checked') || {}).value || 'cash');
const clsOf = (id) => classes.find((c) => c.id === id);
const clsLabel = (id) => (clsOf(id) ? `${clsOf(id).name} (${id})` : String(id || ''));

// --- the classes, as big buttons with their prices ------------------------------------------
function loadEvent() {
  TF.event().then((ev) => {
    currency = ev.currency;
    classes = ev.classes || [];
    renderClasses();
    TF.every(10000, loadInventory);
  }).catch((e) => {
    TF.notice($('#bo-error'), 'error', 'The event could not be loaded.', String(e.message || e), 'Retrying…');
    setTimeout(loadEvent, 3000);
  });
}
loadEvent();

function renderClasses() {
  $('#bo-error').replaceChildren();
  $('#classes').replaceChildren(...classes.map((c) => h('button', {
    type: 'button', className: 'class-pick', dataset: { cls: c.id }, 'aria-pressed': 'false', onclick: () => pick(c.id),
  }, h('span', { className: 'name' }, c.name), h('span', { className: 'price' }, money(c.price_cents, currency)),
  h('span', { className: 'avail small' }))));
  if (classes.length === 1) pick(classes[0].id);
  updateSell();
}
function pick(id) {
  picked = id;
  for (const b of document.querySelectorAll('.class-pick')) b.setAttribute('aria-pressed', b.dataset.cls === id ? 'true' : 'false');
  updateSell();
}
function updateSell() {
  const c = clsOf(picked);
  $('#sell').disabled = !c || selling;
  setText($('#sell-summary'), c ? `${c.name} · ${money(c.price_cents, currency)} · ${payment()}` : 'Pick a class.');
}
for (const r of document.querySelectorAll('input[name=payment]')) r.addEventListener('change', updateSell);

// What is left per class (the public inventory): a hint only, the sale itself decides.
async function loadInventory() {
  const r = await TF.api('/api/inventory');
  if (!r.ok) return;
  for (const b of document.querySelectorAll('.class-pick')) {
    const c = r.data[b.dataset.cls];
    if (!c || typeof c !== 'object') continue;
    b.dataset.soldOut = c.sold_out ? 'true' : 'false';
    setText(b.querySelector('.avail'), c.sold_out ? 'Sold out' : `${int(c.available)} left`);
  }
}

// --- selling ---------------------------------------------------------------------------------
$('#sell-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!clsOf(picked) || selling) return;
  const box = $('#sell-notice');
  const body = { cls: picked, payment: payment() };
  const email = $('#customer-email').value.trim();
  if (email) body.customer_email = email;
  selling = true; updateSell(); setText($('#sell'), 'Selling…');
  box.replaceChildren();
  const r = await TF.staff.post('/api/box-office/sell', body, SELL_TIMEOUT_MS);
  selling = false; setText($('#sell'), 'Sell'); updateSell();
  if (r.status === 401) return;
  if (r.ok) {
    showTicket(r.data, body.payment);
    TF.notice(box, 'ok', 'Sold.', `Take ${money(r.data.amount, r.data.currency || currency)} by ${body.payment}.`);
    $('#customer-email').value = '';
  } else if (r.status === 409) {
    TF.notice(box, 'error', 'Sold out', `No ${clsLabel(picked)} ticket is left. Nothing was sold.`);
  } else if (r.status === 0) {
    // The request may have reached the server: selling again could sell twice.
    TF.notice(box, 'error', 'No answer from the server.', 'The ticket may or may not have been sold: check the shift report before selling again.');
  } else if (r.status === 503) {
    TF.notice(box, 'error', 'Selling is unavailable right now.', r.data.detail || '', 'Nothing was sold. Try again in a moment.');
  } else {
    TF.notice(box, 'error', 'The sale was refused.', r.data.detail || `HTTP ${r.status}`);
  }
  loadReport();
  loadInventory();
});

function showTicket(t, pay) {
  const section = $('#ticket');
  const code = String(t.ticket_code || '');
  section.dataset.orderId = t.order_id || '';
  setText($('#ticket-class'), clsLabel(t.cls));
  setText($('#ticket-code'), code);
  const qr = $('#qr');
  // Same origin only (the CSP allows no other image source anyway).
  qr.src = /^\/[^/]/.test(String(t.qr_url || '')) ? t.qr_url : '/api/orders/' + encodeURIComponent(t.order_id) + '/qr.svg';
  qr.alt = 'QR code of ticket ' + code;
  setText($('#ticket-amount'), money(t.amount, t.currency || currency));
  setText($('#ticket-payment'), `(${pay})`);
  setText($('#ticket-order'), t.order_id);
  section.hidden = false;
  section.scrollIntoView({ block: 'nearest' });
}
$('#print').addEventListener('click', () => window.print());

// --- the shift report --------------------------------------------------------------------------
async function loadReport() {
  const r = await TF.staff.get('/api/box-office/report');
  setText($('#report-note'), r.ok || r.status === 401 ? '' : 'Report unavailable: ' + (r.data.detail || 'HTTP ' + r.status));
  if (!r.ok) return;
  const cur = r.data.currency || currency;
  const rows = r.data.staff || [];
  const num = (v) => h('td', { className: 'num' }, v);
  const line = (s, attrs) => h('tr', attrs, h('td', {}, s.name), num(int(s.tickets)), num(int(s.cash_count)), num(money(s.cash_amount, cur)),
    num(int(s.card_count)), num(money(s.card_amount, cur)), num(money((Number(s.cash_amount) || 0) + (Number(s.card_amount) || 0), cur)));
  const tbody = $('#shift-report tbody');
  if (!rows.length) return tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7, className: 'empty' }, 'No sales yet.')));
  const out = rows.map((s) => line(s, { dataset: { staff: s.name } }));
  if (rows.length > 1) {
    const sum = (k) => rows.reduce((a, s) => a + (Number(s[k]) || 0), 0);
    out.push(line({ name: 'All', tickets: sum('tickets'), cash_count: sum('cash_count'), cash_amount: sum('cash_amount'),
      card_count: sum('card_count'), card_amount: sum('card_amount') }, { className: 'total', dataset: { total: 'true' } }));
  }
  tbody.replaceChildren(...out);
}
TF.every(30000, loadReport);
