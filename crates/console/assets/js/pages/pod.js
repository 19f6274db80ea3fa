// Pod detail: containers with state and reasons, the "Image pull" panel (image, normalised reference, effective
// policy, the pod's pull secrets and the `auths` key kubelet's rules pick, live per-layer progress from the
// `berth.dev/pull-progress` annotation, the last pull error in full from the Events), the Events table in
// `kubectl describe` order, and the container log (follow). Everything is read through the API with the token.

import { ApiError, collectionPath, get, getToken, liveList, objectPath } from '../api.js';
import { badge, h, messageArea, replace, table } from '../dom.js';
import { secretRegistryKeys } from '../dockerconfig.js';
import { age, bytes, humanDuration } from '../format.js';
import { Keyring } from '../keyring.js';
import { podSummary, tone } from '../podstatus.js';
import { effectivePullPolicy, parseNormalized, withDefaultTag } from '../reference.js';

export const PULL_PROGRESS_ANNOTATION = 'berth.dev/pull-progress';
const PULL_REASONS = new Set(['Pulling', 'Pulled', 'Failed', 'BackOff', 'ErrImageNeverPull', 'InspectFailed', 'FailedToRetrieveImagePullSecret']);

// Reads the pull-progress annotation: JSON, either one progress object or a map by container name; a progress
// object has `image` and `layers` [{digest, size|total, done|offset}] and may have `updatedAt` and `bytesPerSecond`.
export function readPullProgress(pod) {
  const raw = pod.metadata?.annotations?.[PULL_PROGRESS_ANNOTATION];
  if (!raw) return {};
  let doc;
  try {
    doc = JSON.parse(raw);
  } catch {
    return { '': { error: `annotation ${PULL_PROGRESS_ANNOTATION} is not JSON` } };
  }
  if (doc && Array.isArray(doc.layers)) return { [doc.container ?? '']: doc };
  return doc && typeof doc === 'object' ? doc : {};
}

