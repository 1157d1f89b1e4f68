// Vetting: a tile per vetting host showing its newest run live (from
// /api/v1/vetting/stream), a panel with a host's run history and reports.
import { api, APIError, h, fill, ago, badge, table, debounce } from './api.js';

const profiles = ['quick', 'standard', 'extended'];
const stateText = {
  queued: 'queued', waiting_wol: 'waking', booting: 'booting', running: 'running', passed: 'passed',
  failed: 'failed', holding: 'holding', stopped: 'stopped', timed_out: 'timed out', error: 'error',
};

function stateBadge(state) {
  return h('span', { class: 'badge st-' + state, dataset: { state } }, stateText[state] || state);
}

function statusBadge(status) {
  return h('span', { class: 'badge vs-' + String(status || '').toLowerCase() }, status || '–');
}

// elapsed formats a run's wall time: started (or created) to ended or now.
function elapsed(run) {
  const from = Date.parse(run.started || run.created);
  const to = run.ended ? Date.parse(run.ended) : Date.now();
  let s = Math.max(0, Math.round((to - from) / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor(s % 3600 / 60);
  s %= 60;
  if (hh) return `${hh} h ${String(mm).padStart(2, '0')} min`;
  if (mm) return `${mm} min ${String(s).padStart(2, '0')} s`;
  return `${s} s`;
}

function reportJSON(run) { return `/api/v1/vetting/runs/${run.id}/report.json`; }

function reportLinks(run) {
  return [h('a', { href: run.report_url, target: '_blank', rel: 'noopener', class: 'vet-report-link' }, 'Report'), ' ',
    h('a', { href: reportJSON(run), target: '_blank', rel: 'noopener', class: 'vet-json-link' }, 'JSON')];
}

// copyButton copies text: the clipboard API, or a selected textarea where
// that is missing.
function copyButton(text, cls) {
  const b = h('button', { type: 'button', class: 'small ' + (cls || '') }, 'Copy');
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
    } catch {
      const t = h('textarea', { class: 'offscreen', readonly: true });
      t.value = text();
      document.body.append(t);
      t.select();
      document.execCommand('copy');
      t.remove();
    }
    b.textContent = 'Copied';
    setTimeout(() => { b.textContent = 'Copy'; }, 1500);
  });
  return b;
}

