// Small DOM helpers: element building, relative times, status badges, number formats.

/**
 * Builds an element. `props`: `class`, `text`, `on<Event>` (listeners, never inline
 * attributes), `dataset`, and any other attribute; `children`: nodes, strings, arrays, null.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = [['y', 31536000], ['mo', 2592000], ['d', 86400], ['h', 3600], ['min', 60], ['s', 1]];

/** "5 min ago" / "in 2 h" for a difference in seconds. */
export function relative(seconds) {
  const s = Math.round(seconds);
  if (Math.abs(s) < 5) return 'just now';
  for (const [unit, size] of UNITS) {
    if (Math.abs(s) >= size) {
      const n = Math.floor(Math.abs(s) / size);
      return s >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
    }
  }
  return 'just now';
}

/** Exact local time of an RFC 3339 string. */
export function exact(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A `<time>` showing how long ago `iso` was, the exact time on hover; "—" for none. */
export function when(iso) {
  if (!iso) return h('span', { class: 'muted', text: '—' });
  const d = new Date(iso);
  return h('time', { datetime: iso, title: exact(iso), text: relative((Date.now() - d.getTime()) / 1000) });
}

const TONES = {
  ok: ['ACTIVE', 'OPERATIONAL', 'HEALTHY', 'active', 'running', 'ok', 'admin'],
  warn: ['DEGRADED', 'WARNING', 'MAINTENANCE', 'SCALING', 'UPGRADING', 'inactive', 'INACTIVE', 'stopped', 'expired', 'released'],
  bad: ['ERROR', 'CRITICAL', 'UNREACHABLE', 'error', 'failed', 'abandoned'],
  info: ['DEPLOYING', 'viewer'],
};

/** The tone (`ok`, `warn`, `bad`, `info` or '') of a status word. */
export function tone(status) {
  for (const [t, words] of Object.entries(TONES)) if (words.includes(status)) return t;
  return '';
}

/** A coloured status badge. */
export function badge(status) {
  if (status === null || status === undefined || status === '') return h('span', { class: 'muted', text: '—' });
  return h('span', { class: `badge ${tone(status)}`, text: String(status) });
}

/** 1536 -> "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A page heading with optional buttons on the right. */
export function pageHead(title, ...right) {
  return h('div', { class: 'page-head' }, h('h1', { text: title }), h('span', { class: 'spacer' }), right);
}

/** A message in place of a page that could not load. */
export function failure(err) {
  return h('div', { class: 'panel' }, h('p', { class: 'form-error', text: `Could not load this page: ${err.message}` }));
}
