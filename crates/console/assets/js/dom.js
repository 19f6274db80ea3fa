// A small DOM builder: elements from tag, attributes and children (text is always set as text, never parsed as
// HTML, so nothing the API returns can inject markup), plus table and badge helpers used by every page.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'multiple' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces the children of `el`. When focus was inside, it moves to the new element with the same id,
// aria-label or link target, so live updates never throw a keyboard user back to the top of the page.
export function replace(el, ...children) {
  const active = document.activeElement;
  let selector = null;
  if (active && active !== el && el.contains(active)) {
    if (active.id) selector = `#${CSS.escape(active.id)}`;
    else if (active.getAttribute('aria-label')) selector = `[aria-label="${CSS.escape(active.getAttribute('aria-label'))}"]`;
    else if (active.getAttribute('href')) selector = `[href="${CSS.escape(active.getAttribute('href'))}"]`;
  }
  el.replaceChildren();
  append(el, children);
  if (selector) el.querySelector(selector)?.focus();
  return el;
}

// A badge whose meaning is in its text; the tone only adds colour and an icon-like prefix.
export function badge(text, tone) {
  const mark = tone === 'ok' ? '✓' : tone === 'bad' ? '✗' : '…';
  return h('span', { class: `badge ${tone}` }, h('span', { 'aria-hidden': 'true' }, `${mark} `), text);
}

// A table with a caption, column headers and rows (arrays of cells), or an empty-state row.
export function table(caption, headers, rows, empty = 'None.') {
  return h(
    'table',
    {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, empty))
        : rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))),
    ),
  );
}

// A labelled form field: <label for> + control, with an optional hint tied by aria-describedby.
export function field(id, label, control, hint) {
  control.id = id;
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    control.setAttribute('aria-describedby', `${id}-hint`);
    parts.push(h('p', { class: 'hint', id: `${id}-hint` }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

// A live region for results and errors; messages are text, role=alert for errors.
export function messageArea() {
  const el = h('div', { class: 'messages', 'aria-live': 'polite' });
  return {
    el,
    error(text) {
      replace(el, h('p', { class: 'error', role: 'alert' }, h('strong', {}, 'Error: '), text));
    },
    ok(text) {
      replace(el, h('p', { class: 'ok', role: 'status' }, text));
    },
    clear() {
      el.replaceChildren();
    },
  };
}
