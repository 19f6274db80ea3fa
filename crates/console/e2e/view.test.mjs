// Unit tests of the console's view logic in node (no browser): kubectl's pod STATUS/RESTARTS, age formatting,
// the pre-deploy matching check, config.json import, command and environment parsing, and the YAML preview.
// Started by tests/browser.rs; exits non-zero listing every failing case.

import { humanDuration } from '../assets/js/format.js';
import { podSummary } from '../assets/js/podstatus.js';
import { b64encode, dockerConfigJson, parseDockerConfig, secretRegistryKeys } from '../assets/js/dockerconfig.js';
import { buildWorkload, certificateCheck, parseEnv, pullCheck, splitCommand } from '../assets/js/pages/workloads.js';
import { describeCheck, imageRegistry, latestOnly, proposedAnchor, verdictText } from '../assets/js/registrycheck.js';
import { normalizeFingerprint, objectName } from '../assets/js/pages/registries.js';
import { classifyPullError, hostInMessage, layerSource } from '../assets/js/pages/pod.js';
import { toYaml } from '../assets/js/yaml.js';

const failures = [];
let checked = 0;
const expect = (what, got, want) => {
  checked++;
  if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};
const throws = (what, fn, pattern) => {
  checked++;
  try {
    fn();
    failures.push(`${what}: did not throw`);
  } catch (e) {
    if (!pattern.test(e.message)) failures.push(`${what}: threw ${JSON.stringify(e.message)}, want ${pattern}`);
  }
};

// ---- pull progress: where each layer's bytes come from (agent annotation `source`) ----
expect('layer from a peer', layerSource('peer:node-3', false), 'from node node-3');
expect('layer from the registry', layerSource('registry', true), 'registry');
expect('layer already on the node', layerSource(undefined, true), 'already on the node');
expect('layer not started', layerSource(undefined, false), '');

// ---- kubectl HumanDuration (k8s.io/apimachinery duration_test.go) ----
const H = 3600e3;
for (const [ms, want] of [[1e3, '1s'], [70e3, '70s'], [190e3, '3m10s'], [70 * 60e3, '70m'], [47 * H, '47h'], [49 * H, '2d1h'],
  [(8 * 24 + 2) * H, '8d'], [367 * 24 * H, '367d'], [(365 * 2 * 24 + 25) * H, '2y1d'], [(365 * 8 * 24 + 2) * H, '8y'], [-500, '0s'], [-2000, '<invalid>']]) {
  expect(`humanDuration(${ms})`, humanDuration(ms), want);
}

