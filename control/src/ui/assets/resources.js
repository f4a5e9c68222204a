// List pages of the REST resources, with create / edit / delete dialogs for admins:
// clusters, sites, IP pools, boot profiles, DHCP and TFTP configuration, users, and the
// read-only leases. Each is described by a spec (columns and form fields); `crudPage` renders any.

import { all, api, isAdmin } from './api.js';
import { badge, h, pageHead, when } from './dom.js';
import { confirmDialog, formDialog, notice } from './forms.js';
import { dataTable } from './table.js';

const enumOptions = names => names.map(n => [n, n]);
export const CLUSTER_STATUS = ['OPERATIONAL', 'DEGRADED', 'CRITICAL', 'MAINTENANCE', 'SCALING', 'UPGRADING', 'UNKNOWN'];
export const HEALTH = ['HEALTHY', 'WARNING', 'CRITICAL', 'UNKNOWN'];

/** Options of a site select: none, then every site by name. */
export async function siteOptions(noneLabel = '— none (global) —') {
  const sites = await all('/api/sites');
  return [['', noneLabel], ...sites.map(s => [String(s.id), s.name])];
}

const text = key => row => row[key] ?? '';
const siteCol = { key: 'site_name', label: 'Site', render: r => r.site_name ?? h('span', { class: 'muted', text: 'global' }) };
const updatedCol = { key: 'updated_at', label: 'Updated', render: r => when(r.updated_at) };
const yesNo = key => ({ key, label: key.replace(/_/g, ' '), render: r => (r[key] ? 'yes' : 'no') });

