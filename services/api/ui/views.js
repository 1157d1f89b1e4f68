// Login, dashboard, leases, logs, settings, users and tokens.
import { api, APIError, h, fill, ago, badge, table, debounce } from './api.js';
import { hostTable } from './hosts.js';

export function loginView({ main, info, onLogin }) {
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', value: 'admin', required: true });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'form-error', id: 'login-error', role: 'alert' });
  const button = h('button', { class: 'primary', id: 'login-submit', type: 'submit' }, 'Log in');
  const form = h('form', { class: 'stack', id: 'login-form' },
    h('label', {}, 'User', user), h('label', {}, 'Password', password), err, button);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    err.textContent = '';
    button.disabled = true;
    try {
      onLogin(await api('POST', '/api/v1/session', { user: user.value.trim(), password: password.value }));
    } catch (e) {
      err.textContent = e.message;
      password.select();
    } finally {
      button.disabled = false;
    }
  });
  fill(main, h('div', { class: 'card login' },
    h('h1', {}, 'Log in to ', (info && info.site_name) || 'kiln'),
    info && info.login_banner ? h('p', { class: 'banner' }, info.login_banner) : null,
    h('p', { class: 'muted' }, 'First boot? Log in as admin with the password shown on the appliance console (also in the recovery menu).'),
    form));
  password.focus();
}

function servicesTable(st) {
  return table('services-table', [
    { title: 'Service', cell: s => h('a', { href: '#/logs/' + encodeURIComponent(s.name) }, s.name) },
    { title: 'State', cell: s => s.enabled ? badge(s.state) : badge('disabled') },
    { title: 'Since', cls: 'hide-narrow', cell: s => s.enabled ? ago(s.since) : '–' },
    { title: 'Restarts', cell: s => String(s.restarts) + (s.crash_loop ? ' (crash loop)' : '') },
  ], st.services || [], 'No services.');
}

function leasesTable(leases, id) {
  return table(id, [
    { title: 'Address', cell: l => l.ip },
    { title: 'MAC', cls: 'mac', cell: l => l.mac || '–' },
    { title: 'Host', cell: l => l.host ? h('a', { href: '#/hosts/' + encodeURIComponent(l.host) }, l.host) : h('span', { class: 'muted' }, l.hostname || 'unknown') },
    { title: 'State', cell: l => badge(l.state) },
    { title: 'Expires', cls: 'hide-narrow', cell: l => ago(l.expires) },
  ], leases, 'No leases.');
}

function eventItem(e) {
  return h('li', { dataset: { id: e.id } }, h('span', { class: 'when' }, ago(e.time)),
    h('span', {}, e.host ? h('a', { href: '#/hosts/' + encodeURIComponent(e.host) }, e.host) : h('span', { class: 'mac' }, e.mac),
      ' ', h('code', {}, e.kind), e.detail ? ' ' + e.detail : ''));
}

// slotsCard shows update/slot status when the appliance has it (the route
// exists only where OTA is built in).
async function slotsCard() {
  let data;
  try { data = await api('GET', '/api/v1/update', undefined, { quiet: true }); } catch { return null; }
  const slots = Array.isArray(data) ? data : (data && data.slots) || [];
  const cols = [...new Set(slots.flatMap(s => Object.keys(s).filter(k => typeof s[k] !== 'object')))];
  return h('div', { class: 'card', id: 'slots-card' }, h('h2', {}, 'Slots'),
    table('slots-table', cols.map(c => ({ title: c, cell: s => String(s[c] ?? '') })), slots, 'No slot information.'));
}

