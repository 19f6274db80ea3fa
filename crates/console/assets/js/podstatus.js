// Pod STATUS and RESTARTS exactly as `kubectl get pods` prints them (printPod in kubernetes
// pkg/printers/internalversion/printers.go), and the readiness of workloads. Pure functions of the objects.

import { humanDuration } from './format.js';

function isRestartableInit(container) {
  return container?.restartPolicy === 'Always';
}

function conditionTrue(pod, type) {
  return (pod.status?.conditions ?? []).some((c) => c.type === type && c.status === 'True');
}

// Returns {status, ready: 'n/m', restarts: 'N (age ago)' | 'N', failing: bool}.
export function podSummary(pod, now = Date.now()) {
  const spec = pod.spec ?? {};
  const st = pod.status ?? {};
  let restarts = 0;
  let restartableInitRestarts = 0;
  let total = (spec.containers ?? []).length;
  let ready = 0;
  let lastRestart = 0;
  let lastRestartableInitRestart = 0;
  const phase = st.phase ?? '';
  let reason = st.reason || phase;
  for (const c of st.conditions ?? []) {
    if (c.type === 'PodScheduled' && c.reason === 'SchedulingGated') reason = 'SchedulingGated';
  }
  const inits = new Map();
  for (const c of spec.initContainers ?? []) {
    inits.set(c.name, c);
    if (isRestartableInit(c)) total++;
  }
  const finishedAt = (c) => Date.parse(c.lastState?.terminated?.finishedAt ?? '') || 0;
  let initializing = false;
  const initStatuses = st.initContainerStatuses ?? [];
  for (let i = 0; i < initStatuses.length; i++) {
    const c = initStatuses[i];
    restarts += c.restartCount ?? 0;
    lastRestart = Math.max(lastRestart, finishedAt(c));
    const restartable = isRestartableInit(inits.get(c.name));
    if (restartable) {
      restartableInitRestarts += c.restartCount ?? 0;
      lastRestartableInitRestart = Math.max(lastRestartableInitRestart, finishedAt(c));
    }
    const term = c.state?.terminated;
    const wait = c.state?.waiting;
    if (term && term.exitCode === 0) continue;
    if (restartable && c.started) {
      if (c.ready) ready++;
      continue;
    }
    if (term) {
      if (!term.reason) reason = term.signal ? `Init:Signal:${term.signal}` : `Init:ExitCode:${term.exitCode}`;
      else reason = `Init:${term.reason}`;
    } else if (wait && wait.reason && wait.reason !== 'PodInitializing') {
      reason = `Init:${wait.reason}`;
    } else {
      reason = `Init:${i}/${(spec.initContainers ?? []).length}`;
    }
    initializing = true;
    break;
  }
  if (!initializing || conditionTrue(pod, 'Initialized')) {
    restarts = restartableInitRestarts;
    lastRestart = lastRestartableInitRestart;
    let hasRunning = false;
    const statuses = st.containerStatuses ?? [];
    for (let i = statuses.length - 1; i >= 0; i--) {
      const c = statuses[i];
      restarts += c.restartCount ?? 0;
      lastRestart = Math.max(lastRestart, finishedAt(c));
      const wait = c.state?.waiting;
      const term = c.state?.terminated;
      if (wait && wait.reason) reason = wait.reason;
      else if (term && term.reason) reason = term.reason;
      else if (term) reason = term.signal ? `Signal:${term.signal}` : `ExitCode:${term.exitCode}`;
      else if (c.ready && c.state?.running) {
        hasRunning = true;
        ready++;
      }
    }
    if (reason === 'Completed' && hasRunning) {
      reason = conditionTrue(pod, 'Ready') ? 'Running' : 'NotReady';
    }
  }
  if (pod.metadata?.deletionTimestamp && st.reason === 'NodeLost') reason = 'Unknown';
  else if (pod.metadata?.deletionTimestamp && phase !== 'Succeeded' && phase !== 'Failed') reason = 'Terminating';
  const restartsText = lastRestart > 0 && restarts > 0 ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts);
  return { status: reason, ready: `${ready}/${total}`, restarts: restartsText, failing: isFailing(reason) };
}

const HEALTHY = new Set(['Running', 'Completed', 'Succeeded', 'Pending', 'ContainerCreating', 'PodInitializing', 'Terminating']);

// A status that needs a person: pull errors, crashes, non-zero exits, evictions.
export function isFailing(status) {
  if (HEALTHY.has(status) || /^Init:\d+\/\d+$/.test(status)) return false;
  return true;
}

// The tone of a status badge (the text is always shown as well).
export function tone(status) {
  if (status === 'Running' || status === 'Completed' || status === 'Succeeded' || status === 'True') return 'ok';
  if (isFailing(status)) return 'bad';
  return 'wait';
}

// Deployment / StatefulSet readiness as `kubectl get` prints READY.
export function workloadReady(obj) {
  const want = obj.spec?.replicas ?? 1;
  const ready = obj.status?.readyReplicas ?? 0;
  return { text: `${ready}/${want}`, complete: ready >= want };
}
