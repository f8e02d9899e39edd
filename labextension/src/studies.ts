/**
 * The tuning studies as the Tuning panel sees them, kept current without a
 * timer: a study is a job of kind "tune", and the server sends a `job` event
 * whenever its record changes (its status, and its progress message as
 * trials start and end). Each such event re-reads that study
 * (`GET /studies/{id}`), which updates its list entry and, when it is the
 * one selected, its trials.
 */

import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { KFApi, KFApiError } from './api';
import { Connection, JobsModel } from './model';
import { isAbortError } from './sse';
import { summarize, upsertStudy } from './tuning';
import type { IImportances } from './charts/study';
import { IJob, IStudy, IStudySummary } from './types';

/** Events of one study closer together than this are read once. */
export const REREAD_DELAY_MS = 150;

export interface IStudiesState {
  /** Newest first. */
  studies: IStudySummary[];
  total: number;
  loaded: boolean;
  error: string | null;
  selected: string | null;
  /** The selected study with its trials, once read. */
  detail: IStudy | null;
  /** When `detail` arrived (client clock), for ticking durations. */
  detailAt: number;
  detailError: string | null;
}

export class StudiesModel implements IDisposable {
  constructor(
    readonly api: KFApi,
    private readonly _jobs: JobsModel,
    options: { pageSize?: number } = {}
  ) {
    this._limit = options.pageSize ?? 50;
  }

  get state(): IStudiesState {
    return this._state;
  }

  get stateChanged(): ISignal<this, IStudiesState> {
    return this._stateChanged;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Follow the jobs model's events and load the first page. */
  start(): void {
    if (this._started || this._disposed) {
      return;
    }
    this._started = true;
    this._jobs.jobChanged.connect(this._onJob, this);
    this._jobs.connectionChanged.connect(this._onConnection, this);
    void this.refresh();
  }

  /** Reload the list (and the selected study). */
  async refresh(): Promise<void> {
    this._listAbort?.abort();
    const abort = (this._listAbort = new AbortController());
    const startedAt = Date.now();
    try {
      const page = await this.api.listStudies({ limit: this._limit }, abort.signal);
      if (abort.signal.aborted) {
        return;
      }
      let studies = page.studies;
      // A study read while the page was on its way (after an event) is newer than its copy.
      for (const s of this._state.studies) {
        if ((this._readAt.get(s.id) ?? 0) > startedAt) {
          studies = upsertStudy(studies, s);
        }
      }
      this._set({ studies, total: page.total, loaded: true, error: null });
    } catch (error) {
      if (!isAbortError(error) && !abort.signal.aborted) {
        this._set({ loaded: true, error: (error as Error).message });
      }
    }
    const selected = this._state.selected;
    if (selected) {
      void this.reread(selected);
    }
  }

  /** Show one study's trials (null: none). */
  select(id: string | null): void {
    if (id === this._state.selected) {
      return;
    }
    const known = id ? this._details.get(id) ?? null : null;
    this._set({
      selected: id,
      detail: known,
      detailAt: known ? this._readAt.get(known.id) ?? Date.now() : 0,
      detailError: null
    });
    if (id) {
      void this.reread(id);
    }
  }

  /** Read one study now; its list entry and (if selected) its detail follow. */
  async reread(id: string): Promise<IStudy | null> {
    const seq = (this._seq.get(id) ?? 0) + 1;
    this._seq.set(id, seq);
    try {
      const study = await this.api.getStudy(id);
      if (this._disposed || this._seq.get(id) !== seq) {
        return study; // a later read of the same study is under way
      }
      this._take(study);
      return study;
    } catch (error) {
      if (this._disposed || this._seq.get(id) !== seq) {
        return null;
      }
      if (error instanceof KFApiError && error.status === 404) {
        this._details.delete(id);
        this._set({
          studies: this._state.studies.filter(s => s.id !== id),
          ...(this._state.selected === id
            ? { detail: null, detailError: `Study ${id} no longer exists.` }
            : {})
        });
      } else if (this._state.selected === id) {
        this._set({ detailError: (error as Error).message });
      }
      return null;
    }
  }

  async cancel(id: string): Promise<IStudy> {
    const study = await this.api.cancelStudy(id);
    this._seq.set(id, (this._seq.get(id) ?? 0) + 1); // older reads in flight are stale
    this._take(study);
    return study;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._listAbort?.abort();
    for (const timer of this._timers.values()) {
      clearTimeout(timer);
    }
    this._timers.clear();
    this._jobs.jobChanged.disconnect(this._onJob, this);
    this._jobs.connectionChanged.disconnect(this._onConnection, this);
    Signal.clearData(this);
  }

  private _take(study: IStudy): void {
    const now = Date.now();
    this._details.set(study.id, study);
    this._readAt.set(study.id, now);
    const isNew = !this._state.studies.some(s => s.id === study.id);
    const patch: Partial<IStudiesState> = {
      studies: upsertStudy(this._state.studies, summarize(study)),
      total: this._state.total + (isNew ? 1 : 0)
    };
    if (this._state.selected === study.id) {
      patch.detail = study;
      patch.detailAt = now;
      patch.detailError = null;
    }
    this._set(patch);
  }

  private _onJob(_: JobsModel, job: IJob): void {
    if (job.kind !== 'tune' || this._disposed) {
      return;
    }
    // Coalesce a burst of events of one study into one read.
    if (this._timers.has(job.id)) {
      return;
    }
    this._timers.set(
      job.id,
      setTimeout(() => {
        this._timers.delete(job.id);
        void this.reread(job.id);
      }, REREAD_DELAY_MS)
    );
  }

  private _onConnection(_: JobsModel, connection: Connection): void {
    // Events may have been missed while the channel was down: read everything anew.
    if (connection === 'live' && this._wasOffline) {
      void this.refresh();
    }
    this._wasOffline = connection !== 'live';
  }

  private _set(patch: Partial<IStudiesState>): void {
    this._state = { ...this._state, ...patch };
    this._stateChanged.emit(this._state);
  }

  private _state: IStudiesState = {
    studies: [],
    total: 0,
    loaded: false,
    error: null,
    selected: null,
    detail: null,
    detailAt: 0,
    detailError: null
  };
  private _limit: number;
  private _details = new Map<string, IStudy>();
  private _readAt = new Map<string, number>();
  private _seq = new Map<string, number>();
  private _timers = new Map<string, ReturnType<typeof setTimeout>>();
  private _stateChanged = new Signal<this, IStudiesState>(this);
  private _listAbort: AbortController | null = null;
  private _wasOffline = false;
  private _started = false;
  private _disposed = false;
}

/** `GET /studies/{id}/importances`: Optuna's parameter importances of the study. */
export function studyImportances(api: KFApi, id: string, signal?: AbortSignal): Promise<IImportances> {
  return api.json<IImportances>(`studies/${encodeURIComponent(id)}/importances`, { signal });
}

/** `POST /studies/{id}/register-best`: what the best trial saved, as a new version of model `name`. */
export function registerBest(api: KFApi, id: string, name: string): Promise<{ ref: string; model: string }> {
  return api.json<{ ref: string; model: string }>(`studies/${encodeURIComponent(id)}/register-best`, {
    method: 'POST',
    body: JSON.stringify({ name })
  });
}

/** `POST /studies/{id}/retrain-best`: the study's cell as a training job with the best params. */
export function retrainBest(api: KFApi, id: string): Promise<IJob> {
  return api.json<IJob>(`studies/${encodeURIComponent(id)}/retrain-best`, { method: 'POST' });
}
