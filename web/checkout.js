// The script of checkout.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, h, money } = TF;
const params = TF.params();
const box = $('#status');
const form = $('#form'), select = $('#cls'), email = $('#email'), submit = $('#submit');
let classes = [], currency = '', soldOut = {}, busy = false;
TF.brand();

function orderLine(id) {
  return id ? h('span', {}, 'Order ', h('code', { className: 'order-id' }, id), '. ') : null;
}

// Messages for the way back from MockPay (?status=…&order_id=…).
const returnMessages = {
  failed: ['Payment failed.', 'Nothing was charged and your ticket hold was released. You can try again below.'],
  canceled: ['Payment canceled.', 'Your ticket hold was released. You can try again below whenever you like.'],
  sold_out: ['Sold out.', 'Sorry, that ticket class is sold out. Pick another class if one is left.'],
  expired: ['Your hold expired.', 'The ticket was released. You can try again below.'],
};
const st = params.get('status');
if (st) {
  const [title, text] = returnMessages[st] || ['Something went wrong.', 'You can try again below.'];
  TF.notice(box, 'error', title, orderLine(params.get('order_id')), text);
  box.dataset.status = st;
}

function label(c) {
  return `${c.name} — ${money(c.price_cents, currency)}` + (soldOut[c.id] ? ' — sold out' : '');
}

function renderOptions() {
  const wanted = select.value || params.get('cls') || '';
  select.replaceChildren(...classes.map((c) =>
    h('option', { value: c.id, disabled: !!soldOut[c.id] }, label(c))));
  const pick = classes.find((c) => c.id === wanted && !soldOut[c.id]) || classes.find((c) => !soldOut[c.id]);
  if (pick) select.value = pick.id;
  const none = classes.length > 0 && !pick;
  submit.disabled = none || busy;
  if (none && !box.dataset.status) {
    TF.notice(box, 'error', 'Sold out.', 'Every ticket class is sold out. Thank you for your interest!');
    box.dataset.status = 'all_sold_out';
  }
}

async function refreshInventory() {
  const r = await TF.api('/api/inventory');
  if (!r.ok) return;
  const next = {};
  for (const [id, c] of Object.entries(r.data)) if (id !== 'goodies') next[id] = !!c.sold_out;
  if (JSON.stringify(next) !== JSON.stringify(soldOut)) { soldOut = next; renderOptions(); }
}

async function init() {
  try {
    const ev = await TF.event();
    classes = ev.classes; currency = ev.currency;
    const mins = Math.round((Number(ev.hold_timeout_s) || 0) / 60);
    if (mins >= 1) TF.setText($('#cls-hint'), `Your ticket is held for ${mins} minute${mins === 1 ? '' : 's'} while you pay.`);
    renderOptions();
    TF.every(5000, refreshInventory);
  } catch (e) {
    TF.notice(box, 'error', 'The event cannot be loaded right now.', 'Retrying…');
    setTimeout(init, 3000);
  }
}
init();

// Back from MockPay via the browser's back button: the page may come from the bfcache mid-submit.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) { busy = false; submit.textContent = 'Continue to payment'; renderOptions(); }
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (busy) return;
  if (!form.reportValidity()) return;   // the browser's own messages for the email
  busy = true; submit.disabled = true;
  email.removeAttribute('aria-invalid');
  submit.replaceChildren(h('span', { className: 'spinner', 'aria-hidden': 'true' }), ' Reserving your ticket…');
  const cls = select.value;
  const r = await TF.postJSON('/api/checkout', { cls, customer_email: email.value.trim() });
  if (r.ok && r.data.redirect_url) { location.href = r.data.redirect_url; return; }
  busy = false;
  submit.textContent = 'Continue to payment';
  delete box.dataset.status;
  if (r.status === 409) {
    soldOut[r.data.cls || cls] = true;
    const c = classes.find((x) => x.id === (r.data.cls || cls));
    TF.notice(box, 'error', 'Sold out.', `${c ? c.name : 'This class'} just sold out. Pick another class if one is left.`);
    box.dataset.status = 'sold_out';
    renderOptions();
  } else if (r.status === 403) {
    // mockpay = false: a real event sells at the box office only.
    TF.notice(box, 'error', 'Online sales are closed.', 'Tickets are sold at the box office.');
    box.dataset.status = 'closed';
  } else if (r.status === 400) {
    const badEmail = /^invalid customer_email/.test(r.data.detail || '');
    TF.notice(box, 'error', 'Please check your details.',
      badEmail ? 'This email address cannot receive tickets. Please check it (name@example.com).' : 'Please pick a ticket class and try again.');
    box.dataset.status = 'invalid';
    if (badEmail) { email.setAttribute('aria-invalid', 'true'); email.focus(); }
  } else {
    // The server's detail is for operators (it may name files and disks); customers get the gist.
    const busyNow = r.status === 503 || r.status === 0;
    TF.notice(box, 'error', 'We could not reserve your ticket.',
      busyNow ? 'The box office is very busy or briefly unavailable.' : `Error ${r.status}.`, 'Please try again in a moment.');
    box.dataset.status = 'error';
  }
  submit.disabled = false;
  renderOptions();
});
