/**
 * Tuning studies as the Tuning panel shows them: best-so-far, progress, the
 * trial table's order, the list of studies kept current by re-reads, and how a
 * trial's log is read. Pure functions (no DOM), unit-tested in test/tuning.spec.ts.
 */

import { formatDuration, parseTime } from './format';
import { ILogRead, logRead } from './logfollower';
import { IPoint } from './metrics';
import { IStudy, IStudySummary, ITrial, TRIAL_STATES } from './types';

/** States of a trial that is over (each counts towards the study's budget). */
const FINISHED = new Set(['COMPLETE', 'PRUNED', 'FAIL', 'CANCELLED']);

export function isMaximize(direction: string): boolean {
  return direction === 'maximize';
}

/** Whether objective value `a` is better than `b` in `direction`. */
export function isBetter(a: number, b: number, direction: string): boolean {
  return isMaximize(direction) ? a > b : a < b;
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && isFinite(v);
}

/** The last reported intermediate value (by step), or null. */
export function lastIntermediate(trial: ITrial): number | null {
  let step = -Infinity;
  let value: number | null = null;
  for (const [key, v] of Object.entries(trial.intermediate ?? {})) {
    const s = Number(key);
    if (finite(v) && isFinite(s) && s >= step) {
      step = s;
      value = v;
    }
  }
  return value;
}

/**
 * The value a trial is plotted at: its objective when COMPLETE, its last
 * reported value when PRUNED; null for any other trial.
 */
export function plotValue(trial: ITrial): number | null {
  if (trial.state === 'COMPLETE') {
    return finite(trial.value) ? trial.value : null;
  }
  if (trial.state === 'PRUNED') {
    return lastIntermediate(trial);
  }
  return null;
}

/**
 * The best objective so far at each COMPLETE trial, in trial-number order:
 * `{x: trial number, y: best value among COMPLETE trials up to it}`.
 */
export function bestSoFar(trials: readonly ITrial[], direction: string): IPoint[] {
  const complete = trials
    .filter(t => t.state === 'COMPLETE' && finite(t.value) && finite(t.number))
    .sort((a, b) => (a.number as number) - (b.number as number));
  const out: IPoint[] = [];
  let best: number | null = null;
  for (const t of complete) {
    const v = t.value as number;
    if (best === null || isBetter(v, best, direction)) {
      best = v;
    }
    out.push({ x: t.number as number, y: best });
  }
  return out;
}

/**
 * The best-so-far as a step line: flat from each point to the next one, then
 * a jump to the new best; continued flat to `xEnd` (the last trial number)
 * when that lies beyond the last point.
 */
export function stepLine(points: readonly IPoint[], xEnd?: number): IPoint[] {
  const out: IPoint[] = [];
  points.forEach((p, i) => {
    if (i > 0 && p.y !== points[i - 1].y) {
      out.push({ x: p.x, y: points[i - 1].y });
    }
    if (i === 0 || p.y !== points[i - 1].y || i === points.length - 1) {
      out.push(p);
    }
  });
  const last = out[out.length - 1];
  if (last && xEnd !== undefined && xEnd > last.x) {
    out.push({ x: xEnd, y: last.y });
  }
  return out;
}

/** The best COMPLETE trial (lowest number among equals), or null. */
export function bestTrial(trials: readonly ITrial[], direction: string): ITrial | null {
  let best: ITrial | null = null;
  for (const t of trials) {
    if (t.state !== 'COMPLETE' || !finite(t.value)) {
      continue;
    }
    if (
      best === null ||
      isBetter(t.value, best.value as number, direction) ||
      (t.value === best.value && (t.number ?? Infinity) < (best.number ?? Infinity))
    ) {
      best = t;
    }
  }
  return best;
}

/** How many trials are in each state (every state present). */
export function countStates(trials: readonly ITrial[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of TRIAL_STATES) {
    counts[s] = 0;
  }
  for (const t of trials) {
    counts[t.state] = (counts[t.state] ?? 0) + 1;
  }
  return counts;
}

