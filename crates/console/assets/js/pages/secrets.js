// Secrets: the list (type, registries covered, age, the workloads that use it; values are never shown) and the
// "Create Secret" form with registry presets, "Upload config.json" and "Test connection". The form builds the
// same `.dockerconfigjson` as `kubectl create secret docker-registry`. "Test connection" creates a RegistryCheck:
// a node's agent logs in to the registry with the typed user name and password and its own trust, and the
// answer (accepted, rejected, unreachable, untrusted certificate with the host, or plain-http only) is shown as
// the agent gave it, with a link to trust the certificate when that is the fix. The console never fakes a result.

import { collectionPath, create, liveList, objectPath, remove } from '../api.js';
import { badge, field, h, messageArea, replace, table } from '../dom.js';
import {
  TYPE_DOCKER_CONFIG_JSON, b64encode, dockerConfigJson, isRegistrySecret, parseDockerConfig, secretRegistryKeys,
} from '../dockerconfig.js';
import { age } from '../format.js';
import { describeCheck, runCheck } from '../registrycheck.js';

export const PRESETS = [
  { label: 'Docker Hub', server: 'https://index.docker.io/v1/', hint: 'Docker Hub: the key docker login and kubectl write (covers docker.io images).' },
  { label: 'GHCR', server: 'ghcr.io', hint: 'GitHub Container Registry: user name is the GitHub user, password a personal access token with read:packages.' },
  { label: 'Quay', server: 'quay.io', hint: 'Quay.io: a robot account name (org+robot) and its token work best.' },
  { label: 'Harbor-style host', server: '', hint: 'Harbor or another self-hosted registry: type its host[:port], e.g. harbor.example.com (a robot account is best).' },
];

const TYPES = [TYPE_DOCKER_CONFIG_JSON, 'Opaque', 'kubernetes.io/tls', 'kubernetes.io/basic-auth'];
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

// Workloads (Deployment, StatefulSet, bare Pod) whose pod spec names the secret in imagePullSecrets.
export function usedBy(secretName, deployments, statefulsets, pods) {
  const uses = (spec) => (spec?.imagePullSecrets ?? []).some((s) => s.name === secretName);
  return [
    ...deployments.filter((d) => uses(d.spec?.template?.spec)).map((d) => `Deployment/${d.metadata.name}`),
    ...statefulsets.filter((s) => uses(s.spec?.template?.spec)).map((s) => `StatefulSet/${s.metadata.name}`),
    ...pods.filter((p) => !(p.metadata.ownerReferences ?? []).length && uses(p.spec)).map((p) => `Pod/${p.metadata.name}`),
  ];
}

export function render(ctx) {
  if (ctx.parts[1] === 'new') return renderForm(ctx);
  return renderList(ctx);
}

function renderList({ main, namespace }) {
  const messages = messageArea();
  const listEl = h('div', { 'aria-live': 'polite' });
  const data = { secrets: [], deployments: [], statefulsets: [], pods: [] };
  const draw = () => {
    const rows = data.secrets
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .map((s) => {
        const { keys, error } = secretRegistryKeys(s);
        const users = usedBy(s.metadata.name, data.deployments, data.statefulsets, data.pods);
        return [
          s.metadata.name,
          s.type ?? 'Opaque',
          isRegistrySecret(s) ? (error ? badge(error, 'bad') : keys.join(', ') || '(none)') : '',
          age(s.metadata.creationTimestamp),
          users.join(', ') || '(unused)',
          h('button', {
            type: 'button', class: 'danger', 'aria-label': `Delete secret ${s.metadata.name}`,
            onclick: async () => {
              if (!confirm(`Delete secret ${namespace}/${s.metadata.name}?`)) return;
              try {
                await remove(objectPath('', 'v1', 'secrets', namespace, s.metadata.name));
                messages.ok(`Secret ${s.metadata.name} deleted.`);
              } catch (e) {
                messages.error(e.message);
              }
            },
          }, 'Delete'),
        ];
      });
    replace(listEl, table(`Secrets in ${namespace}`, ['Name', 'Type', 'Registries covered', 'Age', 'Used by', 'Actions'], rows, 'No secrets in this namespace.'));
  };
  const onError = (e) => (e ? messages.error(e.message) : messages.clear());
  const watches = [
    liveList(collectionPath('', 'v1', 'secrets', namespace), { onChange: (i) => { data.secrets = i; draw(); }, onError }),
    liveList(collectionPath('apps', 'v1', 'deployments', namespace), { onChange: (i) => { data.deployments = i; draw(); }, onError }),
    liveList(collectionPath('apps', 'v1', 'statefulsets', namespace), { onChange: (i) => { data.statefulsets = i; draw(); }, onError }),
    liveList(collectionPath('', 'v1', 'pods', namespace), { onChange: (i) => { data.pods = i; draw(); }, onError }),
  ];
  const flash = sessionStorage.getItem('berth.flash');
  sessionStorage.removeItem('berth.flash');
  if (flash) messages.ok(flash);
  main.append(
    h('h1', {}, 'Secrets'),
    h('div', { class: 'actions' }, h('a', { href: '#/secrets/new', class: 'button' }, 'Create Secret')),
    messages.el,
    listEl,
  );
  draw();
  return () => watches.forEach((w) => w.stop());
}

