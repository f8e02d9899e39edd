/**
 * The charts of a tuning study (as Optuna Dashboard's users know them): the objective per
 * trial with the best so far, the intermediate values of each trial, parallel coordinates
 * of params → objective, parameter importances, and a slice plot of the objective against
 * one param. Pure option builders over a study's trials, unit-tested in test/charts.spec.ts.
 */

import { formatValue } from '../metrics';
import { bestSoFar, bestTrial, isMaximize, plotValue, stepLine } from '../tuning';
import { IParamRange, ITrial } from '../types';
import { axis, baseOption, canLog, ChartOption, grid, legendFor } from './options';
import { IChartTheme, seriesColour } from './theme';

/** A trial that has a value to plot (COMPLETE: its objective; PRUNED: its last intermediate). */
export interface IPlotted {
  number: number;
  state: string;
  y: number;
  params: Record<string, unknown>;
}

/** The trials with a value to plot, in number order. */
export function plottedTrials(trials: readonly ITrial[]): IPlotted[] {
  const out: IPlotted[] = [];
  for (const t of trials) {
    const y = plotValue(t);
    if (y !== null && t.number !== null) {
      out.push({ number: t.number, state: t.state, y, params: t.params ?? {} });
    }
  }
  return out.sort((a, b) => a.number - b.number);
}

/** Whether the objective can be shown on a log scale (every plotted value > 0). */
export function objectiveCanLog(trials: readonly ITrial[]): boolean {
  return canLog(plottedTrials(trials).map(p => p.y));
}

/** Names of the objective plot's series, as its legend shows them. */
export const OBJECTIVE_SERIES = {
  complete: 'complete',
  pruned: 'pruned (last value)',
  best: 'best so far',
  bestTrial: 'best trial'
};

/**
 * The objective per trial: a dot per COMPLETE trial, a hollow one per PRUNED trial (at its
 * last reported value), the best-so-far step line and the best trial ringed; x is the
 * trial number, the legend names each.
 */
export function objectiveOption(
  theme: IChartTheme,
  trials: readonly ITrial[],
  objective: string,
  direction: string,
  options: { log?: boolean; width?: number } = {}
): ChartOption {
  const points = plottedTrials(trials);
  const log = !!options.log && canLog(points.map(p => p.y));
  const numbers = trials.map(t => t.number).filter((n): n is number => n !== null);
  const xMax = numbers.length ? Math.max(...numbers) : 0;
  const line = stepLine(bestSoFar(trials, direction), xMax);
  const best = bestTrial(trials, direction);
  const complete = points.filter(p => p.state === 'COMPLETE');
  const pruned = points.filter(p => p.state === 'PRUNED');
  const dot = (p: IPlotted) => ({ value: [p.number, p.y], name: `trial ${p.number}` });
  const series: ChartOption[] = [
    {
      type: 'scatter',
      name: OBJECTIVE_SERIES.complete,
      data: complete.map(dot),
      symbolSize: 7,
      itemStyle: { color: theme.primary }
    }
  ];
  if (pruned.length) {
    series.push({
      type: 'scatter',
      name: OBJECTIVE_SERIES.pruned,
      data: pruned.map(dot),
      symbol: 'emptyCircle',
      symbolSize: 7,
      itemStyle: { color: theme.warn, borderColor: theme.warn, borderWidth: 1.5 }
    });
  }
  if (line.length) {
    series.push({
      type: 'line',
      name: OBJECTIVE_SERIES.best,
      data: line.map(p => [p.x, p.y]),
      showSymbol: false,
      lineStyle: { width: 2, color: theme.success },
      itemStyle: { color: theme.success },
      z: 1
    });
  }
  if (best && best.number !== null) {
    series.push({
      type: 'scatter',
      name: OBJECTIVE_SERIES.bestTrial,
      data: [{ value: [best.number, best.value], name: `trial ${best.number}` }],
      symbol: 'emptyCircle',
      symbolSize: 15,
      itemStyle: { color: theme.success, borderColor: theme.success, borderWidth: 2 },
      z: 3
    });
  }
  const { legend, top } = legendFor(theme, series.map(s => s.name as string), options.width);
  return {
    ...baseOption(theme),
    grid: grid(top),
    legend,
    tooltip: {
      ...(baseOption(theme).tooltip as object),
      trigger: 'item',
      formatter: (p: { seriesName: string; value: [number, number] }) =>
        `trial ${p.value[0]} (${p.seriesName}): ${objective} = ${formatValue(p.value[1])}`
    },
    xAxis: axis(theme, 'trial', { integer: true, scale: false }),
    yAxis: axis(theme, `${objective} (${isMaximize(direction) ? 'max' : 'min'})`, { log }),
    series
  };
}

