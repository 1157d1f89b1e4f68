// Roots: the root images diskless machines boot over NFS, each version with
// the hosts that boot it and the hosts whose client used it in the last hour
// (changes: kiln roots import|promote|rm).
import { api, h, fill, table, debounce } from './api.js';
import { size } from './volumes.js';

const hostLinks = names => names.length
  ? h('span', {}, ...names.flatMap((n, i) => [i ? ', ' : '', h('a', { href: '#/hosts/' + encodeURIComponent(n) }, n)]))
  : '–';

function rootsTable(roots) {
  return table('roots-table', [
    { title: 'Root image', cell: r => h('code', {}, r.ref) },
    { title: 'Promoted', cell: r => r.promoted ? 'yes' : '–' },
    { title: 'Size', cell: r => size(r.size) },
    { title: 'Files', cls: 'hide-narrow', cell: r => String(r.files) },
    { title: 'Boots', cell: r => hostLinks(r.boots) },
    { title: 'In use', cell: r => hostLinks(r.in_use) },
    { title: 'Source', cls: 'hide-narrow', cell: r => r.source || '–' },
  ], roots, 'No root images. Import one with kiln roots import DIR|TARBALL|SQUASHFS --name NAME.');
}

export async function rootsView(ctx) {
  const list = h('div', {});
  const refused = h('div', { id: 'roots-refused' });
  const load = async () => {
    const r = await api('GET', '/api/v1/roots');
    fill(list, rootsTable(r.roots));
    fill(refused, ...(r.refused.length ? [h('h2', {}, 'Refused'),
      h('ul', {}, ...r.refused.map(x => h('li', {}, h('a', { href: '#/hosts/' + encodeURIComponent(x.host) }, x.host),
        (x.addr ? ' ' + x.addr : '') + ': ' + x.reason)))] : []));
  };
  await load();
  fill(ctx.main, h('h1', {}, 'Root images'), list, refused);
  // Imports, promotions and host changes move the database's data version.
  ctx.on('hosts', debounce(() => load().catch(() => {}), 150));
}
