/**
 * The Experiments panel's logic without React: REST calls to `/experiments` and
 * `/runs…` (filtering, sorting and comparing happen on the server, in kfjupyter.tracking),
 * the table's columns, and the compare view's shapes (overlaid curves for the metrics
 * chart, parallel coordinates of params → a metric). jest tests it.
 */

import { KFApi } from './api';
import { niceTicks, scale } from './metrics';
import { formatMetric } from './models';
import { IChannel, IJob, IMetricRow } from './types';

export interface IExperiment {
  name: string;
  runs: number;
  last_run_at: string | null;
}

/** A run as `GET /runs` and `GET /runs/{id}` give it (`kfjupyter.tracking.Run.to_dict`). */
export interface IRun {
  run_id: string;
  job_id: string;
  child: string | null;
  experiment: string;
  name: string;
  kind: string;
  status: string;
  params: Record<string, unknown>;
  metrics: Record<string, number | null>;
  tags: Record<string, string>;
  env: Record<string, unknown>;
  parent_run: string | null;
  source_run: string | null;
  notebook?: string | null;
  cell?: string | null;
  backend?: string;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  duration_s: number | null;
  models: string[];
}

export interface IRunPage {
  runs: IRun[];
  total: number;
  limit: number;
  offset: number;
}

export interface INamedValues {
  name: string;
  values: unknown[];
}

/** `GET /runs/compare`: values are in the order of `runs`. */
export interface IComparison {
  runs: IRun[];
  params: INamedValues[];
  metrics: INamedValues[];
  curves: Record<string, { run_id: string; points: [number, number][] }[]>;
}

/** What the runs table asks for: the same filter and order_by as `kfjupyter.runs()`. */
export interface IRunQuery {
  experiment?: string;
  filter?: string;
  /** `metrics.loss ASC`, `params.lr DESC` … */
  orderBy?: string[];
  limit?: number;
  offset?: number;
}

export const RUN_PAGE = 100;

/** The query string of `GET /runs` (repeated `order_by`; blank values left out). */
export function runsQuery(q: IRunQuery): string {
  const params = new URLSearchParams();
  if (q.experiment) {
    params.append('experiment', q.experiment);
  }
  if (q.filter && q.filter.trim()) {
    params.append('filter', q.filter.trim());
  }
  for (const o of q.orderBy ?? []) {
    if (o.trim()) {
      params.append('order_by', o.trim());
    }
  }
  params.append('limit', String(q.limit ?? RUN_PAGE));
  params.append('offset', String(q.offset ?? 0));
  return `?${params.toString()}`;
}

/** A column of the runs table: its search key, as a filter or order_by names it. */
export type ColumnKey = string;

/** Attributes a user may show as columns (search keys of the attribute kind). */
export const ATTRIBUTE_COLUMNS: ColumnKey[] = [
  'attributes.status',
  'attributes.kind',
  'attributes.experiment',
  'attributes.created_at',
  'attributes.duration_s'
];

/** The value a run shows in a column (`params.lr`, `metrics.loss`, `tags.team`, `attributes.status`). */
export function cellValue(run: IRun, column: ColumnKey): unknown {
  const dot = column.indexOf('.');
  const kind = column.slice(0, dot);
  const name = column.slice(dot + 1);
  if (kind === 'params') {
    return run.params?.[name];
  }
  if (kind === 'metrics') {
    return run.metrics?.[name];
  }
  if (kind === 'tags') {
    return run.tags?.[name];
  }
  return (run as unknown as Record<string, unknown>)[name];
}

/** A column's heading: the key without its prefix. */
export function columnLabel(column: ColumnKey): string {
  return column.slice(column.indexOf('.') + 1);
}

/** Every column the runs offer, attributes first, then params, metrics, tags (first-seen order). */
export function availableColumns(runs: readonly IRun[]): ColumnKey[] {
  const out: ColumnKey[] = [...ATTRIBUTE_COLUMNS];
  const add = (key: string) => {
    if (!out.includes(key)) {
      out.push(key);
    }
  };
  for (const kind of ['params', 'metrics', 'tags'] as const) {
    for (const run of runs) {
      for (const name of Object.keys(run[kind] ?? {})) {
        add(`${kind}.${name}`);
      }
    }
  }
  return out;
}

