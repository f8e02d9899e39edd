/**
 * Times, durations and paths, as the panels show them.
 */

import { IJob, isTerminal } from './types';

/**
 * Milliseconds since the epoch of an ISO time from the server, or NaN.
 *
 * Python's `isoformat()` of a naive datetime has no offset; the store writes
 * UTC, so such times are read as UTC (JavaScript would read them as local).
 */
export function parseTime(iso: string | null | undefined): number {
  if (!iso) {
    return NaN;
  }
  const hasZone = /(Z|[+-]\d\d:?\d\d)$/i.test(iso.trim());
  return Date.parse(hasZone ? iso : iso.trim() + 'Z');
}

/**
 * Seconds the job has run: finished jobs from the server's numbers, active
 * jobs ticking on the client.
 *
 * For an active job the server's `duration_s` at the moment the record
 * arrived (`receivedAt`, client clock) plus the time since then is used, so a
 * clock difference between browser and server does not show. Without it the
 * job's own timestamps are used.
 */
export function jobDuration(
  job: IJob,
  now: number,
  receivedAt?: number
): number | null {
  const start = parseTime(job.started_at || job.created_at);
  if (isTerminal(job.status)) {
    if (typeof job.duration_s === 'number') {
      return Math.max(0, job.duration_s);
    }
    const end = parseTime(job.finished_at);
    return isNaN(start) || isNaN(end) ? null : Math.max(0, (end - start) / 1000);
  }
  if (typeof job.duration_s === 'number' && receivedAt !== undefined) {
    return Math.max(0, job.duration_s + (now - receivedAt) / 1000);
  }
  return isNaN(start) ? null : Math.max(0, (now - start) / 1000);
}

/**
 * A job's clock as shown: a pending job's time is its wait since it was submitted,
 * labelled so, and a running one's its run time since it started: the number never
 * seems to jump backwards at Pending → Running.
 */
export function jobClock(job: IJob, now: number, receivedAt?: number): { text: string; title: string } {
  const seconds = jobDuration(job, now, receivedAt);
  if (job.status === 'Pending') {
    return { text: `queued ${formatDuration(seconds)}`, title: 'Waiting to start, since it was submitted' };
  }
  return { text: formatDuration(seconds), title: isTerminal(job.status) ? 'Run time' : 'Running for' };
}

/**
 * What tells a job apart from others of the same name: the end of its id after the
 * name (`quickstart-3f9a2` → `3f9a2`), or the whole id when it does not start with it.
 */
export function jobTag(job: Pick<IJob, 'id' | 'name'>): string {
  const prefix = `${job.name}-`;
  return job.id.startsWith(prefix) && job.id.length > prefix.length ? job.id.slice(prefix.length) : job.id;
}

/** What Cancel asks before it stops a job: what stops, and what is kept. */
export function cancelQuestion(job: Pick<IJob, 'name' | 'kind' | 'workers'>): { title: string; body: string } {
  const stops: Record<string, string> = {
    train: `Its ${job.workers === 1 ? 'rank is' : `${job.workers} ranks are`} stopped now`,
    tune: 'Its running trials are stopped now and no new ones start',
    pipeline: 'Its running steps are stopped now and no new ones start',
    notebook: "The notebook's kernel is stopped now",
    batch: 'Its running shards are stopped now (a resume finishes only the missing ones)',
    endpoint: 'Its model servers are stopped and its URL stops answering'
  };
  const stop = stops[job.kind] ?? 'It is stopped now';
  return {
    title: `Cancel ${job.name}?`,
    body: `${stop}; its logs, metrics and what it wrote so far are kept.`
  };
}

/** `42s`, `3m 05s`, `1h 02m 03s`, or `–` when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '–';
  }
  if (seconds < 10) {
    return `${Math.max(0, seconds).toFixed(1)}s`; // a short step or trial: tenths matter
  }
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) {
    return `${h}h ${pad(m)}m ${pad(s)}s`;
  }
  if (m > 0) {
    return `${m}m ${pad(s)}s`;
  }
  return `${s}s`;
}

/** A short local time for a list row: `14:03` today, `Nov 22 14:03` before. */
export function formatStart(iso: string | null | undefined, now = Date.now()): string {
  const t = parseTime(iso);
  if (isNaN(t)) {
    return '';
  }
  const date = new Date(t);
  const time = date.toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit'
  });
  if (new Date(now).toDateString() === date.toDateString()) {
    return time;
  }
  const day = date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return `${day} ${time}`;
}

/**
 * The path of a job's notebook as the contents API wants it: relative to the
 * server root, `/`-separated. Kernels report the absolute path
 * (`JPY_SESSION_NAME`); it is made relative when it lies under `serverRoot`.
 * Returns null when the notebook is unknown or outside the root.
 */
export function notebookApiPath(
  notebook: string | null | undefined,
  serverRoot: string
): string | null {
  if (!notebook) {
    return null;
  }
  const path = notebook.replace(/\\/g, '/');
  const isAbsolute = path.startsWith('/') || /^[A-Za-z]:\//.test(path);
  if (!isAbsolute) {
    return path.replace(/^\.\//, '');
  }
  const raw = (serverRoot || '').replace(/\\/g, '/');
  if (raw === '' || raw.startsWith('~')) {
    return null;
  }
  const root = raw.replace(/\/+$/, '');
  if (root === '') {
    // The server runs at the filesystem root.
    return path.slice(1);
  }
  return path.startsWith(root + '/') ? path.slice(root.length + 1) : null;
}
