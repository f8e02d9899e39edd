/**
 * The Models panel's logic: REST calls to `/models…`, the list's query and pages
 * (server-side search and paging, "load more"), metric columns and the comparison
 * chart's geometry. No React here, so jest can test it.
 */

import { KFApi } from './api';

export type ModelState = 'LIVE' | 'ARCHIVED';

export interface IRegisteredModel {
  id: string;
  name: string;
  state: ModelState;
  description?: string | null;
  owner?: string | null;
  latest_version?: number | null;
  version_count?: number | null;
  aliases: Record<string, number | null>;
  frameworks: string[];
  updated_at?: string | null;
}

export interface IModelVersion {
  id: string;
  model: string;
  number: number | null;
  name: string;
  ref: string;
  state: ModelState;
  framework: string;
  description?: string | null;
  author?: string | null;
  metrics: Record<string, number | null>;
  params: Record<string, unknown>;
  lineage: Record<string, unknown>;
  aliases: string[];
  created_at?: string | null;
  custom_properties?: Record<string, unknown>;
  artifacts?: IVersionArtifact[];
  /** Can Deploy work (the server's `servable`: deploy's own preflight), else why. */
  servable?: IServable;
  /** The tracking run of the job that produced it, when there is one. */
  run?: { run_id: string; experiment?: string; name?: string; params: Record<string, unknown> } | null;
}

export interface IVersionArtifact {
  name: string;
  size: number | null;
  format: string;
  uri?: string;
  main_file?: string | null;
  properties?: Record<string, unknown>;
}

export interface IServable {
  ok: boolean;
  reason?: string | null;
  /** What is missing: `model_class` (a PyTorch state dict) … */
  needs?: string | null;
}

export interface IPage<T> {
  items: T[];
  total: number | null;
  offset: number;
  limit: number | null;
  next_offset: number | null;
}

export interface IAliasEvent {
  model: string;
  alias: string;
  from_version: number | null;
  to_version: number | null;
  who: string | null;
  at: string | null;
  reason?: string | null;
}

export interface IAliasHistory {
  model: string;
  aliases: Record<string, number | null>;
  history: IAliasEvent[];
}

export interface IArtifactFile {
  path: string;
  size: number | null;
}

/** The list's search box and filters. */
export interface IModelFilter {
  q?: string;
  framework?: string;
  alias?: string;
  state?: string;
  /** metric ranges as the server reads them: `accuracy>=0.9`, `loss<=0.3`, `f1=0.5..0.8` */
  metrics?: string[];
}

export const PAGE_SIZE = 50;

