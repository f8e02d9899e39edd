/**
 * Following one log channel of a job (`GET /jobs/{id}/logs/stream?channel=…`): the one
 * piece of code that every log view of the sidebar streams through (a job tab's ranks or
 * workers, a pipeline step, an endpoint's servers). Without React: the views hold the
 * lines (a `LogBuffer`) and say when to start and stop.
 */

import { decodeLogLine, KFApiError } from './api';
import { isAbortError, ISSEEvent } from './sse';
import { IChannel } from './types';

/**
 * Where a follower is: `connecting` (the first connection), `streaming` (a connection is
 * open), `ended` (the server sent `end`: the log is read to its end), `waiting` (no log
 * yet: tries again), `error` (the read failed or the stream closed early: tries again),
 * `failed` (the read failed and is not tried again).
 */
export type LogFollowerState = 'connecting' | 'streaming' | 'ended' | 'waiting' | 'error' | 'failed';

export interface ILogStateDetail {
  /** `ended`: the job's status the server sent with `end`. */
  status?: string;
  /** `waiting`, `error`, `failed`: why. */
  message?: string;
}

export interface ILogFollowerHandlers {
  /** A connection opened: the lines that follow (the tail again) replace those held. */
  opened(): void;
  /** One line of the log. */
  line(text: string): void;
  state(state: LogFollowerState, detail: ILogStateDetail): void;
}

/**
 * Open the stream once: call `onEvent` for each event and `onOpen` when the server has
 * answered 200; resolve when the server closes it, reject on an error response (a
 * `KFApiError`) or with an `AbortError` when `signal` aborts it. `KFApi.streamLogs`.
 */
export type OpenLogStream = (
  onEvent: (event: ISSEEvent) => void,
  signal: AbortSignal,
  onOpen: () => void
) => Promise<void>;

export interface ILogFollowerOptions {
  /**
   * Connect again after a failure or a stream that closed without `end` (default true).
   * Refusals that stay refusals (400, 401, 403) are never tried again.
   */
  retry?: boolean;
  /** Milliseconds to wait before the `failures`-th new try (1 s, 2 s … 5 s at most). */
  delay?: (failures: number) => number;
}

/** A string field of an event's JSON data ('' when it has none). */
export function eventField(data: string, field: string): string {
  try {
    const value = JSON.parse(data)?.[field];
    return typeof value === 'string' ? value : '';
  } catch {
    return '';
  }
}

const FINAL_REFUSALS = new Set([400, 401, 403]);

function defaultDelay(failures: number): number {
  return Math.min(5000, 1000 * Math.max(1, failures));
}

/**
 * Reads a log stream until the server ends it (`end`) or `stop()`: connects, hands on
 * each line, and (with `retry`) connects again after a failure, each new connection
 * starting over from the tail (`opened`). One connection at a time; nothing is handed on
 * after `stop()`.
 */
export class LogFollower {
  constructor(
    private readonly _open: OpenLogStream,
    private readonly _on: ILogFollowerHandlers,
    private readonly _options: ILogFollowerOptions = {}
  ) {}

  get running(): boolean {
    return this._abort !== null;
  }

  start(): void {
    if (this._abort) {
      return;
    }
    const abort = new AbortController();
    this._abort = abort;
    void this._run(abort);
  }

  stop(): void {
    const abort = this._abort;
    this._abort = null;
    abort?.abort();
  }

  private async _run(abort: AbortController): Promise<void> {
    const { signal } = abort;
    const retry = this._options.retry ?? true;
    const delay = this._options.delay ?? defaultDelay;
    const emit = (state: LogFollowerState, detail: ILogStateDetail = {}): void => {
      if (!signal.aborted) {
        this._on.state(state, detail);
      }
    };
    emit('connecting');
    for (let failures = 1; ; failures++) {
      let ended: string | null = null;
      let message = '';
      let status = 0;
      try {
        await this._open(
          event => {
            if (signal.aborted) {
              return;
            }
            if (event.event === 'message') {
              this._on.line(decodeLogLine(event.data));
            } else if (event.event === 'end') {
              ended = eventField(event.data, 'status') || 'ended';
            } else if (event.event === 'error') {
              message = eventField(event.data, 'message') || 'the log stream failed';
            }
          },
          signal,
          () => {
            if (!signal.aborted) {
              failures = 1; // a good connection: the next failure waits the least again
              this._on.opened();
              emit('streaming');
            }
          }
        );
        if (signal.aborted) {
          return;
        }
        if (ended !== null) {
          emit('ended', { status: ended });
          this._finish(abort);
          return;
        }
        // Closed without `end` (an error event said why, or the server went away).
      } catch (error) {
        if (isAbortError(error) || signal.aborted) {
          return;
        }
        message = (error as Error).message ?? String(error);
        status = error instanceof KFApiError ? error.status : 0;
      }
      if (!retry || FINAL_REFUSALS.has(status)) {
        emit('failed', { message: message || 'the log stream closed early' });
        this._finish(abort);
        return;
      }
      emit(status === 404 ? 'waiting' : 'error', { message });
      if (!(await this._sleep(delay(failures), signal))) {
        return;
      }
    }
  }

  /** The follower is done by itself (`running` turns false), unless it was restarted. */
  private _finish(abort: AbortController): void {
    if (this._abort === abort) {
      this._abort = null;
    }
  }

  /** Wait `ms`; false when aborted meanwhile. */
  private _sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return new Promise(resolve => {
      if (signal.aborted) {
        resolve(false);
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(!signal.aborted);
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private _abort: AbortController | null = null;
}

/**
 * The channel to show of `channels`: `selected` while the list has it, else the one of
 * rank 0 (a training job's rank 0, a study's first worker, an endpoint's primary), else
 * the first; null when there is none.
 */
export function pickChannel(
  channels: readonly IChannel[],
  selected: string | null,
  preferredRank: number | null = null
): IChannel | null {
  return (
    channels.find(c => c.name === selected) ??
    (preferredRank !== null ? channels.find(c => c.rank === preferredRank) : undefined) ??
    channels.find(c => c.rank === 0) ??
    channels[0] ??
    null
  );
}

/** A job's own log channels (none until the job reached its backend). */
export function logChannels(job: { channels?: { logs?: IChannel[] } | null }): IChannel[] {
  return job.channels?.logs ?? [];
}

/** How a log view reads its channel: `channel=`'s `follow` and `tail`. */
export interface ILogRead {
  follow: boolean;
  tail: number;
}

/**
 * How the log of a child task (a pipeline step, a trial) is read: while it runs, its
 * last `tail` lines, then followed (the stream ends with the task); once it has ended,
 * its whole log (`tail` 0), read once.
 */
export function logRead(live: boolean, tail: number): ILogRead {
  return live ? { follow: true, tail } : { follow: false, tail: 0 };
}
