/**
 * The Endpoints panel's logic, without React: status labels, the traffic split, the "try
 * it" payload (V1 `{"instances": …}` or Open Inference Protocol V2 `{"inputs": […]}`,
 * converted between the two), the answer's text, and when its log is followed (streamed
 * through the endpoint job's channels `server/primary`, `server/canary`, `server/router`
 * while the log is open, the panel shown and the endpoint live).
 */

import { IJob, isTerminal } from './types';

export interface IEndpoint extends IJob {
  url: string | null;
  /** Traffic split: version ref → percent. */
  versions: Record<string, number>;
  model: string | null;
  canary_percent: number;
}

export type Protocol = 'v1' | 'v2';

// -- status ---------------------------------------------------------------------------------

export interface IEndpointStatus {
  /** What the card shows. */
  label: string;
  /** Serving or about to: try it, logs that grow, promote/rollback, undeploy. */
  live: boolean;
  /** The CSS modifier, `kf-status-<status>`. */
  className: string;
}

const STATUS_LABEL: Record<string, string> = {
  Pending: 'Starting',
  Running: 'Ready',
  Failed: 'Failed',
  Cancelling: 'Undeploying',
  Cancelled: 'Undeployed',
  Succeeded: 'Stopped'
};

/** An endpoint job's status as the panel shows it. */
export function endpointStatus(status: string): IEndpointStatus {
  return {
    label: STATUS_LABEL[status] ?? status,
    live: status === 'Running' || status === 'Pending',
    className: `kf-status-${status.toLowerCase()}`
  };
}

// -- traffic ----------------------------------------------------------------------------------

export interface ITrafficShare {
  ref: string;
  percent: number;
  /** `only`: the one version; else `stable` (the primary) and `canary`. */
  role: 'only' | 'stable' | 'canary';
}

function canaryRef(ep: Pick<IEndpoint, 'spec'>): string | null {
  const canary = ep.spec?.canary as { ref?: unknown } | null | undefined;
  return canary && typeof canary.ref === 'string' ? canary.ref : null;
}

/** The versions serving and their share: the stable version first, then the canary. */
export function trafficSplit(ep: Pick<IEndpoint, 'versions' | 'spec'>): ITrafficShare[] {
  const entries = Object.entries(ep.versions || {});
  if (entries.length === 1) {
    return [{ ref: entries[0][0], percent: entries[0][1], role: 'only' }];
  }
  const canary = canaryRef(ep);
  return entries
    .map(([ref, percent]): ITrafficShare => ({ ref, percent, role: ref === canary ? 'canary' : 'stable' }))
    .sort((a, b) => (a.role === b.role ? a.ref.localeCompare(b.ref) : a.role === 'stable' ? -1 : 1));
}

/** `iris:1 80% · iris:2 20% (canary)`. */
export function trafficLabel(shares: ITrafficShare[]): string {
  return shares.map(s => `${s.ref} ${s.percent}%${s.role === 'canary' ? ' (canary)' : ''}`).join(' · ');
}

/** Promote: a live endpoint with a canary. Rollback: with a canary, or a promote to undo. */
export function controls(ep: Pick<IEndpoint, 'status' | 'canary_percent' | 'spec'>): {
  promote: boolean;
  rollback: boolean;
} {
  const live = endpointStatus(ep.status).live;
  const canary = ep.canary_percent > 0 || canaryRef(ep) !== null;
  return { promote: live && canary, rollback: live && (canary || Boolean(ep.spec?.previous)) };
}

// -- try it: the request ---------------------------------------------------------------------

