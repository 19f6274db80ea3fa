// Workloads: Deployments, StatefulSets and Pods of the namespace, live, with scale, delete and restart rollout
// (the `kubectl.kubernetes.io/restartedAt` annotation patch `kubectl rollout restart` makes); and the
// "Create Deployment" / "Create StatefulSet" form with "Secret Authentication", kubelet's matching warning before
// "Create", a warning when a node does not trust the certificate of the image's registry (a RegistryCheck without
// credentials, run by a node's agent as the person types, with a link to trust that host), the effective pull
// policy and a YAML preview of exactly what will be sent.

import { collectionPath, create, get, liveList, mergePatch, objectPath, remove } from '../api.js';
import { badge, field, h, messageArea, replace, table } from '../dom.js';
import { isRegistrySecret, secretRegistryKeys } from '../dockerconfig.js';
import { age } from '../format.js';
import { imageRegistry, latestOnly, runCheck } from '../registrycheck.js';
import { Keyring } from '../keyring.js';
import { podSummary, tone, workloadReady } from '../podstatus.js';
import { effectivePullPolicy, parseNormalized } from '../reference.js';
import { toYaml } from '../yaml.js';

const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const KINDS = { Deployment: 'deployments', StatefulSet: 'statefulsets' };

export function render(ctx) {
  if (ctx.parts[1] === 'new') return renderForm(ctx, ctx.parts[2] === 'StatefulSet' ? 'StatefulSet' : 'Deployment');
  return renderLists(ctx);
}

// ---- matching ----

// What kubelet would do with the chosen secrets for this image. Returns {level: 'error'|'warning'|'ok'|'none', text}.
export function pullCheck(image, secretAuth, chosen, available) {
  if (!image.trim()) return { level: 'none', text: '' };
  let ref;
  try {
    ref = parseNormalized(image.trim());
  } catch (e) {
    return { level: 'error', text: `Image address: ${e.message}` };
  }
  const keyringOf = (secrets) => {
    const k = new Keyring();
    for (const s of secrets) k.add(s.metadata.name, secretRegistryKeys(s).keys);
    return k;
  };
  if (secretAuth) {
    if (chosen.length === 0) {
      return { level: 'warning', text: `No chosen secret covers registry ${ref.domain}: Secret Authentication is Yes but no secret is chosen.` };
    }
    const k = keyringOf(chosen);
    const hits = k.lookup(ref.name);
    if (hits.length === 0) {
      const reasons = k.explain(ref.name).map((v) => `"${v.written.map((w) => w.key).join('", "')}" (secret ${v.written.map((w) => w.origin).join(', ')}): ${v.mismatch}`);
      const ignored = k.ignored.map((i) => `"${i.key}" (secret ${i.origin}) is ignored by kubelet: ${i.reason}`);
      return {
        level: 'warning',
        text: `No chosen secret covers registry ${ref.domain} for ${ref.name}; the pull will be anonymous. ${[...reasons, ...ignored].join('; ') || 'The chosen secrets hold no registry keys.'}`,
      };
    }
    const first = hits[0];
    return {
      level: 'ok',
      text: `Secret ${first.origin} covers ${ref.name} with key "${first.key}"${first.fallback ? ' (Docker Hub fallback)' : ''}${hits.length > 1 ? `; ${hits.length - 1} more credential(s) are tried after it` : ''}.`,
    };
  }
  const covering = available.filter((s) => keyringOf([s]).lookup(ref.name).length > 0).map((s) => s.metadata.name);
  if (covering.length > 0) {
    return { level: 'warning', text: `Secret ${covering.join(', ')} in this namespace covers ${ref.domain}, but Secret Authentication is No: the pull will be anonymous.` };
  }
  return { level: 'none', text: '' };
}

