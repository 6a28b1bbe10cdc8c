// TigerFans shared helpers. Every server string goes into the DOM as text, never as HTML.
'use strict';
// What the Content-Security-Policy refused on this page (the browser tests expect nothing).
window.TF_CSP_VIOLATIONS = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.TF_CSP_VIOLATIONS.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
(function (global) {
  const $ = (sel, root) => (root || document).querySelector(sel);

  // h('td', {className: 'num', dataset: {x: 1}, title: 't'}, 'text', childNode, ...)
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'className') node.className = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // Sets text only when it changed (keeps selections and avoids layout work on live pages).
  function setText(node, text) {
    text = text === undefined || text === null ? '' : String(text);
    if (node && node.textContent !== text) node.textContent = text;
  }

  const moneyFormats = new Map();
  function money(cents, currency) {
    const n = Number(cents) / 100;
    if (!Number.isFinite(n)) return '';
    const cur = String(currency || '').toUpperCase();
    let fmt = moneyFormats.get(cur);
    if (fmt === undefined) {
      try { fmt = new Intl.NumberFormat(undefined, { style: 'currency', currency: cur }); } catch (_) { fmt = null; }
      moneyFormats.set(cur, fmt);
    }
    return fmt ? fmt.format(n) : n.toFixed(2) + (cur ? ' ' + cur : '');
  }

  const intFormat = new Intl.NumberFormat('en-US');
  const int = (n) => (Number.isFinite(Number(n)) ? intFormat.format(Number(n)) : '–');

  // Timestamps: Unix ms, Unix seconds, or an ISO string. Returns a Date or null.
  function toDate(t) {
    if (t === undefined || t === null || t === '') return null;
    if (typeof t === 'number' || /^\d+(\.\d+)?$/.test(String(t))) {
      const n = Number(t);
      if (n <= 0) return null;
      return new Date(n < 1e11 ? n * 1000 : n);
    }
    const d = new Date(t);
    return isNaN(d) ? null : d;
  }
  function time(t) {
    const d = toDate(t);
    if (!d) return '';
    const sameDay = d.toDateString() === new Date().toDateString();
    const hms = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    return sameDay ? hms : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hms;
  }
  function dateTime(t) {
    const d = toDate(t);
    return d ? d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '';
  }
  // An event date like "2026-12-31" is shown as that calendar day, whatever the time zone.
  function eventDate(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(s || ''));
    if (!m) return String(s || '');
    const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], 12));
    return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' });
  }

  // ms → "m:ss" (or "h:mm:ss"); 0 or less → "expired".
  function mmss(ms) {
    const s = Math.ceil(ms / 1000);
    if (!(s > 0)) return 'expired';
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
  }

  // fetch + JSON: resolves to {ok, status, data} and never throws (status 0 = network error).
  async function api(url, opts) {
    let res;
    try {
      res = await fetch(url, Object.assign({ headers: { accept: 'application/json' }, cache: 'no-store' }, opts || {}));
    } catch (e) {
      return { ok: false, status: 0, data: { detail: 'Network error: the server cannot be reached.' } };
    }
    let data = null;
    const text = await res.text().catch(() => '');
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text.slice(0, 200) }; }
    if (!res.ok && (!data || typeof data !== 'object')) data = { detail: `HTTP ${res.status}` };
    return { ok: res.ok, status: res.status, data: data || {} };
  }
  const postJSON = (url, body, headers) => api(url, {
    method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: Object.assign({ 'content-type': 'application/json', accept: 'application/json' }, headers || {}),
  });

  let eventPromise = null;
  function event() {
    if (!eventPromise) {
      eventPromise = api('/api/event').then((r) => {
        if (!r.ok) { eventPromise = null; throw new Error(r.data.detail || 'no event'); }
        return r.data;
      });
    }
    return eventPromise;
  }

  const params = () => new URLSearchParams(location.search);

  // A notice box: kind is '', 'error', 'ok' or 'info'; title is optional bold first line.
  function notice(box, kind, title, ...lines) {
    box.className = 'notice' + (kind ? ' ' + kind : '');
    box.replaceChildren();
    if (title) box.appendChild(h('strong', {}, title));
    for (const l of lines) if (l) box.appendChild(l instanceof Node ? l : h('span', {}, l, ' '));
  }

  // Runs fn now and every ms, skipping a tick while the previous one is still running, and
  // while the tab is hidden (a rush's open background tabs would otherwise keep polling the
  // server); a tab shown again runs it at once.
  function every(ms, fn) {
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try { await fn(); } catch (e) { console.error(e); } finally { busy = false; }
    };
    document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
    tick();
    return setInterval(tick, ms);
  }

  // Fills the page's title/brand with the event name, if the page has those hooks.
  function brand() {
    event().then((ev) => {
      document.querySelectorAll('[data-event-name]').forEach((n) => setText(n, ev.event_name));
    }).catch(() => {});
  }

  global.TF = { $, h, setText, money, int, toDate, time, dateTime, eventDate, mmss, api, postJSON, event, params, notice, every, brand };
})(window);
