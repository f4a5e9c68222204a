// Talking to the REST API: the session (tokens in localStorage), JSON requests with the
// bearer token, one refresh attempt on 401, and problem documents turned into ApiError.

const KEY = 'ims.session';

/** A failed API call: `status`, the problem `detail`, and `fields` (field name -> message). */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.fields = {};
    for (const e of this.problem.errors || []) {
      this.fields[e.field] = this.fields[e.field] ? `${this.fields[e.field]}; ${e.message}` : e.message;
    }
  }
}

/** Raised when the session is gone: the app has gone to the login page already. */
export class SessionExpired extends Error {}

function decode(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function save(s) {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

/** The logged-in user `{name, role}` from the access token, or null. */
export function currentUser() {
  const s = load();
  const claims = s && decode(s.access);
  return claims ? { name: claims.name, role: claims.role } : null;
}

export const isAdmin = () => currentUser()?.role === 'admin';

/** Logs in; throws ApiError on bad credentials. */
export async function login(username, password) {
  const r = await fetch('/api/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  save({ access: body.access, refresh: body.refresh });
}

export function logout() {
  save(null);
}

let refreshing = null;

/** Trades the refresh token for a new access token; false when that is not possible. */
async function refresh() {
  const s = load();
  if (!s || !s.refresh) return false;
  refreshing ??= (async () => {
    try {
      const r = await fetch('/api/token/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh: s.refresh }),
      });
      if (!r.ok) return false;
      const body = await r.json();
      save({ ...s, access: body.access });
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { refreshing = null; }, 0);
    }
  })();
  return refreshing;
}

/** The session is over: forget it and go to the login page, remembering where we were. */
export function expire() {
  save(null);
  const here = location.hash.startsWith('#/login') ? '' : location.hash.slice(1);
  location.hash = '#/login' + (here ? `?next=${encodeURIComponent(here)}` : '');
  throw new SessionExpired('the session expired');
}

/** `fetch` with the bearer token; refreshes once on 401 and expires the session if that fails. */
export async function authFetch(path, init = {}) {
  const attempt = () => {
    const s = load();
    const headers = new Headers(init.headers || {});
    if (s) headers.set('Authorization', `Bearer ${s.access}`);
    return fetch(path, { ...init, headers });
  };
  if (!load()) expire();
  let r = await attempt();
  if (r.status === 401 && (await refresh())) r = await attempt();
  if (r.status === 401) expire();
  return r;
}

/** A JSON API call: resolves to the body (null for 204), throws ApiError for problems. */
export async function api(method, path, body) {
  const init = { method };
  if (body !== undefined) {
    init.headers = { 'Content-Type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  const r = await authFetch(path, init);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** Every item of a list endpoint (pages of 10000, the API's maximum). */
export async function all(path) {
  const sep = path.includes('?') ? '&' : '?';
  const items = [];
  for (let page = 1; page <= 100; page++) {
    const r = await api('GET', `${path}${sep}page=${page}&page_size=10000`);
    items.push(...r.results);
    if (items.length >= r.count || r.results.length === 0) break;
  }
  return items;
}