// What the form says about the certificate of the image's registry, from a RegistryCheck status (or the error of
// creating it): {level: 'warning'|'ok'|'none', text, host, trust (a host to link to the trust flow, or null)}.
export function certificateCheck(registry, status, error) {
  if (error) {
    return { level: 'none', text: `The certificate of ${registry} could not be checked from a node: ${error.message}`, host: registry, trust: null };
  }
  const node = status.nodeName ? `node ${status.nodeName}` : 'the node';
  const host = status.host || registry;
  switch (status.result) {
    case 'UntrustedCertificate':
      return {
        level: 'warning',
        text: `${node} does not trust the certificate of ${host}, so pulls of this image will fail until it is trusted. ${status.message ?? ''}`.trim(),
        host,
        trust: ['unknown_authority', 'incomplete_chain', 'self_signed_leaf'].includes(status.reason) ? host : null,
      };
    case 'PlainHTTPOnly':
      return { level: 'warning', text: `${host} speaks plain http only, so ${node} cannot pull from it with credentials. ${status.message ?? ''}`.trim(), host, trust: null };
    case 'Unreachable':
      return { level: 'warning', text: `${node} cannot reach ${host}. ${status.message ?? ''}`.trim(), host, trust: null };
    case 'Accepted':
    case 'Rejected':
      return { level: 'ok', text: `The certificate of ${host} is trusted by ${node}.`, host, trust: null };
    default:
      return { level: 'none', text: '', host, trust: null };
  }
}

// Shell-like word splitting for "Command": spaces separate words; '...' and "..." group; \ escapes.
export function splitCommand(text) {
  const words = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word = word ?? '';
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) throw new Error(`Command: unterminated ${quote} quote`);
  if (word !== null) words.push(word);
  return words;
}

export function parseEnv(text) {
  const env = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq).trim() : '';
    if (!/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(name)) {
      throw new Error(`Environment variables line ${i + 1}: expected NAME=value with a name of letters, digits, "_", "-" or "." not starting with a digit`);
    }
    env.push({ name, value: line.slice(eq + 1) });
  }
  return env;
}

// The object the form creates.
export function buildWorkload(kind, f) {
  const labels = { app: f.name };
  const container = { name: f.name, image: f.image };
  if (f.pullPolicy) container.imagePullPolicy = f.pullPolicy;
  if (f.command.length) container.command = f.command;
  if (f.env.length) container.env = f.env;
  const podSpec = { containers: [container] };
  if (f.secretAuth && f.secrets.length) podSpec.imagePullSecrets = f.secrets.map((name) => ({ name }));
  const spec = { replicas: f.replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec } };
  if (kind === 'StatefulSet') spec.serviceName = f.name;
  return { apiVersion: 'apps/v1', kind, metadata: { name: f.name, namespace: f.namespace, labels }, spec };
}