function renderForm({ main, namespace, navigate }) {
  const messages = messageArea();
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false' });
  const ns = h('input', { type: 'text', required: true, value: namespace, spellcheck: 'false' });
  const type = h('select', {}, TYPES.map((t) => h('option', { value: t }, t)));
  const server = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'registry.example.com:5000' });
  const username = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const password = h('input', { type: 'password', autocomplete: 'new-password' });
  const email = h('input', { type: 'email', autocomplete: 'off' });
  const upload = h('input', { type: 'file', accept: '.json,application/json' });
  const uploadSummary = h('div', { 'aria-live': 'polite' });
  const opaque = h('textarea', { spellcheck: 'false' });
  const cert = h('textarea', { spellcheck: 'false' });
  const key = h('textarea', { spellcheck: 'false' });
  const presetHint = h('p', { class: 'hint', id: 'preset-hint' });
  const testResult = h('div', { id: 'test-connection-result', 'aria-live': 'polite' });
  let uploaded = null;

  const testButton = h('button', {
    type: 'button',
    'aria-describedby': 'test-connection-hint',
    onclick: async () => {
      const s = server.value.trim();
      if (!s) {
        replace(testResult, h('p', { class: 'error', role: 'alert' }, 'Registry address: type host[:port] (or pick a preset) to test the connection'));
        return;
      }
      if (!username.value.trim() || !password.value) {
        replace(testResult, h('p', { class: 'error', role: 'alert' }, 'User name and Password: both are needed to test the connection'));
        return;
      }
      testButton.disabled = true;
      replace(testResult, h('p', { class: 'hint', role: 'status' }, `Testing ${s} from a node…`));
      try {
        const status = await runCheck({ server: s, username: username.value.trim(), password: password.value });
        const d = describeCheck(status);
        replace(testResult,
          h('p', { class: d.tone === 'ok' ? 'ok' : 'error', role: 'status' }, badge(d.title, d.tone), ' ', h('strong', {}, `${d.headline}. `), d.message),
          d.trustable
            ? h('p', {}, h('a', { href: `#/registries?host=${encodeURIComponent(d.host)}` }, `Trust the certificate of ${d.host}`),
              ' (opens Registries; come back to create the secret)')
            : null);
      } catch (e) {
        replace(testResult, h('p', { class: 'error', role: 'alert' }, h('strong', {}, 'Test connection failed: '), e.message));
      } finally {
        testButton.disabled = false;
      }
    },
  }, 'Test connection');

  const presets = h('fieldset', {}, h('legend', {}, 'Presets'),
    h('div', { class: 'presets' }, PRESETS.map((p) => h('button', {
      type: 'button', 'aria-describedby': 'preset-hint',
      onclick: () => {
        server.value = p.server;
        presetHint.textContent = p.hint;
        server.focus();
      },
    }, p.label))), presetHint);

  upload.addEventListener('change', async () => {
    uploaded = null;
    uploadSummary.replaceChildren();
    const file = upload.files?.[0];
    if (!file) return;
    try {
      const parsed = parseDockerConfig(await file.text(), file.name);
      uploaded = parsed;
      replace(uploadSummary,
        table(`Registries in ${file.name} (these replace the address, user name and password fields)`, ['Registry address', 'User name'],
          parsed.hosts.map((x) => [x.key, x.username || '(token)'])),
        parsed.notes.map((n) => h('p', { class: 'warning' }, n)));
    } catch (e) {
      replace(uploadSummary, h('p', { class: 'error', role: 'alert' }, e.message));
    }
  });

  const registryPart = h('div', {},
    presets,
    field('secret-server', 'Registry address', server, 'host[:port] as images name it (e.g. registry.example.com:5000); kubelet matches it against the image registry.'));
  const credentialPart = h('div', {}, field('secret-username', 'User name', username), field('secret-password', 'Password', password));
  const testPart = h('div', {},
    h('div', { class: 'actions' }, testButton),
    h('p', { class: 'hint', id: 'test-connection-hint' }, 'A node logs in to the registry with this user name and password, with the node\'s own certificate trust; nothing is saved.'),
    testResult);
  const registryExtra = h('div', {},
    field('secret-email', 'Email', email, 'Optional.'),
    field('secret-upload', 'Upload config.json', upload, 'A Docker config.json (as docker login writes it): every registry in its "auths" goes into the secret.'),
    uploadSummary);
  const opaquePart = h('div', {}, field('secret-data', 'Data', opaque, 'One KEY=value per line; keys may use letters, digits, "-", "_" and ".".'));
  const tlsPart = h('div', {}, field('secret-cert', 'Certificate (PEM)', cert), field('secret-key', 'Private key (PEM)', key));
  const showType = () => {
    const t = type.value;
    registryPart.hidden = registryExtra.hidden = testPart.hidden = t !== TYPE_DOCKER_CONFIG_JSON;
    credentialPart.hidden = t !== TYPE_DOCKER_CONFIG_JSON && t !== 'kubernetes.io/basic-auth';
    opaquePart.hidden = t !== 'Opaque';
    tlsPart.hidden = t !== 'kubernetes.io/tls';
  };
  type.addEventListener('change', showType);

  function body() {
    const n = name.value.trim();
    if (!DNS_SUBDOMAIN.test(n) || n.length > 253) {
      throw new Error(`Name: "${n}" is not a valid name: use at most 253 lowercase letters, digits, "-" and ".", starting and ending with a letter or digit`);
    }
    const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: n, namespace: ns.value.trim() }, type: type.value, data: {} };
    if (type.value === TYPE_DOCKER_CONFIG_JSON) {
      if (uploaded) {
        secret.data['.dockerconfigjson'] = b64encode(JSON.stringify({ auths: uploaded.auths }));
      } else {
        const s = server.value.trim();
        if (!s) throw new Error('Registry address: required (pick a preset or type host[:port]), or upload a config.json');
        if (!username.value) throw new Error('User name: required for a registry secret');
        if (!password.value) throw new Error('Password: required for a registry secret');
        secret.data['.dockerconfigjson'] = b64encode(dockerConfigJson({ server: s, username: username.value.trim(), password: password.value, email: email.value.trim() }));
      }
    } else if (type.value === 'Opaque') {
      for (const [i, line] of opaque.value.split('\n').entries()) {
        if (!line.trim()) continue;
        const eq = line.indexOf('=');
        const k = eq > 0 ? line.slice(0, eq).trim() : '';
        if (!/^[-._a-zA-Z0-9]+$/.test(k)) throw new Error(`Data line ${i + 1}: expected KEY=value with a key of letters, digits, "-", "_" or "."`);
        secret.data[k] = b64encode(line.slice(eq + 1));
      }
    } else if (type.value === 'kubernetes.io/tls') {
      if (!cert.value.includes('-----BEGIN')) throw new Error('Certificate (PEM): paste a PEM certificate (-----BEGIN CERTIFICATE-----)');
      if (!key.value.includes('-----BEGIN')) throw new Error('Private key (PEM): paste a PEM private key');
      secret.data['tls.crt'] = b64encode(cert.value.trim() + '\n');
      secret.data['tls.key'] = b64encode(key.value.trim() + '\n');
    } else {
      const u = username.value;
      const p = password.value;
      if (!u && !p) throw new Error('User name or Password: a basic-auth secret needs at least one');
      secret.data.username = b64encode(u);
      secret.data.password = b64encode(p);
    }
    return secret;
  }

  const form = h('form', {
    'aria-labelledby': 'create-secret-title',
    onsubmit: async (e) => {
      e.preventDefault();
      messages.clear();
      let secret;
      try {
        secret = body();
      } catch (err) {
        messages.error(err.message);
        return;
      }
      try {
        await create(collectionPath('', 'v1', 'secrets', secret.metadata.namespace), secret);
        password.value = '';
        sessionStorage.setItem('berth.flash', `Secret ${secret.metadata.namespace}/${secret.metadata.name} created.`);
        navigate('#/secrets');
      } catch (err) {
        messages.error(err.message);
      }
    },
  },
  field('secret-name', 'Name', name),
  field('secret-namespace', 'Namespace', ns),
  field('secret-type', 'Type', type),
  registryPart, credentialPart, testPart, registryExtra, opaquePart, tlsPart,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create'), h('a', { href: '#/secrets' }, 'Cancel')),
  messages.el);
  showType();
  main.append(h('h1', { id: 'create-secret-title' }, 'Create Secret'), form);
  name.focus();
  return null;
}
