// Registry checks from a node: creates a berth.dev/v1 RegistryCheck (create-only, never stored; the API server
// forwards it to a Ready node's agent) and turns its status into what the pages show: the result in words, the
// host:port it is about, whether trusting a certificate can fix it, and which presented certificate to propose
// as the anchor. The console never decides a result itself: every answer comes from the agent, and the password
// is only ever sent in the request body of the check.

import { create } from './api.js';
import { parseNormalized } from './reference.js';

export const CHECK_PATH = '/apis/berth.dev/v1/registrychecks';

// Runs a check and returns its status ({result, reason, host, message, nodeName, chain, chainHost, verdict}).
export async function runCheck(spec) {
  const answer = await create(CHECK_PATH, { apiVersion: 'berth.dev/v1', kind: 'RegistryCheck', metadata: {}, spec });
  return answer?.status ?? {};
}

const TITLES = {
  Accepted: 'Accepted',
  Rejected: 'Rejected',
  Unreachable: 'Unreachable',
  UntrustedCertificate: 'Untrusted certificate',
  PlainHTTPOnly: 'Plain HTTP only',
};

// TLS failure classes a trusted anchor for that host:port fixes (the rest need the registry's operator).
const TRUST_FIXES = new Set(['unknown_authority', 'incomplete_chain', 'self_signed_leaf']);

// What a page shows for a status: {title, tone ('ok'|'bad'), headline, message, text, host, trustable}.
export function describeCheck(status) {
  const result = status?.result ?? '';
  const title = TITLES[result] ?? (result || 'No answer');
  const host = status?.host ?? '';
  const node = status?.nodeName ? ` (checked from node ${status.nodeName})` : '';
  const headline = result === 'UntrustedCertificate' || result === 'Unreachable' || result === 'PlainHTTPOnly'
    ? `${title}: ${host}${node}`
    : `${title}${node}`;
  const message = status?.message ?? '';
  return {
    title,
    tone: result === 'Accepted' ? 'ok' : 'bad',
    headline,
    message,
    text: `${headline}. ${message}`.trim(),
    host,
    trustable: result === 'UntrustedCertificate' && TRUST_FIXES.has(status?.reason ?? ''),
  };
}

// The registry an image is pulled from, as a check's `server` (`docker.io` for Docker Hub), or null.
export function imageRegistry(image) {
  try {
    return parseNormalized(image.trim()).domain;
  } catch {
    return null;
  }
}

// The presented certificate to propose as the trust anchor: the last CA certificate the host sent (the top of
// what it presents), else a self-signed leaf (pinned as is), else null (the CA must come from the operator).
export function proposedAnchor(chain) {
  const list = chain ?? [];
  for (let i = list.length - 1; i >= 0; i--) if (list[i].isCA) return list[i];
  if (list.length && list[0].selfSigned) return list[0];
  return null;
}

// The verdict of a fetched chain in words.
export function verdictText(verdict) {
  const words = {
    ok: 'ok: the chain is trusted for this host',
    unknown_authority: 'not trusted: issued by a CA this node does not trust for this host',
    incomplete_chain: 'not trusted: an intermediate certificate seems to be missing',
    self_signed_leaf: 'not trusted: the host presents a self-signed certificate',
    expired: 'expired: trusting it does not help; the certificate must be renewed',
    not_yet_valid: 'not yet valid: check the clocks, or wait',
    name_mismatch: 'wrong name: the certificate is not valid for this host; trusting it does not help',
    ca_used_as_leaf: 'misconfigured: the host serves a CA certificate as its own; trusting it does not help',
  };
  return words[verdict] ?? (verdict ? `failed: ${verdict}` : 'not fetched');
}

// Marks which of several overlapping calls is the newest: each call resolves to {current, value}, and only the
// last one started is current, so a form that checks as the person types never shows a stale answer.
export function latestOnly() {
  let seq = 0;
  return async (fn) => {
    const mine = ++seq;
    const value = await fn();
    return mine === seq ? { current: true, value } : { current: false, value };
  };
}
