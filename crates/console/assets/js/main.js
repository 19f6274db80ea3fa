// The app shell: log-in gate, header with navigation and the namespace switcher, and a hash router that renders
// one page at a time into <main> and stops the previous page's watches. Pages are modules exporting
// `render(ctx) -> cleanup`; ctx carries the current namespace and navigation helpers.

import { clearToken, collectionPath, getToken, liveList } from './api.js';
import { h, replace } from './dom.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as secrets from './pages/secrets.js';
import * as workloads from './pages/workloads.js';
import * as pod from './pages/pod.js';
import * as events from './pages/events.js';
import * as registries from './pages/registries.js';

const NS_KEY = 'berth.namespace';
const NAV = [
  ['overview', 'Overview'],
  ['secrets', 'Secrets'],
  ['workloads', 'Workloads'],
  ['events', 'Events'],
  ['registries', 'Registries'],
];

const state = {
  namespace: sessionStorage.getItem(NS_KEY) || 'default',
  namespaces: [],
  cleanup: null,
  nsWatch: null,
};

const main = document.getElementById('main');
const top = document.getElementById('top');

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function nsSelect() {
  const select = h('select', { id: 'current-namespace', onchange: (e) => setNamespace(e.target.value) });
  const names = new Set(state.namespaces);
  names.add(state.namespace);
  for (const n of [...names].sort()) select.append(h('option', { value: n, selected: n === state.namespace }, n));
  return select;
}

function setNamespace(ns) {
  state.namespace = ns;
  sessionStorage.setItem(NS_KEY, ns);
  render();
}

function renderHeader(current) {
  if (!getToken()) {
    replace(top, h('span', { class: 'brand' }, 'berth'));
    return;
  }
  replace(
    top,
    h('span', { class: 'brand' }, 'berth'),
    h(
      'nav',
      { 'aria-label': 'Main' },
      h('ul', {}, NAV.map(([id, label]) => h('li', {}, h('a', { href: `#/${id}`, 'aria-current': id === current ? 'page' : false }, label)))),
    ),
    h('div', { class: 'ns' }, h('label', { for: 'current-namespace' }, 'Current namespace'), nsSelect()),
    h('button', { type: 'button', onclick: logout }, 'Log out'),
  );
}

function watchNamespaces() {
  state.nsWatch?.stop();
  state.nsWatch = liveList(collectionPath('', 'v1', 'namespaces'), {
    onChange: (items) => {
      const names = items.map((n) => n.metadata.name).sort();
      if (names.join() !== state.namespaces.join()) {
        state.namespaces = names;
        const focused = document.activeElement?.id === 'current-namespace';
        const old = document.getElementById('current-namespace');
        if (old) {
          const fresh = nsSelect();
          old.replaceWith(fresh);
          if (focused) fresh.focus();
        }
      }
    },
  });
}

function logout() {
  clearToken();
  state.nsWatch?.stop();
  state.nsWatch = null;
  location.hash = '#/login';
}

function render() {
  state.cleanup?.();
  state.cleanup = null;
  const { parts, params } = route();
  if (!getToken()) {
    renderHeader('login');
    state.cleanup = login.render({ main, onLogin: () => { watchNamespaces(); navigate('#/overview'); } });
    document.title = 'Log in · berth console';
    return;
  }
  if (!state.nsWatch) watchNamespaces();
  const page = parts[0] || 'overview';
  renderHeader(page === 'pods' ? 'workloads' : page);
  const ctx = { main, namespace: state.namespace, navigate, params, parts, setNamespace };
  const pages = { overview, secrets, workloads, pods: pod, events, registries };
  const module = pages[page] ?? overview;
  main.replaceChildren();
  state.cleanup = module.render(ctx) ?? null;
  const heading = main.querySelector('h1');
  document.title = `${heading ? heading.textContent : 'berth'} · berth console`;
}

window.addEventListener('hashchange', () => {
  render();
  main.focus();
});
render();
