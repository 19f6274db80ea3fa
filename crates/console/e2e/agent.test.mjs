// The browser scenario against the real `berth server` with its embedded node agent, started by
// crates/berth/tests/console_e2e.rs with two real TLS + htpasswd docker-registries whose CAs nobody trusts:
// A (127.0.0.1) and B (127.0.0.2). playwright-core drives Debian's Chromium (headless, no sandbox as root):
// log in; trust A's CA through "Fetch certificate" (chain, fingerprints, verdict) after confirming the fingerprint
// the test knows out of band; create a registry secret for A with "Test connection" showing Rejected for a wrong
// password and Accepted for the right one; a secret for B whose test shows the untrusted certificate and its host;
// a Deployment with Secret Authentication whose pod reaches Running; a Deployment on B, warned about before
// "Create"; open its failing pod (unknown CA), trust the certificate from the page and watch the pod recover.
// Every request to another origin is blocked and fails the run, as does any page error or CSP violation. Each
// step prints "ok - ..."; the first failure exits 1. Screenshots go to $BERTH_SCREENSHOTS.

import { mkdirSync, readFileSync } from 'node:fs';
import { apiClient, assert, runInBrowser } from './harness.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set (this script is started by crates/berth/tests/console_e2e.rs)`);
  return v;
};
const URL_BASE = env('BERTH_URL');
const ADMIN = readFileSync(env('BERTH_ADMIN_TOKEN_FILE'), 'utf8').trim();
const PASSWORD = readFileSync(env('BERTH_REGISTRY_PASSWORD_FILE'), 'utf8').trim();
const USER = env('BERTH_REGISTRY_USER');
const REG_A = env('BERTH_REGISTRY_A');
const REG_B = env('BERTH_REGISTRY_B');
const FP_A = env('BERTH_ANCHOR_A');
const FP_B = env('BERTH_ANCHOR_B');
const REPO = env('BERTH_IMAGE_PATH');
const SHOTS = env('BERTH_SCREENSHOTS');
const NS = 'default';
mkdirSync(SHOTS, { recursive: true });

const api = apiClient(URL_BASE, ADMIN);

