// Overview: nodes with readiness, workloads with ready counts, and the pods that need attention (pull errors,
// crashes) across the current namespace, all live.

import { collectionPath, liveList } from '../api.js';
import { badge, h, messageArea, replace, table } from '../dom.js';
import { age } from '../format.js';
import { podSummary, tone, workloadReady } from '../podstatus.js';

function nodeReady(node) {
  const c = (node.status?.conditions ?? []).find((x) => x.type === 'Ready');
  if (!c) return { text: 'Unknown', tone: 'wait' };
  if (c.status === 'True') return { text: 'Ready', tone: 'ok' };
  return { text: c.status === 'Unknown' ? `NotReady (${c.reason ?? 'Unknown'})` : 'NotReady', tone: 'bad' };
}

export function render({ main, namespace }) {
  const messages = messageArea();
  const nodesEl = h('div', {});
  const workloadsEl = h('div', {});
  const failingEl = h('div', {});
  const data = { nodes: [], deployments: [], statefulsets: [], pods: [] };
  const draw = () => {
    replace(nodesEl, table('Nodes', ['Name', 'Status', 'Version', 'Runtime', 'Age'], data.nodes.map((n) => {
      const r = nodeReady(n);
      return [n.metadata.name, badge(r.text, r.tone), n.status?.nodeInfo?.kubeletVersion ?? '', n.status?.nodeInfo?.containerRuntimeVersion ?? '', age(n.metadata.creationTimestamp)];
    }), 'No nodes have registered: start a node agent (berth agent).'));
    const workloads = [
      ...data.deployments.map((d) => ['Deployment', d]),
      ...data.statefulsets.map((s) => ['StatefulSet', s]),
    ];
    replace(workloadsEl, table(`Workloads in ${namespace}`, ['Kind', 'Name', 'Ready'], workloads.map(([k, o]) => {
      const r = workloadReady(o);
      return [k, o.metadata.name, badge(r.text, r.complete ? 'ok' : 'wait')];
    }), 'No workloads in this namespace.'));
    const failing = data.pods.map((p) => [p, podSummary(p)]).filter(([, s]) => s.failing);
    replace(failingEl, table(`Failing pods in ${namespace}`, ['Name', 'Status', 'Restarts', 'Age'], failing.map(([p, s]) => [
      h('a', { href: `#/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(p.metadata.name)}` }, p.metadata.name),
      badge(s.status, tone(s.status)), s.restarts, age(p.metadata.creationTimestamp)]), 'No failing pods.'));
  };
  const onError = (e) => (e ? messages.error(e.message) : messages.clear());
  const watches = [
    liveList(collectionPath('', 'v1', 'nodes'), { onChange: (i) => { data.nodes = i; draw(); }, onError }),
    liveList(collectionPath('apps', 'v1', 'deployments', namespace), { onChange: (i) => { data.deployments = i; draw(); }, onError }),
    liveList(collectionPath('apps', 'v1', 'statefulsets', namespace), { onChange: (i) => { data.statefulsets = i; draw(); }, onError }),
    liveList(collectionPath('', 'v1', 'pods', namespace), { onChange: (i) => { data.pods = i; draw(); }, onError }),
  ];
  main.append(h('h1', {}, 'Overview'), messages.el, h('h2', {}, 'Nodes'), nodesEl, h('h2', {}, 'Workloads'), workloadsEl,
    h('h2', {}, 'Failing pods'), failingEl);
  draw();
  return () => watches.forEach((w) => w.stop());
}
