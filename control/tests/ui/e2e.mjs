// The web UI in headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
// control/tests/ui_browser.rs starts ims-control, creates the users, a site and an edge worker
// through the REST API, and runs this script with:
//   IMS_URL, IMS_ADMIN_USER/IMS_ADMIN_PASSWORD, IMS_VIEWER_USER/IMS_VIEWER_PASSWORD,
//   IMS_WORKER_ID (a registered legacy worker), IMS_SITE (a site name), IMS_SCREENSHOTS (a dir),
//   IMS_EDGE_ID (an edge on the QUIC uplink, which reported a lease, a failed and a complete
//   TFTP transfer and a phone-home for 52:54:00:aa:00:03 before this script imports that MAC).
// Exits non-zero with the failed step on the first failure.

import { mkdtempSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = name => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (this script is run by control/tests/ui_browser.rs)`);
  return v;
};
const BASE = env('IMS_URL');
const ADMIN = [env('IMS_ADMIN_USER'), env('IMS_ADMIN_PASSWORD')];
const VIEWER = [env('IMS_VIEWER_USER'), env('IMS_VIEWER_PASSWORD')];
const WORKER = env('IMS_WORKER_ID');
const SITE = env('IMS_SITE');
const SHOTS = env('IMS_SCREENSHOTS');
const EDGE = env('IMS_EDGE_ID');
const CHROMIUM = process.env.IMS_CHROMIUM || '/usr/bin/chromium';
const BIG = 1000;

const started = Date.now();
let stepName = 'start';
const log = msg => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
function step(name) { stepName = name; log(name); }
function check(cond, what) { if (!cond) throw new Error(`check failed: ${what}`); }

// The whole run is bounded.
const watchdog = setTimeout(() => { console.error(`timed out in step: ${stepName}`); process.exit(2); }, 150_000);

async function rest(method, path, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const token = async ([username, password]) => (await rest('POST', '/api/token', { username, password })).access;

const shots = [];
async function shot(page, name, fullPage = true) {
  const path = join(SHOTS, `${String(shots.length + 1).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage });
  shots.push(path);
}

async function login(page, [user, pass]) {
  await page.fill('#username', user);
  await page.fill('#password', pass);
  await page.click('#login button[type=submit]');
}

/** Fills the open dialog form's fields by name. */
async function fill(page, values) {
  for (const [name, value] of Object.entries(values)) {
    const sel = `dialog[open] [name="${name}"]`;
    await page.waitForSelector(sel);
    const tag = await page.$eval(sel, el => el.tagName);
    if (tag === 'SELECT') await page.selectOption(sel, { label: value });
    else await page.fill(sel, value);
  }
}

