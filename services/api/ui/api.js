// The API client and DOM helpers shared by every view.

let csrf = '';

// setCSRF remembers the session's CSRF token for mutating requests.
export function setCSRF(token) { csrf = token || ''; }

// APIError carries the API's error shape: code, message, field, details.
export class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || { code: 'http_' + status, message: typeof body === 'string' && body ? body : 'HTTP ' + status };
    super(e.message);
    this.status = status;
    this.code = e.code;
    this.field = e.field || '';
    this.details = e.details || (e.field ? [e] : []);
  }
}

// api calls the JSON API. body: undefined (none), a string (sent as is with
// opts.type) or a value (sent as JSON). Resolves to the decoded body, null
// for 204. A 401 also dispatches "kiln:unauthenticated" on window.
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      payload = body;
      headers['Content-Type'] = opts.type || 'text/plain';
    } else {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf || 'none';
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && !opts.quiet) window.dispatchEvent(new CustomEvent('kiln:unauthenticated'));
    throw err;
  }
  return data;
}

// h builds an element: h('a', {href: '#/'}, 'text', child…). Attributes
// starting with "on" become listeners; text is always text (never HTML).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') {
      el.value = v;
      if (tag === 'input') el.setAttribute('value', v); // what form.reset() restores
    }
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// clear empties el and appends children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ago formats a time as "12 s ago" / "3 h ago"; the exact time is in title.
export function ago(t) {
  if (!t || t.startsWith('0001-')) return h('span', { class: 'muted' }, '–');
  const d = new Date(t);
  let s = Math.round((Date.now() - d.getTime()) / 1000);
  const future = s < 0;
  s = Math.abs(s);
  let text;
  if (s < 60) text = s + ' s';
  else if (s < 3600) text = Math.round(s / 60) + ' min';
  else if (s < 86400) text = Math.round(s / 3600) + ' h';
  else text = Math.round(s / 86400) + ' d';
  return h('time', { datetime: t, title: d.toLocaleString() }, future ? 'in ' + text : text + ' ago');
}

export function badge(text, cls) {
  return h('span', { class: 'badge ' + (cls || text) }, text);
}

// table renders rows with columns [{title, cell(row), cls}]; id names it.
export function table(id, columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted', id }, empty || 'Nothing yet.');
  return h('div', { class: 'table-wrap' }, h('table', { id },
    h('thead', {}, h('tr', {}, columns.map(c => h('th', { class: c.cls }, c.title)))),
    h('tbody', {}, rows.map(r => h('tr', { dataset: r.__key ? { key: r.__key } : undefined }, columns.map(c => h('td', { class: c.cls }, c.cell(r))))))));
}

// debounce returns f delayed until calls stop for ms.
export function debounce(f, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => f(...args), ms); };
}
