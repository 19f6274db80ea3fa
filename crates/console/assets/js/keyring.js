// kubelet's credential keyring (pkg/credentialprovider/keyring.go), ported from berth's `credentials` crate so
// the console can warn before a deploy when no chosen secret covers the image's registry, and say which `auths`
// key would match. Keys are normalised (`https://` added, `/v1/` or `/v2/` cut, host alone for an empty path),
// de-duplicated and reverse-sorted; a key matches an image when the ports are equal, the hosts have the same number
// of labels, each label matches by Go's path.Match, and the key path is a plain prefix of the image path. Only when
// no key matched do Docker Hub images fall back to an `index.docker.io` key. The shared table
// testdata/keyring-cases.json runs against this file (node) and the Rust crate (cargo test), so the two never
// drift. This module never sees a credential value: it works on keys only.

export const DEFAULT_REGISTRY_HOST = 'index.docker.io';

export class BadPattern extends Error {
  constructor() {
    super('syntax error in pattern');
  }
}

// ---- Go path.Match on arrays of code points ----

function scanChunk(p) {
  let star = false;
  while (p.length > 0 && p[0] === '*') {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  for (; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      if (i + 1 < p.length) i++;
    } else if (c === '[') {
      inRange = true;
    } else if (c === ']') {
      inRange = false;
    } else if (c === '*' && !inRange) {
      break;
    }
  }
  return [star, p.slice(0, i), p.slice(i)];
}

function getEsc(chunk) {
  if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') throw new BadPattern();
  if (chunk[0] === '\\') {
    chunk = chunk.slice(1);
    if (chunk.length === 0) throw new BadPattern();
  }
  const r = chunk[0];
  const rest = chunk.slice(1);
  if (rest.length === 0) throw new BadPattern();
  return [r, rest];
}

// Returns the rest of `s` after `chunk` matched its start, or null; throws BadPattern for a malformed chunk.
function matchChunk(chunk, s) {
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const c = chunk[0];
    if (c === '[') {
      let r = '';
      if (!failed) {
        r = s[0];
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.length > 0 && chunk[0] === '^') {
        negated = true;
        chunk = chunk.slice(1);
      }
      let matched = false;
      let nrange = 0;
      for (;;) {
        if (chunk.length > 0 && chunk[0] === ']' && nrange > 0) {
          chunk = chunk.slice(1);
          break;
        }
        let lo;
        let hi;
        [lo, chunk] = getEsc(chunk);
        hi = lo;
        if (chunk[0] === '-') [hi, chunk] = getEsc(chunk.slice(1));
        if (!failed && lo.codePointAt(0) <= r.codePointAt(0) && r.codePointAt(0) <= hi.codePointAt(0)) matched = true;
        nrange++;
      }
      if (matched === negated) failed = true;
    } else if (c === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    } else {
      if (c === '\\') {
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new BadPattern();
      }
      if (!failed) {
        if (chunk[0] !== s[0]) failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    }
  }
  return failed ? null : s;
}

// Go path.Match(pattern, name); throws BadPattern.
export function pathMatch(pattern, name) {
  let p = Array.from(pattern);
  let n = Array.from(name);
  outer: while (p.length > 0) {
    const [star, chunk, rest] = scanChunk(p);
    p = rest;
    if (star && chunk.length === 0) return !n.includes('/');
    const t = matchChunk(chunk, n);
    if (t !== null && (t.length === 0 || p.length > 0)) {
      n = t;
      continue;
    }
    if (star) {
      for (let i = 0; i < n.length && n[i] !== '/'; i++) {
        const t2 = matchChunk(chunk, n.slice(i + 1));
        if (t2 !== null) {
          if (p.length === 0 && t2.length > 0) continue;
          n = t2;
          continue outer;
        }
      }
    }
    while (p.length > 0) {
      const [, c2, r2] = scanChunk(p);
      p = r2;
      matchChunk(c2, []);
    }
    return false;
  }
  return n.length === 0;
}

// ---- the parts of Go's net/url.Parse that decide a match ----

function validOptionalPort(port) {
  return port === '' || /^:[0-9]*$/.test(port);
}

function hostCharOk(b) {
  return (
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
    "-._~!$&'()*+,;=:[]<>\"".includes(String.fromCharCode(b))
  );
}

function unescape(s, host) {
  const bytes = new TextEncoder().encode(s);
  const out = [];
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    if (b === 0x25) {
      const hex = String.fromCharCode(...bytes.slice(i + 1, i + 3));
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error('invalid URL escape');
      out.push(parseInt(hex, 16));
      i += 3;
    } else if (host && b < 0x80 && !hostCharOk(b)) {
      throw new Error('invalid character in host name');
    } else {
      out.push(b);
      i += 1;
    }
  }
  return new TextDecoder().decode(new Uint8Array(out));
}

function parseGoUrl(url) {
  if (/[\x00-\x1f\x7f]/.test(url)) throw new Error('invalid control character in URL');
  const sep = url.indexOf('://');
  let rest = sep >= 0 ? url.slice(sep + 3) : url;
  rest = rest.split('#')[0].split('?')[0];
  const slash = rest.indexOf('/');
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash) : '';
  const at = authority.lastIndexOf('@');
  const host = at >= 0 ? authority.slice(at + 1) : authority;
  if (host.startsWith('[')) {
    const end = host.indexOf(']', 1);
    if (end < 0) throw new Error("missing ']' in host");
    if (!validOptionalPort(host.slice(end + 1))) throw new Error('invalid port after host');
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0 && !validOptionalPort(host.slice(colon))) throw new Error('invalid port after host');
  }
  return { host: unescape(host, true), path: unescape(path, false) };
}