/**
 * The columns shown until the user picks some: the status, the params whose values
 * differ among the runs listed (what changed) and every metric; at most `max`.
 */
export function defaultColumns(runs: readonly IRun[], max = 6): ColumnKey[] {
  const columns: ColumnKey[] = ['attributes.status'];
  const params = availableColumns(runs).filter(c => c.startsWith('params.'));
  const differing = params.filter(c => new Set(runs.map(r => JSON.stringify(cellValue(r, c)))).size > 1);
  const metrics = availableColumns(runs).filter(c => c.startsWith('metrics.'));
  return columns.concat(differing, metrics).slice(0, max);
}

/** The order_by after a click on a column's heading: ascending, then descending, then none. */
export function nextOrder(current: string[], column: ColumnKey): string[] {
  const [first] = current;
  if (first === `${column} ASC`) {
    return [`${column} DESC`];
  }
  if (first === `${column} DESC`) {
    return [];
  }
  return [`${column} ASC`];
}

/** How a cell's value reads: numbers to 4 significant digits, times local, nothing as –. */
export function formatCell(value: unknown, column: ColumnKey = ''): string {
  if (value === null || value === undefined || value === '') {
    return '–';
  }
  if (typeof value === 'number') {
    return formatMetric(value);
  }
  if (typeof value === 'string' && column.endsWith('_at')) {
    const when = new Date(value);
    return isNaN(when.getTime()) ? value : when.toLocaleString();
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** A run's short label in charts and the compare view: its name and the end of its id. */
export function runLabel(run: IRun): string {
  return `${run.name} (${run.run_id.slice(-6)})`;
}

/**
 * The comparison's curves of `metric` as rows for the metrics chart: one series per
 * run (its `rank` is the run's position), labelled by the run.
 */
export function comparisonSeries(
  comparison: IComparison,
  metric: string
): { rows: IMetricRow[]; channels: IChannel[] } {
  const position = new Map(comparison.runs.map((r, i) => [r.run_id, i]));
  const rows: IMetricRow[] = [];
  for (const curve of comparison.curves[metric] ?? []) {
    const rank = position.get(curve.run_id);
    if (rank === undefined) {
      continue;
    }
    for (const [step, value] of curve.points) {
      rows.push({ rank, step, [metric]: value });
    }
  }
  const channels = comparison.runs.map((r, i) => ({
    name: r.run_id,
    label: runLabel(r),
    rank: i,
    child: null
  }));
  return { rows, channels };
}

export interface IAxis {
  name: string;
  /** `param` or `metric` */
  kind: string;
  x: number;
  numeric: boolean;
  ticks: { y: number; label: string }[];
}

export interface IPolyline {
  runId: string;
  /** the run's position in the comparison (its colour) */
  index: number;
  points: { x: number; y: number }[];
}

/**
 * Parallel coordinates of the params that differ → `metric` (the last axis): an axis per
 * param (a linear scale for numbers, evenly spaced values otherwise) and a line per run
 * through its values; a run without a value on an axis skips it.
 */
export function parallelCoordinates(
  comparison: IComparison,
  metric: string,
  width: number,
  height: number,
  margin = { top: 14, bottom: 22, left: 40, right: 40 }
): { axes: IAxis[]; lines: IPolyline[] } {
  const columns: (INamedValues & { kind: string })[] = comparison.params.map(p => ({ ...p, kind: 'param' }));
  const final = comparison.metrics.find(m => m.name === metric);
  if (final) {
    columns.push({ ...final, kind: 'metric' });
  }
  if (!columns.length) {
    return { axes: [], lines: [] };
  }
  const span = width - margin.left - margin.right;
  const step = columns.length > 1 ? span / (columns.length - 1) : 0;
  const bottom = height - margin.bottom;
  const ys: ((v: unknown) => number | null)[] = [];
  const axes = columns.map((c, i): IAxis => {
    const x = columns.length > 1 ? margin.left + i * step : margin.left + span / 2;
    const present = c.values.filter(v => v !== null && v !== undefined);
    const numeric = present.length > 0 && present.every(v => typeof v === 'number' && isFinite(v));
    if (numeric) {
      const nums = present as number[];
      const ticks = niceTicks(Math.min(...nums), Math.max(...nums), 4);
      const sy = scale(ticks[0], ticks[ticks.length - 1], bottom, margin.top);
      ys.push(v => (typeof v === 'number' && isFinite(v) ? sy(v) : null));
      return { name: c.name, kind: c.kind, x, numeric, ticks: ticks.map(t => ({ y: sy(t), label: formatCell(t) })) };
    }
    const distinct = [...new Set(present.map(v => formatCell(v)))].sort();
    const sy = scale(0, Math.max(1, distinct.length - 1), bottom, margin.top);
    const at = (v: unknown) => {
      if (v === null || v === undefined) {
        return null;
      }
      const k = distinct.indexOf(formatCell(v));
      return distinct.length === 1 ? (bottom + margin.top) / 2 : sy(k);
    };
    ys.push(at);
    return {
      name: c.name,
      kind: c.kind,
      x,
      numeric,
      ticks: distinct.map(label => ({ y: at(label) as number, label }))
    };
  });
  const lines = comparison.runs.map((run, index) => ({
    runId: run.run_id,
    index,
    points: columns
      .map((c, i) => ({ x: axes[i].x, y: ys[i](c.values[index]) }))
      .filter((p): p is { x: number; y: number } => p.y !== null)
  }));
  return { axes, lines };
}

/**
 * The params a Re-run sends: the fields the user changed, typed as the run's own value
 * (a number stays a number, a boolean a boolean); the server checks the names.
 */
export function changedParams(
  original: Record<string, unknown>,
  edited: Record<string, string>
): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [name, text] of Object.entries(edited)) {
    const before = original[name];
    if (text === formatParam(before)) {
      continue;
    }
    if (typeof before === 'number' && text.trim() !== '' && isFinite(Number(text))) {
      out[name] = Number(text);
    } else if (typeof before === 'boolean' && /^(true|false)$/i.test(text.trim())) {
      out[name] = text.trim().toLowerCase() === 'true';
    } else {
      out[name] = text;
    }
  }
  return out;
}

