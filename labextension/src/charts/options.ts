/**
 * ECharts options for every chart of the extension, built by pure functions (no DOM, no
 * ECharts at run time: only its option types), so each is unit-tested in
 * test/charts.spec.ts. The defaults (text, axes, tooltip, legend) come from one theme
 * (`IChartTheme`, JupyterLab's CSS variables), so light and dark read alike.
 */

import type { EChartsCoreOption } from 'echarts/core';

import { formatValue, IPoint } from '../metrics';
import { IChartTheme, seriesColour } from './theme';

export type ChartOption = EChartsCoreOption & Record<string, unknown>;

/* ------------------------------------------------------------------ defaults */

/** What every chart shares: text style, no animation, the tooltip's and legend's look. */
export function baseOption(theme: IChartTheme): ChartOption {
  return {
    animation: false,
    backgroundColor: 'transparent',
    color: theme.palette,
    textStyle: { color: theme.text, fontFamily: theme.fontFamily, fontSize: 11 },
    tooltip: {
      confine: true,
      backgroundColor: theme.background,
      borderColor: theme.axis,
      textStyle: { color: theme.text, fontSize: 11 }
    },
    legend: {
      type: 'scroll',
      top: 0,
      left: 0,
      itemWidth: 14,
      itemHeight: 8,
      textStyle: { color: theme.text, fontSize: 11 },
      inactiveColor: theme.axis,
      pageIconColor: theme.text,
      pageIconInactiveColor: theme.axis,
      pageTextStyle: { color: theme.text }
    }
  };
}

export interface IAxisOptions {
  /** A logarithmic scale (every value must be > 0: see `canLog`). */
  log?: boolean;
  /** Integers only (trial numbers, steps). */
  integer?: boolean;
  /** Categories instead of numbers. */
  categories?: string[];
  /** Fit the data instead of starting at zero. */
  scale?: boolean;
}

/** An x or y axis in the theme's colours, with ticks, labels and a name. */
export function axis(theme: IChartTheme, name: string, options: IAxisOptions = {}): ChartOption {
  const type = options.categories ? 'category' : options.log ? 'log' : 'value';
  return {
    type,
    name,
    nameLocation: 'middle',
    nameGap: 24,
    nameTextStyle: { color: theme.muted, fontSize: 11 },
    ...(options.categories ? { data: options.categories } : {}),
    ...(type === 'value' ? { scale: options.scale ?? true } : {}),
    ...(options.integer ? { minInterval: 1 } : {}),
    axisLine: { show: true, lineStyle: { color: theme.axis } },
    axisTick: { show: true, lineStyle: { color: theme.axis } },
    axisLabel: { color: theme.text, fontSize: 10, hideOverlap: true, formatter: options.categories ? undefined : formatValue },
    splitLine: { show: true, lineStyle: { color: theme.grid } }
  };
}

/** Whether a log scale can show `values` (all finite and > 0, at least one). */
export function canLog(values: readonly number[]): boolean {
  return values.length > 0 && values.every(v => isFinite(v) && v > 0);
}

/** Height of one row of the legend, in px. */
export const LEGEND_ROW = 20;

/**
 * The legend for `labels` in a chart `width` px wide: plain (wrapping onto a second row)
 * while its items fit in two rows, else one scrolling row; and the room it takes on top.
 */
export function legendFor(
  theme: IChartTheme,
  labels: readonly string[],
  width?: number
): { legend: ChartOption; top: number } {
  const base = baseOption(theme).legend as ChartOption;
  if (!labels.length) {
    return { legend: { show: false }, top: 12 };
  }
  const itemWidths = labels.map(l => 14 + 5 + 6.2 * l.length + 10);
  const available = Math.max(120, (width ?? 560) - 8);
  let rows = 1;
  let used = 0;
  for (const w of itemWidths) {
    if (used > 0 && used + w > available) {
      rows += 1;
      used = 0;
    }
    used += w;
  }
  if (rows > 2) {
    return { legend: { ...base, data: [...labels] }, top: 12 + LEGEND_ROW };
  }
  return { legend: { ...base, type: 'plain', width: available, data: [...labels] }, top: 12 + rows * LEGEND_ROW };
}

