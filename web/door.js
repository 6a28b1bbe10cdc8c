// The script of door.html: checks tickets at a door. Three inputs end in the same check: the
// camera (decoded with jsQR), a keyboard-wedge scanner (it types the code and Enter into #code),
// and typing by hand. No inline script: the pages' Content-Security-Policy allows none.
'use strict';
const { $, h, setText, int } = TF;
const DOOR_RE = /^[a-z0-9_-]{1,8}$/;
const SAME_QR_MS = 3000;      // a QR seen again within this of its last sighting is the same scan
const VERDICT_MS = 1500;      // how long an answer covers the screen
const FRAME_MS = 66;          // ~15 decodes a second: enough for a QR held up, light on a phone's CPU
const MAX_SIDE = 640;         // frames are decoded at most this big: jsQR's time grows with the pixels
const SCAN_TIMEOUT_MS = 8000; // a hung request is a failed check (amber), not a queue that waits
const classNames = {};
// With re-entry on (the event's re_entry), the door scans in or out: the toggle says which.
let direction = 'in';
TF.event().then((ev) => {
  for (const c of ev.classes) classNames[c.id] = c.name;
  const toggle = $('#direction');
  if (ev.re_entry && toggle) {
    toggle.hidden = false;
    toggle.addEventListener('click', () => {
      direction = direction === 'in' ? 'out' : 'in';
      toggle.dataset.direction = direction;
      toggle.textContent = direction === 'in' ? 'Scanning: entry' : 'Scanning: EXIT';
      toggle.setAttribute('aria-pressed', String(direction === 'out'));
    });
  }
}).catch(() => {});
TF.staff.csrf();
TF.staff.me().then((me) => {
  if (me && me.role === 'box_office') {
    TF.notice($('#door-error'), 'error', 'This account is a box office account.', 'It cannot check tickets: sign in with a door or admin account.');
  }
});

const codeInput = $('#code'), scanner = $('#scanner'), setup = $('#door-setup');
const video = $('#camera'), canvas = $('#camera-canvas');
// Camera state (declared first: focusCode reads it from the start).
let stream = null, cameraOn = false, ctx = null, rafId = 0, lastFrame = 0, lastPayload = '', lastSeen = 0;
// A phone's on-screen keyboard would cover the camera picture: there, #code is not refocused
// while the camera runs (a wedge scanner is a tablet's or a laptop's, with a hardware keyboard).
const coarse = !!(window.matchMedia && matchMedia('(pointer: coarse)').matches);
function focusCode() {
  if (scanner.hidden || (cameraOn && coarse)) return;
  codeInput.focus({ preventScroll: true });
}

// --- the door's name: asked once, kept on this device -------------------------------------
let door = '';
function storedDoor() { try { return localStorage.getItem('tf-door') || ''; } catch (_) { return ''; } }
function setDoor(name) {
  door = name;
  try { localStorage.setItem('tf-door', name); } catch (_) { /* private mode: kept for this visit */ }
  setText($('#door-name'), name);
  $('.door-label').hidden = false;
  setup.hidden = true;
  scanner.hidden = false;
  focusCode();
}
function askDoor() {
  scanner.hidden = true;
  setup.hidden = false;
  $('#door-cancel').hidden = !door;
  $('.door-label').hidden = !door;
  $('#door-input').value = door;
  $('#door-input').focus();
}
setup.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('#door-input').value.trim().toLowerCase();
  const hint = $('#door-hint');
  hint.classList.toggle('bad', !DOOR_RE.test(name));
  if (DOOR_RE.test(name)) setDoor(name); else $('#door-input').focus();
});
$('#door-cancel').addEventListener('click', () => { if (door) setDoor(door); });
$('#change-door').addEventListener('click', askDoor);
// ?door=north sets it too: a bookmark per device, and the browser tests.
const urlDoor = (TF.params().get('door') || '').toLowerCase();
if (DOOR_RE.test(urlDoor)) setDoor(urlDoor);
else if (DOOR_RE.test(storedDoor())) setDoor(storedDoor());
else askDoor();