/** A param's value in the Re-run form's field. */
export function formatParam(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** Whether a job event may change what the panel shows (every job but an endpoint is a run). */
export function isRunEvent(job: Pick<IJob, 'kind'>): boolean {
  return job.kind !== 'endpoint';
}

/** The REST calls of the panel (`server_ext/openapi.yaml`, tag `tracking`). */
export class ExperimentsApi {
  constructor(readonly api: KFApi) {}

  experiments(signal?: AbortSignal): Promise<{ experiments: IExperiment[] }> {
    return this.api.json('experiments', { signal });
  }

  runs(q: IRunQuery, signal?: AbortSignal): Promise<IRunPage> {
    return this.api.json(`runs${runsQuery(q)}`, { signal });
  }

  run(id: string, signal?: AbortSignal): Promise<IRun> {
    return this.api.json(`runs/${encodeURIComponent(id)}`, { signal });
  }

  compare(ids: string[], signal?: AbortSignal): Promise<IComparison> {
    const params = new URLSearchParams();
    for (const id of ids) {
      params.append('ids', id);
    }
    return this.api.json(`runs/compare?${params.toString()}`, { signal });
  }

  /** `POST /runs/{id}/rerun`: the new job. */
  rerun(id: string, params: Record<string, number | string | boolean>): Promise<IJob> {
    return this.api.json(`runs/${encodeURIComponent(id)}/rerun`, {
      method: 'POST',
      body: JSON.stringify({ params })
    });
  }
}
