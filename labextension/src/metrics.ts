/**
 * Metrics reported by `kfjupyter.report(step=…, **metrics)`, shaped for a chart.
 */

import { IChannel, IMetricRow } from './types';

const RESERVED = new Set(['rank', 'step', 'time', 'job_id']);

export interface IPoint {
  x: number;
  y: number;
}

export interface ISeries {
  rank: number;
  points: IPoint[];
}

/** Names of the numeric metrics in `rows`, in order of first appearance. */
export function metricNames(rows: readonly IMetricRow[]): string[] {
  const names: string[] = [];
  for (const row of rows) {
    for (const [key, value] of Object.entries(row)) {
      if (
        !RESERVED.has(key) &&
        typeof value === 'number' &&
        isFinite(value) &&
        !names.includes(key)
      ) {
        names.push(key);
      }
    }
  }
  return names;
}

/**
 * One line per rank for metric `name`: x is the step (or the report's order
 * within the rank when no step was given), sorted by x.
 */
export function metricSeries(rows: readonly IMetricRow[], name: string): ISeries[] {
  const byRank = new Map<number, IPoint[]>();
  for (const row of rows) {
    const y = row[name];
    if (typeof y !== 'number' || !isFinite(y)) {
      continue;
    }
    const rank = typeof row.rank === 'number' ? row.rank : 0;
    const points = byRank.get(rank) ?? [];
    const x = typeof row.step === 'number' && isFinite(row.step) ? row.step : points.length;
    points.push({ x, y });
    byRank.set(rank, points);
  }
  return [...byRank.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([rank, points]) => ({ rank, points: points.sort((a, b) => a.x - b.x) }));
}

/**
 * What a series of `rank` is called: the label of the job's metric channel of that rank
 * (`job.channels.metrics`: a study's `trials`, a training job's `rank 1` …), else `rank N`.
 */
export function seriesLabel(rank: number, channels: readonly IChannel[] = []): string {
  return channels.find(c => c.rank === rank)?.label || `rank ${rank}`;
}

/** The latest value of each metric on `rank` (or any rank). */
export function latestValues(
  rows: readonly IMetricRow[],
  rank?: number
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of rows) {
    if (rank !== undefined && row.rank !== rank) {
      continue;
    }
    for (const name of metricNames([row])) {
      out[name] = row[name] as number;
    }
  }
  return out;
}

/**
 * About `count` round tick values covering [min, max] (1, 2 or 5 × 10^n steps).
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!isFinite(min) || !isFinite(max)) {
    return [];
  }
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  if (min > max) {
    [min, max] = [max, min];
  }
  const raw = (max - min) / Math.max(1, count);
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step =
    [1, 2, 5, 10].map(m => m * magnitude).find(s => s >= raw) ?? 10 * magnitude;
  const start = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= max + step * 1e-9; v += step) {
    // Round off float noise such as 0.30000000000000004.
    ticks.push(Number(v.toPrecision(12)));
  }
  if (ticks[ticks.length - 1] < max) {
    ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  }
  return ticks;
}

/** A linear map from [d0, d1] onto [r0, r1]. */
export function scale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const span = d1 - d0 || 1;
  return v => r0 + ((v - d0) / span) * (r1 - r0);
}

/** An SVG path (`M x y L x y …`) through the points. */
export function linePath(
  points: readonly IPoint[],
  sx: (v: number) => number,
  sy: (v: number) => number
): string {
  return points
    .map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`)
    .join(' ');
}

/** A compact label for a tick value: 0.001, 12.5, 3.2k, 1.5e-5. */
export function formatValue(v: number): string {
  if (v === 0) {
    return '0';
  }
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    return v.toExponential(1).replace('e+', 'e');
  }
  if (a >= 1e3) {
    return `${Number((v / 1e3).toPrecision(3))}k`;
  }
  return String(Number(v.toPrecision(3)));
}
