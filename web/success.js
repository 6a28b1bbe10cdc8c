// The script of success.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, h, money } = TF;
const orderId = TF.params().get('order_id') || '';
const result = $('#result');
const FINAL = ['PAID', 'PAID_UNFULFILLED', 'FAILED', 'CANCELED', 'EXPIRED'];
let className = {}, started = Date.now(), shown = null;
TF.brand();
TF.event().then((ev) => { for (const c of ev.classes) className[c.id] = c.name; if (shown) render(shown); }).catch(() => {});

const orderLine = (o) => h('p', { className: 'muted small' }, 'Order ', h('code', {}, o.order_id));
const again = (text) => h('div', { className: 'actions' }, h('a', { className: 'button', href: '/demo/checkout' }, text || 'Try again'));

function paid(o) {
  const qr = '/api/orders/' + encodeURIComponent(o.order_id) + '/qr.svg';
  const code = String(o.ticket_code || '');
  return [
    h('div', { className: 'notice ok' }, h('strong', {}, 'Payment received. You are in!'), 'Show this code at the entrance.'),
    h('div', { className: 'ticket' },
      h('div', { className: 'muted' }, className[o.cls] ? `${className[o.cls]} (${o.cls})` : o.cls),
      h('img', { id: 'qr', src: qr, alt: 'QR code of ticket ' + code, width: 288, height: 288 }),
      h('div', { className: 'muted small' }, 'Ticket code'),
      h('div', { className: 'ticket-code mono', id: 'ticket-code' }, code),
      h('p', {}, 'Goodie: ', h('b', { id: 'goodie', dataset: { goodie: o.got_goodie ? 'yes' : 'no' } },
        o.got_goodie ? 'Yes — collect it at the merch stand' : 'No (all goodies were taken)'))),
    h('dl', { className: 'summary' },
      h('dt', {}, 'Paid'), h('dd', {}, money(o.amount, o.currency)),
      o.paid_at ? [h('dt', {}, 'At'), h('dd', {}, TF.dateTime(o.paid_at))] : null,
      h('dt', {}, 'Order'), h('dd', {}, h('code', {}, o.order_id))),
    h('div', { className: 'actions' },
      h('a', { className: 'button', id: 'qr-download', href: qr, download: 'ticket-' + code.replace(/[^A-Za-z0-9_-]/g, '_') + '.svg' }, 'Download QR code'),
      h('button', { type: 'button', className: 'secondary', onclick: () => window.print() }, 'Print ticket')),
  ];
}

const views = {
  PAID: paid,
  PAID_UNFULFILLED: (o) => [
    h('div', { className: 'notice error' }, h('strong', {}, 'Paid, but no ticket was left.'),
      'Your payment arrived after your hold expired, and the last tickets of this class were sold meanwhile. ',
      `You will be refunded ${money(o.amount, o.currency)}. No ticket was issued.`),
    orderLine(o)],
  FAILED: (o) => [
    h('div', { className: 'notice error' }, h('strong', {}, 'Payment failed.'), 'Nothing was charged and your ticket hold was released.'),
    orderLine(o), again()],
  CANCELED: (o) => [
    h('div', { className: 'notice' }, h('strong', {}, 'Payment canceled.'), 'Nothing was charged and your ticket hold was released.'),
    orderLine(o), again()],
  EXPIRED: (o) => [
    h('div', { className: 'notice' }, h('strong', {}, 'Your hold expired.'),
      'The payment did not arrive in time, so the ticket went back on sale. If a payment still arrives, this page updates by itself.'),
    orderLine(o), again('Start a new order')],
};

function render(o) {
  shown = o;
  result.dataset.status = o.status;
  delete result.dataset.waiting;
  const view = views[o.status];
  if (view) {
    result.replaceChildren(...view(o).flat());
    TF.setText($('#title'), o.status === 'PAID' ? 'Your ticket' : 'Your order');
  }
}

function fail(status, title, text) {
  result.dataset.status = status;
  result.replaceChildren(h('div', { className: 'notice error' }, h('strong', {}, title), text), again('Back to checkout'));
}

async function poll() {
  if (!orderId) return fail('UNKNOWN', 'No order given.', 'This page needs an order id.');
  const r = await TF.api('/api/orders/' + encodeURIComponent(orderId));
  const waited = Date.now() - started;
  if (r.status === 404) return fail('NOT_FOUND', 'Order not found.', 'There is no order with this id.');
  if (r.ok) {
    const o = r.data;
    if (!shown || shown.status !== o.status || shown.ticket_code !== o.ticket_code) {
      if (FINAL.includes(o.status)) render(o); else shown = o;
    }
    // PAID, PAID_UNFULFILLED, FAILED, CANCELED are final. EXPIRED may still turn PAID on a late payment.
    if (FINAL.includes(o.status) && o.status !== 'EXPIRED') return;
    if (o.status === 'EXPIRED') return later(waited < 120000 ? 2000 : 10000);
  }
  if (waited > 15000 && result.dataset.status === 'PENDING') {
    // Rebuilt only when its text changes: it is in a live region, and a screen reader would
    // otherwise announce it again at every poll.
    const text = ' Still waiting for the payment outcome… ' + (r.ok ? '' : (r.data.detail || ''));
    if (result.dataset.waiting !== text) {
      result.dataset.waiting = text;
      result.replaceChildren(h('div', { className: 'notice info' }, h('span', { className: 'spinner', 'aria-hidden': 'true' }), text));
    }
  }
  later(waited < 60000 ? 500 : 3000);
}

// The next poll in ms, or when the tab is shown again if it is hidden by then.
function later(ms) {
  setTimeout(() => {
    if (document.hidden) document.addEventListener('visibilitychange', poll, { once: true });
    else poll();
  }, ms);
}
poll();
