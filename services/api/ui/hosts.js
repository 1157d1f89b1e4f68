// Host pages: the list, one host with its boot timeline, and the form.
import { api, APIError, h, fill, ago, badge, table, debounce } from './api.js';

const profiles = ['local', 'vet', 'diskless', 'iscsi', 'kernel'];

function address(host) {
  if (host.lease) return h('span', {}, host.lease.ip, ' ', badge(host.lease.state));
  if (host.ipv4) return h('span', {}, host.ipv4, ' ', h('span', { class: 'muted' }, '(reserved)'));
  return h('span', { class: 'muted' }, '–');
}

function lastEvent(host) {
  const e = host.last_event;
  if (!e) return h('span', { class: 'muted' }, 'never booted');
  return h('span', { class: 'last-event' }, h('code', {}, e.kind), ' ', ago(e.time));
}

// hostTable renders hosts; rows whose newest event changed since seen flash.
export function hostTable(hosts, seen) {
  const rows = hosts.map(x => ({ ...x, __key: x.name }));
  const t = table('hosts-table', [
    { title: 'Name', cell: x => h('a', { href: '#/hosts/' + encodeURIComponent(x.name) }, x.name) },
    { title: 'MACs', cls: 'mac hide-narrow', cell: x => x.macs.join(' ') },
    { title: 'Profile', cls: 'hide-narrow', cell: x => x.boot_profile },
    { title: 'Address', cell: address },
    { title: 'Last boot event', cell: lastEvent },
  ], rows, 'No hosts yet. Add one, or import a YAML/CSV file.');
  if (seen) {
    for (const x of hosts) {
      const id = x.last_event ? x.last_event.id : 0;
      if (seen.has(x.name) && seen.get(x.name) !== id) t.querySelector(`tr[data-key="${CSS.escape(x.name)}"]`)?.classList.add('flash');
      seen.set(x.name, id);
    }
  }
  return t;
}

export async function hostsView(ctx) {
  const list = h('div', { id: 'hosts-list' });
  const result = h('p', { id: 'import-result', class: 'muted' });
  const file = h('input', { type: 'file', accept: '.yaml,.yml,.csv', hidden: true });
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    const csv = f.name.toLowerCase().endsWith('.csv');
    try {
      const r = await api('POST', '/api/v1/hosts/import?format=' + (csv ? 'csv' : 'yaml'), await f.text(), { type: csv ? 'text/csv' : 'application/yaml' });
      fill(result, `Imported ${f.name}: ${r.created} created, ${r.updated} updated.`);
      result.className = 'muted';
    } catch (err) {
      const lines = (err.details.length ? err.details : [err]).map(d => (d.line ? 'line ' + d.line + ': ' : '') + (d.field ? d.field + ': ' : '') + d.message);
      fill(result, `Nothing was imported from ${f.name}:\n` + lines.join('\n'));
      result.className = 'form-error';
    }
    file.value = '';
  });
  fill(ctx.main,
    h('div', { class: 'row' }, h('h1', {}, 'Hosts'), h('span', { class: 'spacer' }),
      h('a', { class: 'button primary', id: 'host-add', href: '#/hosts/new' }, 'Add host'),
      h('button', { onclick: () => file.click() }, 'Import…'),
      h('a', { class: 'button', href: '/api/v1/hosts/export?format=yaml', download: 'hosts.yaml' }, 'Export YAML'),
      h('a', { class: 'button hide-narrow', href: '/api/v1/hosts/export?format=csv', download: 'hosts.csv' }, 'CSV'), file),
    result, list);
  const seen = new Map();
  const load = async () => fill(list, hostTable(await api('GET', '/api/v1/hosts'), seen));
  await load();
  const reload = debounce(() => load().catch(() => {}), 150);
  ctx.on('hosts', reload);
  ctx.on('leases', reload);
  ctx.on('boot', reload);
}

function timelineItem(e) {
  return h('li', { dataset: { id: e.id } }, h('span', { class: 'when' }, ago(e.time)),
    h('span', {}, h('code', {}, e.kind), e.detail ? ' ' + e.detail : '', ' ', h('span', { class: 'muted mac' }, e.mac)));
}