// saveFile offers text as a download named name.
function saveFile(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/octet-stream' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// Tile is one host's card; update changes its parts in place so form
// controls, focus and scroll stay put while a run streams in.
class Tile {
  constructor(host, env) {
    this.host = host;
    this.env = env;
    this.run = null;
    const writer = env.session.role !== 'read';
    const admin = env.session.role === 'admin';
    this.badge = h('span', { class: 'vet-state' });
    this.profileText = h('span', { class: 'muted vet-profile-text' });
    this.meta = h('p', { class: 'muted vet-meta' });
    this.elapsed = h('span', { class: 'vet-elapsed' });
    this.when = h('span', { class: 'vet-when' });
    this.stageName = h('span', { class: 'vet-stage-name' });
    this.bar = h('progress', { class: 'vet-progress', max: 1, value: 0 });
    this.pct = h('span', { class: 'vet-pct' });
    this.progress = h('div', { class: 'vet-now', hidden: true }, this.stageName, this.bar, this.pct);
    this.stages = h('ol', { class: 'vet-stages', hidden: true });
    this.verdict = h('div', { class: 'vet-verdict', hidden: true });
    this.note = h('p', { class: 'muted vet-note', hidden: true });
    this.hold = h('div', { class: 'vet-hold', hidden: true });
    this.links = h('p', { class: 'vet-links', hidden: true });
    this.err = h('p', { class: 'form-error vet-error', role: 'alert' });
    this.profile = h('select', { class: 'vet-profile', 'aria-label': 'profile' }, profiles.map(p => h('option', { value: p }, p)));
    this.holdBox = h('input', { type: 'checkbox', class: 'vet-hold-box' });
    this.startBtn = h('button', { type: 'button', class: 'primary vet-start' }, 'Start');
    this.wipeBtn = h('button', { type: 'button', class: 'danger vet-wipe', title: admin ? '' : 'admins only' }, 'Start destructive (wipe)…');
    this.stopBtn = h('button', { type: 'button', class: 'danger vet-stop', hidden: true }, 'Stop');
    this.releaseBtn = h('button', { type: 'button', class: 'primary vet-release', hidden: true }, 'Release');
    this.startRow = h('div', { class: 'vet-start-row' }, this.profile,
      h('label', { class: 'inline' }, this.holdBox, 'hold on failure'), this.startBtn, this.wipeBtn);
    this.actions = writer ? h('div', { class: 'vet-actions' }, this.startRow, this.stopBtn, this.releaseBtn) : null;
    this.name = h('button', { type: 'button', class: 'link vet-host', title: 'Run history' }, host);
    this.el = h('article', { class: 'card vet-tile', id: 'vet-tile-' + host, dataset: { host } },
      h('div', { class: 'vet-head' }, h('h2', {}, this.name), this.badge, h('span', { class: 'spacer' }), this.profileText),
      this.meta, this.progress, this.stages, this.verdict, this.hold, this.note, this.links, this.err, this.actions);
    this.el.addEventListener('click', e => {
      if (e.target.closest('button:not(.vet-host), a, input, select, label, .vet-hold, .vet-actions, dialog')) return;
      if (String(window.getSelection())) return; // selecting text, e.g. a finding
      env.openDetail(host);
    });
    this.startBtn.addEventListener('click', async () => {
      this.startBtn.disabled = true;
      try { await this.start(false); } catch (e) { this.err.textContent = e.message; }
      this.startBtn.disabled = false;
    });
    this.wipeBtn.addEventListener('click', () => env.confirmWipe(this));
    this.stopBtn.addEventListener('click', () => {
      if (confirm(`Stop run ${this.run.id} of ${host}? The host powers off.`)) this.act('stop');
    });
    this.releaseBtn.addEventListener('click', () => this.act('release'));
    this.update(null);
  }

  setHost(hostJSON) {
    this.hostJSON = hostJSON;
    if (!this.run) this.update(null);
  }

  async start(wipe, confirmWipe) {
    this.err.textContent = '';
    const body = { host: this.host, profile: this.profile.value, hold: this.holdBox.checked, wipe, confirm_wipe: confirmWipe || '' };
    const run = await api('POST', '/api/v1/vetting/runs', body);
    this.env.answer(run);
    return run;
  }

  async act(what) {
    this.err.textContent = '';
    const b = what === 'stop' ? this.stopBtn : this.releaseBtn;
    b.disabled = true;
    try {
      this.env.answer(await api('POST', `/api/v1/vetting/runs/${this.run.id}/${what}`));
    } catch (e) { this.err.textContent = e.message; }
    b.disabled = false;
  }

  // update shows run (null: the host has none yet) unless an older run
  // arrives after a newer one.
  update(run) {
    if (run && this.run && Number(run.id) < Number(this.run.id)) return;
    const changedRun = !run || !this.run || run.id !== this.run.id;
    this.run = run;
    const r = run || {};
    this.el.dataset.state = r.state || 'none';
    this.el.dataset.run = r.id || '';
    fill(this.badge, run ? stateBadge(r.state) : badge('no runs', 'st-none'));
    const hp = this.hostJSON;
    fill(this.profileText, run ? [r.profile, r.hold ? ' · hold' : '', r.wipe ? ' · wipe' : ''] : '');
    if (!run) {
      fill(this.meta, hp && !hp.expected_spec ? 'No runs yet. No expected spec: a run inventories and burns in only.' : 'No runs yet.');
    } else {
      fill(this.meta, 'Run ', h('span', { class: 'vet-run-id' }, '#' + r.id), ' · ', this.when, ' · ', this.elapsed, r.model ? [' · ', r.model] : null);
      this.tick();
    }
    // The stage under way.
    const running = r.state === 'running';
    this.progress.hidden = !running;
    if (running) {
      this.stageName.textContent = r.stage || 'starting…';
      this.bar.value = r.progress || 0;
      this.pct.textContent = Math.round((r.progress || 0) * 100) + ' %';
    }
    const stages = r.stages || [];
    this.stages.hidden = !stages.length;
    fill(this.stages, stages.map(s => h('li', { class: 'vet-stage', title: s.summary || '', dataset: { stage: s.name, status: s.status } },
      h('span', { class: 'name' }, s.name), ' ', statusBadge(s.status))));
    // The outcome.
    const over = run && (!r.active || r.state === 'holding');
    this.verdict.hidden = !over;
    if (over) {
      const findings = r.findings || [];
      // The summary is the verdict and the first findings: show each once.
      let summary = r.summary || '';
      if (r.verdict && summary.startsWith(r.verdict)) summary = summary.slice(r.verdict.length).replace(/^:\s*/, '');
      if (findings.length) summary = findings.length === 1 ? '1 finding:' : findings.length + ' findings:';
      else if (r.verdict && !summary) summary = r.verdict === 'PASS' ? 'every stage and spec item passed' : '';
      fill(this.verdict,
        h('p', { class: 'vet-summary' }, r.verdict ? [statusBadge(r.verdict), ' '] : null, summary),
        r.error && r.error !== r.summary ? h('p', { class: 'form-error' }, r.error) : null,
        findings.length ? h('ul', { class: 'vet-findings' }, findings.map(f => h('li', {},
          statusBadge(f.status), ' ', h('span', { class: 'muted' }, '[' + f.source + ']'), ' ', f.message))) : null);
    }
    this.showHold(r);
    this.links.hidden = !run;
    if (run && changedRun) fill(this.links, reportLinks(r));
    if (changedRun || !r.active) { this.note.hidden = true; this.note.textContent = ''; }
    if (this.actions) {
      const active = !!r.active;
      this.startRow.hidden = active;
      this.stopBtn.hidden = !active || r.state === 'holding';
      this.releaseBtn.hidden = r.state !== 'holding';
      if (run && changedRun) this.holdBox.checked = !!r.hold;
      if (run && changedRun && profiles.includes(r.profile)) this.profile.value = r.profile;
    }
  }

  showHold(r) {
    const hd = r.state === 'holding' ? r.holding : null;
    this.hold.hidden = !hd;
    if (!hd) { fill(this.hold); this.holdKey = ''; return; }
    // Rebuild only when the address or key changed (keeps "Copied").
    const key = hd.addr + ' ' + hd.ssh_command;
    if (this.holdKey === key) return;
    this.holdKey = key;
    const proxy = hd.proxy_command || `kiln vet ssh ${r.id}`;
    const keyErr = h('p', { class: 'form-error' });
    const dl = (what) => async () => {
      keyErr.textContent = '';
      try {
        const s = await api('GET', `/api/v1/vetting/runs/${r.id}/ssh`);
        if (what === 'key') saveFile(`kiln-run-${r.id}.key`, s.private_key);
        else saveFile(`kiln-run-${r.id}.known_hosts`, s.known_hosts + '\n');
      } catch (e) { keyErr.textContent = e.message; }
    };
    fill(this.hold,
      h('p', {}, 'Holding the host for SSH at ', h('code', {}, hd.addr), '. Through the appliance:'),
      h('div', { class: 'cmd' }, h('code', { class: 'vet-ssh-proxy' }, proxy), copyButton(() => proxy)),
      h('p', {}, 'On the provisioning network, with the key and known_hosts files:'),
      h('div', { class: 'cmd' }, h('code', { class: 'vet-ssh-command' }, hd.ssh_command), copyButton(() => hd.ssh_command)),
      h('div', { class: 'vet-keys' },
        h('button', { type: 'button', class: 'vet-download-key', onclick: dl('key') }, 'Download key'),
        h('button', { type: 'button', class: 'vet-download-known-hosts', onclick: dl('known_hosts') }, 'Download known_hosts'),
        this.env.session.role === 'admin' ? h('span', { class: 'muted' }, `chmod 600 kiln-run-${r.id}.key`) : h('span', { class: 'muted' }, 'admins only')),
      keyErr);
  }

  // agent shows what the agent said last (notes, hold heartbeats).
  agent(e) {
    let text = '';
    if (e.kind === 'note') text = e.note;
    else if (e.kind === 'holding') text = 'SSH server up, last heartbeat ' + new Date(e.time).toLocaleTimeString();
    else if (e.kind === 'stage_end' && e.result) text = `${e.stage}: ${e.result.status}${e.result.summary ? ' — ' + e.result.summary : ''}`;
    if (!text || !this.run?.active) return;
    this.note.hidden = false;
    this.note.textContent = text;
  }

  // tick refreshes the times shown.
  tick() {
    const r = this.run;
    if (!r) return;
    const over = !r.active || r.state === 'holding';
    this.elapsed.textContent = over ? 'took ' + elapsed(r) : elapsed(r) + ' elapsed';
    if (over) {
      fill(this.when, r.state === 'holding' ? 'holding since ' : 'ended ', ago(r.ended || r.created));
    } else {
      const t = new Date(r.started || r.created);
      fill(this.when, r.started ? 'started ' : 'created ', h('time', { datetime: t.toISOString(), title: t.toLocaleString() }, t.toLocaleTimeString()));
    }
  }
}

// Detail is the panel listing one host's runs with their reports.
class Detail {
  constructor(env) {
    this.env = env;
    this.host = '';
    this.title = h('h2', {});
    this.body = h('div', {});
    this.frame = h('div', { class: 'vet-frame', hidden: true });
    this.el = h('section', { class: 'card wide vet-detail', id: 'vet-detail', hidden: true, 'aria-live': 'polite' },
      h('div', { class: 'row' }, this.title, h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'vet-detail-close', onclick: () => this.close() }, 'Close')),
      this.body, this.frame);
  }

  async open(host) {
    this.host = host;
    this.runs = new Map();
    this.el.hidden = false;
    fill(this.title, 'Runs of ', h('a', { href: '#/hosts/' + encodeURIComponent(host) }, host));
    fill(this.body, h('p', { class: 'muted' }, 'Loading…'));
    this.frame.hidden = true;
    fill(this.frame);
    history.replaceState(null, '', '#/vetting/' + encodeURIComponent(host));
    this.el.scrollIntoView({ block: 'nearest' });
    try {
      const data = await api('GET', '/api/v1/vetting/runs?limit=50&host=' + encodeURIComponent(host));
      if (this.host !== host) return;
      for (const r of runsOf(data)) this.runs.set(r.id, r);
      this.render();
    } catch (e) {
      fill(this.body, h('p', { class: 'form-error' }, e.message));
    }
  }

  close() {
    this.host = '';
    this.el.hidden = true;
    fill(this.frame);
    history.replaceState(null, '', '#/vetting');
  }

  // upsert takes a run from the stream.
  upsert(run) {
    if (run.host !== this.host || !this.runs) return;
    const old = this.runs.get(run.id);
    this.runs.set(run.id, run);
    const shown = r => r && [r.state, r.verdict, r.summary, r.started, r.ended].join('|');
    if (shown(old) !== shown(run)) this.render();
  }

  remove(id) {
    if (this.runs && this.runs.delete(id)) this.render();
  }

  render() {
    const rows = [...this.runs.values()].sort((a, b) => Number(b.id) - Number(a.id)).map(r => ({ ...r, __key: r.id }));
    fill(this.body, table('vet-history', [
      { title: 'Run', cell: r => '#' + r.id },
      { title: 'State', cell: r => stateBadge(r.state) },
      { title: 'Verdict', cell: r => r.verdict ? statusBadge(r.verdict) : h('span', { class: 'muted' }, '–') },
      { title: 'Profile', cls: 'hide-narrow', cell: r => r.profile + (r.wipe ? ' · wipe' : '') },
      { title: 'Started', cell: r => ago(r.started || r.created) },
      { title: 'Took', cls: 'hide-narrow', cell: r => r.ended ? elapsed(r) : h('span', { class: 'muted' }, '–') },
      { title: 'Summary', cls: 'hide-narrow', cell: r => r.summary },
      { title: '', cell: r => h('span', { class: 'vet-row-links' }, h('button', { type: 'button', class: 'link vet-view', onclick: () => this.show(r) }, 'View'), ' ', reportLinks(r)) },
    ], rows, 'No runs of this host yet.'));
  }

  // show embeds run's HTML report (served with frame-ancestors 'self').
  show(run) {
    this.frame.hidden = false;
    fill(this.frame, h('div', { class: 'row' }, h('h3', {}, 'Report of run #' + run.id), h('span', { class: 'spacer' }),
      h('a', { href: run.report_url, target: '_blank', rel: 'noopener' }, 'Open in a new tab'),
      h('button', { type: 'button', class: 'link', onclick: () => { this.frame.hidden = true; fill(this.frame); } }, 'Hide')),
    h('iframe', { class: 'vet-report', src: run.report_url, title: 'Report of run ' + run.id, sandbox: 'allow-same-origin allow-popups' }));
    this.frame.scrollIntoView({ block: 'nearest' });
  }
}

