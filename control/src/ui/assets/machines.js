// A cluster's page (its machines: add, edit, delete, CSV import) and a machine's page
// (provisioning timeline, current lease, metrics, re-provision).

import { ApiError, all, api, isAdmin } from './api.js';
import { badge, bytes, failure, h, pageHead, replace, when } from './dom.js';
import { confirmDialog, formDialog, notice } from './forms.js';
import { SPECS, deleteResource, editResource } from './resources.js';
import { dataTable } from './table.js';

const ROLES = ['MASTER', 'WORKER', 'STORAGE', 'GATEWAY'];
const OS = ['LINUX', 'WINDOWS', 'MACOS'];
const STATUS = ['ACTIVE', 'INACTIVE', 'MAINTENANCE', 'ERROR', 'DEPLOYING', 'UPGRADING', 'UNREACHABLE'];
const HEALTH = ['HEALTHY', 'WARNING', 'CRITICAL', 'UNKNOWN'];
const opts = list => list.map(v => [v, v]);

async function machineFields() {
  const profiles = await all('/api/boot-profiles');
  return [
    { name: 'hostname', label: 'Hostname', help: 'RFC 1123 host name' },
    { name: 'mac', label: 'MAC address', placeholder: '52:54:00:12:34:56' },
    { name: 'ip', label: 'IP address', nullable: true, help: 'fixed IPv4 address; empty for none' },
    { name: 'role', label: 'Role', type: 'select', options: opts(ROLES), default: 'WORKER' },
    { name: 'os_type', label: 'OS', type: 'select', options: opts(OS), default: 'LINUX' },
    { name: 'cpu_cores', label: 'CPU cores', type: 'number', default: 0 },
    { name: 'status', label: 'Status', type: 'select', options: opts(STATUS), default: 'INACTIVE' },
    { name: 'health', label: 'Health', type: 'select', options: opts(HEALTH), default: 'UNKNOWN' },
    { name: 'boot_profile', label: 'Boot profile', type: 'select', numeric: true,
      options: [['', '— site default —'], ...profiles.map(p => [String(p.id), p.name])] },
    { name: 'netboot', label: 'Netboot', type: 'checkbox', default: true, help: 'boot from the network at the next start' },
  ];
}

/** Add (row null) or edit a machine of cluster `cid`, always by its id: never a duplicate. */
async function editMachine(cid, row) {
  const values = row ? { ...row, boot_profile: row.boot_profile === null ? '' : String(row.boot_profile) } : {};
  return formDialog({
    title: row ? `Edit ${row.hostname}` : 'Add machine',
    fields: await machineFields(), values, editing: !!row,
    submit: data => (row
      ? api('PATCH', `/api/cluster/${cid}/machines/${row.id}`, data)
      : api('POST', `/api/cluster/${cid}/add_machine`, data)),
  });
}

/** Splits CSV text into rows of trimmed cells (quotes allowed around a cell). */
export function parseCsv(text) {
  return text.split(/\r?\n/).map((line, i) => ({ line: i + 1, raw: line }))
    .filter(r => r.raw.trim() !== '' && !r.raw.trim().startsWith('#'))
    .map(r => ({ ...r, cells: r.raw.split(',').map(c => c.trim().replace(/^"(.*)"$/, '$1')) }));
}

/** Imports `mac,hostname,ip,role` rows into cluster `cid`; resolves to one report per row. */
async function importRows(cid, rows, progress) {
  const report = [];
  for (const r of rows) {
    progress(report.length, rows.length);
    const [mac = '', hostname = '', ip = '', role = ''] = r.cells;
    if (r.line === 1 && mac.toLowerCase() === 'mac') continue; // header
    const entry = { line: r.line, mac, hostname };
    if (r.cells.length !== 4) {
      report.push({ ...entry, ok: false, why: `has ${r.cells.length} columns: expected 4 (mac,hostname,ip,role)` });
      continue;
    }
    const body = { mac, hostname, ip: ip || null };
    if (role) body.role = role;
    try {
      await api('POST', `/api/cluster/${cid}/add_machine`, body);
      report.push({ ...entry, ok: true, why: 'added' });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const fields = Object.entries(err.fields).map(([f, m]) => `${f}: ${m}`);
      report.push({ ...entry, ok: false, why: fields.length ? fields.join('; ') : err.message });
    }
  }
  return report;
}

