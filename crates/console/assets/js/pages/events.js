// Events of the current namespace, live, newest first, with the object each one is about.

import { collectionPath, liveList } from '../api.js';
import { badge, h, messageArea, replace, table } from '../dom.js';
import { age } from '../format.js';

export function render({ main, namespace }) {
  const messages = messageArea();
  const listEl = h('div', {});
  const warningsOnly = h('input', { type: 'checkbox', id: 'events-warnings' });
  let events = [];
  const seen = (e) => Date.parse(e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata?.creationTimestamp || '') || 0;
  const draw = () => {
    const shown = events.filter((e) => !warningsOnly.checked || e.type === 'Warning').sort((a, b) => seen(b) - seen(a));
    replace(listEl, table(`Events in ${namespace}`, ['Last seen', 'Type', 'Reason', 'Object', 'Message'], shown.map((e) => {
      const o = e.involvedObject ?? {};
      const objText = `${(o.kind ?? '').toLowerCase()}/${o.name ?? ''}`;
      const obj = o.kind === 'Pod'
        ? h('a', { href: `#/pods/${encodeURIComponent(o.namespace ?? namespace)}/${encodeURIComponent(o.name ?? '')}` }, objText)
        : objText;
      return [age(e.lastTimestamp || e.eventTime || e.firstTimestamp), badge(e.type ?? 'Normal', e.type === 'Warning' ? 'bad' : 'ok'), e.reason ?? '', obj, e.message ?? ''];
    }), 'No events in this namespace.'));
  };
  warningsOnly.addEventListener('change', draw);
  const watch = liveList(collectionPath('', 'v1', 'events', namespace), {
    onChange: (items) => { events = items; draw(); },
    onError: (e) => (e ? messages.error(e.message) : messages.clear()),
  });
  main.append(h('h1', {}, 'Events'),
    h('div', { class: 'inline' }, warningsOnly, h('label', { for: 'events-warnings' }, 'Warnings only')),
    messages.el, listEl);
  draw();
  return () => watch.stop();
}
