// Dialog forms: fields from a list of specs, the API's per-field errors shown beside the
// fields, and a confirmation dialog.

import { ApiError, SessionExpired } from './api.js';
import { h } from './dom.js';

function control(f, value) {
  const id = `f-${f.name}`;
  const common = { id, name: f.name, placeholder: f.placeholder || null };
  switch (f.type) {
    case 'select': {
      const sel = h('select', common);
      for (const [v, label] of f.options || []) sel.append(h('option', { value: v, text: label }));
      sel.value = value === null || value === undefined ? '' : String(value);
      return sel;
    }
    case 'checkbox':
      return h('input', { ...common, type: 'checkbox', checked: !!value });
    case 'textarea':
      return h('textarea', { ...common, value: value ?? '' });
    case 'list':
      return h('input', { ...common, type: 'text', value: Array.isArray(value) ? value.join(', ') : (value ?? '') });
    default:
      return h('input', { ...common, type: f.type || 'text', value: value ?? '', autocomplete: f.type === 'password' ? 'new-password' : 'off' });
  }
}

function read(f, input) {
  switch (f.type) {
    case 'checkbox': return input.checked;
    case 'number': return input.value.trim() === '' ? null : Number(input.value);
    case 'list': return input.value.split(/[\s,]+/).filter(Boolean);
    case 'select': return input.value === '' ? null : (f.numeric ? Number(input.value) : input.value);
    default: {
      const v = input.value.trim();
      return v === '' && f.nullable ? null : v;
    }
  }
}

/** Shows field errors of `err` in `form`; returns the messages no field took. */
export function showErrors(form, err) {
  for (const el of form.querySelectorAll('.field')) {
    el.classList.remove('invalid');
    const e = el.querySelector('.field-error');
    if (e) e.textContent = '';
  }
  const rest = [];
  for (const [name, msg] of Object.entries(err.fields || {})) {
    const field = form.querySelector(`.field[data-field="${CSS.escape(name.split('.')[0])}"]`);
    if (field) {
      field.classList.add('invalid');
      field.querySelector('.field-error').textContent = msg;
    } else {
      rest.push(`${name}: ${msg}`);
    }
  }
  return rest;
}

/**
 * A modal form. fields: [{ name, label, type, options, help, nullable, numeric, createOnly }];
 * submit(data) does the API call. Resolves to submit's result, or null when cancelled.
 */
export function formDialog({ title, fields, values = {}, editing = false, submit, submitLabel = 'Save' }) {
  return new Promise(resolve => {
    const inputs = {};
    const formError = h('div', { class: 'form-error', role: 'alert' });
    const rows = fields.filter(f => !(editing && f.createOnly)).map(f => {
      const input = control(f, values[f.name] ?? f.default);
      inputs[f.name] = input;
      return h('div', { class: 'field', dataset: { field: f.name } },
        h('label', { for: `f-${f.name}`, text: f.label }),
        h('div', { class: 'control' }, input,
          f.help ? h('span', { class: 'help', text: f.help }) : null,
          h('span', { class: 'field-error', dataset: { for: f.name } })));
    });
    const save = h('button', { type: 'submit', text: submitLabel });
    const cancel = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
    const form = h('form', { method: 'dialog', novalidate: true }, h('h2', { text: title }), rows, formError,
      h('div', { class: 'dialog-buttons' }, cancel, save));
    const dialog = h('dialog', { class: 'form-dialog' }, form);
    const close = result => { dialog.close(); dialog.remove(); resolve(result); };
    cancel.addEventListener('click', () => close(null));
    dialog.addEventListener('cancel', e => { e.preventDefault(); close(null); });
    form.addEventListener('submit', async e => {
      e.preventDefault();
      const data = {};
      for (const f of fields) if (inputs[f.name]) data[f.name] = read(f, inputs[f.name]);
      save.disabled = true;
      formError.textContent = '';
      try {
        close(await submit(data));
      } catch (err) {
        if (err instanceof SessionExpired) { close(null); return; }
        const rest = err instanceof ApiError ? showErrors(form, err) : [];
        const anyField = err instanceof ApiError && Object.keys(err.fields).length > rest.length;
        formError.textContent = anyField && rest.length === 0 ? 'Please correct the marked fields.' : [err.message, ...rest].join(' — ');
      } finally {
        save.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = form.querySelector('input, select, textarea');
    if (first) first.focus();
  });
}

/** Asks to confirm `text`; resolves true or false. */
export function confirmDialog(text, action = 'Delete') {
  return new Promise(resolve => {
    const yes = h('button', { type: 'button', class: action === 'Delete' ? 'danger' : '', text: action });
    const no = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
    const dialog = h('dialog', { class: 'confirm-dialog' },
      h('div', { class: 'dialog-body' }, h('p', { text }), h('div', { class: 'dialog-buttons' }, no, yes)));
    const done = v => { dialog.close(); dialog.remove(); resolve(v); };
    yes.addEventListener('click', () => done(true));
    no.addEventListener('click', () => done(false));
    dialog.addEventListener('cancel', e => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

/** A short message shown in a dialog (errors of actions outside forms). */
export function notice(text) {
  return confirmDialog(text, 'OK');
}
