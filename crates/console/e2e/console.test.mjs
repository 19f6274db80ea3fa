// Browser test of the berth console, started by tests/browser.rs against a real API server. playwright-core
// drives Debian's Chromium (headless, no sandbox as root); every request to another origin is blocked and fails
// the run, as does any page error or CSP violation. Each step prints "ok - ..."; the first failure exits 1.

import { mkdirSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { apiClient, assert, runInBrowser } from './harness.mjs';

const URL_BASE = process.env.BERTH_URL;
const ADMIN = readFileSync(process.env.BERTH_ADMIN_TOKEN_FILE, 'utf8').trim();
const VIEWER = readFileSync(process.env.BERTH_VIEWER_TOKEN_FILE, 'utf8').trim();
const SHOTS = process.env.BERTH_SCREENSHOTS;
const PASSWORD = 'pw-Sup3r-secret-42';
const REGISTRY = '127.0.0.1:5000';
const NS = 'default';
if (!URL_BASE || !ADMIN || !VIEWER) throw new Error('BERTH_URL, BERTH_ADMIN_TOKEN_FILE and BERTH_VIEWER_TOKEN_FILE must be set');
mkdirSync(SHOTS, { recursive: true });

const api = apiClient(URL_BASE, ADMIN);

await runInBrowser({ urlBase: URL_BASE, shots: SHOTS, timeoutMs: 15000 }, async ({ page, shot, step }) => {
  // ---- assets: served without a token, with CSP and content types ----
  const index = await fetch(`${URL_BASE}/ui/`);
  assert(index.status === 200, `GET /ui/ without a token is ${index.status}`);
  assert((index.headers.get('content-security-policy') ?? '').includes("script-src 'self'"), 'index has a CSP');
  const js = await fetch(`${URL_BASE}/ui/assets/js/main.js`);
  assert(js.headers.get('content-type')?.startsWith('text/javascript'), `main.js content type ${js.headers.get('content-type')}`);
  assert((await fetch(`${URL_BASE}/ui/assets/missing.js`)).status === 404, 'unknown asset is 404');
  step('assets are served without a token, with CSP and content types');

  // ---- log in ----
  await page.goto(`${URL_BASE}/ui/`);
  await page.getByLabel('Token', { exact: true }).fill(ADMIN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  assert(!page.url().includes(ADMIN), 'the token is not in the URL');
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('berth.token'), local: Object.keys(localStorage).length }));
  assert(stored.session === ADMIN && stored.local === 0, 'the token is in sessionStorage only');
  await shot('overview');
  step('log in with the admin token');

  // ---- create a dockerconfigjson Secret through the form ----
  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('heading', { name: 'Secrets' }).waitFor();
  await page.getByRole('link', { name: 'Create Secret' }).click();
  await page.getByRole('heading', { name: 'Create Secret' }).waitFor();
  const typeValue = await page.getByLabel('Type', { exact: true }).inputValue();
  assert(typeValue === 'kubernetes.io/dockerconfigjson', `Type defaults to kubernetes.io/dockerconfigjson, got ${typeValue}`);
  await page.getByRole('button', { name: 'GHCR' }).click();
  assert(await page.getByLabel('Registry address', { exact: true }).inputValue() === 'ghcr.io', 'the GHCR preset fills the address');
  await page.getByLabel('Name', { exact: true }).fill('regcred');
  assert(await page.getByLabel('Namespace', { exact: true }).inputValue() === NS, 'Namespace defaults to the current one');
  await page.getByLabel('Registry address', { exact: true }).fill(REGISTRY);
  await page.getByLabel('User name', { exact: true }).fill('robot');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Email', { exact: true }).fill('robot@example.com');
  await shot('secret-form');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Secrets' }).waitFor();
  const row = page.getByRole('row').filter({ hasText: 'regcred' });
  await row.waitFor();
  const created = await api('GET', `/api/v1/namespaces/${NS}/secrets/regcred`);
  assert(created.status === 200, `secret exists (${created.status})`);
  assert(created.body.type === 'kubernetes.io/dockerconfigjson', `secret type ${created.body.type}`);
  const config = JSON.parse(Buffer.from(created.body.data['.dockerconfigjson'], 'base64').toString('utf8'));
  assert(JSON.stringify(Object.keys(config.auths)) === JSON.stringify([REGISTRY]), `auths keys ${Object.keys(config.auths)}`);
  const entry = config.auths[REGISTRY];
  assert(entry.username === 'robot' && entry.password === PASSWORD && entry.email === 'robot@example.com', 'auths entry has user, password, email');
  assert(entry.auth === Buffer.from(`robot:${PASSWORD}`).toString('base64'), 'auths entry auth is base64(user:password)');
  step('create a kubernetes.io/dockerconfigjson Secret through the form; .dockerconfigjson holds the right auths');

  const rowText = await row.innerText();
  assert(rowText.includes(REGISTRY) && rowText.includes('kubernetes.io/dockerconfigjson'), `row shows type and registries: ${rowText}`);
  const html = await page.content();
  for (const secretText of [PASSWORD, Buffer.from(`robot:${PASSWORD}`).toString('base64'), created.body.data['.dockerconfigjson']]) {
    assert(!html.includes(secretText), 'the secret list never contains the password, auth or data');
  }
  await shot('secrets');
  step('the secret list shows type and registries covered, and never the password');

  // ---- create a Deployment with Secret Authentication: Yes ----
  await page.getByRole('link', { name: 'Workloads', exact: true }).click();
  await page.getByRole('link', { name: 'Create Deployment' }).click();
  await page.getByRole('heading', { name: 'Create Deployment' }).waitFor();
  await page.getByLabel('Name', { exact: true }).fill('web');
  await page.getByLabel('Instances', { exact: true }).fill('3');
  await page.getByLabel('Image address', { exact: true }).fill('ghcr.io/acme/web:1');
  await page.getByLabel('Yes', { exact: true }).check();
  await page.getByLabel('Secret', { exact: true }).selectOption('regcred');
  const check = page.locator('#pull-check');
  await check.getByText(/No chosen secret covers registry ghcr\.io/).waitFor();
  step('the no-matching-secret warning appears for an image on another registry');
  await shot('deployment-warning');
  await page.getByLabel('Image address', { exact: true }).fill(`${REGISTRY}/team/web:1.0`);
  await check.getByText(/Secret regcred covers/).waitFor();
  assert(!(await check.innerText()).includes('No chosen secret covers'), 'no warning for a covered registry');
  step('no warning for an image on the covered registry');
  const yaml = await page.locator('#yaml-preview').innerText();
  assert(yaml.includes('imagePullSecrets:') && yaml.includes('- name: regcred') && yaml.includes('replicas: 3'), `YAML preview:\n${yaml}`);
  await page.getByLabel('Image pull policy', { exact: true }).selectOption('IfNotPresent');
  await shot('deployment-form');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Workloads' }).waitFor();
  await page.getByRole('row').filter({ hasText: 'web' }).first().waitFor();
  const dep = await api('GET', `/apis/apps/v1/namespaces/${NS}/deployments/web`);
  assert(dep.status === 200, `deployment exists (${dep.status})`);
  const podSpec = dep.body.spec.template.spec;
  assert(dep.body.spec.replicas === 3, `replicas ${dep.body.spec.replicas}`);
  assert(JSON.stringify(podSpec.imagePullSecrets) === JSON.stringify([{ name: 'regcred' }]), `imagePullSecrets ${JSON.stringify(podSpec.imagePullSecrets)}`);
  assert(podSpec.containers[0].image === `${REGISTRY}/team/web:1.0`, `image ${podSpec.containers[0].image}`);
  assert(podSpec.containers[0].imagePullPolicy === 'IfNotPresent', `pull policy ${podSpec.containers[0].imagePullPolicy}`);
  step('create a Deployment with Secret Authentication: Yes; imagePullSecrets, image and replicas are right');

  // ---- the secret list shows who uses it ----
  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('row').filter({ hasText: 'Deployment/web' }).waitFor();
  step('the secret list shows the Deployment that uses the secret');

  // ---- live pod list ----
  await page.getByRole('link', { name: 'Workloads', exact: true }).click();
  await page.getByRole('heading', { name: 'Pods', exact: true }).waitFor();
  await page.getByText('No Pods in this namespace.').waitFor();
  await page.evaluate(() => { window.__noReload = true; });
  const pod = await api('POST', `/api/v1/namespaces/${NS}/pods`, {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'live-pod' },
    spec: { containers: [{ name: 'app', image: `${REGISTRY}/team/web:1.0` }], imagePullSecrets: [{ name: 'regcred' }] },
  });
  assert(pod.status === 201, `pod created (${pod.status}: ${JSON.stringify(pod.body)})`);
  const podRow = page.getByRole('row').filter({ hasText: 'live-pod' });
  await podRow.waitFor({ timeout: 10000 });
  assert(await page.evaluate(() => window.__noReload === true), 'the page was not reloaded');
  assert((await podRow.innerText()).includes('Pending'), `pod row shows its status: ${await podRow.innerText()}`);
  await shot('workloads');
  step('the pod list updates live when a pod is created through the API');

  // ---- pod detail: image pull panel ----
  await podRow.getByRole('link', { name: 'live-pod' }).click();
  await page.getByRole('heading', { name: 'Pod live-pod' }).waitFor();
  const pullPanel = page.getByRole('region', { name: 'Image pull for container app' });
  await pullPanel.getByText(`regcred: "${REGISTRY}"`).waitFor();
  await pullPanel.getByText(`${REGISTRY}/team/web:1.0`, { exact: true }).first().waitFor();
  step('pod detail shows the image pull panel with the matching secret and auths key');
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const event = (name, reason, message) => ({
    apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: NS },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', name: 'live-pod', namespace: NS, uid: pod.body.metadata.uid },
    reason, message, type: 'Warning', count: 1, firstTimestamp: now, lastTimestamp: now, source: { component: 'kubelet', host: 'node-1' },
  });
  const tlsText = 'Failed to pull image "127.0.0.1:5000/team/web:1.0": tls: failed to verify certificate for registry.example.com:5000 (registry): x509: certificate signed by unknown authority';
  for (const e of [event('live-pod.1', 'Failed', tlsText), event('live-pod.2', 'Failed', 'Error: ErrImagePull')]) {
    const r = await api('POST', `/api/v1/namespaces/${NS}/events`, e);
    assert(r.status === 201, `event created (${r.status}: ${JSON.stringify(r.body)})`);
  }
  const note = page.getByRole('note');
  await note.getByText(tlsText).waitFor();
  await note.getByText(/Cause: untrusted certificate/).waitFor();
  await page.getByRole('row').filter({ hasText: 'Error: ErrImagePull' }).waitFor();
  await shot('pod');
  await note.getByRole('link', { name: 'Trust this certificate' }).click();
  await page.getByRole('heading', { name: 'Trust registry' }).waitFor();
  assert(await page.getByLabel('Host', { exact: true }).inputValue() === 'registry.example.com:5000', 'Trust this certificate fills the Host');
  step('a pull error event appears live with its cause, and "Trust this certificate" opens the trust form for its host');

  await page.getByRole('link', { name: 'Events', exact: true }).click();
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  await shot('events');
  await page.getByRole('link', { name: 'Registries', exact: true }).click();
  await page.getByRole('heading', { name: 'Trust registry' }).waitFor();
  await shot('registries');
  step('events and registries pages render');

  // ---- Upload config.json: every registry with credentials goes into the secret ----
  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('link', { name: 'Create Secret' }).click();
  await page.getByLabel('Name', { exact: true }).fill('uploaded');
  const dockerConfig = { auths: {
    'ghcr.io': { auth: Buffer.from('octo:ghp-token-1').toString('base64') },
    'registry.example.com:5000': { username: 'bot', password: 'pw-2' },
  } };
  await page.getByLabel('Upload config.json', { exact: true }).setInputFiles({ name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(dockerConfig)) });
  await page.getByRole('table', { name: /Registries in config.json/ }).getByText('registry.example.com:5000').waitFor();
  assert(!(await page.content()).includes('ghp-token-1'), 'the uploaded token is not shown');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('row').filter({ hasText: 'uploaded' }).waitFor();
  const up = await api('GET', `/api/v1/namespaces/${NS}/secrets/uploaded`);
  const upConfig = JSON.parse(Buffer.from(up.body.data['.dockerconfigjson'], 'base64').toString('utf8'));
  assert(JSON.stringify(upConfig) === JSON.stringify(dockerConfig), `uploaded auths ${JSON.stringify(Object.keys(upConfig.auths ?? {}))}`);
  step('Upload config.json creates a secret holding its auths');

  // ---- scale and restart rollout ----
  await page.getByRole('link', { name: 'Workloads', exact: true }).click();
  await page.getByRole('button', { name: 'Scale web' }).click();
  await page.getByLabel('Instances for web', { exact: true }).fill('1');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Deployment web scaled to 1.').waitFor();
  assert((await api('GET', `/apis/apps/v1/namespaces/${NS}/deployments/web`)).body.spec.replicas === 1, 'scaled to 1');
  await page.getByRole('button', { name: 'Restart web' }).click();
  await page.getByText('Deployment web restarted.').waitFor();
  const restarted = (await api('GET', `/apis/apps/v1/namespaces/${NS}/deployments/web`)).body;
  const at = restarted.spec.template.metadata.annotations?.['kubectl.kubernetes.io/restartedAt'];
  assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(at ?? ''), `restartedAt annotation ${at}`);
  step('scale and restart rollout patch the Deployment');

  // ---- trust a registry CA by fingerprint ----
  const caPem = readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8');
  const fp = new X509Certificate(caPem).fingerprint256;
  await page.getByRole('link', { name: 'Registries', exact: true }).click();
  await page.getByLabel('Host', { exact: true }).fill('registry.example.com:5000');
  await page.getByLabel('CA certificate (PEM)', { exact: true }).fill(caPem);
  await page.getByLabel('SHA-256 fingerprint', { exact: true }).fill(`sha256:${'00'.repeat(32)}`);
  await page.getByRole('button', { name: 'Trust', exact: true }).click();
  await page.getByRole('alert').getByText(/is not the fingerprint of any certificate in the PEM/).waitFor();
  assert((await api('GET', '/apis/berth.dev/v1/registryhosts')).body.items.length === 0, 'a wrong fingerprint creates nothing');
  await page.getByLabel('SHA-256 fingerprint', { exact: true }).fill(fp);
  await page.getByRole('button', { name: 'Trust', exact: true }).click();
  await page.getByRole('row').filter({ hasText: 'registry.example.com-5000' }).waitFor();
  const rh = await api('GET', '/apis/berth.dev/v1/registryhosts/registry.example.com-5000');
  const wantFp = `sha256:${fp.replaceAll(':', '').toLowerCase()}`;
  assert(rh.status === 200 && rh.body.spec.host === 'registry.example.com:5000', `RegistryHost ${JSON.stringify(rh.body)}`);
  assert(JSON.stringify(rh.body.spec.pinnedFingerprints) === JSON.stringify([wantFp]), `pins ${rh.body.spec.pinnedFingerprints}`);
  assert(rh.body.spec.caBundle.trim() === caPem.trim(), 'caBundle is the pasted PEM');
  await shot('registries-trusted');
  step('a RegistryHost is created from a pasted PEM only after its fingerprint is confirmed');

  // ---- a viewer cannot create: the API's message is shown ----
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Token', { exact: true }).fill(VIEWER);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.goto(`${URL_BASE}/ui/#/secrets/new`);
  await page.getByRole('heading', { name: 'Create Secret' }).waitFor();
  await page.getByLabel('Name', { exact: true }).fill('viewer-secret');
  await page.getByLabel('Registry address', { exact: true }).fill(REGISTRY);
  await page.getByLabel('User name', { exact: true }).fill('robot');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  const alert = page.getByRole('alert');
  await alert.getByText(/secrets is forbidden: User "berth-viewer" cannot create resource "secrets"/).waitFor();
  await shot('viewer-forbidden');
  assert((await api('GET', `/api/v1/namespaces/${NS}/secrets/viewer-secret`)).status === 404, 'the viewer created nothing');
  step('a viewer token cannot create a secret and sees the API message');
});