// Go net.SplitHostPort, falling back to [hostport, ''] on error as kubelet's splitURL does.
function splitHostPort(hostport) {
  if (hostport.startsWith('[')) {
    const inner = hostport.slice(1);
    const end = inner.indexOf(']');
    if (end >= 0) {
      const after = inner.slice(end + 1);
      if (after.startsWith(':') && !after.slice(1).includes(':') && !inner.slice(0, end).includes('[')) {
        return [inner.slice(0, end), after.slice(1)];
      }
    }
    return [hostport, ''];
  }
  const parts = hostport.split(':');
  if (parts.length === 2) return [parts[0], parts[1]];
  return [hostport, ''];
}

// kubelet key normalisation; throws when Go's url.Parse would reject the key (kubelet skips such keys).
export function normalizeKey(key) {
  const value = key.startsWith('https://') || key.startsWith('http://') ? key : `https://${key}`;
  const parsed = parseGoUrl(value);
  let path = parsed.path;
  if (path.startsWith('/v2/') || path.startsWith('/v1/')) path = path.slice(3);
  return path !== '' && path !== '/' ? `${parsed.host}${path}` : parsed.host;
}

// kubelet urlsMatchStr(glob, target): null when it matches, else the reason (the same words as the Rust crate).
export function urlMismatch(glob, target) {
  let g;
  let t;
  try {
    g = parseGoUrl(`https://${glob}`);
  } catch (e) {
    return `key is not a valid URL: ${e.message}`;
  }
  try {
    t = parseGoUrl(`https://${target}`);
  } catch (e) {
    return `image is not a valid URL: ${e.message}`;
  }
  const [gHost, gPort] = splitHostPort(g.host);
  const [tHost, tPort] = splitHostPort(t.host);
  const show = (p) => (p === '' ? 'no port' : `port ${p}`);
  if (gPort !== tPort) return `key has ${show(gPort)} but the image registry has ${show(tPort)}`;
  const gLabels = gHost.split('.');
  const tLabels = tHost.split('.');
  if (gLabels.length !== tLabels.length) {
    return `key host ${JSON.stringify(gHost)} has ${gLabels.length} labels but the image registry ${JSON.stringify(tHost)} has ${tLabels.length} (a * matches within one label)`;
  }
  if (!t.path.startsWith(g.path)) {
    return `key path ${JSON.stringify(g.path)} is not a prefix of the image path ${JSON.stringify(t.path)}`;
  }
  for (let i = 0; i < gLabels.length; i++) {
    try {
      if (!pathMatch(gLabels[i], tLabels[i])) {
        return `host label ${JSON.stringify(gLabels[i])} does not match ${JSON.stringify(tLabels[i])}`;
      }
    } catch {
      return `host label ${JSON.stringify(gLabels[i])} is a malformed pattern`;
    }
  }
  return null;
}

export function urlsMatch(glob, target) {
  return urlMismatch(glob, target) === null;
}

// kubelet isDefaultRegistryMatch.
export function isDefaultRegistryMatch(image) {
  const slash = image.indexOf('/');
  const first = slash >= 0 ? image.slice(0, slash) : image;
  if (first === '') return false;
  if (slash < 0 || first === 'docker.io' || first === 'index.docker.io') return true;
  return !/[.:]/.test(first);
}

const byteOrder = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// kubelet BasicDockerKeyring over keys only. `origin` is any label (the secret name).
export class Keyring {
  constructor() {
    this.index = [];
    this.creds = new Map();
    this.ignored = [];
  }

  // Adds the keys of one document, in document order.
  add(origin, keys) {
    for (const key of keys) {
      let normalized;
      try {
        normalized = normalizeKey(key);
      } catch (e) {
        this.ignored.push({ origin, key, reason: e.message });
        continue;
      }
      if (!this.creds.has(normalized)) this.creds.set(normalized, []);
      this.creds.get(normalized).push({ origin, key });
      this.index.push(normalized);
    }
    this.index = [...new Set(this.index)].sort((a, b) => byteOrder(b, a));
  }

  // kubelet Lookup(image) on the normalised repository name: [{origin, key, normalizedKey, fallback}].
  lookup(image) {
    const out = [];
    for (const k of this.index) {
      if (urlsMatch(k, image)) {
        for (const s of this.creds.get(k)) out.push({ ...s, normalizedKey: k, fallback: false });
      }
    }
    if (out.length === 0 && isDefaultRegistryMatch(image)) {
      for (const s of this.creds.get(DEFAULT_REGISTRY_HOST) || []) {
        out.push({ ...s, normalizedKey: DEFAULT_REGISTRY_HOST, fallback: true });
      }
    }
    return out;
  }

  // Every key with the reason it does not match (null when it does).
  explain(image) {
    return this.index.map((k) => ({
      normalizedKey: k,
      written: this.creds.get(k),
      mismatch: urlMismatch(k, image),
    }));
  }
}