/** The resource specs by route name. */
export const SPECS = {
  clusters: {
    title: 'Clusters', noun: 'clusters', path: '/api/cluster', label: r => r.name,
    columns: [
      { key: 'name', label: 'Name', render: r => h('a', { href: `#/clusters/${r.id}`, text: r.name }) },
      { key: 'status', label: 'Status', render: r => badge(r.status) },
      { key: 'health', label: 'Health', render: r => badge(r.health) },
      siteCol,
      { key: 'machine_count', label: 'Machines' },
      { key: 'description', label: 'Description' },
      updatedCol,
    ],
    fields: async () => [
      { name: 'name', label: 'Name', help: '1–100 characters, unique' },
      { name: 'description', label: 'Description' },
      { name: 'status', label: 'Status', type: 'select', options: enumOptions(CLUSTER_STATUS), default: 'UNKNOWN' },
      { name: 'health', label: 'Health', type: 'select', options: enumOptions(HEALTH), default: 'UNKNOWN' },
      { name: 'site', label: 'Site', type: 'select', options: await siteOptions('— none —') },
    ],
  },
  sites: {
    title: 'Sites', noun: 'sites', path: '/api/sites', label: r => r.name,
    columns: [
      { key: 'name', label: 'Name' },
      { key: 'description', label: 'Description' },
      { key: 'cluster_count', label: 'Clusters' },
      { key: 'worker_count', label: 'Edges' },
      { key: 'subnets', label: 'Subnets', value: r => (r.subnets || []).join(', ') },
      { key: 'boot_profiles', label: 'Boot profiles', value: r => (r.boot_profiles || []).join(', ') },
      updatedCol,
    ],
    fields: async () => [
      { name: 'name', label: 'Name', help: 'letters, digits, . _ - (1–63)' },
      { name: 'description', label: 'Description' },
    ],
  },
  ippools: {
    title: 'Subnets and IP pools', noun: 'pools', path: '/api/ippools', label: r => r.cidr,
    columns: [
      { key: 'cidr', label: 'Network', class: 'mono' },
      siteCol,
      { key: 'gateway', label: 'Gateway', class: 'mono' },
      { key: 'range', label: 'Dynamic range', class: 'mono', value: r => (r.range_start ? `${r.range_start} – ${r.range_end}` : '') },
      { key: 'dns', label: 'DNS', value: r => (r.dns || []).join(', ') },
      { key: 'lease_time', label: 'Lease (s)' },
      { key: 'description', label: 'Description' },
    ],
    fields: async () => [
      { name: 'cidr', label: 'Network', placeholder: '10.77.0.0/24' },
      { name: 'site', label: 'Site', type: 'select', options: await siteOptions() },
      { name: 'gateway', label: 'Gateway', nullable: true },
      { name: 'range_start', label: 'Range start', nullable: true },
      { name: 'range_end', label: 'Range end', nullable: true },
      { name: 'dns', label: 'DNS servers', type: 'list', help: 'IPv4 addresses, comma-separated (at most 8)' },
      { name: 'lease_time', label: 'Lease time (s)', type: 'number', default: 3600 },
      { name: 'description', label: 'Description' },
    ],
  },
  'boot-profiles': {
    title: 'Boot profiles', noun: 'profiles', path: '/api/boot-profiles', label: r => r.name,
    columns: [
      { key: 'name', label: 'Name' },
      siteCol,
      { key: 'bios', label: 'BIOS', class: 'mono' },
      { key: 'uefi_x64', label: 'UEFI x64', class: 'mono' },
      { key: 'http', label: 'HTTP boot', class: 'mono' },
      { key: 'ipxe_script', label: 'iPXE', class: 'mono' },
      { key: 'kernel', label: 'Kernel', class: 'mono' },
    ],
    fields: async () => [
      { name: 'name', label: 'Name' },
      { name: 'site', label: 'Site', type: 'select', options: await siteOptions() },
      { name: 'description', label: 'Description' },
      ...['bios', 'uefi_x64', 'uefi_arm64', 'http', 'http_arm64', 'ipxe_script', 'kernel', 'initrd', 'cmdline']
        .map(n => ({ name: n, label: n.replace(/_/g, ' '), nullable: true })),
    ],
  },
  'dhcp-config': {
    title: 'DHCP configuration', noun: 'configurations', path: '/api/dhcp-config', label: r => `DHCP of ${r.site_name}`,
    columns: [
      siteCol, yesNo('enabled'), { key: 'mode', label: 'Mode' },
      { key: 'bind_address', label: 'Bind address', class: 'mono' }, { key: 'bind_interface', label: 'Interface' },
      { key: 'tftp_ip', label: 'TFTP server', class: 'mono' }, { key: 'lease_time', label: 'Lease (s)' }, yesNo('allow_unknown'),
    ],
    fields: async () => [
      { name: 'site', label: 'Site', type: 'select', options: await siteOptions('— choose —') },
      { name: 'enabled', label: 'Enabled', type: 'checkbox', default: true },
      { name: 'mode', label: 'Mode', type: 'select', options: [['server', 'server'], ['proxy', 'proxy']], default: 'server' },
      { name: 'bind_address', label: 'Bind address', default: '0.0.0.0' },
      { name: 'bind_interface', label: 'Interface', help: 'empty for all' },
      { name: 'tftp_ip', label: 'TFTP server', nullable: true, help: 'empty: the edge itself' },
      { name: 'tftp_port', label: 'TFTP port', type: 'number', default: 69 },
      { name: 'lease_time', label: 'Lease time (s)', type: 'number', default: 3600 },
      { name: 'allow_unknown', label: 'Unknown MACs', type: 'checkbox', help: 'give unregistered machines an address' },
    ],
  },
  'tftp-config': {
    title: 'TFTP configuration', noun: 'configurations', path: '/api/tftp-config', label: r => `TFTP of ${r.site_name}`,
    columns: [
      siteCol, yesNo('enabled'), { key: 'bind_address', label: 'Bind address', class: 'mono' }, { key: 'bind_port', label: 'Port' },
      { key: 'block_size', label: 'Block size' }, { key: 'max_windowsize', label: 'Window' },
      { key: 'max_transfers', label: 'Max transfers' }, { key: 'root_directory', label: 'Root', class: 'mono' },
    ],
    fields: async () => [
      { name: 'site', label: 'Site', type: 'select', options: await siteOptions('— choose —') },
      { name: 'enabled', label: 'Enabled', type: 'checkbox', default: true },
      { name: 'bind_address', label: 'Bind address', default: '0.0.0.0' },
      { name: 'bind_port', label: 'Port', type: 'number', default: 69 },
      { name: 'block_size', label: 'Block size', type: 'number', default: 1468 },
      { name: 'max_windowsize', label: 'Window size', type: 'number', default: 64 },
      { name: 'max_transfers', label: 'Max transfers', type: 'number', default: 256 },
      { name: 'root_directory', label: 'Root directory', default: '/srv/netboot' },
    ],
  },
  users: {
    title: 'Users', noun: 'users', path: '/api/users', label: r => r.username, adminOnly: true,
    columns: [
      { key: 'username', label: 'Username' },
      { key: 'role', label: 'Role', render: r => badge(r.role) },
      { key: 'created_at', label: 'Created', render: r => when(r.created_at) },
      updatedCol,
    ],
    fields: async () => [
      { name: 'username', label: 'Username', createOnly: true },
      { name: 'password', label: 'Password', type: 'password', help: 'at least 8 characters; empty keeps the current one when editing' },
      { name: 'role', label: 'Role', type: 'select', options: [['viewer', 'viewer'], ['admin', 'admin']], default: 'viewer' },
    ],
    // PATCH takes only what changes: an empty password keeps the old one.
    patchBody: d => (d.password ? d : { role: d.role }),
  },
  leases: {
    title: 'DHCP leases', noun: 'leases', path: '/api/leases', readOnly: true,
    columns: [
      { key: 'ip_address', label: 'Address', class: 'mono' },
      { key: 'mac_address', label: 'MAC', class: 'mono' },
      { key: 'hostname', label: 'Hostname' },
      { key: 'binding_state', label: 'State', render: r => badge(r.binding_state) },
      { key: 'worker_id', label: 'Edge' },
      siteCol,
      { key: 'bootfile_url', label: 'Boot file', class: 'mono' },
      { key: 'lease_start', label: 'Start', render: r => when(r.lease_start) },
      { key: 'lease_end', label: 'End', render: r => when(r.lease_end) },
    ],
  },
};