export async function dashboardView(ctx) {
  const services = h('div', { id: 'services' });
  const hosts = h('div', {});
  const leases = h('div', {});
  const events = h('ul', { class: 'timeline', id: 'events-list' });
  const seen = new Map();
  const loadServices = async () => {
    try { fill(services, servicesTable(await api('GET', '/api/v1/services'))); } catch (e) { fill(services, h('p', { class: 'form-error' }, e.message)); }
  };
  const loadHosts = async () => fill(hosts, hostTable(await api('GET', '/api/v1/hosts'), seen));
  const loadLeases = async () => fill(leases, leasesTable(await api('GET', '/api/v1/leases?active=1'), 'dash-leases'));
  const loadEvents = async () => {
    const es = await api('GET', '/api/v1/boot-events?limit=15');
    fill(events, es.length ? es.map(eventItem) : h('li', { class: 'muted empty' }, 'No boot events yet.'));
  };
  await Promise.all([loadServices(), loadHosts(), loadLeases(), loadEvents()]);
  const slots = await slotsCard();
  fill(ctx.main, h('h1', {}, 'Dashboard'), h('div', { class: 'grid' },
    h('div', { class: 'card' }, h('h2', {}, 'Services'), services),
    slots,
    h('div', { class: 'card' }, h('h2', {}, 'Recent boot events'), events),
    h('div', { class: 'card wide' }, h('div', { class: 'row' }, h('h2', {}, 'Hosts'), h('span', { class: 'spacer' }), h('a', { href: '#/hosts/new' }, 'Add host')), hosts),
    h('div', { class: 'card wide' }, h('h2', {}, 'Active leases'), leases)));
  ctx.on('status', st => { if (st) fill(services, servicesTable(st)); });
  const reloadHosts = debounce(() => loadHosts().catch(() => {}), 150);
  ctx.on('hosts', reloadHosts);
  ctx.on('leases', debounce(() => { loadLeases().catch(() => {}); reloadHosts(); }, 150));
  ctx.on('boot', e => {
    if (!e || events.querySelector(`li[data-id="${e.id}"]`)) return;
    events.querySelector('.empty')?.remove();
    events.prepend(eventItem(e));
    while (events.children.length > 15) events.lastChild.remove();
    reloadHosts();
  });
}

export async function leasesView(ctx) {
  const list = h('div', {});
  const active = h('input', { type: 'checkbox', id: 'leases-active', checked: true });
  const load = async () => fill(list, leasesTable(await api('GET', '/api/v1/leases' + (active.checked ? '?active=1' : '')), 'leases-table'));
  active.addEventListener('change', () => load());
  await load();
  fill(ctx.main, h('div', { class: 'row' }, h('h1', {}, 'Leases'), h('span', { class: 'spacer' }),
    h('label', { class: 'row' }, active, 'Active only')), list);
  ctx.on('leases', debounce(() => load().catch(() => {}), 150));
  ctx.on('hosts', debounce(() => load().catch(() => {}), 150));
}