function runsOf(data) { return Array.isArray(data) ? data : (data && data.runs) || []; }

// wipeDialog asks to type the host's name before a destructive run.
function wipeDialog() {
  const name = h('strong', {}), name2 = h('strong', {});
  const input = h('input', { id: 'vet-wipe-confirm', autocomplete: 'off', spellcheck: 'false' });
  const err = h('p', { class: 'form-error', role: 'alert' });
  const ok = h('button', { type: 'submit', class: 'danger', id: 'vet-wipe-ok', disabled: true }, 'Erase and vet');
  const form = h('form', { method: 'dialog', class: 'stack' },
    h('h2', {}, 'Destructive run of ', name),
    h('p', {}, 'The storage stages write to every disk: everything on ', name2, ' is erased. Admins only.'),
    h('label', {}, 'Type the host name to confirm', input), err,
    h('div', { class: 'row' }, ok, h('button', { type: 'button', value: 'cancel', class: 'vet-wipe-cancel' }, 'Cancel')));
  const dlg = h('dialog', { id: 'vet-wipe-dialog', class: 'card' }, form);
  let tile = null;
  input.addEventListener('input', () => { ok.disabled = input.value !== tile?.host; });
  form.querySelector('.vet-wipe-cancel').addEventListener('click', () => dlg.close());
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    err.textContent = '';
    ok.disabled = true;
    try {
      await tile.start(true, input.value);
      dlg.close();
    } catch (e) {
      if (!(e instanceof APIError)) throw e;
      err.textContent = e.message;
      ok.disabled = false;
    }
  });
  return {
    el: dlg,
    open(t) {
      tile = t;
      name.textContent = name2.textContent = t.host;
      input.value = '';
      err.textContent = '';
      ok.disabled = true;
      dlg.showModal();
      input.focus();
    },
  };
}