await runInBrowser({ urlBase: URL_BASE, shots: SHOTS, prefix: 'agent-', timeoutMs: 20000, timed: true }, async ({ page, shot, step }) => {
  // ---- log in ----
  await page.goto(`${URL_BASE}/ui/`);
  await page.getByLabel('Token', { exact: true }).fill(ADMIN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  step('log in with the admin token');

  // ---- trust registry A through "Fetch certificate" ----
  const trustByFetch = async (host, fingerprint, shotName) => {
    const fetched = page.locator('#fetched-chain');
    await fetched.getByText(/Verdict:/).first().waitFor({ timeout: 30000 });
    const text = await fetched.innerText();
    assert(text.includes('not trusted'), `the verdict for ${host} says not trusted:\n${text}`);
    assert(text.includes(fingerprint), `the chain of ${host} shows the anchor's fingerprint ${fingerprint}:\n${text}`);
    assert(text.includes('Untrusted certificate'), `the connection result names the untrusted certificate:\n${text}`);
    await page.getByRole('table', { name: new RegExp(`Certificates presented by ${host.replace(/[.]/g, '\\.')}`) }).waitFor();
    const pemValue = await page.getByLabel('CA certificate (PEM)', { exact: true }).inputValue();
    assert(pemValue.includes('BEGIN CERTIFICATE'), 'the proposed anchor is put in the PEM field');
    await shot(shotName);
    // A fingerprint that is not the one confirmed out of band creates nothing.
    await page.getByLabel('SHA-256 fingerprint', { exact: true }).fill(`sha256:${'00'.repeat(32)}`);
    await page.getByRole('button', { name: 'Trust', exact: true }).click();
    await page.getByRole('alert').getByText(/is not the fingerprint of any certificate in the PEM/).waitFor();
    await page.getByLabel('SHA-256 fingerprint', { exact: true }).fill(fingerprint);
    await page.getByRole('button', { name: 'Trust', exact: true }).click();
    await page.getByText(`${host} is now trusted`).first().waitFor();
    const name = host.toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
    const rh = await api('GET', `/apis/berth.dev/v1/registryhosts/${name}`);
    assert(rh.status === 200 && rh.body.spec.host === host, `RegistryHost for ${host}: ${JSON.stringify(rh.body)}`);
    assert(JSON.stringify(rh.body.spec.pinnedFingerprints) === JSON.stringify([fingerprint]), `pins ${rh.body.spec.pinnedFingerprints}`);
  };
  await page.getByRole('link', { name: 'Registries', exact: true }).click();
  await page.getByRole('heading', { name: 'Trust registry' }).waitFor();
  await page.getByLabel('Host', { exact: true }).fill(REG_A);
  await page.getByRole('button', { name: 'Fetch certificate' }).click();
  await trustByFetch(REG_A, FP_A, 'fetch-certificate-a');
  step(`"Fetch certificate" shows ${REG_A}'s chain, fingerprints and verdict; "Trust" after the fingerprint is confirmed creates the RegistryHost`);

  // ---- Create Secret for A with "Test connection" ----
  const testConnection = async (want, { retryUntil = 0 } = {}) => {
    const result = page.locator('#test-connection-result');
    const deadline = Date.now() + retryUntil;
    for (;;) {
      await page.getByRole('button', { name: 'Test connection' }).click();
      await result.locator('p').filter({ hasNotText: /^Testing/ }).first().waitFor({ timeout: 30000 });
      const text = await result.innerText();
      if (text.includes(want) || Date.now() > deadline) return text;
      await page.waitForTimeout(500);
    }
  };
  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('link', { name: 'Create Secret' }).click();
  await page.getByRole('heading', { name: 'Create Secret' }).waitFor();
  await page.getByLabel('Name', { exact: true }).fill('regcred');
  await page.getByLabel('Registry address', { exact: true }).fill(REG_A);
  await page.getByLabel('User name', { exact: true }).fill(USER);
  await page.getByLabel('Password', { exact: true }).fill('not-the-password');
  let text = await testConnection('Rejected', { retryUntil: 15000 });
  assert(text.includes('Rejected'), `a wrong password is rejected:\n${text}`);
  assert(!text.includes('not-the-password'), 'the password is never shown back');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  // The node applies the new RegistryHost within moments; the test may run before it did.
  text = await testConnection('Accepted', { retryUntil: 15000 });
  assert(text.includes('Accepted'), `the right password is accepted from the node:\n${text}`);
  assert(text.includes(REG_A) && !text.includes(PASSWORD), `the answer names the registry and never the password:\n${text}`);
  await shot('test-connection-accepted');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('row').filter({ hasText: 'regcred' }).waitFor();
  step('"Test connection" answers Rejected for a wrong password and Accepted for the right one; the secret is created');

  // ---- Create Secret for B: the test shows the untrusted certificate with its host ----
  await page.getByRole('link', { name: 'Create Secret' }).click();
  await page.getByLabel('Name', { exact: true }).fill('regcred-b');
  await page.getByLabel('Registry address', { exact: true }).fill(REG_B);
  await page.getByLabel('User name', { exact: true }).fill(USER);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  text = await testConnection('Untrusted certificate');
  assert(text.includes(`Untrusted certificate: ${REG_B}`), `the test names the untrusted host:\n${text}`);
  assert(text.includes('x509: certificate signed by unknown authority'), `the registry crate's message is shown in full:\n${text}`);
  await page.locator('#test-connection-result').getByRole('link', { name: `Trust the certificate of ${REG_B}` }).waitFor();
  await shot('test-connection-untrusted');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('row').filter({ hasText: 'regcred-b' }).waitFor();
  step(`"Test connection" against ${REG_B} shows the untrusted certificate, its host and the trust link`);

  // ---- a Deployment on A with Secret Authentication: its pod reaches Running ----
  const createDeployment = async (name, image, secret) => {
    await page.getByRole('link', { name: 'Workloads', exact: true }).click();
    await page.getByRole('link', { name: 'Create Deployment' }).click();
    await page.getByRole('heading', { name: 'Create Deployment' }).waitFor();
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Instances', { exact: true }).fill('1');
    await page.getByLabel('Image address', { exact: true }).fill(image);
    await page.getByLabel('Yes', { exact: true }).check();
    await page.getByLabel('Secret', { exact: true }).selectOption(secret);
    await page.locator('#pull-check').getByText(new RegExp(`Secret ${secret} covers`)).first().waitFor();
  };
  await createDeployment('web', `${REG_A}/${REPO}`, 'regcred');
  await page.locator('#certificate-check').getByText(`The certificate of ${REG_A} is trusted by node`).first().waitFor({ timeout: 30000 });
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Workloads' }).waitFor();
  const runningRow = page.getByRole('table', { name: `Pods in ${NS}` }).getByRole('row').filter({ hasText: /^web-/ }).filter({ hasText: 'Running' });
  await runningRow.first().waitFor({ timeout: 60000 });
  await shot('workloads-running');
  step('a Deployment with Secret Authentication is created and its pod reaches Running, live');

  // ---- a Deployment on B: warned about before "Create"; its pod fails with the unknown CA ----
  await createDeployment('web-b', `${REG_B}/${REPO}`, 'regcred-b');
  const warn = page.locator('#certificate-check');
  await warn.getByText(`does not trust the certificate of ${REG_B}`).first().waitFor({ timeout: 30000 });
  await warn.getByRole('link', { name: `Trust the certificate of ${REG_B}` }).waitFor();
  await shot('deployment-untrusted-warning');
  step(`the create form warns before "Create" that ${REG_B}'s certificate is not trusted, with a link to trust it`);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Workloads' }).waitFor();
  const failingRow = page.getByRole('table', { name: `Pods in ${NS}` }).getByRole('row').filter({ hasText: /^web-b-/ }).filter({ hasText: /ErrImagePull|ImagePullBackOff/ });
  await failingRow.first().waitFor({ timeout: 60000 });
  const podName = (await failingRow.first().getByRole('link').innerText()).trim();
  await failingRow.first().getByRole('link').click();
  await page.getByRole('heading', { name: `Pod ${podName}` }).waitFor();
  const note = page.getByRole('note');
  await note.getByText(/Cause: untrusted certificate/).first().waitFor({ timeout: 30000 });
  await note.getByText(/x509: certificate signed by unknown authority/).first().waitFor();
  await shot('pod-untrusted');
  step(`the failing pod ${podName} shows the unknown-CA pull error with its cause`);

  // ---- trust the certificate from the page; the pod recovers ----
  await note.getByRole('link', { name: 'Trust this certificate' }).click();
  await page.getByRole('heading', { name: 'Trust registry' }).waitFor();
  assert(await page.getByLabel('Host', { exact: true }).inputValue() === REG_B, '"Trust this certificate" opens the trust form for the failing host');
  await trustByFetch(REG_B, FP_B, 'fetch-certificate-b');
  await page.goto(`${URL_BASE}/ui/#/pods/${NS}/${podName}`);
  await page.getByRole('heading', { name: `Pod ${podName}` }).waitFor();
  await page.getByRole('table', { name: 'Containers' }).getByText(/\bRunning\b/).first().waitFor({ timeout: 60000 });
  const pod = await api('GET', `/api/v1/namespaces/${NS}/pods/${podName}`);
  assert(pod.body.status.phase === 'Running', `pod phase ${pod.body.status.phase}`);
  await shot('pod-recovered');
  step(`after "Trust" on the page, ${podName} recovers to Running without a restart`);

  const html = await page.content();
  assert(!html.includes(PASSWORD), 'the registry password never appears in a page');
});
