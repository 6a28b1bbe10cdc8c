// Staff pages (door, box office): the session helpers they share, on top of app.js.
// A page loads app.js, then this, then its own script.
'use strict';
(function (TF) {
  const { $ } = TF;
  const toLogin = () => { location.href = '/admin/login'; };

  // The CSRF token every staff JSON POST carries. Fetched once; fetched again only when the
  // server refuses it (the session was renewed, or the server restarted with a new secret).
  let token = '', pending = null;
  function csrf(fresh) {
    if (token && !fresh) return Promise.resolve(token);
    if (!pending) {
      pending = TF.api('/api/admin/csrf').then((r) => {
        pending = null;
        if (r.status === 401) { toLogin(); return ''; }
        if (r.ok && r.data.csrf) {
          token = r.data.csrf;
          const form = $('#logout');
          if (form) { form.elements.csrf.value = token; form.querySelector('button').disabled = false; }
        }
        return token;
      });
    }
    return pending;
  }

  const csrfRefused = (r) => r.status === 403 && /csrf/i.test(String(r.data.detail || ''));

  // POST JSON with the token; one retry with a fresh token if it was refused. A request that
  // takes longer than timeoutMs counts as a network error (status 0): at the door a hung
  // request must not leave the queue waiting. 401 goes to the sign-in page.
  async function post(url, body, timeoutMs) {
    const send = (t) => TF.api(url, {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': t },
      signal: timeoutMs && window.AbortSignal && AbortSignal.timeout ? AbortSignal.timeout(timeoutMs) : undefined,
    });
    let r = await send(await csrf());
    if (csrfRefused(r)) r = await send(await csrf(true));
    if (r.status === 401) toLogin();
    return r;
  }

  async function get(url) {
    const r = await TF.api(url);
    if (r.status === 401) toLogin();
    return r;
  }

  // Fills #staff-me with who is signed in; resolves to {name, role} (or null).
  async function me() {
    const r = await get('/api/staff/me');
    if (!r.ok) return null;
    const el = $('#staff-me');
    if (el) {
      TF.setText(el, r.data.name);
      el.title = 'Signed in as ' + r.data.name + ' (' + String(r.data.role || '').replace('_', ' ') + ')';
      el.dataset.role = r.data.role || '';
    }
    return r.data;
  }

  TF.staff = { csrf, post, get, me, toLogin };
})(window.TF);
