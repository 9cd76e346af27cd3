// Belfry inbox widget: answering callback actions (I7).
//
// A module of its own, imported by belfry.js (relative to its own URL) the
// first time someone presses a callback button, so the first module stays
// small. An action without a form is answered at once; one with a form
// opens it below the buttons (in the drawer, the page or a toast, which
// then stays until answered or closed). The answer goes to
// `POST /v1/me/notifications/{id}/actions/{action}`; what the server
// refuses is shown next to its field. A `once` action's answer comes back
// as `answered`, which every recipient's item then shows instead of the
// buttons.

const STRINGS = {
  en: {
    cancel: 'Cancel',
    choose: 'Choose…',
    sent: 'Sent',
    failed: 'Not sent:',
    offline: 'Belfry could not be reached. Check your connection and try again.',
    required: 'required',
  },
  de: {
    cancel: 'Abbrechen',
    choose: 'Bitte wählen…',
    sent: 'Gesendet',
    failed: 'Nicht gesendet:',
    offline: 'Belfry ist nicht erreichbar. Prüfen Sie die Verbindung und versuchen Sie es erneut.',
    required: 'Pflichtfeld',
  },
};

const STYLE = `
.aform{display:flex;flex-direction:column;gap:8px;padding:0 14px 12px 64px;font-size:.86em}
.aform label{display:flex;flex-direction:column;gap:3px;font-weight:550}
.aform label.check{flex-direction:row;align-items:center;gap:8px}
.aform input,.aform select,.aform textarea{font:inherit;color:inherit;padding:5px 7px;border:1px solid var(--_border);border-radius:6px;background:var(--_bg);font-weight:400}
.aform textarea{min-height:4.5em;resize:vertical}
.aform input[type=checkbox]{width:16px;height:16px;margin:0;accent-color:var(--_accent)}
.aform [aria-invalid=true]{border-color:#dc2626}
.aform .err{color:#b91c1c;font-weight:500;font-size:.92em}
.aform .req{color:var(--_muted);font-weight:400;font-size:.9em}
.aform .row2{display:flex;gap:8px;flex-wrap:wrap}
.sent{font-size:.82em;font-weight:600;color:var(--_muted);padding:5px 0}
.actions .err{font-size:.82em;color:#b91c1c;padding:5px 0}
`;

let sheet;

/** Answers `action` of `item` in widget `w`; `box` is the item's `.actions` element. */
export function answer(w, item, action, box) {
  const h = w.constructor.h;
  const t = STRINGS[w.lang] || STRINGS.en;
  adopt(w.root, h);
  const button = box.querySelector(`[data-action="${CSS.escape(action.id)}"]`);
  if (!action.form) {
    send(w, item, action, {}, box, null, t, h, button);
    return;
  }
  const open = box.nextElementSibling;
  if (open && open.classList.contains('aform')) {
    const same = open.dataset.form === action.id;
    close(open, box);
    if (same) return;
  }
  const form = h('form', { class: 'aform', 'data-form': action.id, 'aria-label': action.label, novalidate: true });
  const controls = [];
  for (const f of action.form.fields || []) {
    const id = `belfry-f-${item.id}-${action.id}-${f.name}`;
    const err = h('span', { class: 'err', id: `${id}-err`, hidden: true });
    let input;
    if (f.type === 'textarea') input = h('textarea', { id, name: f.name });
    else if (f.type === 'select') {
      input = h(
        'select',
        { id, name: f.name },
        h('option', { value: '', text: t.choose }),
        (f.options || []).map((o) => h('option', { value: o.value, text: o.label || o.value })),
      );
    } else input = h('input', { id, name: f.name, type: f.type === 'checkbox' ? 'checkbox' : f.type === 'date' ? 'date' : 'text' });
    if (f.required) input.setAttribute('aria-required', 'true');
    input.setAttribute('aria-describedby', err.id);
    const req = f.required && h('span', { class: 'req', text: `(${t.required})` });
    form.append(
      f.type === 'checkbox'
        ? h('label', { class: 'check' }, input, h('span', {}, f.label, ' ', req || ''))
        : h('label', {}, h('span', {}, f.label, ' ', req || ''), input),
      err,
    );
    controls.push({ f, input, err });
  }
  const msg = h('p', { class: 'err', role: 'alert', hidden: true });
  const style = ['primary', 'secondary', 'danger'].includes(action.style) ? action.style : 'primary';
  const submit = h('button', { type: 'submit', class: `btn ${style}`, text: action.label });
  const cancel = h('button', { type: 'button', class: 'btn secondary', text: t.cancel, onclick: () => close(form, box) });
  form.append(msg, h('div', { class: 'row2' }, submit, cancel));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const values = {};
    for (const { f, input } of controls) {
      if (f.type === 'checkbox') values[f.name] = input.checked;
      else if (input.value.trim() !== '') values[f.name] = input.value;
    }
    send(w, item, action, values, box, { form, controls, msg, submit }, t, h, submit);
  });
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      close(form, box);
    }
  });
  box.after(form);
  if (button) button.setAttribute('aria-expanded', 'true');
  (controls[0] ? controls[0].input : submit).focus();
}

