// Volumes: iSCSI volumes of thin nodes, logical vs allocated size, and the
// data partition's space as the quota sees it (changes: kiln volumes …).
import { api, h, fill, table, debounce } from './api.js';

// size formats bytes in binary units like the CLI ("16 GiB", "1.5 MiB").
export function size(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1).replace(/\.0$/, '')) + ' ' + units[i];
}

function volumesTable(vols) {
  return table('volumes-table', [
    { title: 'Volume', cell: v => v.label },
    { title: 'Host', cell: v => v.host ? h('a', { href: '#/hosts/' + encodeURIComponent(v.host) }, v.host) : h('span', { class: 'muted' }, 'golden') },
    { title: 'Size', cell: v => size(v.size) },
    { title: 'Allocated', cell: v => size(v.allocated) + ' (' + Math.round(100 * v.allocated / Math.max(v.size, 1)) + '%)' },
    { title: 'LUN', cell: v => v.lun >= 0 ? String(v.lun) : '–' },
    { title: 'Target', cls: 'hide-narrow', cell: v => v.target ? h('code', {}, v.target) : '–' },
    { title: 'Source', cls: 'hide-narrow', cell: v => v.source || '–' },
  ], vols, 'No volumes. Make one with kiln volumes create HOST/NAME --size 16G.');
}

export async function volumesView(ctx) {
  const list = h('div', {});
  const space = h('p', { class: 'muted', id: 'volumes-space' });
  const load = async () => {
    const r = await api('GET', '/api/v1/volumes');
    const s = r.space;
    fill(space, `Data partition: ${size(s.free)} free of ${size(s.total)}; ${size(s.promised)} promised to volumes' unwritten blocks, ${size(s.reserve)} kept for the appliance.`);
    fill(list, volumesTable(r.volumes));
  };
  await load();
  fill(ctx.main, h('h1', {}, 'Volumes'), space, list);
  // Volume changes move the database's data version, which the hosts event follows.
  ctx.on('hosts', debounce(() => load().catch(() => {}), 150));
}
