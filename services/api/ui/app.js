// kiln web UI: session, router, live updates. Views live in views.js, hosts.js, vetting.js, volumes.js and roots.js.
import { api, setCSRF, h, fill } from './api.js';
import { loginView, dashboardView, leasesView, logsView, settingsView, usersView } from './views.js';
import { hostsView, hostView, hostFormView } from './hosts.js';
import { vettingView } from './vetting.js';
import { volumesView } from './volumes.js';
import { rootsView } from './roots.js';

const main = document.getElementById('main');
const state = { session: null, info: null };
const bus = new EventTarget(); // live events: hosts, leases, boot, status
let source = null;             // the EventSource while logged in
let viewAbort = null;          // ends the current view's listeners

const routes = [
  [/^#?\/?$/, dashboardView, 'Dashboard'],
  [/^#\/hosts$/, hostsView, 'Hosts'],
  [/^#\/hosts\/new$/, hostFormView, 'New host'],
  [/^#\/hosts\/([^/]+)\/edit$/, hostFormView, 'Edit host'],
  [/^#\/hosts\/([^/]+)$/, hostView, 'Host'],
  [/^#\/vetting(?:\/([^/]+))?$/, vettingView, 'Vetting'],
  [/^#\/volumes$/, volumesView, 'Volumes'],
  [/^#\/roots$/, rootsView, 'Root images'],
  [/^#\/leases$/, leasesView, 'Leases'],
  [/^#\/logs(?:\/([^/]+))?$/, logsView, 'Logs'],
  [/^#\/settings$/, settingsView, 'Settings'],
  [/^#\/users$/, usersView, 'Users & tokens'],
];

// render shows the view for the current hash.
async function render() {
  if (viewAbort) viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  if (!state.session) {
    document.getElementById('top').hidden = true;
    document.title = (state.info?.site_name || 'kiln') + ' · log in';
    loginView({ main, info: state.info, onLogin: loggedIn });
    return;
  }
  const hash = location.hash || '#/';
  let match = null, view = null, title = '';
  for (const [re, v, t] of routes) {
    match = hash.match(re);
    if (match) { view = v; title = t; break; }
  }
  for (const a of document.querySelectorAll('nav a')) {
    const href = a.getAttribute('href');
    a.classList.toggle('active', href === '#/' ? hash === '#/' || hash === '' : hash.startsWith(href));
  }
  document.getElementById('nav').classList.remove('open');
  document.title = title + ' · ' + (state.info?.site_name || 'kiln');
  if (!view) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No page ', h('code', {}, hash), '. ', h('a', { href: '#/' }, 'Back to the dashboard')));
    return;
  }
  const ctx = {
    main, signal, session: state.session, params: match.slice(1).map(p => p && decodeURIComponent(p)),
    // on listens to a live event until the view changes.
    on: (name, fn) => bus.addEventListener(name, e => fn(e.detail), { signal }),
    go: hash => { location.hash = hash; },
    refreshSession,
  };
  try {
    await view(ctx);
  } catch (err) {
    if (signal.aborted) return;
    if (err.status === 401) return;
    fill(main, h('h1', {}, title), h('p', { class: 'form-error' }, err.message));
  }
}

function startLive() {
  if (source) source.close();
  source = new EventSource('/api/v1/events');
  const dot = document.getElementById('live');
  source.onopen = () => dot.classList.add('on');
  source.onerror = () => dot.classList.remove('on');
  for (const name of ['hosts', 'leases', 'boot', 'status']) {
    source.addEventListener(name, e => {
      let detail = null;
      try { detail = JSON.parse(e.data); } catch { /* keep null */ }
      bus.dispatchEvent(new CustomEvent(name, { detail }));
    });
  }
}

function showSession() {
  const s = state.session;
  setCSRF(s.csrf_token);
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = s.user + ' (' + s.role + ')';
  document.getElementById('logout').hidden = s.via !== 'session';
  const notice = document.getElementById('notice');
  if (s.initial_password) {
    fill(notice, 'You are logged in with the first-boot password. ',
      h('a', { href: '#/settings' }, 'Change it now'), ' — it is printed on the appliance console until you do.');
    notice.hidden = false;
  } else {
    notice.hidden = true;
  }
}

async function refreshSession() {
  state.session = await api('GET', '/api/v1/session', undefined, { quiet: true });
  showSession();
}

async function loggedIn(session) {
  state.session = session;
  showSession();
  startLive();
  if (location.hash === '#/login' || !location.hash) location.hash = '#/';
  else render();
}

async function logout() {
  try { await api('DELETE', '/api/v1/session'); } catch { /* gone already */ }
  loggedOut();
}

function loggedOut() {
  state.session = null;
  setCSRF('');
  if (source) { source.close(); source = null; }
  document.getElementById('notice').hidden = true;
  render();
}

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  const toggle = document.getElementById('nav-toggle');
  toggle.addEventListener('click', () => {
    const nav = document.getElementById('nav');
    nav.classList.toggle('open');
    toggle.setAttribute('aria-expanded', nav.classList.contains('open'));
  });
  window.addEventListener('hashchange', render);
  window.addEventListener('kiln:unauthenticated', () => { if (state.session) loggedOut(); });
  try { state.info = await api('GET', '/api/v1/info'); } catch { state.info = { site_name: 'kiln' }; }
  document.getElementById('site-name').textContent = state.info.site_name || 'kiln';
  try {
    state.session = await api('GET', '/api/v1/session', undefined, { quiet: true });
    showSession();
    startLive();
  } catch {
    state.session = null;
  }
  render();
}

start();