/** The intermediate values of a trial, by step (in step order). */
export function intermediateSeries(trial: ITrial): [number, number][] {
  return Object.entries(trial.intermediate ?? {})
    .map(([k, v]): [number, number | null] => [Number(k), v])
    .filter((p): p is [number, number] => isFinite(p[0]) && typeof p[1] === 'number' && isFinite(p[1]))
    .sort((a, b) => a[0] - b[0]);
}

/** Every trial's intermediate values, a line per trial (pruned ones dashed, where they stopped). */
export function intermediateOption(
  theme: IChartTheme,
  trials: readonly ITrial[],
  objective: string,
  options: { log?: boolean; width?: number } = {}
): ChartOption {
  const lines = trials
    .filter(t => t.number !== null)
    .map(t => ({ trial: t, data: intermediateSeries(t) }))
    .filter(l => l.data.length > 0)
    .sort((a, b) => (a.trial.number as number) - (b.trial.number as number));
  const log = !!options.log && canLog(lines.flatMap(l => l.data.map(p => p[1])));
  const { legend, top } = legendFor(theme, lines.map(l => `trial ${l.trial.number}`), options.width);
  return {
    ...baseOption(theme),
    grid: grid(top),
    legend,
    tooltip: { ...(baseOption(theme).tooltip as object), trigger: 'item' },
    xAxis: axis(theme, 'step', { integer: true }),
    yAxis: axis(theme, objective, { log }),
    series: lines.map(l => ({
      type: 'line',
      name: `trial ${l.trial.number}`,
      data: l.data,
      showSymbol: l.data.length <= 30,
      symbolSize: 4,
      lineStyle: {
        width: 1.5,
        type: l.trial.state === 'PRUNED' ? 'dashed' : 'solid',
        color: seriesColour(theme, l.trial.number as number)
      },
      itemStyle: { color: seriesColour(theme, l.trial.number as number) }
    }))
  };
}

/** Whether a param is numeric (a range, or choices that are all numbers). */
function numericParam(range: IParamRange | undefined, values: unknown[]): boolean {
  if (range && range.choices && range.choices.length) {
    return false;
  }
  return values.length > 0 && values.every(v => typeof v === 'number' && isFinite(v));
}

/** A param's axis: a log or linear scale for numbers, the choices (as text) otherwise. */
function paramAxisKind(
  name: string,
  space: Record<string, IParamRange>,
  values: unknown[]
): { log: boolean; categories?: string[] } {
  const range = space[name];
  if (numericParam(range, values)) {
    return { log: !!range?.log && canLog(values as number[]) };
  }
  const fromSpace = (range?.choices ?? []).map(c => String(c));
  const seen = values.map(v => String(v));
  return { log: false, categories: [...new Set([...fromSpace, ...seen])] };
}

/**
 * Parallel coordinates: an axis per param (log for log ranges, the choices for categorical
 * params), the objective last; a line per plotted trial, the best trial thicker.
 */
export function parallelOption(
  theme: IChartTheme,
  trials: readonly ITrial[],
  params: readonly string[],
  space: Record<string, IParamRange>,
  objective: string,
  direction: string,
  options: { log?: boolean; width?: number } = {}
): ChartOption {
  const points = plottedTrials(trials);
  const best = bestTrial(trials, direction);
  const dims = params.map((name, i) => {
    const values = points.map(p => p.params[name]).filter(v => v !== undefined && v !== null);
    const kind = paramAxisKind(name, space, values);
    return { name, i, ...kind };
  });
  const yLog = !!options.log && canLog(points.map(p => p.y));
  const axisStyle = {
    nameTextStyle: { color: theme.text, fontSize: 11 },
    axisLine: { lineStyle: { color: theme.axis } },
    axisTick: { lineStyle: { color: theme.axis } },
    axisLabel: { color: theme.text, fontSize: 10, hideOverlap: true }
  };
  const parallelAxis = [
    ...dims.map(d => ({
      dim: d.i,
      name: d.name,
      type: d.categories ? 'category' : d.log ? 'log' : 'value',
      ...(d.categories ? { data: d.categories } : { scale: true, axisLabel: { ...axisStyle.axisLabel, formatter: formatValue } }),
      ...axisStyle,
      ...(d.categories ? {} : { axisLabel: { ...axisStyle.axisLabel, formatter: formatValue } })
    })),
    {
      dim: dims.length,
      name: objective,
      type: yLog ? 'log' : 'value',
      scale: true,
      ...axisStyle,
      axisLabel: { ...axisStyle.axisLabel, formatter: formatValue },
      inverse: false
    }
  ];
  const row = (p: IPlotted) => [
    ...dims.map(d => {
      const v = p.params[d.name];
      return d.categories ? String(v) : v;
    }),
    p.y
  ];
  const regular = points.filter(p => !(best && p.number === best.number));
  const series: ChartOption[] = [
    {
      type: 'parallel',
      name: 'trials',
      lineStyle: { width: 1.5, opacity: 0.75, color: theme.primary },
      data: regular.map(p => ({
        value: row(p),
        name: `trial ${p.number}`,
        lineStyle: p.state === 'PRUNED' ? { color: theme.warn, type: 'dashed' } : undefined
      }))
    }
  ];
  const bestPoint = points.find(p => best && p.number === best.number);
  if (bestPoint) {
    series.push({
      type: 'parallel',
      name: 'best trial',
      lineStyle: { width: 3.5, opacity: 1, color: theme.success },
      data: [{ value: row(bestPoint), name: `trial ${bestPoint.number}` }]
    });
  }
  const { legend, top } = legendFor(theme, series.map(s => s.name as string), options.width);
  return {
    ...baseOption(theme),
    legend,
    tooltip: { ...(baseOption(theme).tooltip as object), trigger: 'item' },
    parallel: { left: 40, right: 56, top: top + 14, bottom: 24, parallelAxisDefault: { nameGap: 8, nameLocation: 'end' } },
    parallelAxis,
    series
  };
}

