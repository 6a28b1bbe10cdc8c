// The script of admin-login.html (no inline script: the pages' Content-Security-Policy allows none).
'use strict';
const { $ } = TF;
const errBox = $('#login-error');
const errors = {
  invalid: ['Wrong username or password.', 'Please check both and try again.'],
  busy: ['Too many sign-in attempts at once.', 'Please wait a few seconds, then try again.'],
  csrf: ['Your sign-in form expired.', 'Please try again.'],
};
const code = TF.params().get('error');
if (code) {
  const [title, text] = errors[code] || ['Sign-in failed.', 'Please try again.'];
  TF.notice(errBox, 'error', title, text);
  errBox.dataset.error = code;
}
TF.brand();

let haveToken = false;
async function loadToken() {
  const r = await TF.api('/api/admin/csrf');
  if (r.ok && r.data.csrf) {
    $('#csrf').value = r.data.csrf;
    haveToken = true;
    if (errBox.dataset.error === 'token') { errBox.replaceChildren(); delete errBox.dataset.error; }
  } else {
    TF.notice(errBox, 'error', 'Sign-in is unavailable right now.', r.data.detail || '', 'Retrying…');
    errBox.dataset.error = 'token';
    setTimeout(loadToken, 3000);
  }
}
loadToken();
$('#login').addEventListener('submit', (e) => {
  if (!haveToken) { e.preventDefault(); TF.notice(errBox, 'error', 'Please wait a moment.', 'The sign-in form is still loading.'); return; }
  setTimeout(() => { $('#login-submit').disabled = true; }, 0);
});
$('#username').focus();