function close(form, box) {
  const b = box.querySelector(`[data-action="${CSS.escape(form.dataset.form)}"]`);
  if (b) {
    b.setAttribute('aria-expanded', 'false');
    b.focus();
  }
  form.remove();
}

async function send(w, item, action, values, box, ui, t, h, button) {
  if (button) button.disabled = true;
  if (ui) {
    ui.msg.hidden = true;
    for (const c of ui.controls) {
      c.err.hidden = true;
      c.input.removeAttribute('aria-invalid');
    }
  }
  const toast = w.toastMap.get(item.id);
  const inToast = toast && toast.el.contains(box);
  try {
    const r = await w.api('POST', `/v1/me/notifications/${encodeURIComponent(item.id)}/actions/${encodeURIComponent(action.id)}`, {
      values,
    });
    if (ui) ui.form.remove();
    if (r.answered) item.answered = r.answered;
    w.emit('belfry:answer', { notification: item, action, values, response_id: r.response_id });
    // Answering reads it (which closes its toast everywhere): in a toast,
    // after the answer has been shown there for a moment.
    const read = () => {
      if (item.read) return;
      item.read = true;
      w.renderList();
      w.api('POST', `/v1/me/notifications/${encodeURIComponent(item.id)}/read`, null, true).catch(() => {});
    };
    // Shown with the buttons from now on (belfry.js draws it), in this page.
    item.sent = `✓ ${t.sent}`;
    if (inToast) {
      // (The answer's live event may have redrawn the toast's buttons already.)
      toast.el.querySelector('.actions')?.replaceWith(w.renderActions(item) || '');
      setTimeout(() => {
        w.closeToast(item.id);
        read();
      }, 1500);
    } else read();
    const node = w.nodes && w.nodes.get(item.id);
    if (node) node.sig = null; // redrawn with the answer
    w.renderList();
  } catch (e) {
    if (button) button.disabled = false;
    const p = e && e.problem;
    const shown = [];
    if (ui && p && Array.isArray(p.errors)) {
      for (const fe of p.errors) {
        const c = ui.controls.find((c) => `values.${c.f.name}` === fe.field);
        if (!c) continue;
        c.err.textContent = fe.message;
        c.err.hidden = false;
        c.input.setAttribute('aria-invalid', 'true');
        shown.push(c);
      }
    }
    if (shown.length) {
      shown[0].input.focus();
      return;
    }
    const text = `${t.failed} ${(p && p.detail) || (e && e.status ? `HTTP ${e.status}` : t.offline)}`;
    if (ui) {
      ui.msg.textContent = text;
      ui.msg.hidden = false;
    } else {
      box.querySelector('.err')?.remove();
      box.append(h('span', { class: 'err', role: 'alert', text }));
    }
  }
}

function adopt(root, h) {
  try {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    if (!root.adoptedStyleSheets.includes(sheet)) root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } catch {
    if (!root.querySelector('style[data-belfry-actions]')) root.append(h('style', { 'data-belfry-actions': true, text: STYLE }));
  }
}