/** Opens the create (row null) or edit dialog of `spec`; resolves to the saved object or null. */
export async function editResource(spec, row) {
  const fields = await spec.fields();
  const values = row ? { ...row } : {};
  if (row && 'site' in row && row.site !== null) values.site = String(row.site);
  return formDialog({
    title: row ? `Edit ${spec.label(row)}` : `New ${spec.noun.replace(/s$/, '')}`,
    fields, values, editing: !!row,
    submit: data => (row
      ? api('PATCH', `${spec.path}/${row.id}`, spec.patchBody ? spec.patchBody(data) : data)
      : api('POST', spec.path, data)),
  });
}

/** Asks, then deletes `row`; resolves true when it was deleted. */
export async function deleteResource(spec, row) {
  if (!(await confirmDialog(`Delete ${spec.label(row)}? This cannot be undone.`))) return false;
  try {
    await api('DELETE', `${spec.path}/${row.id}`);
    return true;
  } catch (err) {
    await notice(`Could not delete ${spec.label(row)}: ${err.message}`);
    return false;
  }
}

/** Renders the list page of `spec` into `main`. */
export async function crudPage(main, spec) {
  const admin = isAdmin() && !spec.readOnly;
  const reload = async () => table.setRows(await all(spec.path));
  const table = dataTable({
    columns: spec.columns, noun: spec.noun, id: 'list',
    actions: admin ? row => [
      h('button', { class: 'secondary small', type: 'button', text: 'Edit', dataset: { action: 'edit' },
        onClick: async () => { if (await editResource(spec, row)) await reload(); } }),
      h('button', { class: 'danger small', type: 'button', text: 'Delete', dataset: { action: 'delete' },
        onClick: async () => { if (await deleteResource(spec, row)) await reload(); } }),
    ] : null,
  });
  const create = admin ? h('button', { type: 'button', id: 'create', text: `New ${spec.noun.replace(/s$/, '')}`,
    onClick: async () => { if (await editResource(spec, null)) await reload(); } }) : null;
  main.replaceChildren(pageHead(spec.title, create), table.el);
  await reload();
}