/** The plot area below a legend `top` px high, with room for the axes' names. */
export function grid(top: number | boolean): ChartOption {
  const t = typeof top === 'number' ? top : top ? 32 : 12;
  return { left: 52, right: 16, top: t, bottom: 40, containLabel: false };
}

/* ----------------------------------------------------------- a job's metrics */

export interface ILineSeries {
  /** The legend's name of the line (a rank's, a run's, a trial's label). */
  label: string;
  points: readonly IPoint[];
  /** Its colour in the palette (the rank, the run's position …). */
  index: number;
  dashed?: boolean;
}

/** Lines of `metric` by step: one per series, dots while they are few, a legend. */
export function metricsOption(
  theme: IChartTheme,
  series: readonly ILineSeries[],
  metric: string,
  options: { log?: boolean; xName?: string; width?: number } = {}
): ChartOption {
  const log = !!options.log && canLog(series.flatMap(s => s.points.map(p => p.y)));
  const { legend, top } = legendFor(theme, series.map(s => s.label), options.width);
  return {
    ...baseOption(theme),
    grid: grid(top),
    legend,
    tooltip: { ...(baseOption(theme).tooltip as object), trigger: 'axis' },
    xAxis: axis(theme, options.xName ?? 'step', { scale: true }),
    yAxis: axis(theme, metric, { log }),
    series: series.map(s => ({
      type: 'line',
      name: s.label,
      data: s.points.map(p => [p.x, p.y]),
      showSymbol: s.points.length <= 60,
      symbolSize: 5,
      lineStyle: { width: 2, type: s.dashed ? 'dashed' : 'solid', color: seriesColour(theme, s.index) },
      itemStyle: { color: seriesColour(theme, s.index) }
    }))
  };
}

/* ---------------------------------------------- parallel coordinates of runs */

export interface IParallelColumn {
  name: string;
  /** `param` or `metric`. */
  kind: string;
  /** One value per line (null/undefined: the line has none on this axis). */
  values: readonly unknown[];
}

/**
 * Parallel coordinates of compared runs: an axis per column (numbers on a linear scale,
 * anything else as categories), a line per run in its colour of the comparison.
 */
export function runsParallelOption(
  theme: IChartTheme,
  columns: readonly IParallelColumn[],
  lines: readonly { label: string; index: number }[]
): ChartOption {
  const label = { color: theme.text, fontSize: 10, hideOverlap: true };
  const parallelAxis = columns.map((c, dim) => {
    const present = c.values.filter(v => v !== null && v !== undefined);
    const numeric = present.length > 0 && present.every(v => typeof v === 'number' && isFinite(v));
    const categories = numeric ? undefined : [...new Set(present.map(v => String(v)))].sort();
    return {
      dim,
      name: c.name,
      type: numeric ? 'value' : 'category',
      ...(numeric ? { scale: true } : { data: categories }),
      nameTextStyle: { color: theme.text, fontSize: 11, fontWeight: c.kind === 'metric' ? 'bold' : 'normal' },
      axisLine: { lineStyle: { color: theme.axis } },
      axisTick: { lineStyle: { color: theme.axis } },
      axisLabel: numeric ? { ...label, formatter: formatValue } : label
    };
  });
  return {
    ...baseOption(theme),
    legend: { show: false },
    tooltip: { ...(baseOption(theme).tooltip as object), trigger: 'item' },
    parallel: { left: 40, right: 48, top: 28, bottom: 20, parallelAxisDefault: { nameLocation: 'end', nameGap: 8 } },
    parallelAxis,
    series: lines.map(l => ({
      type: 'parallel',
      name: l.label,
      lineStyle: { width: 2, opacity: 0.9, color: seriesColour(theme, l.index) },
      data: [
        {
          name: l.label,
          value: columns.map(c => {
            const v = c.values[l.index];
            return v === null || v === undefined ? null : typeof v === 'number' ? v : String(v);
          })
        }
      ]
    }))
  };
}