/** The query string of a `GET /models` (or versions) page; repeated `metric` keys. */
export function modelQuery(filter: IModelFilter, offset: number, limit = PAGE_SIZE): string {
  const parts: string[] = [];
  const add = (k: string, v: string | number | undefined) => {
    if (v !== undefined && String(v).trim() !== '') {
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v).trim())}`);
    }
  };
  add('q', filter.q);
  add('framework', filter.framework);
  add('alias', filter.alias);
  add('state', filter.state);
  for (const m of filter.metrics ?? []) {
    add('metric', m);
  }
  add('limit', limit);
  add('offset', offset);
  return `?${parts.join('&')}`;
}

/** `"accuracy>=0.9, loss<=0.3"` → `["accuracy>=0.9", "loss<=0.3"]` (blank parts dropped). */
export function parseMetricFilter(text: string): string[] {
  return text
    .split(/[,;]/)
    .map(s => s.replace(/\s+/g, ''))
    .filter(s => s.length > 0);
}

/** A later page appended to what is shown: items already there (by `key`) are not repeated. */
export function appendPage<T>(shown: T[], page: IPage<T>, key: (item: T) => string): T[] {
  const seen = new Set(shown.map(key));
  return shown.concat(page.items.filter(item => !seen.has(key(item))));
}

/** The metric names of some versions, in first-seen order: the table's columns. */
export function metricNames(versions: IModelVersion[]): string[] {
  const names: string[] = [];
  for (const v of versions) {
    for (const name of Object.keys(v.metrics ?? {})) {
      if (!names.includes(name)) {
        names.push(name);
      }
    }
  }
  return names;
}

export function formatMetric(value: number | null | undefined): string {
  if (typeof value !== 'number' || !isFinite(value)) {
    return '–';
  }
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

export interface IBar {
  label: string;
  value: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Bars of a metric across versions (oldest number first) in a `width`×`height` box,
 * leaving `pad` at the bottom for labels; versions without the metric are left out.
 * The scale starts at 0 unless values are negative.
 */
export function comparisonBars(
  versions: IModelVersion[],
  metric: string,
  width: number,
  height: number,
  pad = 14
): { bars: IBar[]; min: number; max: number } {
  const points = versions
    .filter(v => typeof v.metrics?.[metric] === 'number' && isFinite(v.metrics[metric] as number))
    .sort((a, b) => (a.number ?? 0) - (b.number ?? 0))
    .map(v => ({ label: `v${v.number ?? v.name}`, value: v.metrics[metric] as number }));
  if (!points.length) {
    return { bars: [], min: 0, max: 0 };
  }
  const min = Math.min(0, ...points.map(p => p.value));
  let max = Math.max(0, ...points.map(p => p.value));
  if (max === min) {
    max = min + 1;
  }
  const plot = height - pad;
  const slot = width / points.length;
  const barWidth = Math.max(2, Math.min(40, slot * 0.7));
  const zero = plot - ((0 - min) / (max - min)) * plot;
  const bars = points.map((p, i) => {
    const top = plot - ((p.value - min) / (max - min)) * plot;
    return {
      label: p.label,
      value: p.value,
      x: i * slot + (slot - barWidth) / 2,
      y: Math.min(top, zero),
      width: barWidth,
      height: Math.max(1, Math.abs(zero - top))
    };
  });
  return { bars, min, max };
}

/** `1 version`, `2 versions`. */
export function plural(count: number, word: string, many = `${word}s`): string {
  return `${count} ${count === 1 ? word : many}`;
}

/** `812 B`, `4.2 KB`, `13 MB` (powers of 1024). */
export function formatBytes(size: number | null | undefined): string {
  if (typeof size !== 'number' || !isFinite(size) || size < 0) {
    return '–';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** The bytes of a version's artifacts (null when none says its size). */
export function versionSize(v: Pick<IModelVersion, 'artifacts'>): number | null {
  const sizes = (v.artifacts ?? []).map(a => a.size).filter((n): n is number => typeof n === 'number');
  return sizes.length ? sizes.reduce((a, b) => a + b, 0) : null;
}

/** The params of a version: its run's (tracking), with the version's own on top. */
export function versionParams(v: Pick<IModelVersion, 'params' | 'run'>): Record<string, unknown> {
  return { ...(v.run?.params ?? {}), ...(v.params ?? {}) };
}

function shortValue(value: unknown): string {
  if (typeof value === 'number') {
    return formatMetric(value);
  }
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}

/** `C=0.1, kernel=rbf` (sorted by name). */
export function paramsLine(params: Record<string, unknown>): string {
  return Object.keys(params)
    .sort()
    .map(k => `${k}=${shortValue(params[k])}`)
    .join(', ');
}

/** The names of the params that differ between versions (the interesting columns). */
export function differingParams(versions: Pick<IModelVersion, 'params' | 'run'>[]): string[] {
  const all = versions.map(versionParams);
  const names = Array.from(new Set(all.flatMap(p => Object.keys(p)))).sort();
  if (all.length < 2) {
    return names;
  }
  return names.filter(n => new Set(all.map(p => JSON.stringify(p[n] ?? null))).size > 1);
}

/** The Deploy button of a version: enabled, or disabled with the reason as its tooltip. */
export function deployState(v: Pick<IModelVersion, 'servable' | 'state' | 'ref'>): {
  enabled: boolean;
  reason: string;
} {
  if (v.state === 'ARCHIVED') {
    return { enabled: false, reason: `${v.ref} is archived: restore it to deploy it` };
  }
  if (v.servable && !v.servable.ok) {
    return { enabled: false, reason: v.servable.reason || `${v.ref} cannot be served as it is` };
  }
  return { enabled: true, reason: `Serve ${v.ref} as an endpoint` };
}

/** What was recorded of a version's inputs: a signature and an input example (custom properties). */
export function inputRecord(v: Pick<IModelVersion, 'custom_properties' | 'artifacts'>): {
  signature: string | null;
  example: string | null;
  sample: boolean;
} {
  const props = v.custom_properties ?? {};
  const text = (value: unknown): string | null =>
    value === undefined || value === null ? null : typeof value === 'string' ? value : JSON.stringify(value);
  return {
    signature: text(props.signature),
    example: text(props.input_example),
    sample: (v.artifacts ?? []).some(a => a.name === 'training_sample')
  };
}

/**
 * What moving an alias does, said before it moves: which version it leaves, and the
 * endpoints that serve that version (they keep serving it: an endpoint resolves an alias
 * when it is deployed).
 */
export function aliasMoveText(
  model: string,
  alias: string,
  from: number | null,
  to: number,
  serving: { name: string; deployedAs: string | null; percent: number }[]
): { title: string; body: string } {
  const title = from === null ? `Set ${alias} on ${model} v${to}?` : `Move ${alias} from v${from} to v${to}?`;
  let body =
    from === null
      ? `${model}@${alias} will mean v${to}.`
      : `${model}@${alias} will mean v${to} instead of v${from}: what loads or deploys ${model}@${alias} from now on gets v${to}.`;
  if (from !== null) {
    body += serving.length
      ? ` Endpoints serving v${from} keep serving it until they are deployed again: ` +
        serving
          .map(s => `${s.name} (${s.percent}%${s.deployedAs ? `, deployed as ${s.deployedAs}` : ''})`)
          .join(', ') +
        '.'
      : ` No endpoint serves v${from}.`;
  }
  return { title, body };
}

/** One history line: "production: v1 → v2", "staging set on v3", "production removed (was v2)". */
export function describeAliasEvent(e: IAliasEvent): string {
  if (e.from_version === null && e.to_version !== null) {
    return `${e.alias} set on v${e.to_version}`;
  }
  if (e.to_version === null) {
    return `${e.alias} removed (was v${e.from_version})`;
  }
  return `${e.alias}: v${e.from_version} → v${e.to_version}`;
}

/** The REST calls of the panel (`server_ext/openapi.yaml`, tag `models`). */
export class ModelsApi {
  constructor(readonly api: KFApi) {}

  listModels(filter: IModelFilter, offset = 0, signal?: AbortSignal): Promise<IPage<IRegisteredModel>> {
    return this.api.json(`models${modelQuery(filter, offset)}`, { signal });
  }

  listVersions(
    model: string,
    offset = 0,
    filter: IModelFilter = {},
    signal?: AbortSignal
  ): Promise<IPage<IModelVersion>> {
    return this.api.json(`models/${encodeURIComponent(model)}/versions${modelQuery(filter, offset)}`, {
      signal
    });
  }

  aliases(model: string): Promise<IAliasHistory> {
    return this.api.json(`models/${encodeURIComponent(model)}/aliases`);
  }

  setAlias(model: string, alias: string, version: number): Promise<IModelVersion> {
    return this.api.json(`models/${encodeURIComponent(model)}/aliases/${encodeURIComponent(alias)}`, {
      method: 'POST',
      body: JSON.stringify({ version })
    });
  }

  setState(model: string, version: number, archive: boolean, force = false): Promise<IModelVersion> {
    return this.api.json(
      `models/${encodeURIComponent(model)}/versions/${version}/${archive ? 'archive' : 'restore'}`,
      { method: 'POST', body: JSON.stringify(archive ? { force } : {}) }
    );
  }

  /** The endpoints (to say which serve a version before an alias moves away from it). */
  endpoints(): Promise<{ items: { name: string; status: string; versions: Record<string, number>; model: string | null }[] }> {
    return this.api.json('endpoints');
  }

  files(model: string, version: number): Promise<{ files: IArtifactFile[] }> {
    return this.api.json(`models/${encodeURIComponent(model)}/versions/${version}/files`);
  }

  /** The bytes of one artifact file (through the API, so the token goes with it). */
  async download(model: string, version: number, path: string): Promise<Blob> {
    const encoded = path.split('/').map(encodeURIComponent).join('/');
    const response = await this.api.fetch(
      `models/${encodeURIComponent(model)}/versions/${version}/files/${encoded}`
    );
    return response.blob();
  }
}