function importDialog(cid) {
  return new Promise(resolve => {
    const area = h('textarea', { id: 'csv', placeholder: 'mac,hostname,ip,role\n52:54:00:00:00:01,node-1,10.0.0.11,WORKER' });
    const file = h('input', { type: 'file', accept: '.csv,text/csv,text/plain' });
    file.addEventListener('change', async () => { if (file.files[0]) area.value = await file.files[0].text(); });
    const out = h('div', { class: 'import-report' });
    const go = h('button', { type: 'button', id: 'run-import', text: 'Import' });
    const close = h('button', { type: 'button', class: 'secondary', text: 'Close' });
    let imported = 0;
    const dialog = h('dialog', { class: 'import-dialog' }, h('div', { class: 'dialog-body' },
      h('h2', { text: 'Import machines from CSV' }),
      h('p', { class: 'muted', text: 'One machine per line: mac,hostname,ip,role (ip may be empty; role defaults to WORKER). A first line "mac,hostname,ip,role" is skipped.' }),
      file, area, out, h('div', { class: 'dialog-buttons' }, close, go)));
    close.addEventListener('click', () => { dialog.close(); dialog.remove(); resolve(imported); });
    go.addEventListener('click', async () => {
      go.disabled = true;
      replace(out, h('p', { class: 'muted', text: 'Importing…' }));
      try {
        const progressText = h('p', { class: 'muted', text: 'Importing…' });
        replace(out, progressText);
        const report = await importRows(cid, parseCsv(area.value), (done, total) => {
          progressText.textContent = `Importing… ${done} of ${total} lines`;
        });
        const ok = report.filter(r => r.ok).length;
        imported += ok;
        replace(out,
          h('p', { class: 'summary', text: `${ok} added, ${report.length - ok} rejected.` }),
          h('table', { class: 'data report' }, h('thead', {}, h('tr', {}, ['Line', 'MAC', 'Hostname', 'Result'].map(t => h('th', { text: t })))),
            h('tbody', {}, report.map(r => h('tr', { class: r.ok ? 'row-added' : 'row-rejected' },
              h('td', { text: r.line }), h('td', { class: 'mono', text: r.mac }), h('td', { text: r.hostname }),
              h('td', { class: r.ok ? 'added' : 'rejected', text: r.ok ? 'added' : `rejected: ${r.why}` }))))));
      } catch (err) {
        replace(out, h('p', { class: 'form-error', text: err.message }));
      } finally {
        go.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** `#/clusters/{id}`. */
export async function clusterPage(main, id) {
  const admin = isAdmin();
  let cluster;
  try {
    cluster = await api('GET', `/api/cluster/${id}`);
  } catch (err) {
    main.replaceChildren(failure(err));
    return;
  }
  const info = h('div', { class: 'panel' });
  const showInfo = c => replace(info, h('dl', { class: 'kv' },
    h('dt', { text: 'Status' }), h('dd', {}, badge(c.status)),
    h('dt', { text: 'Health' }), h('dd', {}, badge(c.health)),
    h('dt', { text: 'Site' }), h('dd', { text: c.site_name ?? 'none' }),
    h('dt', { text: 'Description' }), h('dd', { text: c.description || '—' }),
    h('dt', { text: 'Updated' }), h('dd', {}, when(c.updated_at))));
  showInfo(cluster);

  const reload = async () => table.setRows(await all(`/api/cluster/${id}/machines`));
  const table = dataTable({
    noun: 'machines', id: 'machines',
    columns: [
      { key: 'hostname', label: 'Hostname', render: r => h('a', { href: `#/machines/${r.id}`, text: r.hostname }) },
      { key: 'mac', label: 'MAC', class: 'mono' },
      { key: 'ip', label: 'IP', class: 'mono' },
      { key: 'role', label: 'Role' },
      { key: 'status', label: 'Status', render: r => badge(r.status) },
      { key: 'health', label: 'Health', render: r => badge(r.health) },
      { key: 'boot_profile_name', label: 'Boot profile' },
      { key: 'netboot', label: 'Netboot', value: r => (r.netboot ? 'on' : 'off') },
      { key: 'updated_at', label: 'Updated', render: r => when(r.updated_at) },
    ],
    actions: admin ? row => [
      h('button', { class: 'secondary small', type: 'button', text: 'Edit', dataset: { action: 'edit' },
        onClick: async () => { if (await editMachine(id, row)) await reload(); } }),
      h('button', { class: 'danger small', type: 'button', text: 'Delete', dataset: { action: 'delete' },
        onClick: async () => {
          if (!(await confirmDialog(`Delete machine ${row.hostname} (${row.mac})?`))) return;
          try { await api('DELETE', `/api/cluster/${id}/machines/${row.id}`); } catch (err) { await notice(err.message); }
          await reload();
        } }),
    ] : null,
  });

  const buttons = admin ? [
    h('button', { type: 'button', class: 'secondary', id: 'edit-cluster', text: 'Edit cluster',
      onClick: async () => { const c = await editResource(SPECS.clusters, cluster); if (c) { cluster = c; showInfo(c); } } }),
    h('button', { type: 'button', class: 'danger', id: 'delete-cluster', text: 'Delete cluster',
      onClick: async () => { if (await deleteResource(SPECS.clusters, cluster)) location.hash = '#/clusters'; } }),
    h('button', { type: 'button', class: 'secondary', id: 'import', text: 'Import CSV',
      onClick: async () => { if (await importDialog(id)) await reload(); } }),
    h('button', { type: 'button', id: 'add-machine', text: 'Add machine',
      onClick: async () => { if (await editMachine(id, null)) await reload(); } }),
  ] : [];
  main.replaceChildren(
    h('p', { class: 'muted' }, h('a', { href: '#/clusters', text: 'Clusters' }), ' / '),
    pageHead(`Cluster ${cluster.name}`, buttons), info, h('h2', { text: 'Machines' }), table.el);
  await reload();
}

/** Speed of a transfer detail, "12.3 MiB/s". */
function speed(d) {
  if (!d || !d.bytes || !d.duration_ms) return null;
  return `${bytes((d.bytes * 1000) / d.duration_ms)}/s`;
}

function describe(ev) {
  const d = ev.detail || {};
  const msg = String(ev.message || '');
  const parts = [msg];
  const add = (value, text) => { if (value !== undefined && value !== null && !msg.includes(String(value))) parts.push(text); };
  add(d.path, `file ${d.path}`);
  add(d.boot_file, `boot file ${d.boot_file}`);
  if (typeof d.bytes === 'number') {
    const s = /completed/i.test(ev.kind) || /Completed/.test(d.type || '') ? speed(d) : null;
    parts.push(s ? `${bytes(d.bytes)} at ${s}` : bytes(d.bytes));
  }
  add(d.reason, `reason: ${d.reason}`);
  return parts.filter(Boolean).join(' · ');
}

const isError = ev => /fail|error/i.test(ev.kind) || /Failed|Error/.test(ev.detail?.type || '');

function meter(label, pct, extra) {
  const bar = h('span');
  bar.style.width = `${Math.max(0, Math.min(100, pct || 0))}%`;
  return [h('dt', { text: label }), h('dd', {}, h('span', { class: 'meter' }, bar), `${(pct || 0).toFixed(1)} %`, extra ? ` (${extra})` : '')];
}

/** `#/machines/{id}`. */
export async function machinePage(main, id) {
  let m;
  try {
    m = await api('GET', `/api/machines/${id}`);
  } catch (err) {
    main.replaceChildren(failure(err));
    return;
  }
  const [events, leases, metrics] = await Promise.all([
    api('GET', `/api/machines/${id}/events?page_size=500`),
    api('GET', `/api/leases?mac=${encodeURIComponent(m.mac)}&page_size=50`),
    api('GET', `/api/machines/${id}/metrics`).catch(err => {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }),
  ]);
  const active = leases.results.filter(l => l.binding_state === 'active');
  const lease = active[active.length - 1] || null;

  const reprovision = isAdmin() ? h('button', { type: 'button', id: 'reprovision', text: 'Re-provision',
    onClick: async () => {
      if (!(await confirmDialog(`Re-provision ${m.hostname}? Netboot is turned on: the machine installs again at its next network boot.`, 'Re-provision'))) return;
      try {
        await api('PATCH', `/api/machines/${id}`, { netboot: true });
        await machinePage(main, id);
      } catch (err) {
        await notice(`Could not re-provision: ${err.message}`);
      }
    } }) : null;

  const overview = h('div', { class: 'panel' }, h('h2', { text: 'Machine' }), h('dl', { class: 'kv' },
    h('dt', { text: 'MAC' }), h('dd', { class: 'mono', text: m.mac }),
    h('dt', { text: 'IP' }), h('dd', { class: 'mono', text: m.ip ?? '—' }),
    h('dt', { text: 'Role / OS' }), h('dd', { text: `${m.role} · ${m.os_type}` }),
    h('dt', { text: 'Status' }), h('dd', {}, badge(m.status), ' ', badge(m.health)),
    h('dt', { text: 'Boot profile' }), h('dd', { text: m.boot_profile_name ?? 'site default' }),
    h('dt', { text: 'Netboot' }), h('dd', { id: 'netboot', text: m.netboot ? 'on (installs at next boot)' : 'off' }),
    h('dt', { text: 'Updated' }), h('dd', {}, when(m.updated_at))));

  const leaseBox = h('div', { class: 'panel', id: 'lease' }, h('h2', { text: 'Current lease' }), lease
    ? h('dl', { class: 'kv' },
      h('dt', { text: 'Address' }), h('dd', { class: 'mono', text: lease.ip_address }),
      h('dt', { text: 'Edge' }), h('dd', { text: `${lease.worker_id}${lease.site_name ? ` (${lease.site_name})` : ''}` }),
      h('dt', { text: 'Subnet' }), h('dd', { class: 'mono', text: lease.cidr ?? '—' }),
      h('dt', { text: 'Boot file' }), h('dd', { class: 'mono', text: lease.bootfile_url ?? '—' }),
      h('dt', { text: 'Since' }), h('dd', {}, when(lease.lease_start)),
      h('dt', { text: 'Ends' }), h('dd', {}, when(lease.lease_end)))
    : h('p', { class: 'muted', text: 'No active lease.' }));

  const metricsBox = h('div', { class: 'panel', id: 'metrics' }, h('h2', { text: 'Resources' }), metrics
    ? h('dl', { class: 'kv' },
      meter('CPU', metrics.cpu_usage, `${metrics.cpu_cores} cores`),
      meter('Memory', metrics.memory_usage, `${metrics.memory_used} of ${metrics.memory_total} GB`),
      meter('Disk', metrics.disk_usage, `${metrics.disk_used} of ${metrics.disk_total} GB`),
      h('dt', { text: 'Network' }), h('dd', { text: `in ${metrics.network_incoming} Mbps · out ${metrics.network_outgoing} Mbps` }),
      h('dt', { text: 'Reported' }), h('dd', {}, when(metrics.timestamp)))
    : h('p', { class: 'muted', text: 'No metrics reported yet.' }));

  const timeline = events.results.length
    ? h('ol', { class: 'timeline', id: 'timeline' }, events.results.map(ev => h('li', { class: isError(ev) ? 'error' : '' },
      when(ev.at), h('span', { class: 'kind', text: ev.kind.replace(/_/g, ' ') }),
      h('span', {}, describe(ev), ev.worker_id ? h('span', { class: 'muted', text: ` — ${ev.worker_id}` }) : null))))
    : h('p', { class: 'muted', id: 'timeline', text: 'No provisioning events yet: they appear when an edge leases an address, serves a boot file or the installed system phones home.' });

  main.replaceChildren(
    h('p', { class: 'muted' }, h('a', { href: '#/clusters', text: 'Clusters' }), ' / ',
      h('a', { href: `#/clusters/${m.cluster}`, text: m.cluster_name }), ' /'),
    pageHead(`Machine ${m.hostname}`, reprovision),
    h('div', { class: 'grid2' }, overview, leaseBox, metricsBox),
    h('h2', { text: `Provisioning timeline (${events.count})` }),
    h('div', { class: 'panel' }, timeline));
}