function renderForm({ main, namespace, navigate }, kind) {
  const messages = messageArea();
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false' });
  const ns = h('input', { type: 'text', required: true, value: namespace, spellcheck: 'false' });
  const replicas = h('input', { type: 'number', min: '0', step: '1', value: '2', required: true });
  const image = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'registry.example.com:5000/team/app:1.0' });
  const policy = h('select', {},
    h('option', { value: '' }, 'Default'), h('option', { value: 'Always' }, 'Always'),
    h('option', { value: 'IfNotPresent' }, 'IfNotPresent'), h('option', { value: 'Never' }, 'Never'));
  const policyHint = h('p', { class: 'hint', id: 'workload-policy-effective', 'aria-live': 'polite' });
  const authYes = h('input', { type: 'radio', name: 'secret-auth', id: 'secret-auth-yes', value: 'yes' });
  const authNo = h('input', { type: 'radio', name: 'secret-auth', id: 'secret-auth-no', value: 'no', checked: true });
  const secretSelect = h('select', { multiple: true, size: '4' });
  const command = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '/bin/app --port 8080' });
  const env = h('textarea', { spellcheck: 'false', placeholder: 'LOG_LEVEL=info' });
  const warning = h('div', { id: 'pull-check', role: 'status', 'aria-live': 'polite' });
  const tlsWarning = h('div', { id: 'certificate-check', role: 'status', 'aria-live': 'polite' });
  const checks = new Map();
  const latest = latestOnly();
  let tlsTimer = null;
  const checkCertificate = () => {
    clearTimeout(tlsTimer);
    const registry = imageRegistry(image.value);
    if (!registry) {
      tlsWarning.replaceChildren();
      return;
    }
    tlsTimer = setTimeout(async () => {
      if (!checks.has(registry)) {
        checks.set(registry, runCheck({ server: registry }).then((status) => ({ status }), (error) => ({ error })));
      }
      const { current, value } = await latest(() => checks.get(registry));
      if (!current) return;
      const c = certificateCheck(registry, value.status ?? {}, value.error);
      if (c.level === 'none' && !c.text) {
        tlsWarning.replaceChildren();
      } else if (c.level === 'warning') {
        replace(tlsWarning, h('p', { class: 'warning' }, h('strong', {}, 'Warning: '), c.text,
          c.trust ? [' ', h('a', { href: `#/registries?host=${encodeURIComponent(c.trust)}` }, `Trust the certificate of ${c.trust}`)] : null));
      } else {
        replace(tlsWarning, h('p', { class: 'hint' }, c.text));
      }
    }, 400);
  };
  const preview = h('pre', { id: 'yaml-preview', tabindex: '0', 'aria-labelledby': 'yaml-preview-title' });
  let secrets = [];

  const secretField = field('workload-secret', 'Secret', secretSelect, 'Registry secrets (kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg) of the namespace; several allowed (Ctrl/Cmd-click).');
  const values = () => ({
    name: name.value.trim(),
    namespace: ns.value.trim(),
    replicas: Number(replicas.value),
    image: image.value.trim(),
    pullPolicy: policy.value,
    secretAuth: authYes.checked,
    secrets: [...secretSelect.selectedOptions].map((o) => o.value),
    command: splitCommand(command.value),
    env: parseEnv(env.value),
  });

  const update = () => {
    secretField.hidden = !authYes.checked;
    const chosen = secrets.filter((s) => [...secretSelect.selectedOptions].some((o) => o.value === s.metadata.name));
    const check = pullCheck(image.value, authYes.checked, chosen, secrets);
    if (check.level === 'none') warning.replaceChildren();
    else {
      const label = { error: 'Error: ', warning: 'Warning: ', ok: 'Credentials: ' }[check.level];
      replace(warning, h('p', { class: check.level === 'ok' ? 'ok' : check.level }, h('strong', {}, label), check.text));
    }
    try {
      const ref = parseNormalized(image.value.trim());
      policyHint.textContent = `Effective pull policy: ${effectivePullPolicy(ref, policy.value)} (image ${ref.name}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}).`;
    } catch {
      policyHint.textContent = 'Default is Always for :latest or no tag, else IfNotPresent.';
    }
    try {
      preview.textContent = toYaml(buildWorkload(kind, values()));
    } catch (e) {
      preview.textContent = `# ${e.message}`;
    }
  };

  const loadSecrets = async () => {
    const target = ns.value.trim();
    if (!target) return;
    try {
      const list = await get(collectionPath('', 'v1', 'secrets', target));
      secrets = (list.items ?? []).filter(isRegistrySecret);
      const selected = new Set([...secretSelect.selectedOptions].map((o) => o.value));
      replace(secretSelect, secrets.map((s) => h('option', { value: s.metadata.name, selected: selected.has(s.metadata.name) },
        `${s.metadata.name} (${secretRegistryKeys(s).keys.join(', ') || 'no registries'})`)));
      update();
    } catch (e) {
      messages.error(e.message);
    }
  };

  const preselect = () => {
    if (!authYes.checked || secretSelect.selectedOptions.length) return;
    try {
      const ref = parseNormalized(image.value.trim());
      for (const o of secretSelect.options) {
        const s = secrets.find((x) => x.metadata.name === o.value);
        const k = new Keyring();
        k.add(o.value, secretRegistryKeys(s).keys);
        if (k.lookup(ref.name).length) o.selected = true;
      }
    } catch {
      // no valid image yet: nothing to preselect
    }
  };

  for (const el of [name, replicas, image, policy, secretSelect, command, env]) el.addEventListener('input', update);
  image.addEventListener('input', checkCertificate);
  secretSelect.addEventListener('change', update);
  authYes.addEventListener('change', () => { preselect(); update(); });
  authNo.addEventListener('change', update);
  ns.addEventListener('change', loadSecrets);

  const form = h('form', {
    'aria-labelledby': 'create-workload-title',
    onsubmit: async (e) => {
      e.preventDefault();
      messages.clear();
      let f;
      try {
        f = values();
        if (!DNS_LABEL.test(f.name) || f.name.length > 63) {
          throw new Error(`Name: "${f.name}" is not valid: use 1-63 lowercase letters, digits and "-", starting with a letter and ending with a letter or digit`);
        }
        if (!Number.isInteger(f.replicas) || f.replicas < 0) throw new Error('Instances: a whole number, 0 or more');
        parseNormalized(f.image);
        if (f.secretAuth && f.secrets.length === 0) throw new Error('Secret: Secret Authentication is Yes, so choose at least one secret (or create one under Secrets)');
      } catch (err) {
        messages.error(err.message.startsWith('invalid') ? `Image address: ${err.message}` : err.message);
        return;
      }
      try {
        await create(collectionPath('apps', 'v1', KINDS[kind], f.namespace), buildWorkload(kind, f));
        sessionStorage.setItem('berth.flash', `${kind} ${f.namespace}/${f.name} created.`);
        navigate('#/workloads');
      } catch (err) {
        messages.error(err.message);
      }
    },
  },
  field('workload-name', 'Name', name),
  field('workload-namespace', 'Namespace', ns),
  field('workload-instances', 'Instances', replicas),
  field('workload-image', 'Image address', image, 'An image without a registry host (e.g. nginx:1.27) is pulled from docker.io.'),
  field('workload-policy', 'Image pull policy', policy),
  policyHint,
  h('fieldset', {}, h('legend', {}, 'Secret Authentication'),
    h('label', { for: 'secret-auth-yes' }, authYes, ' Yes'), h('label', { for: 'secret-auth-no' }, authNo, ' No')),
  secretField,
  field('workload-command', 'Command', command, 'Optional; replaces the image entrypoint. Words split like a shell: quote words that contain spaces.'),
  field('workload-env', 'Environment variables', env, 'Optional; one NAME=value per line.'),
  warning,
  tlsWarning,
  h('h2', { id: 'yaml-preview-title' }, 'YAML preview'),
  preview,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create'), h('a', { href: '#/workloads' }, 'Cancel')),
  messages.el);
  main.append(h('h1', { id: 'create-workload-title' }, `Create ${kind}`), form);
  update();
  loadSecrets();
  name.focus();
  return null;
}

