// The topology: sites → edges → clusters → machines as an SVG graph, coloured by status.
// Each cluster shows its first machines and a "+N more" node, so 1,000 machines stay readable.

import { all } from './api.js';
import { h, pageHead, tone } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const COL_X = [20, 270, 520, 770];
const NODE_W = 210;
const NODE_H = 26;
const GAP = 34;
const TOP = 44;
const MACHINES_SHOWN = 8;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function clip(text, max = 28) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `#/topology`. */
export async function topologyPage(main) {
  const [sites, workers, clusters, machines] = await Promise.all([
    all('/api/sites'), all('/api/workers'), all('/api/cluster'), all('/api/machines'),
  ]);
  // Rows are assigned top-down: a site's block starts below everything drawn so far, and a
  // cluster starts level with (or below) its first machine, so lines run mostly sideways.
  const columns = [[], [], [], []];
  const next = [0, 0, 0, 0];
  const links = [];
  const node = (col, row, key, label, status, href, title) => {
    const n = { col, key, label, status, href, title, y: TOP + row * GAP };
    columns[col].push(n);
    next[col] = row + 1;
    return n;
  };

  const siteKeys = [...sites.map(s => s.id)];
  if (workers.some(w => w.site === null) || clusters.some(c => c.site === null)) siteKeys.push(null);
  const byCluster = new Map();
  for (const m of machines) {
    if (!byCluster.has(m.cluster)) byCluster.set(m.cluster, []);
    byCluster.get(m.cluster).push(m);
  }
  const byName = new Intl.Collator(undefined, { numeric: true });
  for (const list of byCluster.values()) list.sort((a, b) => byName.compare(a.hostname, b.hostname));
  for (const sid of siteKeys) {
    const s = sites.find(x => x.id === sid);
    const top = Math.max(...next);
    const sn = s ? node(0, top, `s${sid}`, s.name, 'site', '#/sites', `site ${s.name}`)
      : node(0, top, 'none', 'no site', '', null, 'edges and clusters without a site');
    next[1] = next[2] = next[3] = top;
    const edges = workers.filter(x => x.site === sid).map(w => {
      const wn = node(1, next[1], `w${w.id}`, w.worker_id, w.status, '#/workers', `edge ${w.worker_id}: ${w.status}`);
      links.push([sn, wn]);
      return wn;
    });
    for (const c of clusters.filter(x => x.site === sid)) {
      const row = Math.max(next[2], next[3]);
      const cn = node(2, row, `c${c.id}`, c.name, c.status, `#/clusters/${c.id}`, `cluster ${c.name}: ${c.status}, ${c.health}`);
      // A site's edges provision its clusters; without an edge the cluster hangs off the site.
      for (const parent of edges.length ? edges : [sn]) links.push([parent, cn]);
      next[3] = row;
      const ms = byCluster.get(c.id) || [];
      for (const m of ms.slice(0, MACHINES_SHOWN)) {
        links.push([cn, node(3, next[3], `m${m.id}`, m.hostname, m.status, `#/machines/${m.id}`, `${m.hostname} ${m.mac}: ${m.status}`)]);
      }
      if (ms.length > MACHINES_SHOWN) {
        links.push([cn, node(3, next[3], `more${c.id}`, `+${ms.length - MACHINES_SHOWN} more`, '', `#/clusters/${c.id}`, `${ms.length} machines in ${c.name}`)]);
      }
    }
  }

  const rows = Math.max(1, ...next);
  const height = TOP + rows * GAP + 10;
  const root = svg('svg', { width: COL_X[3] + NODE_W + 20, height, viewBox: `0 0 ${COL_X[3] + NODE_W + 20} ${height}`, role: 'img', 'aria-label': 'topology', id: 'topology' });
  ['Sites', 'Edges', 'Clusters', 'Machines'].forEach((t, i) => {
    const label = svg('text', { x: COL_X[i], y: 24, class: 'col' });
    label.textContent = `${t} (${[sites.length, workers.length, clusters.length, machines.length][i]})`;
    root.append(label);
  });
  for (const [a, b] of links) {
    root.append(svg('line', { x1: COL_X[a.col] + NODE_W, y1: a.y + NODE_H / 2, x2: COL_X[b.col], y2: b.y + NODE_H / 2 }));
  }
  for (const col of columns) {
    for (const n of col) {
      const t = n.status === 'site' ? 'info' : tone(n.status) || 'none';
      const title = svg('title');
      title.textContent = n.title;
      const text = svg('text', { x: COL_X[n.col] + 9, y: n.y + 17 });
      text.textContent = clip(n.label);
      const rect = svg('rect', { x: COL_X[n.col], y: n.y, width: NODE_W, height: NODE_H, rx: 5 });
      const g = svg('g', { class: `node s-${t}`, 'data-key': n.key }, title, rect, text);
      root.append(n.href ? svg('a', { href: n.href }, g) : g);
    }
  }
  const legend = h('div', { class: 'legend' }, ['ok', 'warn', 'bad', 'info', ''].map((t, i) =>
    h('span', { class: `badge ${t}`, text: ['active / operational', 'inactive / degraded', 'error / critical', 'site / deploying', 'unknown'][i] })));
  main.replaceChildren(pageHead('Topology'), legend, h('div', { class: 'topology' }, root));
}