// --- checking a code: one at a time, in the order scanned ----------------------------------
let queue = Promise.resolve();
function submit(raw, source) {
  let code = String(raw || '').trim();
  // Typed by hand: "tck-abcd…" or without the dash is still the code. A scanned payload is
  // sent exactly as read (a signed payload is case-sensitive).
  const m = source === 'hand' ? /^tck-?([a-z0-9]{10})$/i.exec(code) : null;
  if (m) code = 'TCK-' + m[1].toUpperCase();
  if (!code || !door) return;
  queue = queue.then(() => check(code, source)).catch((e) => console.error(e));
}

async function check(code) {
  setText($('#last-scan'), 'Checking ' + (code.length > 24 ? code.slice(0, 24) + '…' : code));
  const r = await TF.staff.post('/api/door/scan', { code, door, direction }, SCAN_TIMEOUT_MS);
  if (r.status === 401) return;           // on the way to the sign-in page
  show(verdictOf(r));
  if (r.ok && r.data.result === 'admitted') loadCounts();
}

const clsLabel = (id) => (!id ? '' : classNames[id] ? `${classNames[id]} (${id})` : String(id));
// Green only for an explicit "admitted"; every other decided answer is red; no decision is amber.
function verdictOf(r) {
  const d = r.data || {};
  const base = { result: String(d.result || ''), orderId: d.order_id || '', color: 'red', sub: '', detail: '' };
  if (r.status === 200 && d.result) {
    switch (d.result) {
      case 'admitted': return Object.assign(base, { color: 'green', title: 'Welcome', sub: clsLabel(d.cls) });
      case 'already_admitted': return Object.assign(base, { title: 'Already admitted',
        sub: `at ${d.door || '?'} ${TF.time(d.admitted_at)} by ${d.staff || '?'}`, detail: clsLabel(d.cls) });
      case 'not_paid': return Object.assign(base, { title: 'Not paid', sub: 'Order status: ' + (d.status || 'unknown') });
      case 'refunded': return Object.assign(base, { title: 'Refunded', sub: 'This ticket was refunded: it is not valid.' });
      case 'unknown': return Object.assign(base, { title: 'Unknown ticket', sub: 'No ticket has this code.' });
      case 'invalid': return Object.assign(base, { title: 'Invalid code', sub: 'Forged or damaged.', detail: d.detail || '' });
      // An exit is no entry: green means "let out", shown as such.
      case 'exited': return Object.assign(base, { color: 'green', title: 'Goodbye', sub: 'May come back in once more. ' + clsLabel(d.cls) });
      case 'not_inside': return Object.assign(base, { title: 'Not inside', sub: 'This ticket is not in the venue now.' });
      case 'entries_used_up': return Object.assign(base, { title: 'No re-entry left', sub: 'This ticket has used all its entries.' });
      default: return Object.assign(base, { title: 'Not admitted', sub: String(d.result) });
    }
  }
  Object.assign(base, { color: 'amber', title: 'Could not check — scan again', detail: d.detail || '' });
  if (r.status === 429) return Object.assign(base, { result: 'rate_limited', title: 'Too many typed codes', sub: 'Wait a moment, then try again.' });
  if (r.status === 403) return Object.assign(base, { result: 'forbidden', title: 'Not allowed', sub: 'This account may not check tickets.' });
  if (r.status === 0) return Object.assign(base, { result: 'network_error', detail: 'No answer from the server (network down, or too slow).' });
  return Object.assign(base, { result: r.status === 503 ? 'unavailable' : 'error' });
}