export async function vettingView(ctx) {
  const tiles = new Map();
  const grid = h('div', { class: 'grid vet-grid', id: 'vet-tiles' });
  const status = h('span', { class: 'muted', id: 'vet-live' }, 'connecting…');
  const empty = h('p', { class: 'muted', id: 'vet-empty', hidden: true },
    'No vetting hosts yet. Give a host the boot profile "vet" (Hosts → Edit) or start a run of it with kiln vet start.');
  const wipe = wipeDialog();
  // Runs seen on the stream are newer than what a list or an action's
  // answer read earlier says.
  let touched = new Set();
  const env = {
    session: ctx.session,
    openDetail: host => detail.open(host),
    confirmWipe: t => wipe.open(t),
    answer: run => { if (!touched.has(run.id)) { tileOf(run.host).update(run); detail.upsert(run); } },
  };
  const detail = new Detail(env);
  fill(ctx.main, h('div', { class: 'row' }, h('h1', {}, 'Vetting'), h('span', { class: 'spacer' }), status),
    detail.el, empty, grid, wipe.el);

  const tileOf = host => {
    let t = tiles.get(host);
    if (t) return t;
    t = new Tile(host, env);
    tiles.set(host, t);
    // Keep tiles sorted by host name.
    const next = [...tiles.keys()].sort().find(n => n > host);
    grid.insertBefore(t.el, next ? tiles.get(next).el : null);
    empty.hidden = true;
    return t;
  };

  const onRun = run => {
    touched.add(run.id);
    tileOf(run.host).update(run);
    detail.upsert(run);
  };
  const loadHosts = async () => {
    const hosts = await api('GET', '/api/v1/hosts');
    const names = new Set();
    for (const x of hosts) {
      names.add(x.name);
      if (x.boot_profile === 'vet' || tiles.has(x.name)) tileOf(x.name).setHost(x);
    }
    // A removed host's tile goes unless it still has runs to show.
    for (const [name, t] of tiles) {
      if (!names.has(name) && !t.run) { t.el.remove(); tiles.delete(name); }
    }
    empty.hidden = tiles.size > 0;
  };
  const load = async () => {
    const [, data] = await Promise.all([loadHosts(), api('GET', '/api/v1/vetting/runs?limit=500')]);
    const newest = new Map();
    for (const r of runsOf(data)) if (!newest.has(r.host) || Number(r.id) > Number(newest.get(r.host).id)) newest.set(r.host, r);
    for (const [host, r] of newest) if (!touched.has(r.id)) tileOf(host).update(r);
    empty.hidden = tiles.size > 0;
  };

  // The stream first (its hello marks where it starts), then the lists:
  // every change after the hello arrives as an event. EventSource resumes
  // by itself with Last-Event-ID after a network error; a refused
  // connection is final, so then a new stream and a fresh load.
  let es = null, failed = false;
  const connect = () => new Promise(resolve => {
    es = new EventSource('/api/v1/vetting/stream');
    ctx.signal.addEventListener('abort', () => es.close(), { once: true });
    es.addEventListener('hello', () => { status.textContent = 'live'; resolve(true); });
    es.onerror = () => {
      status.textContent = 'reconnecting…';
      if (es.readyState === EventSource.CLOSED) {
        resolve(false);
        setTimeout(() => { if (!ctx.signal.aborted && !failed) resync(); }, 5000);
      }
    };
    const data = e => { try { return JSON.parse(e.data); } catch { return null; } };
    es.addEventListener('run', e => { const v = data(e); if (v) onRun(v); });
    es.addEventListener('run_deleted', e => {
      const v = data(e);
      if (!v) return;
      detail.remove(v.id);
      for (const t of tiles.values()) {
        if (t.run && t.run.id === v.id) {
          api('GET', '/api/v1/vetting/runs?limit=1&host=' + encodeURIComponent(t.host))
            .then(d => { t.run = null; t.update(runsOf(d)[0] || null); }).catch(() => {});
        }
      }
    });
    es.addEventListener('agent', e => {
      const v = data(e);
      if (!v) return;
      for (const t of tiles.values()) if (t.run && t.run.id === v.run) t.agent(v.event);
    });
  });
  const resync = async () => {
    touched = new Set();
    const live = await connect();
    if (live) await load().catch(e => { status.textContent = e.message; });
  };

  // The first load shows what is wrong when vetting is off.
  const ready = connect();
  const live = await Promise.race([ready, new Promise(r => setTimeout(() => r(null), 5000))]);
  try {
    await load();
  } catch (e) {
    failed = true;
    es.close();
    throw e;
  }
  if (live === false) status.textContent = 'not live: reconnecting…';

  // Hosts added, changed or removed come over the main event stream.
  ctx.on('hosts', debounce(() => loadHosts().catch(() => {}), 200));
  // Elapsed times and "… ago".
  const timer = setInterval(() => { for (const t of tiles.values()) t.tick(); }, 1000);
  ctx.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  if (ctx.params[0]) detail.open(ctx.params[0]);
}
