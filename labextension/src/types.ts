/**
 * The shapes the server extension's REST API sends (base `/kfjupyter/api/v1`).
 */

export type JobStatus =
  | 'Pending'
  | 'Running'
  | 'Cancelling'
  | 'Succeeded'
  | 'Failed'
  | 'Cancelled';

export const JOB_STATUSES: readonly JobStatus[] = [
  'Pending',
  'Running',
  'Cancelling',
  'Succeeded',
  'Failed',
  'Cancelled'
];

/** Kinds the sidebar offers in its filter before any job of that kind exists. */
export const KNOWN_KINDS: readonly string[] = [
  'train',
  'tune',
  'pipeline',
  'notebook',
  'endpoint'
];

export const TERMINAL_STATUSES: ReadonlySet<string> = new Set([
  'Succeeded',
  'Failed',
  'Cancelled'
]);

export function isTerminal(status: string): boolean {
  return TERMINAL_STATUSES.has(status);
}

export interface IJob {
  id: string;
  name: string;
  kind: string;
  backend: string;
  status: JobStatus | string;
  workers: number;
  spec?: Record<string, unknown> | null;
  backend_info?: Record<string, unknown> | null;
  error?: string | null;
  /** The rank (the job's own channel) whose failure failed the job, when it says. */
  failed_rank?: number | null;
  message?: string | null;
  /** The notebook that started the job (relative to the server root, or absolute). */
  notebook?: string | null;
  /** The source of the cell that started the job. */
  cell?: string | null;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  duration_s?: number | null;
  /** The job's own log and metric channels (empty until the job reached its backend). */
  channels?: IChannels;
}

/** One stream of a job: what `channel=` takes (`rank-0`, `worker-1`, `server/primary` …). */
export interface IChannel {
  name: string;
  label: string;
  /** What `rank=` takes (null: by name only). */
  rank: number | null;
  /** The child task the channel belongs to, if any. */
  child: string | null;
}

export interface IChannels {
  logs: IChannel[];
  metrics: IChannel[];
}

export interface IJobList {
  jobs: IJob[];
  total: number;
  limit: number;
  offset: number;
}

export interface ILogs {
  job_id: string;
  rank: number | null;
  /** The channel read, when named. */
  channel?: string;
  lines: string[];
}

/** One `kfjupyter.report(step=…, **metrics)` call. */
export interface IMetricRow {
  rank: number;
  step?: number | null;
  time?: number | string | null;
  [name: string]: unknown;
}

export interface IMetrics {
  job_id: string;
  metrics: IMetricRow[];
}

export interface IServerSettings {
  default_backend: string;
  namespace: string;
  image: string;
  backends: string[];
}

/** Settings of the settings registry (labextension/schema/plugin.json). */
export interface IUserSettings {
  defaultBackend: string;
  namespace: string;
  defaultImage: string;
}

/* ------------------------------------------------------------ tuning studies */

/** A trial's state, the same words for both backends. */
export type TrialState =
  | 'COMPLETE'
  | 'PRUNED'
  | 'FAIL'
  | 'CANCELLED'
  | 'RUNNING'
  | 'WAITING';

export const TRIAL_STATES: readonly TrialState[] = [
  'COMPLETE',
  'PRUNED',
  'FAIL',
  'CANCELLED',
  'RUNNING',
  'WAITING'
];

export type Direction = 'minimize' | 'maximize';

/** One trial of a study (`GET /studies/{id}`). */
export interface ITrial {
  /** Null only for a Katib optimal trial the list has not caught up with. */
  number: number | null;
  state: TrialState | string;
  /** The objective of a COMPLETE trial (null otherwise). */
  value: number | null;
  params: Record<string, unknown>;
  /** Reported step → objective value (the steps are strings in JSON). */
  intermediate: Record<string, number | null>;
  datetime_start: string | null;
  datetime_complete: string | null;
  duration_s: number | null;
  error: string | null;
  worker: number | null;
}

/** One parameter of the search space. */
export interface IParamRange {
  name: string;
  type: string;
  low?: number | null;
  high?: number | null;
  step?: number | null;
  log?: boolean;
  choices?: unknown[] | null;
}

interface IStudyBase {
  id: string;
  name: string;
  status: JobStatus | string;
  backend: string;
  /** Progress, e.g. "3/10 trials done, 2 running; best loss=0.12 (trial 1)". */
  message: string | null;
  error: string | null;
  objective: string;
  direction: Direction | string;
  algorithm: string;
  early_stopping: string | null;
  /** How many trials the study runs in all. */
  trials_budget: number;
  parallel: number;
  workers_per_trial: number;
  created_at: string | null;
  duration_s: number | null;
  best: ITrial | null;
}

/** A study with its trials: `Study.to_dict()`. */
export interface IStudy extends IStudyBase {
  space: Record<string, IParamRange>;
  trials: ITrial[];
}

/** A study in a list: no trials, a count of them per state. */
export interface IStudySummary extends IStudyBase {
  /** Null when the server could not read the trials. */
  n_trials: number | null;
  trial_counts: Record<string, number> | null;
}

export interface IStudyList {
  studies: IStudySummary[];
  total: number;
  limit: number;
  offset: number;
}
