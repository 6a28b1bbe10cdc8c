// The script of index.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $, h, setText, money, int } = TF;
let currency = '';

function card(c) {
  const id = c.id;
  return h('article', { className: 'card class-card', dataset: { cls: id } },
    h('h3', {}, c.name),
    h('div', { className: 'price' }, money(c.price_cents, currency)),
    h('div', { className: 'meter', 'aria-hidden': 'true' }, h('span')),
    h('div', { className: 'avail' },
      h('b', { id: 'avail-' + id }, '…'), ' ',
      h('span', { className: 'avail-label' }, 'available'), ' ',
      h('span', { className: 'badge sold-out', hidden: true })),
    h('a', { className: 'button', href: '/demo/checkout?cls=' + encodeURIComponent(id) }, 'Choose ', c.name));
}

async function loadEvent() {
  try {
    const ev = await TF.event();
    currency = ev.currency;
    document.title = ev.event_name + ' · Tickets';
    setText($('#event-name'), ev.event_name);
    setText($('#event-date'), TF.eventDate(ev.event_date));
    setText($('#event-tagline'), ev.event_tagline);
    setText($('#goodies-limit'), int(ev.goodie_limit));
    $('#classes').replaceChildren(...ev.classes.map(card));
  } catch (e) {
    TF.notice($('#load-error'), 'error', 'The event cannot be loaded right now.', 'Retrying…');
    setTimeout(loadEvent, 3000);
  }
}

async function refresh() {
  const r = await TF.api('/api/inventory');
  if (!r.ok) { setText($('#updated'), 'Availability could not be refreshed; showing the last known figures.'); return; }
  const inv = r.data;
  for (const [id, c] of Object.entries(inv)) {
    if (id === 'goodies') continue;
    const el = document.getElementById('avail-' + id);
    if (!el) continue;
    const cardEl = el.closest('.class-card');
    el.dataset.available = c.available;
    setText(el, int(c.available));
    cardEl.classList.toggle('sold-out', !!c.sold_out);
    cardEl.dataset.soldOut = c.sold_out ? 'true' : 'false';
    const badge = cardEl.querySelector('.badge.sold-out');
    badge.hidden = !c.sold_out;
    setText(badge, c.sold_out ? 'Sold out' : '');   // no hidden "Sold out" text in the page while on sale
    setText(cardEl.querySelector('.avail-label'), c.sold_out ? 'left' : 'available');
    const link = cardEl.querySelector('a.button');
    link.hidden = !!c.sold_out;
    const pct = c.capacity > 0 ? Math.max(0, Math.min(100, 100 * (c.capacity - c.available) / c.capacity)) : 100;
    cardEl.querySelector('.meter > span').style.width = pct.toFixed(1) + '%';
  }
  if (inv.goodies) {
    const g = $('#goodies-left');
    g.dataset.available = inv.goodies.available;
    setText(g, int(inv.goodies.available));
    setText($('#goodies-limit'), int(inv.goodies.limit));
    setText($('#goodies-label'), inv.goodies.available === 1 ? 'goodie left' : 'goodies left');
  }
  const allSoldOut = Object.entries(inv).filter(([k]) => k !== 'goodies').every(([, c]) => c.sold_out);
  setText($('#buy'), allSoldOut ? 'Sold out' : 'Buy tickets');
  $('#buy').classList.toggle('secondary', allSoldOut);
  setText($('#updated'), 'Availability updated ' + new Date().toLocaleTimeString() + '.');
  $('#load-error').replaceChildren();
}

loadEvent().then(() => TF.every(2000, refresh));
