/**
 * The jobs of the workspace as the frontend sees them: one list, kept current
 * by the server's push channel (`GET /events`), shared by the sidebar and
 * every job detail tab.
 */

import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { KFApi, KFApiError } from './api';
import { isAbortError, ISSEEvent } from './sse';
import { IFilters, IJobsState, initialState, isStale, reduce, JobsAction } from './state';
import { IJob, IServerSettings, IUserSettings } from './types';

/** How long a jobs list request may take before it is asked again. */
const REFRESH_RETRY_MS = 15000;

export type Connection = 'connecting' | 'live' | 'offline';

export class JobsModel implements IDisposable {
  constructor(readonly api: KFApi, options: { pageSize?: number } = {}) {
    this._state = initialState(options.pageSize ?? 50);
  }

  get state(): IJobsState {
    return this._state;
  }

  /** Emitted whenever `state` changes. */
  get stateChanged(): ISignal<this, IJobsState> {
    return this._stateChanged;
  }

  /** Emitted for every new version of a job, listed or not. */
  get jobChanged(): ISignal<this, IJob> {
    return this._jobChanged;
  }

  /**
   * Emitted for every event of the push channel that is not a job's (e.g. `model`: the
   * model registry changed), with its SSE name and data.
   */
  get streamEvent(): ISignal<this, ISSEEvent> {
    return this._streamEvent;
  }

  get connection(): Connection {
    return this._connection;
  }

  get connectionChanged(): ISignal<this, Connection> {
    return this._connectionChanged;
  }

  /** The server's defaults (`GET /settings`), once known. */
  get serverSettings(): IServerSettings | null {
    return this._serverSettings;
  }

  /** The user's settings (settings registry). */
  get userSettings(): IUserSettings {
    return this._userSettings;
  }

  set userSettings(value: IUserSettings) {
    this._userSettings = value;
    this._emit();
  }

  /** The newest version of a job seen, listed or not. */
  job(id: string): IJob | undefined {
    return this._jobs.get(id);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Open the push channel, then load the first page. */
  start(): void {
    if (this._started || this._disposed) {
      return;
    }
    this._started = true;
    void this._listen();
    void this.refresh();
    this.api
      .serverSettings()
      .then(s => {
        this._serverSettings = s;
        this._emit();
      })
      .catch(() => undefined);
  }

  /** Reload the first page with the current filters. */
  async refresh(): Promise<void> {
    this._pageAbort?.abort();
    const abort = (this._pageAbort = new AbortController());
    this._dispatch({ type: 'loading' });
    const { filters, limit } = this._state;
    // A list request that hangs (a connection lost on the way) is asked again, rather
    // than leaving the panel at "Loading…"
    const retry = window.setTimeout(() => {
      if (this._pageAbort === abort && !this._disposed) {
        void this.refresh();
      }
    }, REFRESH_RETRY_MS);
    try {
      const page = await this.api.listJobs(
        { kind: filters.kind, status: filters.status, limit, offset: 0 },
        abort.signal
      );
      window.clearTimeout(retry);
      if (abort.signal.aborted) {
        return;
      }
      this._remember(page.jobs);
      this._dispatch({ type: 'loaded', jobs: page.jobs, total: page.total, now: Date.now() });
    } catch (error) {
      if (!isAbortError(error) && !abort.signal.aborted) {
        window.clearTimeout(retry);
        this._dispatch({ type: 'error', message: (error as Error).message });
      }
    }
  }

  /** Load the next page below the jobs shown. */
  async loadMore(): Promise<void> {
    const { filters, limit, entries } = this._state;
    const abort = (this._pageAbort = new AbortController());
    try {
      const page = await this.api.listJobs(
        { kind: filters.kind, status: filters.status, limit, offset: entries.length },
        abort.signal
      );
      if (abort.signal.aborted) {
        return;
      }
      this._remember(page.jobs);
      this._dispatch({
        type: 'loaded',
        jobs: page.jobs,
        total: page.total,
        append: true,
        now: Date.now()
      });
    } catch (error) {
      if (!isAbortError(error)) {
        this._dispatch({ type: 'error', message: (error as Error).message });
      }
    }
  }

  setFilters(filters: IFilters): void {
    const current = this._state.filters;
    if (current.kind === filters.kind && current.status === filters.status) {
      return;
    }
    this._dispatch({ type: 'filters', filters });
    void this.refresh();
  }

  /** Fetch one job (for a detail tab opened on a job not in the list). */
  async fetchJob(id: string): Promise<IJob> {
    const job = await this.api.getJob(id);
    this.update(job);
    return job;
  }

  async cancel(id: string): Promise<IJob> {
    const job = await this.api.cancelJob(id);
    this.update(job);
    return job;
  }

  /** Take a new version of a job (from an event or an answer). */
  update(job: IJob): void {
    const known = this._jobs.get(job.id);
    if (known && isStale(known, job)) {
      return;
    }
    this._jobs.set(job.id, job);
    this._dispatch({ type: 'upsert', job, now: Date.now() });
    this._jobChanged.emit(job);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._eventsAbort?.abort();
    this._pageAbort?.abort();
    Signal.clearData(this);
  }

  /** The push channel, reopened with a growing pause when it drops. */
  private async _listen(): Promise<void> {
    let pause = 1000;
    let first = true;
    while (!this._disposed) {
      const abort = (this._eventsAbort = new AbortController());
      this._setConnection('connecting');
      try {
        await this.api.streamEvents(
          event => {
            if (event.event !== 'job') {
              this._streamEvent.emit(event);
              return;
            }
            try {
              this.update(JSON.parse(event.data) as IJob);
            } catch (error) {
              console.warn('kfjupyter: bad job event', error);
            }
          },
          abort.signal,
          () => {
            this._setConnection('live');
            pause = 1000;
            if (!first) {
              // Events may have been missed while the channel was down.
              void this.refresh();
            }
            first = false;
          }
        );
      } catch (error) {
        if (this._disposed || isAbortError(error)) {
          break;
        }
        if (error instanceof KFApiError && (error.status === 401 || error.status === 403)) {
          console.warn('kfjupyter: the events stream was refused:', error.message);
        }
      }
      if (this._disposed) {
        break;
      }
      this._setConnection('offline');
      await new Promise(resolve => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 30000);
    }
  }

  private _remember(jobs: IJob[]): void {
    for (const job of jobs) {
      const known = this._jobs.get(job.id);
      if (!known || !isStale(known, job)) {
        this._jobs.set(job.id, job);
      }
    }
  }

  private _setConnection(value: Connection): void {
    if (value !== this._connection) {
      this._connection = value;
      this._connectionChanged.emit(value);
    }
  }

  private _dispatch(action: JobsAction): void {
    const next = reduce(this._state, action);
    if (next !== this._state) {
      this._state = next;
      this._emit();
    }
  }

  private _emit(): void {
    this._stateChanged.emit(this._state);
  }

  private _state: IJobsState;
  private _jobs = new Map<string, IJob>();
  private _stateChanged = new Signal<this, IJobsState>(this);
  private _jobChanged = new Signal<this, IJob>(this);
  private _streamEvent = new Signal<this, ISSEEvent>(this);
  private _connection: Connection = 'connecting';
  private _connectionChanged = new Signal<this, Connection>(this);
  private _serverSettings: IServerSettings | null = null;
  private _userSettings: IUserSettings = {
    defaultBackend: 'local',
    namespace: '',
    defaultImage: ''
  };
  private _eventsAbort: AbortController | null = null;
  private _pageAbort: AbortController | null = null;
  private _started = false;
  private _disposed = false;
}