// ---- lists ----

function restartedAtPatch() {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': now } } } } };
}

function renderLists({ main, namespace }) {
  const messages = messageArea();
  const scaleArea = h('div', {});
  const deployEl = h('div', {});
  const stsEl = h('div', {});
  const podEl = h('div', {});
  const data = { deployments: [], statefulsets: [], pods: [] };
  const act = async (what, fn) => {
    try {
      await fn();
      messages.ok(what);
    } catch (e) {
      messages.error(e.message);
    }
  };

  const openScale = (kind, obj) => {
    const input = h('input', { type: 'number', min: '0', step: '1', value: String(obj.spec?.replicas ?? 1) });
    const path = objectPath('apps', 'v1', KINDS[kind], namespace, obj.metadata.name);
    replace(scaleArea, h('form', {
      'aria-label': `Scale ${kind} ${obj.metadata.name}`,
      onsubmit: (e) => {
        e.preventDefault();
        const n = Number(input.value);
        if (!Number.isInteger(n) || n < 0) {
          messages.error('Instances: a whole number, 0 or more');
          return;
        }
        act(`${kind} ${obj.metadata.name} scaled to ${n}.`, () => mergePatch(path, { spec: { replicas: n } }));
        scaleArea.replaceChildren();
      },
    }, field('scale-instances', `Instances for ${obj.metadata.name}`, input),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', onclick: () => scaleArea.replaceChildren() }, 'Cancel'))));
    input.focus();
  };

  const actions = (kind, obj) => {
    const n = obj.metadata.name;
    const path = objectPath('apps', 'v1', KINDS[kind], namespace, n);
    return h('div', { class: 'actions' },
      h('button', { type: 'button', 'aria-label': `Scale ${n}`, onclick: () => openScale(kind, obj) }, 'Scale'),
      h('button', { type: 'button', 'aria-label': `Restart ${n}`, onclick: () => act(`${kind} ${n} restarted.`, () => mergePatch(path, restartedAtPatch())) }, 'Restart'),
      h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete ${n}`,
        onclick: () => confirm(`Delete ${kind} ${namespace}/${n}?`) && act(`${kind} ${n} deleted.`, () => remove(path)),
      }, 'Delete'));
  };

  const byName = (a, b) => a.metadata.name.localeCompare(b.metadata.name);
  const drawDeployments = () => replace(deployEl, table(`Deployments in ${namespace}`, ['Name', 'Ready', 'Up-to-date', 'Available', 'Image', 'Age', 'Actions'],
    data.deployments.sort(byName).map((d) => {
      const r = workloadReady(d);
      return [d.metadata.name, badge(r.text, r.complete ? 'ok' : 'wait'), String(d.status?.updatedReplicas ?? 0), String(d.status?.availableReplicas ?? 0),
        (d.spec?.template?.spec?.containers ?? []).map((c) => c.image).join(', '), age(d.metadata.creationTimestamp), actions('Deployment', d)];
    }), 'No Deployments in this namespace.'));
  const drawStatefulSets = () => replace(stsEl, table(`StatefulSets in ${namespace}`, ['Name', 'Ready', 'Image', 'Age', 'Actions'],
    data.statefulsets.sort(byName).map((s) => {
      const r = workloadReady(s);
      return [s.metadata.name, badge(r.text, r.complete ? 'ok' : 'wait'), (s.spec?.template?.spec?.containers ?? []).map((c) => c.image).join(', '),
        age(s.metadata.creationTimestamp), actions('StatefulSet', s)];
    }), 'No StatefulSets in this namespace.'));
  const drawPods = () => replace(podEl, table(`Pods in ${namespace}`, ['Name', 'Ready', 'Status', 'Restarts', 'Age', 'Node'],
    data.pods.sort(byName).map((p) => {
      const s = podSummary(p);
      return [h('a', { href: `#/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(p.metadata.name)}` }, p.metadata.name),
        s.ready, badge(s.status, tone(s.status)), s.restarts, age(p.metadata.creationTimestamp), p.spec?.nodeName || '<none>'];
    }), 'No Pods in this namespace.'));

  const onError = (e) => (e ? messages.error(e.message) : null);
  const watches = [
    liveList(collectionPath('apps', 'v1', 'deployments', namespace), { onChange: (i) => { data.deployments = i; drawDeployments(); }, onError }),
    liveList(collectionPath('apps', 'v1', 'statefulsets', namespace), { onChange: (i) => { data.statefulsets = i; drawStatefulSets(); }, onError }),
    liveList(collectionPath('', 'v1', 'pods', namespace), { onChange: (i) => { data.pods = i; drawPods(); }, onError }),
  ];
  const flash = sessionStorage.getItem('berth.flash');
  sessionStorage.removeItem('berth.flash');
  if (flash) messages.ok(flash);
  main.append(
    h('h1', {}, 'Workloads'),
    h('div', { class: 'actions' }, h('a', { href: '#/workloads/new/Deployment' }, 'Create Deployment'), h('a', { href: '#/workloads/new/StatefulSet' }, 'Create StatefulSet')),
    messages.el, scaleArea,
    h('h2', {}, 'Deployments'), deployEl,
    h('h2', {}, 'StatefulSets'), stsEl,
    h('h2', {}, 'Pods'), h('p', { class: 'live' }, 'Updates live.'), podEl,
  );
  drawDeployments();
  drawStatefulSets();
  drawPods();
  return () => watches.forEach((w) => w.stop());
}