export interface IV2Tensor {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

function shapeOf(value: unknown, where = 'instances'): number[] {
  if (!Array.isArray(value)) {
    return [];
  }
  if (value.length === 0) {
    return [0];
  }
  const inner = value.map((v, i) => shapeOf(v, `${where}[${i}]`));
  const first = JSON.stringify(inner[0]);
  inner.forEach((s, i) => {
    if (JSON.stringify(s) !== first) {
      throw new Error(
        `The instances are ragged: ${where}[${i}] has shape [${s.join(', ')}], ${where}[0] has [${inner[0].join(', ')}]`
      );
    }
  });
  return [value.length, ...inner[0]];
}

function flatten(value: unknown): unknown[] {
  return Array.isArray(value) ? value.flatMap(flatten) : [value];
}

/** A V2 inference request for a (nested, rectangular) list of numbers or booleans. */
export function v2Request(instances: unknown[]): { inputs: IV2Tensor[] } {
  const shape = shapeOf(instances);
  const data = flatten(instances);
  let datatype: string;
  if (data.length > 0 && data.every(v => typeof v === 'boolean')) {
    datatype = 'BOOL';
  } else if (data.every(v => typeof v === 'number' && Number.isFinite(v))) {
    datatype = data.every(v => Number.isInteger(v)) && data.length > 0 ? 'INT64' : 'FP64';
  } else {
    const bad = data.find(v => typeof v !== 'number' && typeof v !== 'boolean');
    throw new Error(`V2 try-it takes numbers or booleans, not ${JSON.stringify(bad ?? null)}`);
  }
  return { inputs: [{ name: 'input-0', shape, datatype, data }] };
}

function isTensor(value: unknown): value is IV2Tensor {
  const t = value as IV2Tensor;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.name === 'string' &&
    Array.isArray(t.shape) &&
    typeof t.datatype === 'string' &&
    Array.isArray(t.data)
  );
}

/** A V2 tensor's data as nested instances (its shape), for a V1 request. */
export function tensorInstances(tensor: IV2Tensor): unknown[] {
  const size = tensor.shape.reduce((a, b) => a * b, 1);
  const data = flatten(tensor.data);
  if (data.length !== size) {
    throw new Error(`Input ${tensor.name} has ${data.length} values for shape [${tensor.shape.join(', ')}] (${size})`);
  }
  const nest = (dims: number[], offset: number): unknown[] => {
    if (dims.length === 1) {
      return data.slice(offset, offset + dims[0]);
    }
    const step = dims.slice(1).reduce((a, b) => a * b, 1);
    return Array.from({ length: dims[0] }, (_, i) => nest(dims.slice(1), offset + i * step));
  };
  return tensor.shape.length === 0 ? data : nest(tensor.shape, 0);
}

/**
 * The body to send for what the user typed: a whole V1 request (`{"instances": …}`), a
 * whole V2 request (`{"inputs": [tensor, …]}`), or a list of instances (wrapped for the
 * protocol). A request of the other protocol is converted (one V2 input ↔ instances).
 * Throws an Error that says what is wrong.
 */
export function buildRequest(text: string, protocol: Protocol): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`The payload is not JSON: ${(e as Error).message}`);
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      throw new Error('The payload has no instances');
    }
    return protocol === 'v1' ? { instances: value } : v2Request(value);
  }
  if (typeof value !== 'object' || value === null) {
    throw new Error('The payload must be a JSON object (a whole V1 or V2 request) or a list of instances');
  }
  const body = value as Record<string, unknown>;
  const instances = body.instances;
  const inputs = body.inputs;
  if (instances !== undefined && !Array.isArray(instances)) {
    throw new Error('"instances" must be a list');
  }
  if (inputs !== undefined && !Array.isArray(inputs)) {
    throw new Error('"inputs" must be a list (V2: tensors with name, shape, datatype, data)');
  }
  const v2 = Array.isArray(inputs) && inputs.length > 0 && inputs.every(isTensor);
  if (protocol === 'v1') {
    if (Array.isArray(instances) || (Array.isArray(inputs) && !v2)) {
      return body; // KServe's V1 takes "instances" or "inputs"
    }
    if (v2) {
      if ((inputs as unknown[]).length !== 1) {
        throw new Error('A V2 request with several inputs has no V1 form: choose V2');
      }
      return { instances: tensorInstances((inputs as IV2Tensor[])[0]) };
    }
    throw new Error('A V1 request is {"instances": [...]}');
  }
  if (v2) {
    return body;
  }
  if (Array.isArray(instances)) {
    return v2Request(instances);
  }
  throw new Error('A V2 request is {"inputs": [{"name", "shape", "datatype", "data"}]}');
}

/**
 * The payload text rewritten for another protocol (when the user switches V1/V2), or the
 * text as it was when it does not convert (not JSON, already that protocol's shape …).
 */
export function convertPayload(text: string, to: Protocol): string {
  try {
    const value = JSON.parse(text);
    if (Array.isArray(value)) {
      return text;
    }
    const converted = buildRequest(text, to);
    return JSON.stringify(converted) === JSON.stringify(value) ? text : JSON.stringify(converted);
  } catch {
    return text;
  }
}

// -- try it: the answer -----------------------------------------------------------------------

