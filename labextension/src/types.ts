/**
 * The shapes the server extension's REST API sends (base `/kfjupyter/api/v1`).
 */

export type JobStatus =
  | 'Pending'
  | 'Running'
  | 'Succeeded'
  | 'Failed'
  | 'Cancelled';

export const JOB_STATUSES: readonly JobStatus[] = [
  'Pending',
  'Running',
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
  message?: string | null;
  /** The notebook that started the job (relative to the server root, or absolute). */
  notebook?: string | null;
  /** The source of the cell that started the job. */
  cell?: string | null;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  duration_s?: number | null;
}

export interface IJobList {
  jobs: IJob[];
  total: number;
  limit: number;
  offset: number;
}

export interface ILogs {
  job_id: string;
  rank: number;
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
