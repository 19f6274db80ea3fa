// Image references: a port of distribution/reference's grammar and ParseNormalizedNamed, reduced to what the
// console needs (the normalised repository name kubelet's keyring looks up, the registry host, tag and digest).
// It never fetches anything; the same table (testdata/keyring-cases.json) checks it against the Rust `oci` crate.

const alnum = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainAndPort = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?`;
const namePattern = `(?:${domainAndPort}/)?${pathComponent}(?:/${pathComponent})*`;
const tagPattern = '[\\w][\\w.-]{0,127}';
const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const referenceRe = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const identifierRe = /^[a-f0-9]{64}$/;

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

export class InvalidReference extends Error {}

function splitDockerDomain(name) {
  const slash = name.indexOf('/');
  if (slash < 0) return [DEFAULT_DOMAIN, OFFICIAL_PREFIX + name];
  const maybeDomain = name.slice(0, slash);
  const maybeRemote = name.slice(slash + 1);
  let domain;
  let remote;
  if (maybeDomain === 'localhost') {
    [domain, remote] = [maybeDomain, maybeRemote];
  } else if (maybeDomain === LEGACY_DEFAULT_DOMAIN) {
    [domain, remote] = [DEFAULT_DOMAIN, maybeRemote];
  } else if (/[.:]/.test(maybeDomain)) {
    [domain, remote] = [maybeDomain, maybeRemote];
  } else if (maybeDomain.toLowerCase() !== maybeDomain) {
    [domain, remote] = [maybeDomain, maybeRemote];
  } else {
    return [DEFAULT_DOMAIN, name];
  }
  if (domain === DEFAULT_DOMAIN && !remote.includes('/')) remote = OFFICIAL_PREFIX + remote;
  return [domain, remote];
}

function parse(s) {
  const m = referenceRe.exec(s);
  if (!m) {
    if (s === '') throw new InvalidReference('invalid reference format: repository name must have at least one component');
    if (referenceRe.test(s.toLowerCase())) {
      throw new InvalidReference('invalid reference format: repository name must be lowercase');
    }
    throw new InvalidReference('invalid reference format');
  }
  if (m[1].length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidReference(`invalid reference format: repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  return { name: m[1], tag: m[2] || '', digest: m[3] || '' };
}

// ParseNormalizedNamed: `nginx` -> {name: 'docker.io/library/nginx', domain: 'docker.io', path: 'library/nginx'}.
// Throws InvalidReference with upstream's text for a malformed reference.
export function parseNormalized(s) {
  if (identifierRe.test(s)) {
    throw new InvalidReference(`invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`);
  }
  const [domain, remainder] = splitDockerDomain(s);
  const colon = remainder.indexOf(':');
  const remoteName = colon >= 0 ? remainder.slice(0, colon) : remainder;
  if (remoteName.toLowerCase() !== remoteName) {
    throw new InvalidReference(`invalid reference format: repository name (${remoteName}) must be lowercase`);
  }
  const ref = parse(`${domain}/${remainder}`);
  const slash = ref.name.indexOf('/');
  return {
    name: ref.name,
    domain: ref.name.slice(0, slash),
    path: ref.name.slice(slash + 1),
    tag: ref.tag,
    digest: ref.digest,
  };
}

// The reference with kubelet's default tag applied (`docker.io/library/nginx:latest`).
export function withDefaultTag(ref) {
  if (ref.digest) return `${ref.name}${ref.tag ? `:${ref.tag}` : ''}@${ref.digest}`;
  return `${ref.name}:${ref.tag || 'latest'}`;
}

// kubelet's effective pull policy when none is set: Always for `:latest` or no tag (and no digest), else
// IfNotPresent.
export function effectivePullPolicy(ref, policy) {
  if (policy) return policy;
  if (!ref.digest && (!ref.tag || ref.tag === 'latest')) return 'Always';
  return 'IfNotPresent';
}