// ---- pod STATUS / READY / RESTARTS as kubectl prints them ----
const NOW = Date.parse('2026-01-01T00:10:00Z');
const pod = (status, spec = {}, meta = {}) => ({ metadata: { name: 'p', ...meta }, spec: { containers: [{ name: 'c' }], ...spec }, status });
const cases = [
  ['running and ready', pod({ phase: 'Running', containerStatuses: [{ name: 'c', ready: true, restartCount: 0, state: { running: {} } }] }), 'Running', '1/1', '0'],
  ['image pull error', pod({ phase: 'Pending', containerStatuses: [{ name: 'c', ready: false, restartCount: 0, state: { waiting: { reason: 'ErrImagePull' } } }] }), 'ErrImagePull', '0/1', '0'],
  ['back-off', pod({ phase: 'Pending', containerStatuses: [{ name: 'c', state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image' } } }] }), 'ImagePullBackOff', '0/1', '0'],
  ['no statuses yet', pod({ phase: 'Pending' }), 'Pending', '0/1', '0'],
  ['evicted', pod({ phase: 'Failed', reason: 'Evicted' }), 'Evicted', '0/1', '0'],
  ['signal without reason', pod({ phase: 'Running', containerStatuses: [{ name: 'c', state: { terminated: { exitCode: 137, signal: 9 } } }] }), 'Signal:9', '0/1', '0'],
  ['exit code without reason', pod({ phase: 'Running', containerStatuses: [{ name: 'c', state: { terminated: { exitCode: 2 } } }] }), 'ExitCode:2', '0/1', '0'],
  ['completed beside a running container with Ready', pod({
    phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }],
    containerStatuses: [{ name: 'a', ready: true, state: { running: {} } }, { name: 'b', state: { terminated: { reason: 'Completed', exitCode: 0 } } }],
  }, { containers: [{ name: 'a' }, { name: 'b' }] }), 'Running', '1/2', '0'],
  ['completed beside a running container, not Ready', pod({
    phase: 'Running',
    containerStatuses: [{ name: 'a', ready: true, state: { running: {} } }, { name: 'b', state: { terminated: { reason: 'Completed', exitCode: 0 } } }],
  }, { containers: [{ name: 'a' }, { name: 'b' }] }), 'NotReady', '1/2', '0'],
  ['init container pulling fails', pod({ phase: 'Pending', initContainerStatuses: [{ name: 'i', state: { waiting: { reason: 'ErrImagePull' } } }] }, { initContainers: [{ name: 'i' }] }), 'Init:ErrImagePull', '0/1', '0'],
  ['init container running', pod({ phase: 'Pending', initContainerStatuses: [{ name: 'i', state: { running: {} } }] }, { initContainers: [{ name: 'i' }] }), 'Init:0/1', '0/1', '0'],
  ['init container failed', pod({ phase: 'Pending', initContainerStatuses: [{ name: 'i', state: { terminated: { exitCode: 1 } } }] }, { initContainers: [{ name: 'i' }] }), 'Init:ExitCode:1', '0/1', '0'],
  ['terminating', pod({ phase: 'Running', containerStatuses: [{ name: 'c', ready: true, state: { running: {} } }] }, {}, { deletionTimestamp: '2026-01-01T00:00:00Z' }), 'Terminating', '1/1', '0'],
  ['restarts with the last one 5m ago', pod({ phase: 'Running', containerStatuses: [{ name: 'c', ready: true, restartCount: 3, state: { running: {} }, lastState: { terminated: { finishedAt: '2026-01-01T00:05:00Z' } } }] }), 'Running', '1/1', '3 (5m ago)'],
  ['crash loop', pod({ phase: 'Running', containerStatuses: [{ name: 'c', restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { finishedAt: '2026-01-01T00:09:30Z' } } }] }), 'CrashLoopBackOff', '0/1', '4 (30s ago)'],
];
for (const [name, p, status, ready, restarts] of cases) {
  const s = podSummary(p, NOW);
  expect(`podSummary: ${name}`, [s.status, s.ready, s.restarts], [status, ready, restarts]);
}
expect('ErrImagePull is failing', podSummary(cases[1][1], NOW).failing, true);
expect('Running is not failing', podSummary(cases[0][1], NOW).failing, false);

// ---- the pre-deploy matching check ----
const secret = (name, keys) => ({
  metadata: { name }, type: 'kubernetes.io/dockerconfigjson',
  data: { '.dockerconfigjson': b64encode(JSON.stringify({ auths: Object.fromEntries(keys.map((k) => [k, { auth: b64encode('u:p') }])) })) },
});
const reg = secret('reg', ['registry.example.com:5000']);
const hub = secret('hub', ['https://index.docker.io/v1/']);
expect('covered image', pullCheck('registry.example.com:5000/team/app:1', true, [reg], [reg]).level, 'ok');
expect('covered image names the key', pullCheck('registry.example.com:5000/team/app:1', true, [reg], [reg]).text, 'Secret reg covers registry.example.com:5000/team/app with key "registry.example.com:5000".');
const miss = pullCheck('registry.example.com/team/app', true, [reg], [reg]);
expect('port differs: warning', miss.level, 'warning');
expect('port differs: reason', miss.text.includes('key has port 5000 but the image registry has no port'), true);
expect('no secret chosen', pullCheck('ghcr.io/a/b', true, [], [reg]).text.startsWith('No chosen secret covers registry ghcr.io'), true);
expect('Docker Hub fallback', pullCheck('nginx', true, [hub], [hub]).text, 'Secret hub covers docker.io/library/nginx with key "https://index.docker.io/v1/" (Docker Hub fallback).');
expect('secret auth No with a covering secret', pullCheck('registry.example.com:5000/x', false, [], [reg]).level, 'warning');
expect('secret auth No without one', pullCheck('quay.io/x/y', false, [], [reg]).level, 'none');
expect('invalid image', pullCheck('Foo/Bar', true, [reg], [reg]).text, 'Image address: invalid reference format: repository name (Bar) must be lowercase');
expect('empty image', pullCheck('  ', true, [reg], [reg]).level, 'none');

// ---- registry documents ----
expect('kubectl docker-registry body', JSON.parse(dockerConfigJson({ server: 'r:5000', username: 'u', password: 'p', email: '' })),
  { auths: { 'r:5000': { username: 'u', password: 'p', auth: 'dTpw' } } });
const uploaded = parseDockerConfig(JSON.stringify({
  auths: { 'a.example.com': { auth: b64encode('alice:pw') }, 'b.example.com': {} }, credsStore: 'desktop',
}));
expect('config.json hosts (no secret values)', uploaded.hosts, [{ key: 'a.example.com', username: 'alice' }]);
expect('config.json keeps only entries with credentials', Object.keys(uploaded.auths), ['a.example.com']);
expect('config.json notes the helper', uploaded.notes.length, 2);
throws('config.json that is not JSON', () => parseDockerConfig('{', 'my.json'), /^my\.json is not valid JSON/);
throws('config.json with only a helper', () => parseDockerConfig('{"credsStore":"osxkeychain"}'), /holds no registry credentials/);
expect('secret keys', secretRegistryKeys(reg), { keys: ['registry.example.com:5000'], error: null });
expect('unreadable secret', secretRegistryKeys({ type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64encode('{') } }).error.startsWith('unreadable registry data'), true);

// ---- form parsing ----
expect('command words', splitCommand(`/bin/sh -c 'echo "hi there"' a\\ b`), ['/bin/sh', '-c', 'echo "hi there"', 'a b']);
expect('empty quoted word', splitCommand(`x ''`), ['x', '']);
throws('unterminated quote', () => splitCommand(`echo 'x`), /unterminated ' quote/);
expect('env', parseEnv('A=1\n\nB_2=x=y\n'), [{ name: 'A', value: '1' }, { name: 'B_2', value: 'x=y' }]);
throws('env without =', () => parseEnv('NOVALUE'), /line 1/);
const sts = buildWorkload('StatefulSet', { name: 'db', namespace: 'ns', replicas: 1, image: 'i', pullPolicy: '', secretAuth: false, secrets: ['x'], command: [], env: [] });
expect('StatefulSet has serviceName and no pull secrets with Secret Authentication No', [sts.spec.serviceName, sts.spec.template.spec.imagePullSecrets], ['db', undefined]);

// ---- YAML preview ----
expect('yaml', toYaml({ a: 'yes', b: '1.0', c: [{ d: 'x: y', e: [] }], f: 'plain/text:1', g: 3 }),
  'a: "yes"\nb: "1.0"\nc:\n- d: "x: y"\n  e: []\nf: plain/text:1\ng: 3\n');

// ---- registry trust helpers ----
expect('openssl fingerprint form', normalizeFingerprint('AB:'.repeat(31) + 'AB'), `sha256:${'ab'.repeat(32)}`);
expect('bad fingerprint', normalizeFingerprint('sha256:abc'), null);
expect('object name', objectName('Registry.Example.com:5000'), 'registry.example.com-5000');
expect('object name ipv6', objectName('[::1]:5000'), '1-5000');

// ---- pull error classes and remediation ----
const cls = (reason, message) => {
  const c = classifyPullError(reason, message);
  return c && [c.kind, c.host];
};
expect('x509 names the host', cls('Failed', 'Failed to pull image "reg.example.com:5000/a:1": tls: failed to verify certificate for reg.example.com:5000 (registry): x509: certificate signed by unknown authority'),
  ['untrusted certificate', 'reg.example.com:5000']);
expect('CDN x509 (CCE example)', cls('Failed', 'error pulling image configuration: Get https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/e8/data?verify=1: x509: certificate signed by unknown authority'),
  ['untrusted certificate', 'production.cloudflare.docker.com']);
expect('unauthorized', cls('Failed', 'Failed to pull image "ghcr.io/a/b:1": unexpected status from HEAD request to https://ghcr.io/v2/a/b/manifests/1: 401 Unauthorized')[0], 'credentials rejected');
expect('missing secret', cls('FailedToRetrieveImagePullSecret', 'Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.')[0], 'secret missing');
expect('rate limit', cls('Failed', 'toomanyrequests: You have reached your pull rate limit')[0], 'rate limited');
expect('not found', cls('Failed', 'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/nginx:nope": not found')[0], 'not found');
expect('unreachable', cls('Failed', 'dial tcp: lookup registry-1.docker.io: no such host')[0], 'unreachable');
expect('disk', cls('Failed', 'write /var/lib/berth: no space left on device')[0], 'disk full');
expect('never pull', cls('ErrImageNeverPull', 'Container image "x" is not present with pull policy of Never')[0], 'never pull');
expect('unknown', classifyPullError('Failed', 'something else entirely'), null);
expect('host in message', hostInMessage('connect 10.0.0.5:5000 failed'), '10.0.0.5:5000');
expect('host outside the quoted image', hostInMessage('Failed to pull image "127.0.0.1:5000/a:1": tls: failed to verify certificate for registry.example.com:5000'), 'registry.example.com:5000');

// ---- registry checks (RegistryCheck status as the agent answers it) ----
const untrusted = { result: 'UntrustedCertificate', reason: 'unknown_authority', host: '127.0.0.2:5001', nodeName: 'n1',
  message: 'tls: failed to verify certificate of 127.0.0.2:5001 (registry): x509: certificate signed by unknown authority; fix: ...' };
const d = describeCheck(untrusted);
expect('untrusted: title, tone, host', [d.title, d.tone, d.host, d.trustable], ['Untrusted certificate', 'bad', '127.0.0.2:5001', true]);
expect('untrusted: headline names host and node', d.headline, 'Untrusted certificate: 127.0.0.2:5001 (checked from node n1)');
expect('name mismatch is not fixed by trusting', describeCheck({ ...untrusted, reason: 'name_mismatch' }).trustable, false);
expect('accepted', [describeCheck({ result: 'Accepted', host: 'r:1', message: 'r:1 accepted user "a"' }).tone, describeCheck({ result: 'Accepted' }).headline], ['ok', 'Accepted']);
expect('rejected', [describeCheck({ result: 'Rejected', host: 'r:1' }).title, describeCheck({ result: 'Rejected' }).tone], ['Rejected', 'bad']);
expect('unreachable names the host', describeCheck({ result: 'Unreachable', host: 'r:1' }).headline, 'Unreachable: r:1');
expect('plain http only names the host', describeCheck({ result: 'PlainHTTPOnly', host: 'r:1' }).headline, 'Plain HTTP only: r:1');
expect('no answer', describeCheck({}).title, 'No answer');
const leaf = { subject: 'CN=leaf', isCA: false, selfSigned: false };
const inter = { subject: 'CN=intermediate', isCA: true, selfSigned: false };
const root = { subject: 'CN=root', isCA: true, selfSigned: true };
expect('anchor: the top CA sent', proposedAnchor([leaf, inter, root]).subject, 'CN=root');
expect('anchor: the intermediate when the root is not sent', proposedAnchor([leaf, inter]).subject, 'CN=intermediate');
expect('anchor: a self-signed leaf is pinned', proposedAnchor([{ ...leaf, selfSigned: true }]).subject, 'CN=leaf');
expect('anchor: none when only a leaf is sent', proposedAnchor([leaf]), null);
expect('anchor: none without a chain', proposedAnchor(undefined), null);
expect('verdict words', [verdictText('ok').startsWith('ok'), verdictText('unknown_authority').startsWith('not trusted'), verdictText(undefined)], [true, true, 'not fetched']);
expect('image registry', [imageRegistry('127.0.0.2:5001/janedoe/app:v1'), imageRegistry('busybox'), imageRegistry('Bad/Name')], ['127.0.0.2:5001', 'docker.io', null]);
const cc = certificateCheck('127.0.0.2:5001', untrusted);
expect('workload form warns about an untrusted registry and links to trust it', [cc.level, cc.trust, cc.text.startsWith('node n1 does not trust the certificate of 127.0.0.2:5001')], ['warning', '127.0.0.2:5001', true]);
expect('workload form: trusted when the registry answered', certificateCheck('r:1', { result: 'Rejected', host: 'r:1', nodeName: 'n1' }).text, 'The certificate of r:1 is trusted by node n1.');
expect('workload form: expired is a warning without a trust link', [certificateCheck('r:1', { ...untrusted, reason: 'expired' }).level, certificateCheck('r:1', { ...untrusted, reason: 'expired' }).trust], ['warning', null]);
expect('workload form: no node', certificateCheck('r:1', {}, new Error('no node is Ready')).level, 'none');
{
  const latest = latestOnly();
  let release;
  const slow = latest(() => new Promise((r) => { release = r; }));
  const fast = await latest(async () => 'second');
  release('first');
  expect('only the newest check is current', [(await slow).current, fast.current, fast.value], [false, true, 'second']);
}

if (failures.length) {
  console.error(`view logic: ${failures.length} of ${checked} cases failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`view logic: ${checked} cases pass`);