// --- the answer: full screen, a sound, gone after VERDICT_MS --------------------------------
const verdict = $('#verdict');
let hideTimer = 0, seq = 0, forgetOnHide = false;
function show(v) {
  verdict.className = 'verdict ' + v.color;
  verdict.dataset.result = v.result;
  verdict.dataset.color = v.color;
  verdict.dataset.orderId = v.orderId;
  verdict.dataset.seq = String(++seq);   // tells two equal answers in a row apart
  setText($('#verdict-title'), v.title);
  setText($('#verdict-sub'), v.sub);
  setText($('#verdict-detail'), v.detail);
  verdict.hidden = false;
  sound(v.color);
  const last = $('#last-scan');
  last.dataset.result = v.result;
  last.className = 'last-scan ' + v.color;
  setText(last, `${TF.time(Date.now())} · ${v.title}${v.sub ? ' · ' + v.sub : ''}`);
  // "Scan again" has to work with the QR still in front of the camera.
  forgetOnHide = v.color === 'amber';
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hide, VERDICT_MS);
  focusCode();
}
function hide() {
  clearTimeout(hideTimer);
  verdict.hidden = true;          // data-result stays: the last answer can still be read
  if (forgetOnHide) { lastPayload = ''; forgetOnHide = false; }
  focusCode();
}
verdict.addEventListener('click', hide);

// Web Audio: a context may only start after a user gesture, so it is made on the first one.
let audio = null;
function makeAudio() {
  if (audio) return;
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  try { audio = new AC(); } catch (_) { return; }
  for (const ev of ['pointerdown', 'keydown']) document.removeEventListener(ev, makeAudio, true);
}
for (const ev of ['pointerdown', 'keydown']) document.addEventListener(ev, makeAudio, true);
function tone(freq, at, dur, type, vol) {
  const osc = audio.createOscillator(), gain = audio.createGain();
  osc.type = type; osc.frequency.value = freq;
  // Short ramps at both ends: a tone switched on and off abruptly clicks.
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(vol, at + 0.01);
  gain.gain.setValueAtTime(vol, at + dur - 0.02);
  gain.gain.linearRampToValueAtTime(0, at + dur);
  osc.connect(gain).connect(audio.destination);
  osc.start(at); osc.stop(at + dur + 0.01);
}
function sound(color) {
  if (!audio) return;
  if (audio.state === 'suspended') audio.resume().catch(() => {});
  const t = audio.currentTime + 0.02;
  if (color === 'green') tone(1320, t, 0.15, 'sine', 0.35);
  else if (color === 'red') { tone(150, t, 0.2, 'square', 0.25); tone(150, t + 0.28, 0.2, 'square', 0.25); }
  else tone(440, t, 0.35, 'triangle', 0.3);
}

// --- keyboard wedge and typing ---------------------------------------------------------------
$('#scan-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const raw = codeInput.value;
  codeInput.value = '';
  submit(raw, 'hand');
  focusCode();
});
// A scanner types wherever the focus is. Printable keys outside a text field go to #code (the
// key then lands in it), so a tap elsewhere, or on a button (where the scanner's Enter would
// press it), does not lose a scan.
document.addEventListener('keydown', (e) => {
  if (scanner.hidden || e.ctrlKey || e.metaKey || e.altKey || !e.key || e.key.length !== 1) return;
  const t = document.activeElement;
  if (t && t.matches('input, textarea, select')) return;
  if (!verdict.hidden) hide();
  codeInput.focus({ preventScroll: true });
}, true);

