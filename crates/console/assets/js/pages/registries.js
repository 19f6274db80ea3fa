// Registries: the cluster-wide berth.dev/v1 RegistryHost objects (per-host CA trust, pins, mirrors) with remove,
// and a "Trust registry" form that creates one from a PEM once the person confirms its SHA-256 fingerprint
// (computed here from the certificate's DER with WebCrypto). "Fetch certificate" asks a node for the chain the
// host presents (a RegistryCheck with fetchCertificate, answered by the node's agent with its own trust): the
// chain is shown with every fingerprint and the verdict, and the proposed anchor (the top CA the host sends, or
// its self-signed certificate) is put in the PEM field; nothing is trusted until the person types the
// fingerprint they confirmed out of band and presses "Trust". Opened as `#/registries?host=H` (from a failed
// pull or a failed test) it fetches the chain of H at once.

import { collectionPath, create, liveList, objectPath, remove } from '../api.js';
import { badge, field, h, messageArea, replace, table } from '../dom.js';
import { age } from '../format.js';
import { describeCheck, proposedAnchor, runCheck, verdictText } from '../registrycheck.js';

const GROUP = 'berth.dev';
const VERSION = 'v1';
const RESOURCE = 'registryhosts';

// The DER bytes of every CERTIFICATE block of a PEM text.
export function pemCertificates(pem) {
  const blocks = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  let m;
  while ((m = re.exec(pem)) !== null) {
    const b64 = m[1].replace(/\s+/g, '');
    let binary;
    try {
      binary = atob(b64);
    } catch {
      throw new Error(`CA certificate (PEM): certificate ${blocks.length + 1} is not valid base64`);
    }
    blocks.push(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  }
  return blocks;
}

export async function sha256Fingerprint(der) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', der));
  return `sha256:${[...digest].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

// Accepts `sha256:<hex>`, bare hex, or openssl's `AB:CD:...` form.
export function normalizeFingerprint(text) {
  const hex = text.trim().toLowerCase().replace(/^sha256:/, '').replace(/[:\s]/g, '');
  return /^[0-9a-f]{64}$/.test(hex) ? `sha256:${hex}` : null;
}

// host[:port] as images name a registry (IPv6 in brackets).
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/;

// A RegistryHost name for host[:port]: a DNS subdomain (`registry.example.com-5000`).
export function objectName(host) {
  return host.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '').slice(0, 253);
}

export function render({ main, params }) {
  const messages = messageArea();
  const listEl = h('div', {});
  const host = h('input', { type: 'text', required: true, spellcheck: 'false', placeholder: 'registry.example.com:5000', value: params.get('host') ?? '' });
  const pem = h('textarea', { required: true, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' });
  const fingerprint = h('input', { type: 'text', required: true, spellcheck: 'false', autocomplete: 'off', placeholder: 'sha256:…' });
  const computed = h('div', { 'aria-live': 'polite' });
  let fingerprints = [];

  const showFingerprints = async () => {
    fingerprints = [];
    try {
      const ders = pemCertificates(pem.value);
      fingerprints = await Promise.all(ders.map(sha256Fingerprint));
      replace(computed, fingerprints.length
        ? table('Certificates in the PEM (compare a fingerprint with one you got out of band)', ['#', 'SHA-256 fingerprint'], fingerprints.map((f, i) => [String(i + 1), h('code', {}, f)]))
        : h('p', { class: 'hint' }, 'No CERTIFICATE block found yet.'));
    } catch (e) {
      replace(computed, h('p', { class: 'error', role: 'alert' }, e.message));
    }
  };
  pem.addEventListener('input', showFingerprints);

  const fetched = h('div', { id: 'fetched-chain', 'aria-live': 'polite' });
  const fetchButton = h('button', {
    type: 'button',
    onclick: async () => {
      const hostValue = host.value.trim();
      if (!HOST_PORT.test(hostValue)) {
        replace(fetched, h('p', { class: 'error', role: 'alert' }, `Host: "${hostValue}" is not host[:port] (e.g. registry.example.com:5000)`));
        return;
      }
      fetchButton.disabled = true;
      replace(fetched, h('p', { class: 'hint', role: 'status' }, `Fetching the certificate chain of ${hostValue} from a node…`));
      try {
        const status = await runCheck({ server: hostValue, fetchCertificate: true });
        const d = describeCheck(status);
        const chain = status.chain ?? [];
        const anchor = proposedAnchor(chain);
        const chainHost = status.chainHost ?? hostValue;
        replace(fetched,
          h('p', {}, h('strong', {}, 'Verdict: '), badge(status.verdict === 'ok' ? 'trusted' : (status.verdict ? 'not trusted' : 'no chain'), status.verdict === 'ok' ? 'ok' : 'bad'),
            ` ${verdictText(status.verdict)} (${chainHost}).`),
          h('p', { class: d.tone === 'ok' ? 'ok' : 'warning' }, h('strong', {}, `Connection: ${d.headline}. `), d.message),
          chain.length
            ? table(`Certificates presented by ${chainHost} (leaf first)`, ['#', 'Subject', 'Issuer', 'SHA-256 fingerprint', 'Valid until', 'CA'],
              chain.map((c, i) => [String(i + 1), c.subject, c.issuer, h('code', {}, c.sha256), c.notAfter, c.isCA ? 'Yes' : (c.selfSigned ? 'Self-signed' : 'No')]))
            : null,
          anchor
            ? h('p', {}, `Proposed anchor: ${anchor.subject} (`, h('code', {}, anchor.sha256),
              '). It is in the PEM field below; compare its fingerprint with the one the registry\'s administrator gives you, type it under "SHA-256 fingerprint", then press Trust.')
            : chain.length ? h('p', { class: 'warning' }, `${chainHost} sends no CA certificate: get the CA from the registry's administrator and paste it below.`) : null);
        if (anchor && status.verdict !== 'ok') {
          if (chainHost !== hostValue) host.value = chainHost;
          pem.value = anchor.pem;
          await showFingerprints();
        }
      } catch (e) {
        replace(fetched, h('p', { class: 'error', role: 'alert' }, h('strong', {}, 'Fetch certificate failed: '), e.message));
      } finally {
        fetchButton.disabled = false;
      }
    },
  }, 'Fetch certificate');

  const draw = (items) => {
    replace(listEl, table('Trusted registry hosts (cluster-wide)', ['Name', 'Host', 'CA certificates', 'Pinned fingerprints', 'Mirrors', 'Plain HTTP', 'Age', 'Actions'],
      items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((r) => {
        const spec = r.spec ?? {};
        return [r.metadata.name, spec.host ?? '', String((spec.caBundle ?? '').split('-----BEGIN CERTIFICATE-----').length - 1),
          (spec.pinnedFingerprints ?? []).map((f) => h('div', {}, h('code', {}, f))), (spec.mirrors ?? []).map((m) => m.endpoint).join(', '),
          spec.insecure ? 'Yes (explicitly allowed)' : 'No', age(r.metadata.creationTimestamp),
          h('button', {
            type: 'button', class: 'danger', 'aria-label': `Remove ${r.metadata.name}`,
            onclick: async () => {
              if (!confirm(`Stop trusting ${spec.host}? Pulls from it will use the system roots only.`)) return;
              try {
                await remove(objectPath(GROUP, VERSION, RESOURCE, null, r.metadata.name));
                messages.ok(`RegistryHost ${r.metadata.name} removed.`);
              } catch (e) {
                messages.error(e.message);
              }
            },
          }, 'Remove')];
      }), 'No registry hosts configured: every registry is checked against the system roots only.'));
  };

  const form = h('form', {
    'aria-labelledby': 'trust-title',
    onsubmit: async (e) => {
      e.preventDefault();
      messages.clear();
      await showFingerprints();
      const hostValue = host.value.trim();
      if (!HOST_PORT.test(hostValue)) {
        messages.error(`Host: "${hostValue}" is not host[:port] (e.g. registry.example.com:5000)`);
        return;
      }
      if (fingerprints.length === 0) {
        messages.error('CA certificate (PEM): paste at least one -----BEGIN CERTIFICATE----- block');
        return;
      }
      const typed = normalizeFingerprint(fingerprint.value);
      if (!typed) {
        messages.error('SHA-256 fingerprint: type the fingerprint you confirmed out of band (sha256:<64 hex>, or AB:CD:... as openssl prints it)');
        return;
      }
      if (!fingerprints.includes(typed)) {
        messages.error(`SHA-256 fingerprint: ${typed} is not the fingerprint of any certificate in the PEM; do not trust it until the fingerprints agree`);
        return;
      }
      const obj = {
        apiVersion: `${GROUP}/${VERSION}`, kind: 'RegistryHost', metadata: { name: objectName(hostValue) },
        spec: { host: hostValue, caBundle: pem.value.trim() + '\n', pinnedFingerprints: fingerprints },
      };
      try {
        await create(collectionPath(GROUP, VERSION, RESOURCE, null), obj);
        messages.ok(`${hostValue} is now trusted with ${fingerprints.length} CA certificate(s); nodes apply it to the next pull.`);
        host.value = '';
        pem.value = '';
        fingerprint.value = '';
        computed.replaceChildren();
      } catch (err) {
        messages.error(err.message);
      }
    },
  },
  field('trust-host', 'Host', host, 'host[:port] exactly as images name the registry; port 443 when absent. The CA applies to this host:port only.'),
  h('div', { class: 'actions' }, fetchButton),
  fetched,
  field('trust-pem', 'CA certificate (PEM)', pem, 'The CA (or self-signed certificate) that signs the registry certificate.'),
  computed,
  field('trust-fingerprint', 'SHA-256 fingerprint', fingerprint, 'Type or paste the fingerprint you verified with the registry owner; it must match a certificate above.'),
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Trust')),
  messages.el);

  const watch = liveList(collectionPath(GROUP, VERSION, RESOURCE, null), {
    onChange: draw,
    onError: (e) => (e ? messages.error(e.message) : messages.clear()),
  });
  main.append(h('h1', {}, 'Registries'), listEl, h('h2', { id: 'trust-title' }, 'Trust registry'), form);
  draw([]);
  if (params.get('host')) fetchButton.click();
  return () => watch.stop();
}
