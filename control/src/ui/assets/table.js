// A sortable, filterable table. Sorting and filtering are client-side over all rows; the
// body shows the first STEP matching rows and grows on request, so thousands of rows stay fast.

import { h, replace } from './dom.js';

const STEP = 500;
const COLLATOR = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

/**
 * columns: [{ key, label, render(row) -> node|string, value(row) -> sort/filter value }]
 * actions(row) -> nodes for a last column (omitted when it returns nothing for every row).
 * Returns { el, setRows(rows) }.
 */
export function dataTable({ columns, rows = [], noun = 'rows', actions = null, id = null }) {
  let all = [];
  let shown = STEP;
  let sortCol = null;
  let sortDir = 1;
  const valueOf = (c, r) => (c.value ? c.value(r) : r[c.key]);

  const search = h('input', { type: 'search', placeholder: `Filter ${noun}…`, 'aria-label': `Filter ${noun}` });
  const counter = h('span', { class: 'muted count' });
  const head = h('tr');
  const body = h('tbody');
  const more = h('div', { class: 'more' });
  const table = h('table', { class: 'data', id }, h('thead', {}, head), body);
  const el = h('div', { class: 'table' },
    h('div', { class: 'table-tools' }, search, counter),
    h('div', { class: 'table-wrap' }, table, more));

  columns.forEach((c, i) => {
    const th = h('th', { text: c.label, class: c.nosort ? '' : 'sortable', dataset: { key: c.key },
      tabindex: c.nosort ? null : 0, 'aria-sort': c.nosort ? null : 'none' });
    const sortBy = () => {
      sortDir = sortCol === i ? -sortDir : 1;
      sortCol = i;
      for (const t of head.children) {
        t.classList.remove('sorted-asc', 'sorted-desc');
        if (t.hasAttribute('aria-sort')) t.setAttribute('aria-sort', 'none');
      }
      th.classList.add(sortDir > 0 ? 'sorted-asc' : 'sorted-desc');
      th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      render();
    };
    if (!c.nosort) {
      th.addEventListener('click', sortBy);
      th.addEventListener('keydown', e => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(); } });
    }
    head.append(th);
  });
  const actionsHead = h('th', { class: 'actions-head' });
  if (actions) head.append(actionsHead);

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined || a === '') return 1;
    if (b === null || b === undefined || b === '') return -1;
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return COLLATOR.compare(String(a), String(b));
  }

  function render() {
    const q = search.value.trim().toLowerCase();
    let list = q ? all.filter(x => x.hay.includes(q)) : all.slice();
    if (sortCol !== null) {
      const c = columns[sortCol];
      list.sort((a, b) => sortDir * compare(valueOf(c, a.row), valueOf(c, b.row)));
    }
    const frag = document.createDocumentFragment();
    for (const { row } of list.slice(0, shown)) {
      const tr = h('tr', { dataset: { id: row.id ?? '' } });
      for (const c of columns) {
        tr.append(h('td', { class: c.class || '' }, c.render ? c.render(row) : String(valueOf(c, row) ?? '')));
      }
      if (actions) tr.append(h('td', { class: 'actions' }, actions(row)));
      frag.append(tr);
    }
    if (list.length === 0) {
      frag.append(h('tr', {}, h('td', { class: 'muted', colspan: columns.length + (actions ? 1 : 0),
        text: all.length ? `No ${noun} match the filter.` : `No ${noun} yet.` })));
    }
    body.replaceChildren(frag);
    counter.textContent = q ? `${list.length} of ${all.length} ${noun}` : `${all.length} ${all.length === 1 ? noun.replace(/s$/, '') : noun}`;
    replace(more);
    if (list.length > shown) {
      more.append(h('button', { class: 'secondary small', type: 'button', text: `Show ${Math.min(STEP, list.length - shown)} more (${list.length - shown} hidden)`,
        onClick: () => { shown += STEP; render(); } }));
    }
  }

  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { shown = STEP; render(); }, 120);
  });

  function setRows(next) {
    all = next.map(row => ({
      row,
      hay: columns.map(c => valueOf(c, row)).filter(v => v !== null && v !== undefined).join(' ').toLowerCase(),
    }));
    render();
  }
  setRows(rows);
  return { el, setRows };
}
