// The workers dashboard: every edge with its status, heartbeat age, services and active
// leases and transfers, kept live by ONE server-sent event stream for the whole page
// (`GET /api/workers/stream`, read with fetch() so the bearer token travels in a header).

import { SessionExpired, authFetch } from './api.js';
import { badge, exact, h, pageHead, relative } from './dom.js';
import { dataTable } from './table.js';

/** Yields `{event, data}` of a text/event-stream response body. */
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      let event = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

const metric = (w, key) => (w.metrics && typeof w.metrics[key] === 'number' ? w.metrics[key] : null);

function services(w) {
  const entries = Object.entries(w.services || {});
  if (!entries.length) return h('span', { class: 'muted', text: 'none reported' });
  return entries.map(([name, s]) => h('span', { class: `badge ${s.status === 'running' ? 'ok' : /error|failed/i.test(s.status) ? 'bad' : 'warn'}`,
    title: s.last_error || '', text: `${name}: ${s.status}` }));
}

/** `#/workers`; returns the page's cleanup (stops the stream and the clock). */
export function workersPage(main) {
  const stop = new AbortController();
  let offset = 0; // client clock minus server clock, ms
  let previous = new Map();
  const live = h('span', { class: 'live', id: 'live', text: 'connecting…' });
  const setLive = (state, text) => { live.className = `live ${state}`; live.textContent = text; };

  const age = w => h('span', { class: 'age', dataset: { hb: w.last_heartbeat || '' }, title: w.last_heartbeat ? exact(w.last_heartbeat) : '' },
    w.last_heartbeat ? relative((Date.now() - offset - Date.parse(w.last_heartbeat)) / 1000) : 'never');
  const table = dataTable({
    noun: 'edges', id: 'workers',
    columns: [
      { key: 'worker_id', label: 'Edge', class: 'mono' },
      { key: 'site_name', label: 'Site' },
      { key: 'status', label: 'Status', render: w => h('span', { class: 'status', dataset: { status: w.status } }, badge(w.status)) },
      { key: 'last_heartbeat', label: 'Last heartbeat', render: age, value: w => w.last_heartbeat },
      { key: 'services', label: 'Services', render: services, value: w => Object.entries(w.services || {}).map(([n, s]) => `${n} ${s.status}`).join(' ') },
      { key: 'active_leases', label: 'Active leases', value: w => metric(w, 'active_leases'), render: w => String(metric(w, 'active_leases') ?? '—') },
      { key: 'active_transfers', label: 'Active transfers', value: w => metric(w, 'active_transfers'), render: w => String(metric(w, 'active_transfers') ?? '—') },
      { key: 'ip_address', label: 'Address', class: 'mono' },
      { key: 'last_error', label: 'Last error', render: w => (w.last_error ? h('span', { class: 'field-error', text: w.last_error }) : '') },
    ],
  });

  const tick = setInterval(() => {
    for (const el of main.querySelectorAll('span.age[data-hb]')) {
      if (el.dataset.hb) el.textContent = relative((Date.now() - offset - Date.parse(el.dataset.hb)) / 1000);
    }
  }, 1000);

  function show(snapshot) {
    offset = Date.now() - Date.parse(snapshot.server_time);
    table.setRows(snapshot.workers);
    const now = new Map(snapshot.workers.map(w => [String(w.id), w.status]));
    for (const tr of table.el.querySelectorAll('tbody tr[data-id]')) {
      const before = previous.get(tr.dataset.id);
      if (before && before !== now.get(tr.dataset.id)) tr.classList.add('flash');
    }
    previous = now;
  }

  async function run() {
    let delay = 1000;
    while (!stop.signal.aborted) {
      try {
        const r = await authFetch('/api/workers/stream', { signal: stop.signal, headers: { Accept: 'text/event-stream' } });
        if (!r.ok) throw new Error(`the stream answered ${r.status}`);
        setLive('on', 'live');
        delay = 1000;
        for await (const ev of events(r)) {
          if (ev.event === 'workers') show(JSON.parse(ev.data));
          else if (ev.event === 'error') setLive('off', ev.data);
        }
        setLive('', 'reconnecting…');
      } catch (err) {
        if (err instanceof SessionExpired || stop.signal.aborted) return;
        setLive('off', `disconnected (${err.message}); retrying`);
      }
      await new Promise(r => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  main.replaceChildren(pageHead('Workers', live), table.el);
  run();
  return () => { stop.abort(); clearInterval(tick); };
}