const rowCount = (page, table) => page.$$eval(`#${table} tbody tr[data-id]`, rows => rows.length);

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  // Screenshots of an earlier run would mix with this run's.
  for (const f of readdirSync(SHOTS)) if (f.endsWith('.png')) rmSync(join(SHOTS, f));
  const profile = mkdtempSync(join(tmpdir(), 'ims-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 800 },
  });
  const problems = [];
  try {
    // The UI must run under `Content-Security-Policy: default-src 'self'` (no inline scripts,
    // styles or handlers). When the server sends no policy itself, the page gets this one;
    // a violation is a console error, which fails the run below.
    await context.route(url => url.origin === BASE && url.pathname === '/', async route => {
      const response = await route.fetch();
      const headers = response.headers();
      headers['content-security-policy'] ??= "default-src 'self'";
      await route.fulfill({ response, headers });
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('pageerror', e => problems.push(`page error: ${e.message}`));
    page.on('console', m => {
      // 4xx answers the UI handles (validation, expired sessions) are logged by Chromium too.
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
    });

    const admin = await token(ADMIN);

    step('the login page');
    await page.goto(`${BASE}/`);
    await page.waitForURL(/#\/login/);
    await page.waitForSelector('#login');
    await shot(page, 'login');
    await login(page, [ADMIN[0], 'wrong-password']);
    await page.waitForSelector('#login-error:has-text("Wrong username or password")');

    step('log in as admin');
    await login(page, ADMIN);
    await page.waitForURL(/#\/clusters$/);
    await page.waitForSelector('#whoami:has-text("(admin)")');

    step('create a cluster');
    await page.click('#create');
    await fill(page, { name: 'lab-a', description: 'first lab', status: 'OPERATIONAL', health: 'HEALTHY', site: SITE });
    await page.click('dialog[open] button[type=submit]');
    await page.waitForSelector('#list tbody a:has-text("lab-a")');
    await shot(page, 'clusters');

    step('add a machine');
    await page.click('#list tbody a:has-text("lab-a")');
    await page.waitForSelector('#add-machine');
    await page.click('#add-machine');
    await fill(page, { hostname: 'node-1', mac: '52:54:00:aa:00:01', ip: '10.77.0.11' });
    await page.click('dialog[open] button[type=submit]');
    await page.waitForSelector('#machines tbody a:has-text("node-1")');

    step('edit it in place');
    await page.click('#machines tbody tr:has-text("node-1") button[data-action=edit]');
    await page.fill('dialog[open] [name=hostname]', 'node-1a');
    await page.click('dialog[open] button[type=submit]');
    await page.waitForSelector('#machines tbody a:has-text("node-1a")');
    check(await rowCount(page, 'machines') === 1, 'editing keeps one machine (no duplicate)');
    const cid = page.url().split('/').pop();
    const listed = await rest('GET', `/api/cluster/${cid}/machines`, undefined, admin);
    check(listed.count === 1 && listed.results[0].hostname === 'node-1a', `the API has the edited machine once: ${JSON.stringify(listed)}`);

    step('a bad MAC shows its error beside the field');
    await page.click('#add-machine');
    await fill(page, { hostname: 'node-2', mac: 'zz:zz:00:00:00:01' });
    await page.click('dialog[open] button[type=submit]');
    const macError = page.locator('dialog[open] .field[data-field=mac] .field-error');
    await macError.filter({ hasText: /\S/ }).waitFor();
    check(await page.locator('dialog[open] .field[data-field=hostname] .field-error').textContent() === '', 'only the MAC is marked');
    await shot(page, 'machine-validation');
    log(`  MAC error: ${await macError.textContent()}`);
    await page.click('dialog[open] button:has-text("Cancel")');

    step('import machines from CSV');
    await page.click('#import');
    await page.fill('#csv', [
      'mac,hostname,ip,role',
      '52:54:00:aa:00:02,node-2,10.77.0.12,WORKER',
      '52-54-00-AA-00-03,node-3,,MASTER',
      'not-a-mac,node-4,10.77.0.14,WORKER',
      '52:54:00:aa:00:01,node-5,10.77.0.15,WORKER',
      '52:54:00:aa:00:06,node-6,10.77.0.16,BOSS',
      '52:54:00:aa:00:07,node-7',
    ].join('\n'));
    await page.click('#run-import');
    await page.waitForSelector('.import-report .summary');
    const summary = await page.textContent('.import-report .summary');
    check(summary === '2 added, 4 rejected.', `import summary: ${summary}`);
    const reasons = await page.$$eval('.import-report tbody tr', rows => rows.map(r => r.lastElementChild.textContent));
    log(`  report: ${reasons.join(' | ')}`);
    check(reasons.length === 6, 'one report line per row');
    check(reasons[0] === 'added' && reasons[1] === 'added', 'good rows added');
    check(/^rejected: mac:/.test(reasons[2]), `bad MAC rejected on mac: ${reasons[2]}`);
    check(/^rejected: .*mac/.test(reasons[3]), `duplicate MAC rejected: ${reasons[3]}`);
    check(/^rejected: role:/.test(reasons[4]), `bad role rejected on role: ${reasons[4]}`);
    check(/columns/.test(reasons[5]), `short row rejected: ${reasons[5]}`);
    await shot(page, 'csv-import');
    await page.click('dialog[open] button:has-text("Close")');
    await page.waitForFunction(() => document.querySelectorAll('#machines tbody tr[data-id]').length === 3);

    step('machine detail: lease, timeline, metrics, re-provision');
    const node2 = (await rest('GET', `/api/machines?hostname=node-2`, undefined, admin)).results[0];
    const now = Date.now();
    await rest('POST', '/api/ims-worker/report_lease', { worker_id: WORKER, lease: {
      ip_address: '10.77.0.12', mac_address: node2.mac, hostname: 'node-2',
      lease_start: new Date(now - 60_000).toISOString(), lease_end: new Date(now + 3_540_000).toISOString(),
      cidr: '10.77.0.0/24', gateway: '10.77.0.1', binding_state: 'active', bootfile_url: 'ipxe.efi', tftp_server: '10.77.0.1' } }, admin);
    await rest('PUT', `/api/machines/${node2.id}/metrics`, { cpu_usage: 37.5, cpu_cores: 16, memory_used: 12, memory_total: 64,
      memory_usage: 18.75, disk_used: 120, disk_total: 480, disk_usage: 25, network_incoming: 40, network_outgoing: 12 }, admin);
    await rest('PATCH', `/api/machines/${node2.id}`, { netboot: false }, admin);
    await page.click('#machines tbody a:has-text("node-2")');
    await page.waitForSelector('#lease:has-text("10.77.0.12")');
    await page.waitForSelector('#metrics:has-text("16 cores")');
    check((await page.textContent('#netboot')).startsWith('off'), 'netboot off before re-provisioning');
    await page.click('#reprovision');
    await page.click('dialog[open] button:has-text("Re-provision")');
    await page.waitForSelector('#netboot:has-text("on")');
    check((await rest('GET', `/api/machines/${node2.id}`, undefined, admin)).netboot === true, 'netboot on in the API');
    await shot(page, 'machine');

    step('provisioning timeline reported by the uplink edge');
    await page.goto(`${BASE}/#/clusters/${cid}`);
    await page.click('#machines tbody a:has-text("node-3")');
    await page.waitForSelector('#timeline li');
    const timeline = await page.$$eval('#timeline li', items => items.map(li => li.textContent));
    log(`  timeline: ${timeline.join(' | ')}`);
    check(timeline.length === 4, `four events: ${timeline.length}`);
    check(timeline.some(t => /2\.0 MiB at 4\.0 MiB\/s/.test(t)), 'the boot file transfer with bytes and speed');
    check(timeline.some(t => /phone/i.test(t)), 'the phone-home');
    check(await page.locator('#timeline li.error').count() === 1, 'the failed transfer is marked as an error');
    await shot(page, 'machine-timeline');

    step('workers dashboard updates live');
    await page.goto(`${BASE}/#/workers`);
    const row = page.locator(`#workers tbody tr:has-text("${WORKER}")`);
    await row.locator('[data-status=active]').waitFor();
    await page.waitForSelector('#live.on');
    const edgeRow = page.locator(`#workers tbody tr:has-text("${EDGE}")`);
    await edgeRow.locator('[data-status=active]').waitFor();
    await edgeRow.locator('text=tftp: running').waitFor();
    check(await edgeRow.locator('td').nth(1).textContent() === SITE, 'the uplink edge belongs to its site');
    check(await edgeRow.locator('td').nth(6).textContent() === '3', 'the uplink edge reports 3 active transfers');
    await page.evaluate(() => { window.__noReload = true; });
    await shot(page, 'workers');
    await rest('POST', '/api/ims-worker/heartbeat', { worker_id: WORKER,
      services: { dhcp: { status: 'running' }, tftp: { status: 'failed', last_error: 'bind 0.0.0.0:69: address in use' } },
      metrics: { active_leases: 7, active_transfers: 2 } }, admin);
    await row.locator('[data-status=error]').waitFor({ timeout: 8000 });
    await row.locator('text=tftp: failed').waitFor();
    check(await row.locator('td').nth(5).textContent() === '7', 'active leases shown');
    check(await row.locator('td').nth(6).textContent() === '2', 'active transfers shown');
    check(await page.evaluate(() => window.__noReload === true), 'the page was not reloaded');
    await shot(page, 'workers-live');

    step(`a cluster of ${BIG} machines`);
    const big = await rest('POST', '/api/cluster', { name: 'big', site: SITE, status: 'OPERATIONAL', health: 'HEALTHY' }, admin);
    const t0 = Date.now();
    for (let i = 0; i < BIG; i += 4) {
      await Promise.all(Array.from({ length: Math.min(4, BIG - i) }, (_, j) => {
        const n = i + j;
        const mac = `52:54:01:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
        return rest('POST', `/api/cluster/${big.id}/add_machine`, { hostname: `big-${String(n).padStart(4, '0')}`, mac, role: n % 10 ? 'WORKER' : 'MASTER' }, admin);
      }));
    }
    log(`  created ${BIG} machines through the API in ${Date.now() - t0} ms`);
    const t1 = Date.now();
    await page.goto(`${BASE}/#/clusters/${big.id}`);
    await page.waitForSelector(`#machines ~ * , .count:has-text("${BIG} machines")`);
    await page.waitForFunction(n => document.querySelector('.count')?.textContent === `${n} machines`, BIG);
    log(`  rendered in ${Date.now() - t1} ms`);
    const t2 = Date.now();
    await page.fill('input[type=search]', 'big-0999');
    await page.waitForFunction(n => document.querySelector('.count')?.textContent === `1 of ${n} machines`, BIG);
    await page.fill('input[type=search]', '');
    await page.click('#machines th[data-key=hostname]');
    await page.click('#machines th[data-key=hostname]');
    const firstHost = await page.textContent('#machines tbody tr:first-child td:first-child');
    log(`  filtered and sorted twice in ${Date.now() - t2} ms`);
    check(firstHost === 'big-0999', `sorted descending by hostname: ${firstHost}`);
    await shot(page, 'cluster-1000', false);

    step('the other pages');
    await rest('POST', '/api/ippools', { cidr: '10.77.0.0/24', site: SITE, gateway: '10.77.0.1', range_start: '10.77.0.100', range_end: '10.77.0.200', dns: ['10.77.0.1'] }, admin);
    await rest('POST', '/api/boot-profiles', { name: 'ubuntu-24', site: SITE, bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', kernel: 'http://10.77.0.1/vmlinuz' }, admin);
    await rest('POST', '/api/dhcp-config', { site: SITE }, admin);
    await rest('POST', '/api/tftp-config', { site: SITE }, admin);
    for (const [route, expect] of [['leases', '10.77.0.12'], ['sites', SITE], ['ippools', '10.77.0.0/24'], ['boot-profiles', 'ubuntu-24'],
      ['dhcp-config', SITE], ['tftp-config', '/srv/netboot'], ['users', VIEWER[0]]]) {
      await page.goto(`${BASE}/#/${route}`);
      await page.waitForSelector(`#list tbody tr:has-text("${expect}")`);
      await shot(page, route);
    }
    step('delete a cluster, with confirmation');
    await rest('POST', '/api/cluster', { name: 'scratch' }, admin);
    await page.goto(`${BASE}/#/clusters`);
    await page.click('#list tbody tr:has-text("scratch") button[data-action=delete]');
    await page.click('dialog[open] button:has-text("Cancel")');
    check(await page.locator('#list tbody tr:has-text("scratch")').count() === 1, 'cancel keeps the cluster');
    await page.click('#list tbody tr:has-text("scratch") button[data-action=delete]');
    await page.click('dialog[open] button.danger:has-text("Delete")');
    await page.waitForSelector('#list tbody tr:has-text("scratch")', { state: 'detached' });

    step('sort and filter a list');
    await page.waitForSelector('#list tbody a:has-text("big")');
    await page.fill('input[type=search]', 'lab-a');
    await page.waitForFunction(() => document.querySelector('.count')?.textContent === '1 of 2 clusters');
    await page.fill('input[type=search]', '');

    step('topology');
    await page.goto(`${BASE}/#/topology`);
    await page.waitForSelector('#topology g.node.s-bad');  // the worker in error
    check(await page.locator('#topology text:has-text("+992 more")').count() === 1, 'the big cluster is summarised');
    await shot(page, 'topology');

    step('log out; log in as a viewer: no write controls');
    await page.click('#logout');
    await page.waitForSelector('#login');
    await login(page, VIEWER);
    await page.waitForSelector('#whoami:has-text("(viewer)")');
    check(await page.locator('#nav a[href="#/users"]').isHidden(), 'no users page for viewers');
    const writeControls = '#create, #add-machine, #import, #edit-cluster, #delete-cluster, #reprovision, [data-action]';
    for (const route of ['clusters', `clusters/${cid}`, `machines/${node2.id}`, 'workers', 'sites', 'ippools', 'boot-profiles', 'dhcp-config', 'tftp-config', 'leases', 'topology']) {
      await page.goto(`${BASE}/#/${route}`);
      await page.waitForSelector('main h1');
      await page.waitForSelector('main .count, main #timeline, main #topology');
      const found = await page.$$eval(`main ${writeControls.split(', ').join(', main ')}`, els => els.map(e => e.id || e.dataset.action));
      check(found.length === 0, `viewer sees no write controls on ${route}: ${found}`);
      const buttons = await page.$$eval('main button', els => els.map(e => e.textContent).filter(t => !/^Show \d+ more/.test(t)));
      check(buttons.length === 0, `viewer sees no buttons on ${route}: ${buttons}`);
    }
    await page.goto(`${BASE}/#/clusters/${cid}`);
    await page.waitForSelector('#machines tbody a:has-text("node-2")');
    await shot(page, 'viewer-cluster');

    step('an expired session returns to the login page, then back where it was');
    await page.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('ims.session'));
      const [h, p] = s.access.split('.');
      const claims = JSON.parse(atob(p.replace(/-/g, '+').replace(/_/g, '/')));
      claims.exp = Math.floor(Date.now() / 1000) - 60;
      const forged = btoa(JSON.stringify(claims)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
      localStorage.setItem('ims.session', JSON.stringify({ access: `${h}.${forged}.invalid`, refresh: 'expired' }));
    });
    await page.goto(`${BASE}/#/machines/${node2.id}`);
    await page.waitForURL(/#\/login\?next=/);
    check(decodeURIComponent(page.url()).endsWith(`next=/machines/${node2.id}`), `login keeps where we were: ${page.url()}`);
    await shot(page, 'session-expired');
    await login(page, VIEWER);
    await page.waitForURL(new RegExp(`#/machines/${node2.id}$`));
    await page.waitForSelector('#lease:has-text("10.77.0.12")');

    check(problems.length === 0, `no page or console errors:\n${problems.join('\n')}`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

try {
  await main();
  clearTimeout(watchdog);
  log(`all UI checks passed; ${shots.length} screenshots in ${SHOTS}`);
  for (const s of shots) console.log(`  ${s}`);
} catch (err) {
  console.error(`FAILED in step "${stepName}": ${err.stack || err}`);
  process.exit(1);
}
