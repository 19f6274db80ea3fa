// The console's live-list protocol (assets/js/api.js liveList) against a local HTTP server that speaks the
// Kubernetes list+watch protocol with scripted answers: the first list, a watch that ends (resume from the last
// resourceVersion), an ERROR event with a 410 Status (relist), an HTTP 410 (relist), a BOOKMARK and a DELETED
// event. It checks every request the client made (watch flag, resourceVersion, selector, bearer token) and every
// snapshot it reported. Started by tests/browser.rs; exits non-zero listing the differences.

import { createServer } from 'node:http';

const TOKEN = 'test-token-not-secret';
const store = new Map();
globalThis.sessionStorage = {
  getItem: (k) => store.get(k) ?? null,
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
const { liveList, setToken } = await import('../assets/js/api.js');
setToken(TOKEN);

const pod = (name, rv) => ({ metadata: { name, namespace: 'default', resourceVersion: String(rv) } });
const line = (type, object) => `${JSON.stringify({ type, object })}\n`;
const requests = [];
let step = 0;
// One responder per request, in order; any further request is held open.
const script = [
  (res) => res.end(JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '5' }, items: [pod('a', 3)] })),
  (res) => { res.write(line('ADDED', pod('b', 6))); res.end(); },
  (res) => { res.write(line('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 6 (10)' })); res.end(); },
  (res) => res.end(JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '20' }, items: [pod('a', 3), pod('c', 15)] })),
  (res) => { res.statusCode = 410; res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'gone' })); },
  (res) => res.end(JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '30' }, items: [pod('c', 15)] })),
  (res) => { res.write(line('BOOKMARK', { metadata: { resourceVersion: '31' } })); res.write(line('DELETED', pod('c', 32))); res.end(); },
];

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  requests.push({
    path: url.pathname, watch: url.searchParams.get('watch'), rv: url.searchParams.get('resourceVersion'),
    auth: req.headers.authorization, selector: url.searchParams.get('labelSelector'),
  });
  const respond = script[step++];
  if (!respond) return;
  res.setHeader('Content-Type', 'application/json');
  respond(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;
const realFetch = globalThis.fetch;
globalThis.fetch = (path, opts) => realFetch(`${base}${path}`, opts);

const snapshots = [];
const errors = [];
const live = liveList('/api/v1/namespaces/default/pods', {
  query: { labelSelector: 'app=web' },
  onChange: (items) => snapshots.push(items.map((o) => o.metadata.name).sort().join(',')),
  onError: (e) => errors.push(e ? e.message : null),
});
const deadline = Date.now() + 10000;
while (requests.length < script.length + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
await new Promise((r) => setTimeout(r, 100));
live.stop();
server.closeAllConnections();
server.close();

const failures = [];
const want = (what, got, expected) => {
  if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`);
};
want('requests [watch, resourceVersion]', requests.map((r) => [r.watch, r.rv]),
  [[null, null], ['1', '5'], ['1', '6'], [null, null], ['1', '20'], [null, null], ['1', '30'], ['1', '32']]);
want('every request carries the bearer token', requests.every((r) => r.auth === `Bearer ${TOKEN}`), true);
want('every request keeps the label selector', requests.every((r) => r.selector === 'app=web'), true);
want('snapshots', snapshots, ['a', 'a,b', 'a,c', 'c', '']);
if (failures.length) {
  console.error(`live list protocol: ${failures.length} differences:\n  ${failures.join('\n  ')}\nerrors reported: ${JSON.stringify(errors)}`);
  process.exit(1);
}
console.log(`live list protocol: ${requests.length} requests and ${snapshots.length} snapshots as expected`);
process.exit(0);
