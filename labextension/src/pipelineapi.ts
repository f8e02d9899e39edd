/**
 * The pipeline routes of the REST API (`/pipelines…`) and the shapes they answer:
 * `Pipeline.to_dict()` for a compile, `PipelineRun.to_dict()` for a run. A step's log is
 * the run's channel `step/NAME`, streamed like any job's log (`KFApi.streamLogs`).
 */

import { ServerConnection } from '@jupyterlab/services';

import { KFApi, KFApiError } from './api';
import { IDagEdge } from './pipelinelayout';
import { IJob } from './types';

export interface IPipelineStep {
  name: string;
  /** Indexes of the notebook cells (markdown included) making the step. */
  cells: number[];
  source: string;
  prev: string[];
  image: string | null;
  limits: Record<string, string>;
  cache: boolean;
  inputs: Record<string, string>;
  outputs: string[];
  parameters: string[];
  metrics: string[];
  program: string;
}

export interface IPipelineParameter {
  name: string;
  type: string;
  default: unknown;
}

export interface IPipeline {
  name: string;
  /** In execution order. */
  steps: Record<string, IPipelineStep>;
  edges: IDagEdge[];
  parameters: Record<string, IPipelineParameter>;
  notebook: string | null;
  metrics: string[];
}

export type StepStatus = 'Pending' | 'Running' | 'Cancelling' | 'Succeeded' | 'Failed' | 'Cancelled' | 'Skipped' | 'Cached';

export interface IRunStep {
  name: string;
  status: StepStatus | string;
  cached: boolean;
  cache_reason: string;
  started_at: string | null;
  finished_at: string | null;
  duration_s: number | null;
  error: string | null;
  /** The step's log channel (`step/NAME`): `GET /jobs/{run}/logs/stream?channel=`. */
  channel?: string;
}

export interface IPipelineRun extends IJob {
  steps: IRunStep[];
  metrics: Record<string, unknown>;
  pipeline: IPipeline;
}

/** One value a step handed on (`PipelineRun.step_outputs`). */
export interface IStepOutput {
  name: string;
  type: string | null;
  format: string | null;
  size: number | null;
  /** The steps that read it. */
  to: string[];
  preview: string | null;
  available: boolean;
}

export interface IStepOutputs {
  run_id: string;
  step: string;
  backend: string;
  outputs: IStepOutput[];
}

/** A compile error: the message, and the notebook cell it names (null when none). */
export class PipelineCompileError extends Error {
  constructor(
    message: string,
    readonly cell: number | null
  ) {
    super(message);
    this.name = 'PipelineCompileError';
  }
}

export class PipelineApi {
  constructor(readonly api: KFApi) {}

  /**
   * `POST /pipelines/compile`: the saved notebook at `path` as a Pipeline. A 400 that
   * names a cell (`{message, reason: "PipelineError", cell}`) rejects with a
   * `PipelineCompileError`.
   */
  compile(path: string): Promise<IPipeline> {
    return this._post<IPipeline>('pipelines/compile', { path });
  }

  /** `POST /pipelines/runs`: start a run (compile errors as for `compile`). */
  run(path: string, parameters?: Record<string, unknown>, backend?: string): Promise<IPipelineRun> {
    const body: Record<string, unknown> = { path };
    if (parameters && Object.keys(parameters).length) {
      body.parameters = parameters;
    }
    if (backend) {
      body.backend = backend;
    }
    return this._post<IPipelineRun>('pipelines/runs', body);
  }

  /** `GET /pipelines/runs?path=`: the notebook's runs, newest first. */
  list(path: string): Promise<{ runs: IPipelineRun[]; total: number }> {
    return this.api.json(`pipelines/runs?path=${encodeURIComponent(path)}`);
  }

  get(id: string, signal?: AbortSignal): Promise<IPipelineRun> {
    return this.api.json(`pipelines/runs/${encodeURIComponent(id)}`, { signal });
  }

  cancel(id: string): Promise<IPipelineRun> {
    return this.api.json(`pipelines/runs/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: '{}' });
  }

  /** `GET /pipelines/runs/{id}/steps/{step}/outputs`: the values the step handed on. */
  stepOutputs(id: string, step: string, signal?: AbortSignal): Promise<IStepOutputs> {
    return this.api.json(`pipelines/runs/${encodeURIComponent(id)}/steps/${encodeURIComponent(step)}/outputs`, { signal });
  }

  /** `GET /pipelines/export?path=`: the KFP IR YAML text. */
  async exportYaml(path: string): Promise<string> {
    const response = await this.api.fetch(`pipelines/export?path=${encodeURIComponent(path)}`);
    return response.text();
  }

  /** A POST whose 400 may name a notebook cell. */
  private async _post<T>(route: string, body: unknown): Promise<T> {
    const init = { method: 'POST', body: JSON.stringify(body) };
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.api.url(route), init, this.api.settings);
    } catch (error) {
      throw new KFApiError(`Cannot reach the kfjupyter server extension: ${(error as Error).message}`, 0, 'network');
    }
    let answer: any = null;
    try {
      answer = await response.json();
    } catch {
      // not JSON: the status line says it
    }
    if (response.ok) {
      return answer as T;
    }
    const message = (answer && answer.message) || `${response.status} ${response.statusText}`;
    if (response.status === 400 && answer && answer.reason === 'PipelineError') {
      throw new PipelineCompileError(message, typeof answer.cell === 'number' ? answer.cell : null);
    }
    throw new KFApiError(message, response.status, (answer && answer.reason) || '');
  }
}
