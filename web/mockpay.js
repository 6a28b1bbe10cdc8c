// The script of mockpay.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, setText } = TF;
const psid = decodeURIComponent(location.pathname.split('/')[2] || '');
const form = $('#pay');
form.action = '/mockpay/' + encodeURIComponent(psid) + '/emit';
TF.brand();

const buttons = [...form.querySelectorAll('button')];
const labels = new Map(buttons.map((b) => [b, b.textContent]));
let deadline = null, sent = false, clicked = null;
// The button pressed, for browsers without SubmitEvent.submitter.
for (const b of buttons) b.addEventListener('click', () => { clicked = b; });

function resetButtons(disabled) {
  for (const b of buttons) { b.disabled = disabled; b.textContent = labels.get(b); }
}

// Sent with fetch, so that an error (503 while TigerBeetle or the store is away, 404 for a
// session gone) is shown here with the buttons back, not as a bare JSON page; without
// JavaScript the form posts as a plain form and the server's 303 works the same.
form.addEventListener('submit', async (e) => {
  const btn = e.submitter || clicked;
  if (!btn) return;                          // which button is unknown: let the form post itself
  e.preventDefault();
  if (sent) return;                          // one outcome per click; the server keeps the first anyway
  sent = true;
  resetButtons(true);
  btn.textContent = 'Sending…';
  let r = null;
  try {
    r = await fetch(form.action, { method: 'POST', body: new URLSearchParams({ t: btn.value }), redirect: 'follow' });
  } catch (_) { /* shown below */ }
  if (r && r.ok && r.redirected) { location.href = r.url; return; }
  let detail = '';
  if (r) { try { detail = (await r.json()).detail || ''; } catch (_) { /* not JSON */ } }
  TF.notice($('#status'), 'error', 'The shop did not confirm the outcome.',
    r ? (r.status === 503 ? 'The shop is briefly unavailable.' : detail || `Error ${r.status}.`) : 'The shop cannot be reached.',
    'It may still have been recorded: if so, this page now shows it; if not, please try again.');
  sent = false;
  resetButtons(false);
  load();                                    // a recorded outcome (or a session gone) turns the buttons off
});
// Back from the shop's page: the page may come from the back-forward cache as it was left
// ("Sending…", buttons off); show it as it is now.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) { sent = false; resetButtons(false); load(); }
});

function tick() {
  if (deadline === null) return;
  const left = deadline - Date.now();
  const el = $('#countdown');
  setText(el, TF.mmss(left));
  el.classList.toggle('low', left < 30000);
  $('#expired-hint').hidden = left > 0;
}

async function load() {
  const r = await TF.api('/api/sessions/' + encodeURIComponent(psid));
  if (!r.ok) {
    TF.notice($('#status'), 'error', r.status === 404 ? 'Unknown payment session.' : 'The payment session cannot be loaded.', r.data.detail || '');
    if (r.status === 404) form.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    return;
  }
  const s = r.data;
  setText($('#amount'), TF.money(s.amount, s.currency));
  setText($('#order'), s.order_id);
  setText($('#cls'), s.cls);
  TF.event().then((ev) => {
    const c = (ev.classes || []).find((x) => x.id === s.cls);
    if (c) setText($('#cls'), c.name + ' (' + c.id + ')');
  }).catch(() => {});
  if (s.order_status && s.order_status !== 'PENDING' && s.order_status !== 'EXPIRED') {
    // Settled: no countdown, nothing to send, a way to the order.
    deadline = null;
    setText($('#countdown'), '—');
    $('#expired-hint').hidden = true;
    resetButtons(true);
    TF.notice($('#status'), 'info', 'This payment already has an outcome: ' + s.order_status + '.',
      'The first valid outcome is final.',
      TF.h('a', { href: '/demo/success?order_id=' + encodeURIComponent(s.order_id) }, 'See the order'));
    return;
  }
  deadline = Date.now() + Math.max(0, Number(s.expires_in_ms) || 0);
  tick();
}
load();
setInterval(tick, 250);
