/**
 * The Jobs panel's state and the one function that changes it.
 *
 * The list comes from `GET /jobs` (a page, newest first) and is then kept
 * current by `job` events from `GET /events`. Events can arrive before the
 * page that already contains them, twice, or out of order; the reducer keeps
 * the list right in every case (see `upsert`).
 */

import { IJob, isTerminal } from './types';

export interface IFilters {
  /** '' for any kind. */
  kind: string;
  /** '' for any status. */
  status: string;
}

/** A job as the panel holds it: the record and when it arrived (client clock). */
export interface IJobEntry {
  job: IJob;
  receivedAt: number;
}

export interface IJobsState {
  /** The jobs shown, newest first. */
  entries: IJobEntry[];
  /** How many jobs match the filters on the server. */
  total: number;
  filters: IFilters;
  /** The page size asked for. */
  limit: number;
  loading: boolean;
  /** Whether a first page has been loaded. */
  loaded: boolean;
  error: string | null;
  /** Kinds seen so far (for the filter), sorted. */
  kinds: string[];
}

export type JobsAction =
  | { type: 'loading' }
  | {
      type: 'loaded';
      jobs: IJob[];
      total: number;
      /** Add a further page below the current one instead of replacing it. */
      append?: boolean;
      now: number;
    }
  | { type: 'upsert'; job: IJob; now: number }
  | { type: 'filters'; filters: IFilters }
  | { type: 'error'; message: string };

export function initialState(limit = 50): IJobsState {
  return {
    entries: [],
    total: 0,
    filters: { kind: '', status: '' },
    limit,
    loading: false,
    loaded: false,
    error: null,
    kinds: []
  };
}

export function matches(job: IJob, filters: IFilters): boolean {
  return (
    (!filters.kind || job.kind === filters.kind) &&
    (!filters.status || job.status === filters.status)
  );
}

/** Newest first: by creation time, then by id (both descending). */
export function compareJobs(a: IJob, b: IJob): number {
  if (a.created_at !== b.created_at) {
    return a.created_at < b.created_at ? 1 : -1;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * Whether `incoming` is older news than `current`: a finished job never goes
 * back to Pending/Running, and a job never goes back from Running to Pending.
 */
export function isStale(current: IJob, incoming: IJob): boolean {
  if (isTerminal(current.status)) {
    return !isTerminal(incoming.status);
  }
  return current.status === 'Running' && incoming.status === 'Pending';
}

function addKind(kinds: string[], kind: string): string[] {
  return !kind || kinds.includes(kind) ? kinds : [...kinds, kind].sort();
}

function insertSorted(entries: IJobEntry[], entry: IJobEntry): IJobEntry[] {
  const out = entries.slice();
  let i = 0;
  while (i < out.length && compareJobs(out[i].job, entry.job) <= 0) {
    i++;
  }
  out.splice(i, 0, entry);
  return out;
}

function upsert(state: IJobsState, job: IJob, now: number): IJobsState {
  const kinds = addKind(state.kinds, job.kind);
  const index = state.entries.findIndex(e => e.job.id === job.id);
  const fits = matches(job, state.filters);
  if (index >= 0) {
    const current = state.entries[index].job;
    if (isStale(current, job)) {
      return kinds === state.kinds ? state : { ...state, kinds };
    }
    const entries = state.entries.slice();
    if (fits) {
      entries[index] = { job, receivedAt: now };
      return { ...state, entries, kinds };
    }
    // It changed out of the filter (say, Running → Succeeded under "Running").
    entries.splice(index, 1);
    return { ...state, entries, kinds, total: Math.max(0, state.total - 1) };
  }
  if (!fits) {
    return kinds === state.kinds ? state : { ...state, kinds };
  }
  const entries = state.entries;
  const last = entries[entries.length - 1];
  const shownAll = entries.length >= state.total;
  // A job older than the last one shown belongs to a page not loaded yet:
  // count it, show it only when everything is shown anyway.
  if (last && compareJobs(last.job, job) < 0 && !shownAll) {
    return { ...state, kinds, total: state.total + 1 };
  }
  return {
    ...state,
    entries: insertSorted(entries, { job, receivedAt: now }),
    kinds,
    total: state.total + 1
  };
}

export function reduce(state: IJobsState, action: JobsAction): IJobsState {
  switch (action.type) {
    case 'loading':
      return { ...state, loading: true, error: null };
    case 'loaded': {
      const fresh = action.jobs.map(job => ({ job, receivedAt: action.now }));
      let entries: IJobEntry[];
      if (action.append) {
        const seen = new Set(state.entries.map(e => e.job.id));
        entries = [...state.entries, ...fresh.filter(e => !seen.has(e.job.id))];
      } else {
        // Keep news that arrived while the page was on its way.
        const newer = new Map(state.entries.map(e => [e.job.id, e]));
        entries = fresh.map(e => {
          const known = newer.get(e.job.id);
          return known && isStale(known.job, e.job) ? known : e;
        });
      }
      entries.sort((a, b) => compareJobs(a.job, b.job));
      let kinds = state.kinds;
      for (const e of entries) {
        kinds = addKind(kinds, e.job.kind);
      }
      return {
        ...state,
        entries,
        total: Math.max(action.total, entries.length),
        loading: false,
        loaded: true,
        error: null,
        kinds
      };
    }
    case 'upsert':
      return upsert(state, action.job, action.now);
    case 'filters':
      return {
        ...state,
        filters: { ...action.filters },
        entries: [],
        total: 0,
        loaded: false
      };
    case 'error':
      return { ...state, loading: false, error: action.message };
    default:
      return state;
  }
}

/** How many jobs are shown that are still active (for the ticking clock). */
export function activeCount(state: IJobsState): number {
  return state.entries.filter(e => !isTerminal(e.job.status)).length;
}