export async function logsView(ctx) {
  const st = await api('GET', '/api/v1/services');
  const names = (st.services || []).map(s => s.name);
  const name = ctx.params[0] || names[0];
  const pre = h('pre', { class: 'logs', id: 'log-lines', tabindex: '0' });
  const status = h('span', { class: 'muted', id: 'log-status' }, 'connecting…');
  let paused = false;
  const pause = h('button', { onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume scrolling' : 'Pause scrolling'; } }, 'Pause scrolling');
  const select = h('select', { id: 'log-service', onchange: () => ctx.go('#/logs/' + encodeURIComponent(select.value)) },
    names.map(n => h('option', { value: n, selected: n === name }, n)));
  fill(ctx.main, h('div', { class: 'row' }, h('h1', {}, 'Logs'), select, h('span', { class: 'spacer' }), status, pause), pre);
  if (!name) { pre.textContent = 'No services.'; return; }
  // EventSource resumes after a reconnect with Last-Event-ID = the last line's seq.
  const es = new EventSource('/api/v1/services/' + encodeURIComponent(name) + '/logs?follow=1&tail=500');
  ctx.signal.addEventListener('abort', () => es.close());
  es.onopen = () => { status.textContent = 'live'; };
  es.onerror = () => { status.textContent = 'reconnecting…'; };
  es.addEventListener('line', e => {
    const l = JSON.parse(e.data);
    const t = new Date(l.time);
    pre.append(h('span', { class: l.stream }, t.toLocaleTimeString() + ' ' + l.text + '\n'));
    while (pre.childNodes.length > 5000) pre.firstChild.remove();
    if (!paused) pre.scrollTop = pre.scrollHeight;
  });
}

function errorsInto(form) {
  return err => {
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    const general = form.querySelector('.form-error');
    general.textContent = '';
    const problems = err.details && err.details.length ? err.details : (err.message ? [err] : []);
    for (const d of problems) {
      const slot = d.field && form.querySelector(`.field-error[data-field="${CSS.escape(d.field)}"]`);
      if (slot) slot.textContent = d.message;
      else general.textContent += (general.textContent ? '\n' : '') + d.message;
    }
  };
}

function input(label, id, field, attrs) {
  return h('label', {}, label, h('input', { id, ...attrs }), h('span', { class: 'field-error', dataset: { field } }));
}

export async function settingsView(ctx) {
  const s = await api('GET', '/api/v1/settings');
  const admin = ctx.session.role === 'admin';
  const a = s.appliance;
  const siteForm = h('form', { class: 'stack', id: 'settings-form' },
    input('Site name', 'set-site-name', 'site_name', { value: s.site_name, disabled: !admin }),
    input('Session length (hours)', 'set-session-hours', 'session_hours', { type: 'number', min: 1, max: 720, value: s.session_hours, disabled: !admin }),
    h('label', {}, 'Login page text', h('textarea', { id: 'set-login-banner', disabled: !admin, rows: 3 }, s.login_banner || ''),
      h('span', { class: 'field-error', dataset: { field: 'login_banner' } })),
    h('p', { class: 'form-error' }),
    admin ? h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Save settings'), h('span', { class: 'muted saved' })) : h('p', { class: 'muted' }, 'Only admins change settings.'));
  siteForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    try {
      await api('PUT', '/api/v1/settings', {
        site_name: siteForm.querySelector('#set-site-name').value,
        session_hours: Number(siteForm.querySelector('#set-session-hours').value),
        login_banner: siteForm.querySelector('#set-login-banner').value,
      });
      errorsInto(siteForm)({ details: [] });
      siteForm.querySelector('.saved').textContent = 'Saved.';
    } catch (err) { errorsInto(siteForm)(err); }
  });
  const pwForm = h('form', { class: 'stack', id: 'password-form' },
    ctx.session.via === 'session' ? null : h('p', { class: 'muted' }, 'Log in with a password to change it.'),
    input('Current password', 'pw-current', 'current_password', { type: 'password', autocomplete: 'current-password' }),
    input('New password', 'pw-new', 'password', { type: 'password', autocomplete: 'new-password', minlength: 10 }),
    h('p', { class: 'form-error' }),
    h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Change password'), h('span', { class: 'muted saved' })));
  pwForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    try {
      await api('PUT', '/api/v1/users/' + encodeURIComponent(ctx.session.user) + '/password', {
        current_password: pwForm.querySelector('#pw-current').value, password: pwForm.querySelector('#pw-new').value,
      });
      errorsInto(pwForm)({ details: [] });
      pwForm.reset();
      pwForm.querySelector('.saved').textContent = 'Password changed; your other sessions were logged out.';
      await ctx.refreshSession();
    } catch (err) { errorsInto(pwForm)(err); }
  });
  const kv = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  fill(ctx.main, h('h1', {}, 'Settings'), h('div', { class: 'grid' },
    h('div', { class: 'card' }, h('h2', {}, 'Site'), siteForm),
    h('div', { class: 'card' }, h('h2', {}, 'My account (' + ctx.session.user + ')'), pwForm),
    h('div', { class: 'card wide' }, h('h2', {}, 'Appliance'), h('p', { class: 'muted' }, 'From the config file; change it there.'),
      h('dl', { class: 'kv' },
        kv('Host name', a.hostname), a.version ? kv('Version', a.version) : null,
        kv('HTTPS port', a.https_port || 'off'), kv('HTTP port', a.http_port ? a.http_port + ' (redirects to HTTPS)' : 'off'),
        kv('Certificate', a.certificate), kv('SHA-256 fingerprint', h('span', { class: 'mono' }, a.fingerprint || '–')),
        kv('Trust the LAN', a.trust_lan ? `on: ${a.trusted_networks.join(', ')} act as ${a.trusted_role} without logging in` : 'off')))));
}

