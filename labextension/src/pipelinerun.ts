/**
 * How the Pipeline panel shows a run's steps: durations (ticking for a running step),
 * the cache column, and which steps the DAG colours. Plain functions: unit-tested.
 */

import { parseTime } from './format';
import { ILogRead, logRead } from './logfollower';
import { IPipeline, IPipelineRun, IRunStep } from './pipelineapi';
import { isTerminal } from './types';

/** Step states after which a step does not change any more. */
const STEP_DONE = new Set(['Succeeded', 'Failed', 'Cancelled', 'Skipped', 'Cached']);

export function stepDone(status: string): boolean {
  return STEP_DONE.has(status);
}

/** Whether the panel keeps polling the run (the run, or one of its steps, is not finished). */
export function runActive(run: IPipelineRun | null): boolean {
  if (!run) {
    return false;
  }
  return !isTerminal(run.status) || (run.steps || []).some(s => s.status === 'Running');
}

/** Lines of a running step's log read first (then followed); once it ended, all of it. */
export const RUNNING_LOG_TAIL = 2000;

/** The log channel of a step (`step/NAME`; the server names it, this is its fallback). */
export function stepChannel(step: Pick<IRunStep, 'name' | 'channel'>): string {
  return step.channel || `step/${step.name}`;
}

/**
 * How a step's log is read: a running step's last `RUNNING_LOG_TAIL` lines, followed;
 * any other step's whole log (`tail` 0), once (pending: empty; ended: all it printed).
 */
export function stepLogRead(step: Pick<IRunStep, 'status'>): ILogRead {
  return logRead(step.status === 'Running', RUNNING_LOG_TAIL);
}

/** Seconds a step ran: the server's figure when done, else since it started (client clock). */
export function stepSeconds(step: IRunStep, now: number): number | null {
  if (typeof step.duration_s === 'number' && (stepDone(step.status) || step.status !== 'Running')) {
    return Math.max(0, step.duration_s);
  }
  if (step.status !== 'Running') {
    return null;
  }
  const start = parseTime(step.started_at);
  return isNaN(start) ? (typeof step.duration_s === 'number' ? step.duration_s : null) : Math.max(0, (now - start) / 1000);
}

/** The status a step's box shows: a step taken from the cache reads Cached. */
export function displayStatus(step: IRunStep): string {
  if (step.cached && step.status === 'Succeeded') {
    return 'Cached';
  }
  return step.status;
}

/** The cache column: "cached" / "ran", and why. */
export function cacheText(step: IRunStep): { label: string; reason: string } {
  const reason = step.cache_reason || '';
  if (step.cached || step.status === 'Cached') {
    return { label: 'cached', reason };
  }
  if (!stepDone(step.status) && step.status !== 'Running') {
    return { label: '', reason };
  }
  return { label: step.status === 'Running' ? 'running' : 'ran', reason };
}

/** Step name → status shown, for colouring the DAG's boxes. */
export function stepStates(run: IPipelineRun | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const step of run?.steps || []) {
    out[step.name] = displayStatus(step);
  }
  return out;
}

/** A parameter's value as the form shows it. */
export function paramText(value: unknown, type: string): string {
  if (type === 'str' && typeof value === 'string') {
    return value;
  }
  return type === 'json' ? JSON.stringify(value) : String(value);
}

/** The values typed that differ from the defaults (text: the server parses them by type). */
export function runParameters(pipeline: IPipeline | null, typed: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(typed)) {
    const p = pipeline?.parameters[name];
    if (p && text !== paramText(p.default, p.type)) {
      out[name] = text;
    }
  }
  return out;
}

/**
 * Whether `run` ran the pipeline `pipeline` is (the same steps, each with the same
 * program): only then does the DAG of `pipeline` show the run's step colours. A notebook
 * edited and recompiled since the run no longer matches.
 */
export function runMatchesPipeline(run: IPipelineRun | null, pipeline: IPipeline | null): boolean {
  if (!run || !pipeline || !run.pipeline || !run.pipeline.steps) {
    return false;
  }
  if (run.pipeline === pipeline) {
    return true;
  }
  const mine = Object.keys(pipeline.steps).sort();
  const theirs = Object.keys(run.pipeline.steps).sort();
  if (mine.length !== theirs.length || mine.some((name, i) => name !== theirs[i])) {
    return false;
  }
  return mine.every(name => (run.pipeline.steps[name].program ?? '') === (pipeline.steps[name].program ?? ''));
}