const CLASSES = [
  ['untrusted certificate', /x509|certificate signed by unknown authority|unknown authority|certificate verify failed|untrusted certificate|tls: /i,
    (host) => `The registry's certificate is not trusted${host ? ` for ${host}` : ''}. Check its fingerprint with the registry owner, then trust the CA for that host:port only (Registries, Trust registry; or berth trust add --cluster). Nodes apply it to the next pull, no restart.`],
  ['secret missing', /FailedToRetrieveImagePullSecret|secret .* not found|unable to retrieve some image pull secrets/i,
    () => 'A Secret named in imagePullSecrets does not exist in this namespace: create it under Secrets (same name) or fix the name in the workload.'],
  ['credentials rejected', /unauthorized|authentication required|401|403|denied|forbidden|incorrect username or password/i,
    (host) => `The registry${host ? ` ${host}` : ''} rejected the credentials (or none matched, so the pull was anonymous): check the secret's user name and password and that its registry address covers the image (see the matching key above).`],
  ['rate limited', /toomanyrequests|too many requests|429|rate limit/i,
    () => 'The registry is rate limiting this node: add credentials (authenticated pulls get higher limits) or use a mirror.'],
  ['not found', /manifest unknown|name unknown|not found|404/i,
    () => 'The registry does not have this repository or tag (or the account cannot see it): check the Image address.'],
  ['unreachable', /no such host|connection refused|i\/o timeout|network is unreachable|timed out|dial tcp|unreachable|connection reset/i,
    (host) => `The node cannot reach the registry${host ? ` ${host}` : ''}: check DNS, firewall and proxy settings from the node.`],
  ['disk full', /no space left on device/i, () => 'The node is out of disk space: free space in the agent root or grow the volume.'],
  ['never pull', /ErrImageNeverPull|imagePullPolicy is "?Never/i, () => 'The pull policy is Never and the image is not on the node: pre-load it or change the Image pull policy.'],
];

// The first host:port (or https URL host) a message names outside quoted text (kubelet quotes the image
// reference, whose registry need not be the host that failed, e.g. a blob CDN).
export function hostInMessage(text) {
  const message = text.replace(/"[^"]*"/g, '""');
  const m = /https?:\/\/([^/\s"']+)/.exec(message) ?? /\b((?:[a-z0-9-]+\.)*[a-z0-9-]+:\d{1,5}|\[[0-9a-f:]+\]:\d{1,5})\b/i.exec(message);
  return m ? m[1] : null;
}

// Root-cause class and remediation for a pull error: {kind, host, remedy} or null when unrecognised.
export function classifyPullError(reason, message) {
  const text = `${reason ?? ''} ${message ?? ''}`;
  for (const [kind, re, remedy] of CLASSES) {
    if (re.test(text)) {
      const host = hostInMessage(message ?? '');
      return { kind, host, remedy: remedy(host) };
    }
  }
  return null;
}

function containerState(status) {
  const s = status?.state ?? {};
  if (s.running) return { text: 'Running', detail: `since ${s.running.startedAt ?? '?'}`, tone: 'ok' };
  if (s.waiting) return { text: `Waiting: ${s.waiting.reason ?? ''}`, detail: s.waiting.message ?? '', tone: tone(s.waiting.reason ?? 'Pending') };
  if (s.terminated) {
    const t = s.terminated;
    return { text: `Terminated: ${t.reason ?? ''} (exit code ${t.exitCode})`, detail: t.message ?? '', tone: t.exitCode === 0 ? 'ok' : 'bad' };
  }
  return { text: 'Unknown', detail: 'no status reported yet', tone: 'wait' };
}

// Events in `kubectl describe` order: oldest first by the time of the first occurrence.
export function describeOrder(events) {
  const t = (e) => Date.parse(e.firstTimestamp || e.eventTime || e.lastTimestamp || e.metadata?.creationTimestamp || '') || 0;
  return [...events].sort((a, b) => t(a) - t(b));
}

function lastSeen(e) {
  return e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata?.creationTimestamp;
}

function progressPanel(progress) {
  if (!progress) return h('p', { class: 'hint' }, 'No pull in progress reported by the node.');
  if (progress.error) return h('p', { class: 'warning' }, progress.error);
  const layers = progress.layers ?? [];
  const done = layers.reduce((a, l) => a + (l.done ?? l.offset ?? 0), 0);
  const total = layers.reduce((a, l) => a + (l.size ?? l.total ?? 0), 0);
  const rate = progress.bytesPerSecond;
  const eta = rate > 0 ? humanDuration(((total - done) / rate) * 1000) : 'unknown';
  return h('div', {},
    h('p', {}, `${bytes(done)} of ${bytes(total)}${rate ? `, ${bytes(rate)}/s, ETA ${eta}` : ''}${progress.updatedAt ? ` (reported ${age(progress.updatedAt)} ago)` : ''}`),
    table('Layers', ['Layer', 'Progress', 'Bytes', 'Source'], layers.map((l) => {
      const size = l.size ?? l.total ?? 0;
      const got = l.done ?? l.offset ?? 0;
      const label = `Layer ${String(l.digest ?? '').slice(0, 19)}`;
      return [h('code', {}, String(l.digest ?? '').slice(0, 19)),
        h('progress', { max: String(size || 1), value: String(got), 'aria-label': label }),
        `${bytes(got)} / ${bytes(size)}${size && got >= size ? ' (done)' : ''}`,
        layerSource(l.source, size && got >= size)];
    })));
}

/** Where a layer's bytes come from: the agent reports `registry` or `peer:<node>`; none once it was already on the node. */
export function layerSource(source, done) {
  if (typeof source === 'string' && source.startsWith('peer:')) return `from node ${source.slice(5)}`;
  if (source === 'registry') return 'registry';
  return done ? 'already on the node' : '';
}

export function render({ main, parts }) {
  const [, ns, name] = parts;
  const messages = messageArea();
  const summaryEl = h('div', {});
  const containersEl = h('div', {});
  const pullEl = h('div', {});
  const eventsEl = h('div', {});
  const logEl = h('pre', { 'aria-label': 'Container log', tabindex: '0' });
  const logControls = h('div', { class: 'actions' });
  const state = { pod: null, events: [], secrets: new Map(), missingSecrets: new Set() };
  let logAbort = null;

  const loadSecrets = async (pod) => {
    for (const ref of pod.spec?.imagePullSecrets ?? []) {
      if (state.secrets.has(ref.name) || state.missingSecrets.has(ref.name)) continue;
      try {
        state.secrets.set(ref.name, await get(objectPath('', 'v1', 'secrets', ns, ref.name)));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) state.missingSecrets.add(ref.name);
        else messages.error(e.message);
      }
    }
  };

  const drawPull = () => {
    const pod = state.pod;
    if (!pod) return;
    const progress = readPullProgress(pod);
    const statuses = new Map((pod.status?.containerStatuses ?? []).map((c) => [c.name, c]));
    const pullEvents = describeOrder(state.events.filter((e) => PULL_REASONS.has(e.reason)));
    // kubelet follows the detailed Failed event with a bare "Error: ErrImagePull"; keep the detailed one.
    const warnings = [...pullEvents].reverse().filter((e) => e.type === 'Warning');
    const lastError = warnings.find((e) => !/^Error: \w+$/.test(e.message ?? '')) ?? warnings[0];
    const panels = (pod.spec?.containers ?? []).map((c) => {
      let ref = null;
      let refError = null;
      try {
        ref = parseNormalized(c.image);
      } catch (e) {
        refError = e.message;
      }
      const keyring = new Keyring();
      for (const s of pod.spec?.imagePullSecrets ?? []) {
        const secret = state.secrets.get(s.name);
        if (secret) keyring.add(s.name, secretRegistryKeys(secret).keys);
      }
      const hits = ref ? keyring.lookup(ref.name) : [];
      const status = statuses.get(c.name);
      const secretNames = (pod.spec?.imagePullSecrets ?? []).map((s) => s.name + (state.missingSecrets.has(s.name) ? ' (not found)' : ''));
      const rows = [
        ['Image', c.image],
        ['Normalised reference', ref ? withDefaultTag(ref) : `invalid: ${refError}`],
        ['Pull policy', ref ? effectivePullPolicy(ref, c.imagePullPolicy) + (c.imagePullPolicy ? '' : ' (default)') : c.imagePullPolicy ?? ''],
        ['Pull secrets', secretNames.join(', ') || '(none: anonymous pull)'],
        ['Matching secret and auths key', hits.length ? hits.map((x) => `${x.origin}: "${x.key}"${x.fallback ? ' (Docker Hub fallback)' : ''}`).join('; ') : '(none matches this registry)'],
        ['Image ID', status?.imageID || '(not pulled yet)'],
      ];
      return h('section', { class: 'panel', 'aria-label': `Image pull for container ${c.name}` },
        h('h3', {}, `Container ${c.name}`),
        h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        h('h4', {}, 'Progress'), progressPanel(progress[c.name] ?? progress['']));
    });
    let errorEl = null;
    if (lastError) {
      const cls = classifyPullError(lastError.reason, lastError.message);
      const action = cls?.kind === 'untrusted certificate' && cls.host
        ? h('a', { href: `#/registries?host=${encodeURIComponent(cls.host)}` }, 'Trust this certificate')
        : cls && ['credentials rejected', 'secret missing'].includes(cls.kind) ? h('a', { href: '#/secrets' }, 'Open Secrets') : null;
      errorEl = h('div', { class: 'error', role: 'note' },
        h('p', {}, h('strong', {}, `Last pull error (${lastError.reason}, ${age(lastSeen(lastError))} ago): `), lastError.message ?? ''),
        cls ? h('p', {}, h('strong', {}, `Cause: ${cls.kind}. `), cls.remedy) : null,
        action ? h('p', {}, action) : null);
    }
    replace(pullEl, panels, errorEl);
  };

  const draw = () => {
    const pod = state.pod;
    if (!pod) {
      replace(summaryEl, h('p', {}, `Pod ${ns}/${name} not found (yet).`));
      return;
    }
    const s = podSummary(pod);
    replace(summaryEl, h('dl', {},
      h('dt', {}, 'Status'), h('dd', {}, badge(s.status, tone(s.status))),
      h('dt', {}, 'Ready'), h('dd', {}, s.ready),
      h('dt', {}, 'Restarts'), h('dd', {}, s.restarts),
      h('dt', {}, 'Node'), h('dd', {}, pod.spec?.nodeName || '<none>'),
      h('dt', {}, 'Age'), h('dd', {}, age(pod.metadata.creationTimestamp))));
    const statuses = new Map((pod.status?.containerStatuses ?? []).map((c) => [c.name, c]));
    replace(containersEl, table('Containers', ['Name', 'Image', 'State', 'Message', 'Ready', 'Restarts'],
      (pod.spec?.containers ?? []).map((c) => {
        const st = statuses.get(c.name);
        const cs = containerState(st);
        return [c.name, c.image, badge(cs.text, cs.tone), cs.detail, st?.ready ? 'True' : 'False', String(st?.restartCount ?? 0)];
      })));
    if (!logControls.childElementCount) {
      replace(logControls, (pod.spec?.containers ?? []).map((c) => h('button', { type: 'button', onclick: () => followLog(c.name) }, `Follow log of ${c.name}`)));
    }
    drawPull();
  };

  const drawEvents = () => {
    replace(eventsEl, table('Events', ['Type', 'Reason', 'Age', 'From', 'Message'],
      describeOrder(state.events).map((e) => [
        badge(e.type ?? 'Normal', e.type === 'Warning' ? 'bad' : 'ok'), e.reason ?? '',
        `${age(lastSeen(e))}${(e.count ?? 1) > 1 ? ` (x${e.count} over ${age(e.firstTimestamp)})` : ''}`,
        e.source?.component ?? e.reportingComponent ?? '', e.message ?? '']), 'No events.'));
    drawPull();
  };

  async function followLog(container) {
    logAbort?.abort();
    logAbort = new AbortController();
    logEl.textContent = '';
    const path = `${objectPath('', 'v1', 'pods', ns, name)}/log?container=${encodeURIComponent(container)}&follow=true&tailLines=500`;
    try {
      const response = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` }, signal: logAbort.signal, credentials: 'omit', cache: 'no-store' });
      if (!response.ok) {
        const text = await response.text();
        let message = text;
        try { message = JSON.parse(text).message ?? text; } catch { /* plain text */ }
        logEl.textContent = `${response.status}: ${message}`;
        return;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        logEl.textContent += value;
        if (logEl.textContent.length > 1_000_000) logEl.textContent = logEl.textContent.slice(-500_000);
      }
    } catch (e) {
      if (e.name !== 'AbortError') logEl.textContent += `\n[log stream ended: ${e.message}]`;
    }
  }

  const onError = (e) => (e ? messages.error(e.message) : messages.clear());
  const watches = [
    liveList(collectionPath('', 'v1', 'pods', ns), {
      query: { fieldSelector: `metadata.name=${name}` },
      onChange: async (items) => {
        state.pod = items[0] ?? null;
        if (state.pod) await loadSecrets(state.pod);
        draw();
      },
      onError,
    }),
    liveList(collectionPath('', 'v1', 'events', ns), {
      query: { fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${name}` },
      onChange: (items) => { state.events = items; drawEvents(); },
      onError,
    }),
  ];
  main.append(
    h('h1', {}, `Pod ${name}`),
    h('p', {}, h('a', { href: '#/workloads' }, 'Back to Workloads'), ` · namespace ${ns}`),
    messages.el, summaryEl,
    h('h2', {}, 'Containers'), containersEl,
    h('h2', {}, 'Image pull'), pullEl,
    h('h2', {}, 'Events'), eventsEl,
    h('h2', {}, 'Logs'), logControls, logEl,
  );
  draw();
  drawEvents();
  return () => {
    logAbort?.abort();
    watches.forEach((w) => w.stop());
  };
}