export async function usersView(ctx) {
  const admin = ctx.session.role === 'admin';
  const users = h('div', {});
  const tokens = h('div', {});
  const secret = h('div', { id: 'token-secret' });
  const loadUsers = async () => {
    if (!admin) return;
    const us = await api('GET', '/api/v1/users');
    fill(users, table('users-table', [
      { title: 'Name', cell: u => u.name },
      { title: 'Role', cell: u => h('select', { onchange: e => patch(u.name, { role: e.target.value }) }, ['read', 'write', 'admin'].map(r => h('option', { value: r, selected: r === u.role }, r))) },
      { title: 'Enabled', cell: u => h('input', { type: 'checkbox', checked: !u.disabled, onchange: e => patch(u.name, { disabled: !e.target.checked }) }) },
      { title: 'Password changed', cls: 'hide-narrow', cell: u => ago(u.password_changed) },
      { title: '', cell: u => h('button', { class: 'danger', onclick: () => removeUser(u.name) }, 'Remove') },
    ], us));
  };
  const userErr = h('p', { class: 'form-error', id: 'users-error' });
  const patch = async (name, body) => {
    userErr.textContent = '';
    try { await api('PATCH', '/api/v1/users/' + encodeURIComponent(name), body); } catch (e) { userErr.textContent = e.message; }
    loadUsers();
  };
  const removeUser = async name => {
    if (!confirm(`Remove ${name} and its tokens?`)) return;
    userErr.textContent = '';
    try { await api('DELETE', '/api/v1/users/' + encodeURIComponent(name)); } catch (e) { userErr.textContent = e.message; }
    loadUsers();
  };
  const loadTokens = async () => {
    const ts = await api('GET', '/api/v1/tokens');
    fill(tokens, table('tokens-table', [
      { title: 'Name', cell: t => t.name },
      { title: 'Owner', cls: 'hide-narrow', cell: t => t.user },
      { title: 'Scope', cell: t => t.scope },
      { title: 'Secret starts', cls: 'hide-narrow mono', cell: t => t.prefix + '…' },
      { title: 'Last used', cell: t => t.last_used ? ago(t.last_used) : 'never' },
      { title: 'State', cell: t => t.active ? badge('active', 'ready') : badge(t.revoked ? 'revoked' : 'expired', 'stopped') },
      { title: '', cell: t => t.active ? h('button', { class: 'danger', onclick: () => revoke(t) }, 'Revoke') : '' },
    ], ts, 'No tokens. kiln login makes one for the CLI.'));
  };
  const revoke = async t => {
    if (!confirm(`Revoke token ${t.name}? Scripts using it stop working at once.`)) return;
    await api('DELETE', '/api/v1/tokens/' + t.id);
    loadTokens();
  };
  await Promise.all([loadUsers(), loadTokens()]);

  const userForm = h('form', { class: 'stack', id: 'user-form' },
    input('Name', 'user-name', 'name', { autocomplete: 'off' }),
    h('label', {}, 'Role', h('select', { id: 'user-role' }, ['read', 'write', 'admin'].map(r => h('option', { value: r }, r))), h('span', { class: 'field-error', dataset: { field: 'role' } })),
    input('Password', 'user-password', 'password', { type: 'password', autocomplete: 'new-password' }),
    h('p', { class: 'form-error' }), h('div', {}, h('button', { class: 'primary', type: 'submit' }, 'Create account')));
  userForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    try {
      await api('POST', '/api/v1/users', { name: userForm.querySelector('#user-name').value, role: userForm.querySelector('#user-role').value, password: userForm.querySelector('#user-password').value });
      userForm.reset();
      errorsInto(userForm)({ details: [] });
      loadUsers();
    } catch (err) { errorsInto(userForm)(err); }
  });
  const roles = ['read', 'write', 'admin'].slice(0, ['read', 'write', 'admin'].indexOf(ctx.session.role) + 1);
  const tokenForm = h('form', { class: 'stack', id: 'token-form' },
    input('Token name', 'token-name', 'name', { placeholder: 'e.g. ci or kiln-cli@laptop' }),
    h('label', {}, 'Scope', h('select', { id: 'token-scope' }, roles.map(r => h('option', { value: r, selected: r === 'read' }, r))), h('span', { class: 'field-error', dataset: { field: 'scope' } })),
    input('Expires after (days, 0 = never)', 'token-days', 'expires_in_days', { type: 'number', min: 0, value: 90 }),
    h('p', { class: 'form-error' }), h('div', {}, h('button', { class: 'primary', type: 'submit' }, 'Make token')));
  tokenForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/api/v1/tokens', { name: tokenForm.querySelector('#token-name').value, scope: tokenForm.querySelector('#token-scope').value, expires_in_days: Number(tokenForm.querySelector('#token-days').value) });
      errorsInto(tokenForm)({ details: [] });
      fill(secret, h('p', {}, 'Copy the secret now; it is not shown again:'), h('div', { class: 'secret mono' }, r.secret),
        h('p', { class: 'muted' }, 'Use it as: Authorization: Bearer <secret>'));
      tokenForm.reset();
      loadTokens();
    } catch (err) { if (err instanceof APIError) errorsInto(tokenForm)(err); else throw err; }
  });
  fill(ctx.main, h('h1', {}, 'Users & tokens'), h('div', { class: 'grid' },
    admin ? h('div', { class: 'card wide' }, h('h2', {}, 'Accounts'), userErr, users) : null,
    admin ? h('div', { class: 'card' }, h('h2', {}, 'New account'), userForm) : null,
    h('div', { class: 'card' }, h('h2', {}, 'New API token'), ctx.session.via === 'session' ? [tokenForm, secret] : h('p', { class: 'muted' }, 'Log in with a password to make tokens.')),
    h('div', { class: 'card wide' }, h('h2', {}, admin ? 'All API tokens' : 'My API tokens'), tokens)));
}