/** The answer of `GET /studies/{id}/importances`. */
export interface IImportances {
  importances: Record<string, number>;
  trials: number;
  message: string | null;
}

/** Parameter importances as horizontal bars, the most important on top, as percentages. */
export function importanceOption(theme: IChartTheme, importances: Record<string, number>): ChartOption {
  const entries = Object.entries(importances).sort((a, b) => b[1] - a[1]);
  const names = entries.map(e => e[0]);
  return {
    ...baseOption(theme),
    legend: { show: false },
    grid: { left: 8, right: 48, top: 8, bottom: 28, containLabel: true },
    tooltip: { ...(baseOption(theme).tooltip as object), trigger: 'item' },
    xAxis: { ...axis(theme, 'importance', { scale: false }), max: 1, interval: 0.5, axisLabel: { color: theme.text, fontSize: 10, formatter: (v: number) => `${Math.round(v * 100)}%` } },
    yAxis: { ...axis(theme, '', { categories: names }), inverse: true, nameGap: 0 },
    series: [
      {
        type: 'bar',
        name: 'importance',
        data: entries.map(e => e[1]),
        barMaxWidth: 18,
        itemStyle: { color: theme.primary },
        label: {
          show: true,
          position: 'right',
          color: theme.text,
          fontSize: 10,
          formatter: (p: { value: number }) => `${(p.value * 100).toFixed(1)}%`
        }
      }
    ]
  };
}

/** The objective against one param: a dot per plotted trial (pruned hollow). */
export function sliceOption(
  theme: IChartTheme,
  trials: readonly ITrial[],
  param: string,
  space: Record<string, IParamRange>,
  objective: string,
  options: { log?: boolean; width?: number } = {}
): ChartOption {
  const points = plottedTrials(trials).filter(p => p.params[param] !== undefined && p.params[param] !== null);
  const kind = paramAxisKind(param, space, points.map(p => p.params[param]));
  const log = !!options.log && canLog(points.map(p => p.y));
  const x = (p: IPlotted) => (kind.categories ? String(p.params[param]) : p.params[param]);
  const complete = points.filter(p => p.state === 'COMPLETE');
  const pruned = points.filter(p => p.state === 'PRUNED');
  const series: ChartOption[] = [
    {
      type: 'scatter',
      name: OBJECTIVE_SERIES.complete,
      data: complete.map(p => ({ value: [x(p), p.y], name: `trial ${p.number}` })),
      symbolSize: 7,
      itemStyle: { color: theme.primary }
    }
  ];
  if (pruned.length) {
    series.push({
      type: 'scatter',
      name: OBJECTIVE_SERIES.pruned,
      data: pruned.map(p => ({ value: [x(p), p.y], name: `trial ${p.number}` })),
      symbol: 'emptyCircle',
      symbolSize: 7,
      itemStyle: { color: theme.warn, borderColor: theme.warn }
    });
  }
  const { legend, top } = legendFor(theme, series.map(s => s.name as string), options.width);
  return {
    ...baseOption(theme),
    grid: grid(top),
    legend,
    tooltip: {
      ...(baseOption(theme).tooltip as object),
      trigger: 'item',
      formatter: (p: { name: string; value: [unknown, number] }) =>
        `${p.name}: ${param} = ${String(p.value[0])}, ${objective} = ${formatValue(p.value[1])}`
    },
    xAxis: axis(theme, param, { log: kind.log, categories: kind.categories }),
    yAxis: axis(theme, objective, { log }),
    series
  };
}