export async function hostView(ctx) {
  const name = ctx.params[0];
  const details = h('div', { class: 'card' });
  const timeline = h('ul', { class: 'timeline', id: 'timeline' });
  const err = h('p', { class: 'form-error' });
  let host = null;
  const load = async () => {
    host = await api('GET', '/api/v1/hosts/' + encodeURIComponent(name));
    fill(details, h('h2', {}, 'Registration'), h('dl', { class: 'kv' },
      h('dt', {}, 'MACs'), h('dd', { class: 'mac' }, host.macs.join(', ') || '–'),
      h('dt', {}, 'Boot profile'), h('dd', {}, host.boot_profile),
      h('dt', {}, 'Role'), h('dd', {}, host.role || '–'),
      h('dt', {}, 'Address'), h('dd', {}, address(host)),
      h('dt', {}, 'Aliases'), h('dd', {}, (host.aliases || []).join(', ') || '–'),
      h('dt', {}, 'Switch port'), h('dd', {}, host.switch_port || '–'),
      host.kernel ? [h('dt', {}, 'Kernel'), h('dd', { class: 'mono' }, [host.kernel, host.initrd, host.cmdline].filter(Boolean).join('  '))] : null,
      h('dt', {}, 'Updated'), h('dd', {}, ago(host.updated)),
      h('dt', {}, 'Expected spec'), h('dd', {}, host.expected_spec ? h('pre', { class: 'mono' }, host.expected_spec) : '–')));
  };
  await load();
  const events = await api('GET', '/api/v1/hosts/' + encodeURIComponent(name) + '/events?limit=200');
  fill(timeline, events.length ? events.map(timelineItem) : h('li', { class: 'muted empty' }, 'No boot events yet: they appear here live.'));
  const writer = ctx.session.role !== 'read';
  fill(ctx.main,
    h('div', { class: 'row' }, h('h1', {}, name), h('span', { class: 'spacer' }),
      writer && h('a', { class: 'button', href: '#/hosts/' + encodeURIComponent(name) + '/edit', id: 'host-edit' }, 'Edit'),
      writer && h('button', {
        class: 'danger', onclick: async () => {
          if (!confirm(`Remove host ${name}? Its leases and boot events stay.`)) return;
          try { await api('DELETE', '/api/v1/hosts/' + encodeURIComponent(name)); ctx.go('#/hosts'); } catch (e) { err.textContent = e.message; }
        },
      }, 'Remove')),
    err,
    h('div', { class: 'grid' }, details, h('div', { class: 'card' }, h('h2', {}, 'Boot timeline'), timeline)));
  ctx.on('boot', e => {
    if (!e || !host.macs.includes(e.mac) || timeline.querySelector(`li[data-id="${e.id}"]`)) return;
    timeline.querySelector('.empty')?.remove();
    timeline.prepend(timelineItem(e));
  });
  ctx.on('hosts', debounce(() => load().catch(e => { err.textContent = e.status === 404 ? 'This host was removed or renamed.' : e.message; }), 150));
}

// Form fields: API field, label, input kind, hint.
const fields = [
  ['name', 'Name', 'text', 'DNS label: letters, digits, "-" (e.g. pc-07)'],
  ['macs', 'MAC addresses', 'textarea-small', 'One per line; the first one boots'],
  ['boot_profile', 'Boot profile', 'select', 'What the host boots into over the network'],
  ['role', 'Role', 'text', 'Free text, e.g. worker'],
  ['ipv4', 'Reserved IPv4 address', 'text', 'Empty: an address from the pool'],
  ['expected_spec', 'Expected hardware (YAML)', 'textarea', 'A list under "expect:", e.g. "- fact: memory.installed_bytes" with "min: 32GiB" (see docs/vetting.md); checked as you type'],
];
const advanced = [
  ['kernel', 'Kernel', 'text', 'Profile kernel: a path below the HTTP boot files root (e.g. custom/vmlinuz) or an http(s) URL'],
  ['initrd', 'Initrd', 'text', 'Same form as the kernel; optional'],
  ['cmdline', 'Kernel command line', 'text', 'Added to the kernel command line'],
  ['aliases', 'DNS aliases', 'text', 'Space separated'],
  ['switch_port', 'Switch port', 'text', 'e.g. sw1 gi0/7'],
  ['wol_mac', 'Wake-on-LAN MAC', 'text', 'Empty: the first MAC'],
  ['circuit_id', 'Option 82 circuit-id', 'text', 'Match relayed requests'],
  ['remote_id', 'Option 82 remote-id', 'text', ''],
  ['ipxe_binary', 'iPXE binary', 'text', 'e.g. snponly.efi'],
];