/** The answer: the response as indented JSON, and which version answered (canary or not). */
export function formatAnswer(response: unknown, version: string | null): string {
  return (version ? `(from ${version})\n` : '') + JSON.stringify(response, null, 2);
}

// -- failures -----------------------------------------------------------------------------------

export interface IFailure {
  /** One or two readable lines: what stopped, and the exception's own line. */
  summary: string;
  /** The whole text (a traceback, the log's tail), shown folded; null when the summary is all. */
  detail: string | null;
}

const EXCEPTION_LINE = /^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|[A-Z]\w*Error)(:|$)/;

/**
 * A failure's text as the panel shows it: a short summary (the first line, e.g. "the
 * model server of iris:1 stopped:", and the last exception line of a traceback) and the
 * whole text folded below. Never the raw traceback as one paragraph.
 */
export function failureSummary(text: string | null | undefined): IFailure {
  const raw = (text ?? '').trim();
  if (!raw) {
    return { summary: '', detail: null };
  }
  const lines = raw.split(/\r?\n/).map(l => l.trimEnd());
  const nonEmpty = lines.filter(l => l.trim().length > 0);
  if (nonEmpty.length <= 2) {
    return { summary: nonEmpty.join(' '), detail: null };
  }
  const head = nonEmpty[0].trim();
  let exception: string | null = null;
  for (let i = nonEmpty.length - 1; i >= 0; i--) {
    const line = nonEmpty[i].trim();
    if (EXCEPTION_LINE.test(line)) {
      exception = line;
      break;
    }
  }
  const last = exception ?? nonEmpty[nonEmpty.length - 1].trim();
  const clip = (t: string, n: number): string => (t.length > n ? `${t.slice(0, n - 1)}…` : t);
  const summary = head === last || head.startsWith('Traceback') ? clip(last, 300) : `${clip(head, 160)} ${clip(last, 300)}`;
  return { summary, detail: raw };
}

/** Why an endpoint's log is empty, when it is (a server that never started writes none). */
export function emptyLogNote(ep: Pick<IEndpoint, 'status' | 'error'>): string {
  if (ep.status === 'Failed') {
    return '(the server wrote no log before it stopped: the reason is above)';
  }
  if (ep.status === 'Pending') {
    return '(no log yet: the server is starting)';
  }
  return '(empty)';
}

// -- confirmations --------------------------------------------------------------------------------

export interface IConfirm {
  title: string;
  body: string;
  /** The accept button's label. */
  accept: string;
  /** A destructive action (the accept button is a warning). */
  warn: boolean;
}

/** What Undeploy, Promote and Rollback will do, said before they run. */
export function confirmControl(
  what: 'undeploy' | 'promote' | 'rollback',
  ep: Pick<IEndpoint, 'name' | 'versions' | 'spec' | 'backend'>
): IConfirm {
  const shares = trafficSplit(ep);
  const stable = shares.find(s => s.role !== 'canary');
  const canary = shares.find(s => s.role === 'canary');
  const previous = (ep.spec?.previous as { ref?: string } | null | undefined)?.ref ?? null;
  const where = ep.backend === 'kubernetes' ? 'its InferenceService is deleted' : 'its server processes stop';
  if (what === 'undeploy') {
    return {
      title: `Undeploy ${ep.name}?`,
      body:
        `Endpoint ${ep.name} stops serving ${trafficLabel(shares)}: ${where} and calls to its URL fail. ` +
        'The model versions stay in the registry; deploy again to serve them.',
      accept: 'Undeploy',
      warn: true
    };
  }
  if (what === 'promote') {
    return {
      title: `Promote the canary of ${ep.name}?`,
      body:
        `${canary?.ref ?? 'The canary'} takes all the traffic of ${ep.name} (now ${canary?.percent ?? 0}%) and ` +
        `${stable?.ref ?? 'the stable version'} stops serving. Rollback undoes it.`,
      accept: 'Promote',
      warn: false
    };
  }
  const body = canary
    ? `The canary ${canary.ref} is dropped: ${stable?.ref ?? 'the stable version'} takes all the traffic of ${ep.name} again.`
    : `${ep.name} goes back to ${previous ?? 'its previous version'}, undoing the last promote: ` +
      `${stable?.ref ?? 'the version serving now'} stops serving. This restarts a server (a few seconds).`;
  return { title: `Roll back ${ep.name}?`, body, accept: 'Roll back', warn: true };
}