/**
 * A notebook's path as the server's REST API wants it: the drive prefix of JupyterLab's
 * path dropped (`RTC:sub/nb.ipynb` under jupyter-collaboration → `sub/nb.ipynb`).
 * `localPath` (a document context's own) is used when given.
 */
export function restPath(path: string, localPath?: string): string {
  if (localPath) {
    return localPath;
  }
  const slash = path.indexOf('/');
  const colon = path.indexOf(':');
  return colon >= 0 && (slash < 0 || colon < slash) ? path.slice(colon + 1) : path;
}

/**
 * Whether a job's `notebook` (relative to the server root, or absolute as kernels report
 * it) is the notebook at `path` (relative to the server root). Unknown: false.
 */
export function sameNotebook(notebook: string | null | undefined, path: string): boolean {
  if (!notebook || !path) {
    return false;
  }
  const norm = (p: string): string => p.replace(/\\/g, '/').replace(/^\.\//, '');
  const a = norm(notebook);
  const b = norm(path).replace(/^\/+/, '');
  return a === b || a.endsWith(`/${b}`);
}

/** How a status is shown: an icon (a glyph, beside the text, never alone), its words, what it means. */
export interface IStatusInfo {
  status: string;
  icon: string;
  /** What it means, for the legend and the tooltips. */
  meaning: string;
}

/**
 * Every status a run or a step shows, in the legend's order. Each has its own icon and
 * (in pipeline.css) its own colour: Skipped (grey, dashed) and Cancelled (orange) differ.
 */
export const STATUS_INFO: IStatusInfo[] = [
  { status: 'Pending', icon: '○', meaning: 'waiting for the steps before it' },
  { status: 'Running', icon: '◐', meaning: 'running now' },
  { status: 'Succeeded', icon: '✓', meaning: 'ran and finished without error' },
  { status: 'Cached', icon: '↺', meaning: 'not run: its values were taken from an earlier run with the same code and inputs' },
  { status: 'Failed', icon: '✕', meaning: 'raised an error (see its log)' },
  { status: 'Skipped', icon: '⤼', meaning: 'not run because a step before it failed or was cancelled' },
  { status: 'Cancelling', icon: '⊘', meaning: 'being stopped' },
  { status: 'Cancelled', icon: '⊘', meaning: 'stopped before it finished' }
];

/** The icon and meaning of `status` (an unknown status: a dot, and its own words). */
export function statusInfo(status: string): IStatusInfo {
  return STATUS_INFO.find(s => s.status === status) ?? { status, icon: '•', meaning: status };
}

/** The backends the Run action offers: the value the API takes, and what the user reads. */
export const RUN_BACKENDS: { value: string; label: string }[] = [
  { value: 'local', label: 'Local (this machine)' },
  { value: 'kubernetes', label: 'Kubeflow Pipelines' }
];

/** A backend's name for the user (`kubernetes` runs go to Kubeflow Pipelines). */
export function backendLabel(backend: string | null | undefined): string {
  if (backend === 'kubernetes' || backend === 'k8s') {
    return 'Kubeflow Pipelines';
  }
  return backend === 'local' ? 'local' : backend || '';
}

/**
 * The badge of each notebook cell (index → badge, null for none): the step it belongs to
 * (`cellSteps`) and that step's status in the run shown (`states`, empty when none).
 */
export function cellBadges(
  steps: ReadonlyArray<string | null>,
  states: Record<string, string>
): ({ step: string; status: string; label: string } | null)[] {
  return steps.map(step => {
    if (!step) {
      return null;
    }
    const status = states[step] ?? '';
    const label = status ? `step ${step} · ${statusInfo(status).icon} ${status}` : `step ${step}`;
    return { step, status, label };
  });
}

/** A value a step handed on (`GET /pipelines/runs/{id}/steps/{step}/outputs`), as a row's text. */
export function outputText(o: { type: string | null; size: number | null; preview: string | null; available: boolean }): string {
  if (!o.available) {
    return 'not handed on in this run';
  }
  const parts = [o.type || '?'];
  if (typeof o.size === 'number') {
    parts.push(formatBytes(o.size));
  }
  return parts.join(' · ');
}

export function formatBytes(n: number): string {
  if (n < 1024) {
    return `${n} B`;
  }
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
