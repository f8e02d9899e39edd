/**
 * The client of the server extension's REST API (`/kfjupyter/api/v1`).
 *
 * Every request goes through `ServerConnection.makeRequest`, which adds the
 * base URL, the token and the XSRF header, so the API's auth stays real.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ISSEEvent, readEventStream } from './sse';
import {
  IJob,
  IJobList,
  ILogs,
  IMetrics,
  IServerSettings,
  IStudy,
  IStudyList
} from './types';

export const API_BASE = 'kfjupyter/api/v1';

/** An error answered by the API (`{"message", "reason"}`) or the network. */
export class KFApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason = ''
  ) {
    super(message);
    this.name = 'KFApiError';
  }
}

export interface IListQuery {
  kind?: string;
  status?: string;
  limit?: number;
  offset?: number;
}

function query(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Which log of a job to read, and how much of it. */
export interface ILogQuery {
  /** A channel by name (the job's `channels.logs`, a child task's `channel`); wins over `rank`. */
  channel?: string;
  /** One of the job's own channels by its rank (the server's default: 0). */
  rank?: number;
  /** The last `tail` lines (0: the whole log; the server's default: 200). */
  tail?: number;
  /** Streams: follow the channel until it ends (the default), or send the tail and end. */
  follow?: boolean;
}

function logQuery(q: ILogQuery): string {
  return query({
    channel: q.channel,
    rank: q.channel ? undefined : q.rank,
    tail: q.tail,
    follow: q.follow === undefined ? undefined : String(q.follow)
  });
}

export class KFApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  url(path: string): string {
    return URLExt.join(this.settings.baseUrl, API_BASE, path);
  }

  /** A request to the API; throws `KFApiError` unless the answer is 2xx. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(path), init, this.settings);
    } catch (error) {
      if ((error as { name?: string }).name === 'AbortError') {
        throw error;
      }
      throw new KFApiError(
        `Cannot reach the kfjupyter server extension: ${(error as Error).message ?? error}`,
        0,
        'network'
      );
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let reason = '';
      try {
        const body = await response.json();
        message = body.message || message;
        reason = body.reason || '';
      } catch {
        // Not JSON: keep the status line.
      }
      throw new KFApiError(message, response.status, reason);
    }
    return response;
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await this.fetch(path, init);
    return (await response.json()) as T;
  }

  listJobs(q: IListQuery = {}, signal?: AbortSignal): Promise<IJobList> {
    return this.json<IJobList>(
      `jobs${query({ kind: q.kind, status: q.status, limit: q.limit ?? 50, offset: q.offset ?? 0 })}`,
      { signal }
    );
  }

  getJob(id: string, signal?: AbortSignal): Promise<IJob> {
    return this.json<IJob>(`jobs/${encodeURIComponent(id)}`, { signal });
  }

  cancelJob(id: string): Promise<IJob> {
    return this.json<IJob>(`jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /** `GET /jobs/{id}/logs`: the last lines of one log channel, read once. */
  logs(id: string, q: ILogQuery = {}, signal?: AbortSignal): Promise<ILogs> {
    return this.json<ILogs>(`jobs/${encodeURIComponent(id)}/logs${logQuery(q)}`, { signal });
  }

  metrics(id: string, rank?: number, signal?: AbortSignal): Promise<IMetrics> {
    return this.json<IMetrics>(
      `jobs/${encodeURIComponent(id)}/metrics${query({ rank })}`,
      { signal }
    );
  }

  /** `GET /studies`: tuning studies, newest first, without their trials. */
  listStudies(
    q: { status?: string; limit?: number; offset?: number } = {},
    signal?: AbortSignal
  ): Promise<IStudyList> {
    return this.json<IStudyList>(
      `studies${query({ status: q.status, limit: q.limit ?? 50, offset: q.offset ?? 0 })}`,
      { signal }
    );
  }

  /** `GET /studies/{id}`: one study with every trial. */
  getStudy(id: string, signal?: AbortSignal): Promise<IStudy> {
    return this.json<IStudy>(`studies/${encodeURIComponent(id)}`, { signal });
  }

  cancelStudy(id: string): Promise<IStudy> {
    return this.json<IStudy>(`studies/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  serverSettings(): Promise<IServerSettings> {
    return this.json<IServerSettings>('settings');
  }

  /**
   * Open a server-sent-events stream and read it to its end.
   * Abort it with `signal`; resolves when the server closes it.
   */
  async stream(
    path: string,
    onEvent: (event: ISSEEvent) => void,
    signal: AbortSignal,
    onOpen?: () => void
  ): Promise<void> {
    const response = await this.fetch(path, {
      signal,
      headers: { Accept: 'text/event-stream' },
      cache: 'no-store'
    });
    onOpen?.();
    await readEventStream(response, onEvent);
  }

  /**
   * `GET /jobs/{id}/logs/stream`: any log channel of a job or of its child tasks.
   * `message` events carry one line (a JSON string) each; `end` closes a log read to
   * its end, `error` one whose read failed midway.
   */
  streamLogs(
    id: string,
    q: ILogQuery,
    onEvent: (event: ISSEEvent) => void,
    signal: AbortSignal,
    onOpen?: () => void
  ): Promise<void> {
    return this.stream(
      `jobs/${encodeURIComponent(id)}/logs/stream${logQuery(q)}`,
      onEvent,
      signal,
      onOpen
    );
  }

  /** `GET /events`: a `job` event for every job that appears or changes. */
  streamEvents(
    onEvent: (event: ISSEEvent) => void,
    signal: AbortSignal,
    onOpen?: () => void
  ): Promise<void> {
    return this.stream('events', onEvent, signal, onOpen);
  }
}

/** Decode one log event's data (a JSON string; tolerate plain text). */
export function decodeLogLine(data: string): string {
  try {
    const value = JSON.parse(data);
    return typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    return data;
  }
}
