// The Kubernetes API client of the page: same-origin fetch with the bearer token from sessionStorage (never in a
// URL, never in localStorage), errors carrying the API's Status message, and live collections built from a list
// followed by a watch (`?watch=1`, JSON lines) that resumes from the last resourceVersion after a dropped stream
// and relists after 410 Gone. It can do nothing the token could not do with kubectl.

const TOKEN_KEY = 'berth.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// A failed API call: `status` is the HTTP code, `message` the Status message (upstream's words).
export class ApiError extends Error {
  constructor(status, message, reason) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

async function errorFrom(response, method, path) {
  let message = `${method} ${path}: ${response.status} ${response.statusText}`;
  let reason = '';
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (body && body.message) message = body.message;
      reason = body?.reason ?? '';
    } catch {
      if (text.trim()) message = `${message}: ${text.trim().slice(0, 500)}`;
    }
  } catch {
    // the body could not be read; keep the status line
  }
  if (response.status === 401) {
    message = `${message} (the API server did not accept the token: log out and paste the token from admin.kubeconfig or viewer.kubeconfig)`;
  }
  return new ApiError(response.status, message, reason);
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

// One API call. `body` is sent as JSON (or as a merge/strategic patch with `contentType`).
export async function request(method, path, body, { contentType = 'application/json', signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { 'Content-Type': contentType }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `${method} ${path}: the API server is unreachable (${e.message}); check that berth server is running`);
  }
  if (!response.ok) throw await errorFrom(response, method, path);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const create = (path, body) => request('POST', path, body);
export const remove = (path) => request('DELETE', path, { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' });
export const mergePatch = (path, body) => request('PATCH', path, body, { contentType: 'application/merge-patch+json' });

// Collection paths. `ns` null means all namespaces.
export function collectionPath(group, version, resource, ns) {
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  return ns ? `${base}/namespaces/${encodeURIComponent(ns)}/${resource}` : `${base}/${resource}`;
}

export function objectPath(group, version, resource, ns, name) {
  return `${collectionPath(group, version, resource, ns)}/${encodeURIComponent(name)}`;
}

function withQuery(path, params) {
  const q = new URLSearchParams(params);
  return `${path}${path.includes('?') ? '&' : '?'}${q}`;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

// A live list: calls onChange(items) after the first list and after every watch event; onError(error | null)
// reports a failure (and null once it recovered). `query` holds labelSelector/fieldSelector. stop() ends it.
export function liveList(path, { query = {}, onChange, onError = () => {} }) {
  const controller = new AbortController();
  const { signal } = controller;
  const items = new Map();
  let rv = null;
  let backoff = 500;
  const key = (o) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
  const emit = () => onChange([...items.values()]);

  async function relist() {
    const list = await get(withQuery(path, query), { signal });
    items.clear();
    for (const o of list.items ?? []) items.set(key(o), o);
    rv = list.metadata?.resourceVersion ?? '0';
    emit();
  }

  async function watchOnce() {
    const response = await fetch(
      withQuery(path, { ...query, watch: '1', resourceVersion: rv, allowWatchBookmarks: 'true' }),
      { headers: headers(), signal, cache: 'no-store', credentials: 'omit' },
    );
    if (response.status === 410) {
      rv = null;
      return;
    }
    if (!response.ok) throw await errorFrom(response, 'GET', path);
    onError(null);
    backoff = 500;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        const obj = event.object ?? {};
        if (event.type === 'ERROR') {
          if (obj.code === 410) {
            rv = null;
            return;
          }
          throw new ApiError(obj.code ?? 500, obj.message ?? 'watch error');
        }
        if (obj.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
        if (event.type === 'BOOKMARK') continue;
        if (event.type === 'DELETED') items.delete(key(obj));
        else items.set(key(obj), obj);
        emit();
      }
    }
  }

  (async () => {
    while (!signal.aborted) {
      try {
        if (rv === null) await relist();
        const started = Date.now();
        await watchOnce();
        // A server that ends watches at once must not be hammered: wait before the next one.
        if (rv !== null && Date.now() - started < 1000) await sleep(backoff, signal);
      } catch (e) {
        if (signal.aborted) return;
        onError(e);
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          await sleep(10000, signal);
        } else {
          await sleep(backoff, signal);
          backoff = Math.min(backoff * 2, 10000);
        }
      }
    }
  })();
  return { stop: () => controller.abort() };
}