// --- camera --------------------------------------------------------------------------------
function cameraStatus(state, text) {
  const el = $('#camera-status');
  el.dataset.state = state;
  el.classList.toggle('bad', state === 'error');
  setText(el, text);
}
function cameraError(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'The camera permission was refused: allow it in the site settings, or use a scanner.';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No camera found on this device.';
  if (name === 'NotReadableError') return 'The camera is in use by another app.';
  return 'The camera could not start: ' + ((e && e.message) || name || 'unknown error');
}
async function startCamera() {
  if (stream) return;
  if (typeof window.jsQR !== 'function') {
    return cameraStatus('error', 'The QR decoder is missing (/static/jsqr.js, made by scripts/vendor-web.sh). Use a scanner or type the code.');
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return cameraStatus('error', 'No camera access on this page: the browser allows it over https (or on localhost) only.');
  }
  $('#camera-start').disabled = true;
  cameraStatus('starting', 'Starting the camera…');
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  } catch (e) {
    $('#camera-start').disabled = false;
    return cameraStatus('error', cameraError(e));
  }
  video.srcObject = stream;
  video.hidden = false;
  video.play().catch(() => {});   // muted + playsinline: allowed without a gesture
  cameraOn = true;
  $('#camera-start').hidden = true; $('#camera-start').disabled = false;
  $('#camera-stop').hidden = false;
  cameraStatus('on', 'Hold the QR code in front of the camera.');
  // Unplugged, or taken by another app.
  for (const t of stream.getVideoTracks()) t.addEventListener('ended', () => { stopCamera(); cameraStatus('error', 'The camera stopped.'); });
  rafId = requestAnimationFrame(frame);
}
function stopCamera() {
  cancelAnimationFrame(rafId);
  if (stream) for (const t of stream.getTracks()) t.stop();
  stream = null; cameraOn = false;
  video.srcObject = null; video.hidden = true;
  $('#camera-start').hidden = false; $('#camera-stop').hidden = true;
  cameraStatus('off', '');
}
// Every animation frame (none while the tab is hidden), throttled to FRAME_MS.
function frame(now) {
  rafId = requestAnimationFrame(frame);
  if (now - lastFrame < FRAME_MS || video.readyState < 2 || !video.videoWidth) return;
  lastFrame = now;
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const w = Math.round(video.videoWidth * scale), ht = Math.round(video.videoHeight * scale);
  if (canvas.width !== w || canvas.height !== ht) { canvas.width = w; canvas.height = ht; ctx = null; }
  ctx = ctx || canvas.getContext('2d', { willReadFrequently: true });
  try {
    ctx.drawImage(video, 0, 0, w, ht);
    // dontInvert: our QR codes are dark on light; trying the inverse too doubles the work per frame.
    const qr = window.jsQR(ctx.getImageData(0, 0, w, ht).data, w, ht, { inversionAttempts: 'dontInvert' });
    if (qr && qr.data) onPayload(qr.data);
  } catch (e) { console.error(e); }
}
// The same QR held in view is one scan: it counts again only after SAME_QR_MS out of sight.
function onPayload(data) {
  const now = Date.now();
  const same = data === lastPayload && now - lastSeen < SAME_QR_MS;
  lastPayload = data; lastSeen = now;
  if (!same && !scanner.hidden) submit(data, 'camera');
}
$('#camera-start').addEventListener('click', () => { startCamera().then(focusCode); });
$('#camera-stop').addEventListener('click', () => { stopCamera(); focusCode(); });
if (TF.params().get('camera') === '1') startCamera();

// --- live counts -----------------------------------------------------------------------------
let countsNote = '';
async function loadCounts() {
  const r = await TF.staff.get('/api/door/counts');
  const note = r.ok ? '' : r.status === 401 ? '' : 'Counts unavailable: ' + (r.data.detail || 'HTTP ' + r.status);
  if (note !== countsNote) { countsNote = note; setText($('#counts-note'), note); }
  if (r.ok) renderCounts(r.data.classes || []);
}
function renderCounts(list) {
  const box = $('#counts');
  const total = list.reduce((s, c) => ({ admitted: s.admitted + (Number(c.admitted) || 0), sold: s.sold + (Number(c.sold) || 0) }), { admitted: 0, sold: 0 });
  const tiles = [Object.assign({ total: true, name: 'All' }, total)].concat(list);
  const key = tiles.map((c) => c.cls || '').join(',');
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren(...tiles.map((c) => h('div', { className: 'stat', dataset: c.total ? { total: 'true' } : { cls: c.cls } },
      h('div', { className: 'label' }), h('div', { className: 'value' }), h('div', { className: 'meter', 'aria-hidden': 'true' }, h('span')))));
  }
  tiles.forEach((c, i) => {
    const tile = box.children[i];
    tile.dataset.admitted = String(c.admitted); tile.dataset.sold = String(c.sold);
    setText(tile.querySelector('.label'), c.name || classNames[c.cls] || c.cls);
    setText(tile.querySelector('.value'), `${int(c.admitted)} / ${int(c.sold)}`);
    tile.querySelector('.meter span').style.width = (c.sold > 0 ? Math.min(100, 100 * c.admitted / c.sold) : 0).toFixed(1) + '%';
  });
}
TF.every(5000, loadCounts);
