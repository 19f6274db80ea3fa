// Registry credential documents: builds the `.dockerconfigjson` that `kubectl create secret docker-registry`
// writes, reads an uploaded Docker `config.json`, and lists the registry keys a Secret covers. Values (passwords,
// `auth` fields) stay inside the objects handed to the API; nothing here renders, logs or returns them for display.

export const TYPE_DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const TYPE_DOCKERCFG = 'kubernetes.io/dockercfg';

export function isRegistrySecret(secret) {
  return secret.type === TYPE_DOCKER_CONFIG_JSON || secret.type === TYPE_DOCKERCFG;
}

// UTF-8 safe base64.
export function b64encode(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

export function b64decode(b64) {
  const binary = atob(b64);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

// kubectl's docker-registry secret body: {"auths": {server: {username, password, email, auth}}}.
export function dockerConfigJson({ server, username, password, email }) {
  const entry = { username, password };
  if (email) entry.email = email;
  entry.auth = b64encode(`${username}:${password}`);
  return JSON.stringify({ auths: { [server]: entry } });
}

export class ConfigError extends Error {}

// Reads a Docker config.json (as `docker login` writes it). Returns {auths, hosts: [{key, username}], notes}:
// `auths` is what the secret will hold; `hosts` is what the page may show (no secret values).
export function parseDockerConfig(text, fileName = 'config.json') {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${fileName} is not valid JSON (${e.message}); upload the file docker login writes (~/.docker/config.json)`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`${fileName} must hold a JSON object with an "auths" map`);
  }
  const auths = doc.auths ?? {};
  if (typeof auths !== 'object' || Array.isArray(auths)) {
    throw new ConfigError(`${fileName}: "auths" must be an object keyed by registry address`);
  }
  const hosts = [];
  const kept = {};
  const notes = [];
  for (const [key, entry] of Object.entries(auths)) {
    if (entry === null || typeof entry !== 'object') {
      throw new ConfigError(`${fileName}: auths[${JSON.stringify(key)}] must be an object`);
    }
    let username = entry.username || '';
    let hasPassword = Boolean(entry.password || entry.identitytoken || entry.registrytoken);
    if (entry.auth) {
      let decoded;
      try {
        decoded = b64decode(entry.auth);
      } catch {
        throw new ConfigError(`${fileName}: auths[${JSON.stringify(key)}].auth is not base64; run docker login again`);
      }
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new ConfigError(`${fileName}: auths[${JSON.stringify(key)}].auth is not "user:password" in base64`);
      username = username || decoded.slice(0, colon);
      hasPassword = true;
    }
    if (!hasPassword) {
      notes.push(`${key}: no credentials stored in the file (a credential helper keeps them); this entry is skipped`);
      continue;
    }
    kept[key] = entry;
    hosts.push({ key, username });
  }
  if (doc.credsStore) {
    notes.push(`credsStore "${doc.credsStore}": credentials kept by docker-credential-${doc.credsStore} are not in the file; enter them with the form instead`);
  }
  for (const [host, helper] of Object.entries(doc.credHelpers ?? {})) {
    notes.push(`${host}: kept by docker-credential-${helper}, not in the file; enter it with the form instead`);
  }
  if (hosts.length === 0) {
    throw new ConfigError(`${fileName} holds no registry credentials in "auths"${notes.length ? ` (${notes.join('; ')})` : ''}`);
  }
  return { auths: kept, hosts, notes };
}

// The registry keys a registry Secret covers, as written, and an error text when its data cannot be read.
export function secretRegistryKeys(secret) {
  const data = secret.data ?? {};
  try {
    if (secret.type === TYPE_DOCKER_CONFIG_JSON) {
      const raw = data['.dockerconfigjson'];
      if (!raw) return { keys: [], error: 'no .dockerconfigjson key' };
      return { keys: Object.keys(JSON.parse(b64decode(raw)).auths ?? {}), error: null };
    }
    if (secret.type === TYPE_DOCKERCFG) {
      const raw = data['.dockercfg'];
      if (!raw) return { keys: [], error: 'no .dockercfg key' };
      return { keys: Object.keys(JSON.parse(b64decode(raw))), error: null };
    }
  } catch (e) {
    return { keys: [], error: `unreadable registry data (${e.message})` };
  }
  return { keys: [], error: null };
}