function control(id, kind, value) {
  if (kind === 'select') return h('select', { id }, profiles.map(p => h('option', { value: p, selected: p === (value || 'local') }, p)));
  if (kind.startsWith('textarea')) {
    const t = h('textarea', { id, rows: kind === 'textarea' ? 8 : 3, spellcheck: 'false' });
    t.value = value || '';
    return t;
  }
  return h('input', { id, type: 'text', value: value || '', autocomplete: 'off', spellcheck: 'false' });
}

export async function hostFormView(ctx) {
  const editing = ctx.params[0];
  const host = editing ? await api('GET', '/api/v1/hosts/' + encodeURIComponent(editing)) : {};
  const touched = new Set();
  let submitted = false;
  const errors = {};
  const field = ([key, label, kind, hint]) => {
    let value = host[key];
    if (key === 'macs') value = (value || []).join('\n');
    if (key === 'aliases') value = (value || []).join(' ');
    const input = control('host-' + key.replace('_', '-'), kind, value);
    input.addEventListener('input', () => { touched.add(key); validate(); });
    const err = h('span', { class: 'field-error', id: 'err-' + key, role: 'alert' });
    errors[key] = { input, err };
    return h('label', {}, label, hint ? h('span', { class: 'hint' }, hint) : null, input, err);
  };
  const formError = h('p', { class: 'form-error', id: 'host-form-error' });
  const more = h('details', { open: advanced.some(([k]) => host[k] && host[k].length) }, h('summary', {}, 'More: kernel, aliases, switch port, option 82, iPXE'),
    h('div', { class: 'stack' }, advanced.map(field)));
  const form = h('form', { class: 'stack', id: 'host-form', novalidate: true },
    fields.map(field), more,
    formError,
    h('div', { class: 'row' }, h('button', { class: 'primary', id: 'host-save', type: 'submit' }, editing ? 'Save' : 'Register host'),
      h('a', { href: editing ? '#/hosts/' + encodeURIComponent(editing) : '#/hosts' }, 'Cancel')));
  const input = () => {
    const v = k => errors[k].input.value;
    return {
      name: v('name').trim(),
      macs: v('macs').split(/[\s,;]+/).filter(Boolean),
      boot_profile: v('boot_profile'), role: v('role').trim(), ipv4: v('ipv4').trim(),
      expected_spec: v('expected_spec'),
      aliases: v('aliases').split(/\s+/).filter(Boolean),
      switch_port: v('switch_port').trim(), wol_mac: v('wol_mac').trim(),
      circuit_id: v('circuit_id'), remote_id: v('remote_id'), ipxe_binary: v('ipxe_binary').trim(),
      kernel: v('kernel').trim(), initrd: v('initrd').trim(), cmdline: v('cmdline'),
    };
  };
  const show = (err) => {
    const per = {};
    for (const d of (err ? err.details : [])) {
      const m = (d.field || '').match(/^([a-z_]+)(?:\[(\d+)\])?$/);
      const key = m && errors[m[1]] ? m[1] : '';
      const msg = (m && m[2] !== undefined ? `#${Number(m[2]) + 1}: ` : '') + d.message;
      (per[key] = per[key] || []).push(msg);
    }
    for (const [key, { input, err: el }] of Object.entries(errors)) {
      const visible = per[key] && (submitted || touched.has(key));
      el.textContent = visible ? per[key].join('\n') : '';
      input.setAttribute('aria-invalid', visible ? 'true' : 'false');
      if (visible && advanced.some(([k]) => k === key)) more.open = true;
    }
    formError.textContent = submitted && per[''] ? per[''].join('\n') : '';
  };
  const path = editing ? '/api/v1/hosts/' + encodeURIComponent(editing) : '/api/v1/hosts';
  const method = editing ? 'PUT' : 'POST';
  const validate = debounce(async () => {
    try { await api(method, path + '?dry_run=1', input()); show(null); } catch (err) { if (err instanceof APIError) show(err); }
  }, 350);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    submitted = true;
    try {
      const saved = await api(method, path, input());
      ctx.go('#/hosts/' + encodeURIComponent(saved.name));
    } catch (err) {
      if (!(err instanceof APIError)) throw err;
      show(err.details.length ? err : null);
      if (!err.details.length) formError.textContent = err.message;
      form.querySelector('[aria-invalid="true"]')?.focus();
    }
  });
  fill(ctx.main, h('h1', {}, editing ? 'Edit ' + editing : 'Register a host'), form);
  errors.name.input.focus();
}
