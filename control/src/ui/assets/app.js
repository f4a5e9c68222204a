// The application shell: hash routes, the login page, the navigation bar and who is logged in.
// Routes: #/login?next=…, #/clusters, #/clusters/{id}, #/machines/{id}, #/workers, #/topology,
// and the resource lists in resources.js (#/sites, #/leases, …).

import { ApiError, SessionExpired, currentUser, isAdmin, login, logout } from './api.js';
import { failure, h, relative } from './dom.js';
import { clusterPage, machinePage } from './machines.js';
import { SPECS, crudPage } from './resources.js';
import { topologyPage } from './topology.js';
import { workersPage } from './workers.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let cleanup = null;

function loginPage(next) {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('div', { class: 'form-error', role: 'alert', id: 'login-error' });
  const button = h('button', { type: 'submit', text: 'Log in' });
  const form = h('form', { class: 'panel login', id: 'login' },
    h('h1', { text: 'ims-control' }),
    h('p', { class: 'muted', text: next ? 'Your session ended. Log in again to go back where you were.' : 'Log in to manage clusters, machines and edges.' }),
    h('div', { class: 'field' }, h('label', { for: 'username', text: 'Username' }), user),
    h('div', { class: 'field' }, h('label', { for: 'password', text: 'Password' }), pass),
    error, button);
  form.addEventListener('submit', async e => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = '';
    try {
      await login(user.value.trim(), pass.value);
      location.hash = next && next.startsWith('/') && !next.startsWith('/login') ? `#${next}` : '#/clusters';
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? 'Wrong username or password.' : err.message;
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  user.focus();
}

function chrome(path) {
  const me = currentUser();
  top.hidden = !me;
  if (!me) return;
  document.getElementById('whoami').textContent = `${me.name} (${me.role})`;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', path.startsWith(a.getAttribute('href').slice(1)));
    if (a.hasAttribute('data-admin')) a.hidden = me.role !== 'admin';
  }
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  for (const d of document.querySelectorAll('dialog')) { d.close(); d.remove(); }
  const hash = location.hash.slice(1) || '/clusters';
  const [path, query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  if (path === '/login') {
    chrome(path);
    top.hidden = true;
    loginPage(params.get('next'));
    return;
  }
  if (!currentUser()) {
    location.hash = `#/login?next=${encodeURIComponent(hash)}`;
    return;
  }
  chrome(path);
  const parts = path.split('/').filter(Boolean);
  document.title = `${parts[0] || 'clusters'} · ims-control`;
  main.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
  try {
    if (parts[0] === 'clusters' && parts[1]) await clusterPage(main, parts[1]);
    else if (parts[0] === 'machines' && parts[1]) await machinePage(main, parts[1]);
    else if (parts[0] === 'workers') cleanup = workersPage(main);
    else if (parts[0] === 'topology') await topologyPage(main);
    else if (SPECS[parts[0]] && !(SPECS[parts[0]].adminOnly && !isAdmin())) await crudPage(main, SPECS[parts[0]]);
    else location.hash = '#/clusters';
  } catch (err) {
    if (!(err instanceof SessionExpired)) main.replaceChildren(failure(err));
  }
}

document.getElementById('logout').addEventListener('click', () => {
  logout();
  location.hash = '#/login';
});
window.addEventListener('hashchange', route);
// Relative times ("5 min ago") stay current while a page is open.
setInterval(() => {
  for (const t of document.querySelectorAll('main time[datetime]')) {
    t.textContent = relative((Date.now() - Date.parse(t.getAttribute('datetime'))) / 1000);
  }
}, 30_000);
route();