/**
 * The endpoints that serve a version (stable or canary), e.g. before moving an alias away
 * from it: they keep serving it (an endpoint resolves an alias when it is deployed).
 */
export function endpointsServing(
  endpoints: Pick<IEndpoint, 'name' | 'status' | 'versions' | 'model'>[],
  ref: string
): { name: string; deployedAs: string | null; percent: number }[] {
  return endpoints
    .filter(ep => endpointStatus(ep.status).live && ref in (ep.versions || {}))
    .map(ep => ({ name: ep.name, deployedAs: ep.model, percent: ep.versions[ref] }));
}

/** The Jobs list's action for a job: an endpoint is undeployed, not cancelled. */
export function jobAction(job: Pick<IJob, 'kind' | 'status'>): 'undeploy' | 'cancel' | null {
  if (isTerminal(job.status) || job.status === 'Cancelling') {
    return null;
  }
  return job.kind === 'endpoint' ? 'undeploy' : 'cancel';
}

// -- logs ---------------------------------------------------------------------------------------

/** The log is followed while it is open, the panel shown and the endpoint live. */
export function shouldFollow(open: boolean, visible: boolean, status: string): boolean {
  return open && visible && endpointStatus(status).live;
}

/** The tail an endpoint's log starts from (then followed while the endpoint is live). */
export const ENDPOINT_LOG_TAIL = 200;

/**
 * What the endpoint's servers are: it changes when promote or rollback replaces a server,
 * whose log is then another one (a followed log starts over with it).
 */
export function servingKey(ep: Pick<IEndpoint, 'versions' | 'channels'>): string {
  return JSON.stringify([ep.versions || {}, (ep.channels?.logs || []).map(c => c.name)]);
}

// -- health ---------------------------------------------------------------------------------------

/** One version's (or the transformer's, the explainer's) health (`GET …/stats`). */
export interface IVersionStats {
  role: 'predictor' | 'transformer' | 'explainer';
  requests?: number;
  requests_per_s?: number | null;
  errors?: number;
  error_rate?: number;
  p50_ms?: number | null;
  p95_ms?: number | null;
  p99_ms?: number | null;
  traffic_percent?: number;
  drift?: { samples: number; drifted: string[]; error?: string };
}

export interface IEndpointStats {
  endpoint: string;
  window_s: number;
  time: number;
  versions: Record<string, IVersionStats>;
}

/** A row of the health table. */
export interface IHealthRow {
  key: string;
  role: string;
  traffic: string;
  rate: string;
  errors: string;
  latency: string;
  drift: string;
  /** Its error rate is over 5 %: the row is flagged. */
  failing: boolean;
  drifted: boolean;
}

const ms = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(1) : v.toFixed(0));

/** How often a live endpoint's health is read again while the panel is shown (ms). */
export const STATS_POLL_MS = 2000;

/** The health table: versions first (stable, then canary), then the transformer and explainer. */
export function healthRows(stats: IEndpointStats, ep: Pick<IEndpoint, 'versions' | 'spec'>): IHealthRow[] {
  const order = trafficSplit(ep).map(s => s.ref);
  const keys = Object.keys(stats.versions).sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  return keys.map(key => {
    const v = stats.versions[key];
    const rate = v.error_rate ?? 0;
    const drift = v.drift;
    return {
      key,
      role: v.role === 'predictor' ? (order.indexOf(key) === 1 ? 'canary' : 'version') : v.role,
      traffic: v.traffic_percent === undefined ? '' : `${v.traffic_percent}%`,
      rate: `${(v.requests_per_s ?? 0).toFixed(1)}/s`,
      errors: `${(rate * 100).toFixed(rate > 0 && rate < 0.01 ? 1 : 0)}%`,
      latency: `${ms(v.p50_ms)}/${ms(v.p95_ms)}/${ms(v.p99_ms)}`,
      drift: !drift ? '' : drift.error ? drift.error : drift.drifted.length ? `drift: ${drift.drifted.join(', ')}` : `no drift (${drift.samples})`,
      failing: rate > 0.05,
      drifted: Boolean(drift && drift.drifted.length)
    };
  });
}

/** The health is read while the panel is shown and the endpoint is a live local one. */
export function shouldPollStats(visible: boolean, ep: Pick<IEndpoint, 'status' | 'backend'>): boolean {
  return visible && ep.status === 'Running' && ep.backend === 'local';
}