export interface IProgress {
  /** Finished trials (complete, pruned, failed, cancelled). */
  done: number;
  running: number;
  budget: number;
  /** done / budget, within [0, 1]. */
  fraction: number;
}

/** A study's progress from its trial counts (null when the server could not count). */
export function progress(
  study: Pick<IStudySummary, 'trial_counts' | 'trials_budget'>
): IProgress | null {
  const counts = study.trial_counts;
  if (!counts) {
    return null;
  }
  let done = 0;
  for (const [state, n] of Object.entries(counts)) {
    if (FINISHED.has(state)) {
      done += n;
    }
  }
  const budget = Math.max(0, study.trials_budget || 0);
  return {
    done,
    running: counts.RUNNING ?? 0,
    budget,
    fraction: budget > 0 ? Math.min(1, done / budget) : 0
  };
}

/** A study's list entry, from the study itself (as the server's summary is made). */
export function summarize(study: IStudy): IStudySummary {
  const { trials, space, ...rest } = study;
  void space;
  return { ...rest, n_trials: trials.length, trial_counts: countStates(trials) };
}

/** Newest first: by creation time, then by id (both descending). */
export function compareStudies(
  a: Pick<IStudySummary, 'created_at' | 'id'>,
  b: Pick<IStudySummary, 'created_at' | 'id'>
): number {
  const ta = parseTime(a.created_at);
  const tb = parseTime(b.created_at);
  if (ta !== tb && !(isNaN(ta) && isNaN(tb))) {
    if (isNaN(ta)) {
      return 1;
    }
    if (isNaN(tb)) {
      return -1;
    }
    return tb - ta;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** `list` with `study` put in (replacing the entry of the same id), newest first. */
export function upsertStudy(
  list: readonly IStudySummary[],
  study: IStudySummary
): IStudySummary[] {
  const out = list.filter(s => s.id !== study.id);
  out.push(study);
  return out.sort(compareStudies);
}

/* ------------------------------------------------------- the trial table */

/** A column the table sorts by: `number`, `state`, `value`, `duration` or `param:NAME`. */
export type SortKey = string;

export interface ISort {
  key: SortKey;
  ascending: boolean;
}

export const DEFAULT_SORT: ISort = { key: 'number', ascending: true };

/** Clicking column `key`: the same column flips; another starts ascending. */
export function nextSort(current: ISort, key: SortKey): ISort {
  if (current.key === key) {
    return { key, ascending: !current.ascending };
  }
  return { key, ascending: true };
}

const STATE_ORDER: Record<string, number> = Object.fromEntries(
  ['RUNNING', 'WAITING', 'COMPLETE', 'PRUNED', 'FAIL', 'CANCELLED'].map((s, i) => [s, i])
);

function sortValue(trial: ITrial, key: SortKey): number | string | null {
  if (key === 'number') {
    return trial.number;
  }
  if (key === 'state') {
    return STATE_ORDER[trial.state] ?? 99;
  }
  if (key === 'value') {
    return finite(trial.value) ? trial.value : null;
  }
  if (key === 'duration') {
    return finite(trial.duration_s) ? trial.duration_s : null;
  }
  if (key.startsWith('param:')) {
    const v = trial.params?.[key.slice(6)];
    if (finite(v)) {
      return v;
    }
    return v === undefined || v === null ? null : String(v);
  }
  return null;
}

/**
 * The trials in the table's order. Trials without a value for the column
 * come last either way; ties keep trial-number order.
 */
export function sortTrials(trials: readonly ITrial[], sort: ISort): ITrial[] {
  const sign = sort.ascending ? 1 : -1;
  const byNumber = (a: ITrial, b: ITrial) => (a.number ?? Infinity) - (b.number ?? Infinity);
  return [...trials].sort((a, b) => {
    const va = sortValue(a, sort.key);
    const vb = sortValue(b, sort.key);
    if (va === null || vb === null) {
      return va === vb ? byNumber(a, b) : va === null ? 1 : -1;
    }
    if (va !== vb) {
      if (typeof va === 'number' && typeof vb === 'number') {
        return sign * (va - vb);
      }
      return sign * String(va).localeCompare(String(vb));
    }
    return byNumber(a, b);
  });
}

/** The parameter columns: the search space's order, then any other names the trials have. */
export function paramNames(study: Pick<IStudy, 'space' | 'trials'>): string[] {
  const names = Object.keys(study.space ?? {});
  for (const t of study.trials) {
    for (const name of Object.keys(t.params ?? {})) {
      if (!names.includes(name)) {
        names.push(name);
      }
    }
  }
  return names;
}

/** A parameter value in a table cell: numbers with 4 significant digits. */
export function formatParam(value: unknown): string {
  if (value === null || value === undefined) {
    return '–';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    const a = Math.abs(value);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
      return value.toExponential(2).replace('e+', 'e');
    }
    return String(Number(value.toPrecision(4)));
  }
  return String(value);
}

/**
 * Seconds a trial has run: the server's number when it is over; while it
 * runs, the server's number when it arrived (`receivedAt`, client clock)
 * plus the time since, so clock differences do not show.
 */
export function trialDuration(trial: ITrial, now: number, receivedAt: number): number | null {
  if (!finite(trial.duration_s)) {
    return null;
  }
  if (trial.state === 'RUNNING') {
    return Math.max(0, trial.duration_s + (now - receivedAt) / 1000);
  }
  return Math.max(0, trial.duration_s);
}

/** A trial's duration: tenths of a second below 10 s (`1.2s`), else as jobs show it. */
export function formatTrialDuration(seconds: number | null): string {
  if (seconds !== null && isFinite(seconds) && seconds >= 0 && seconds < 10) {
    return `${(Math.floor(seconds * 10) / 10).toFixed(1)}s`;
  }
  return formatDuration(seconds);
}

/* ------------------------------------------------------------ a trial's log */

/** Lines of a live trial's log read first (then followed); once it ended, all of it. */
export const TRIAL_LOG_TAIL = 1000;

/** A trial's log: the channel `trial/N` of the study's job. */
export function trialChannel(number: number): string {
  return `trial/${number}`;
}

/** Whether a trial may still print: it runs, or waits to. */
export function trialLive(trial: Pick<ITrial, 'state'>): boolean {
  return trial.state === 'RUNNING' || trial.state === 'WAITING';
}

/**
 * How a trial's log is read: a running (or waiting) trial's last `TRIAL_LOG_TAIL` lines,
 * followed until the trial ends; an ended trial's whole log, once.
 */
export function trialLogRead(trial: Pick<ITrial, 'state'>): ILogRead {
  return logRead(trialLive(trial), TRIAL_LOG_TAIL);
}

/* ------------------------------------------------------ a study's headline */

/**
 * A study's progress said from its trials, so the headline and the counts beside it agree:
 * `5/8 trials done (4 complete, 1 pruned), 2 running`; done = complete + pruned + failed
 * (+ cancelled), as `progress` counts them.
 */
export function progressText(
  study: Pick<IStudy, 'trials' | 'trials_budget'>
): string {
  const counts = countStates(study.trials);
  const p = progress({ trial_counts: counts, trials_budget: study.trials_budget });
  if (!p) {
    return '';
  }
  const parts = ['COMPLETE', 'PRUNED', 'FAIL', 'CANCELLED']
    .filter(s => counts[s])
    .map(s => `${counts[s]} ${s === 'FAIL' ? 'failed' : s.toLowerCase()}`);
  const detail = parts.length ? ` (${parts.join(', ')})` : '';
  return `${p.done}/${p.budget} trials done${detail}, ${p.running} running`;
}

/** The value a trial's row shows: the objective, or a pruned trial's last reported value. */
export function shownValue(trial: ITrial): number | null {
  return finite(trial.value) ? trial.value : plotValue(trial);
}
