/**
 * Papermill runs started from JupyterLab (issue 13, point 11): the `/notebook-runs…`
 * routes, and the pure logic of the "Run with parameters…" dialog — reading a value as
 * papermill's `-p` reads it, a comma-separated list as a sweep, and the request built
 * from the dialog's rows. The dialog and the job tab's view are in
 * `notebookrunplugin.ts` and `components/notebookrun.tsx`.
 */

import { KFApi } from './api';
import { IJob } from './types';

/** One parameter of the notebook's parameters cell (`GET /notebook-runs/parameters`). */
export interface INotebookParameter {
  name: string;
  /** The default's source text (`0.1`, `'run'`, `math.pi`). */
  source: string;
  /** The default when it is a literal, else null. */
  value: unknown;
  /** `int`, `float`, `str`, `bool`, `None`, `list`, `dict`; null when not a literal. */
  type: string | null;
}

export interface INotebookParameters {
  notebook: string;
  /** The parameters cell's index (null: the notebook has none). */
  cell: number | null;
  /** `parameters`, Kale's `pipeline-parameters`, or null. */
  tag: string | null;
  readable: boolean;
  parameters: INotebookParameter[];
}

/** What `POST /notebook-runs` takes. */
export interface IRunRequest {
  path: string;
  parameters?: Record<string, unknown>;
  sweep?: Record<string, unknown[]>;
  max_parallel?: number;
}

/** One run of a results table (`GET /notebook-runs/{id}/results`). */
export interface IRunOfResults {
  id: string;
  status: string;
  parameters: Record<string, unknown>;
  /** Absolute path of the executed notebook; null until it is written. */
  output_notebook: string | null;
  error: string | null;
}

export interface IRunResults {
  job_id: string;
  kind: 'notebook' | 'sweep' | string;
  status: string;
  columns: string[];
  rows: unknown[][];
  runs: IRunOfResults[];
}

/** A job kind this view is for. */
export function isNotebookRunKind(kind: string | null | undefined): boolean {
  return kind === 'notebook' || kind === 'sweep';
}

/**
 * A value as papermill's `-p` reads it (`papermill.cli._resolve_type`): `True`, `False`,
 * `None`; an integer; a float (`1e-3`, `inf`, `nan`); anything else a string. A parameter
 * whose default is a string keeps the text as it is; one whose default is a list or a dict
 * reads JSON (`[1, 2]`) when it can.
 */
export function parseValue(text: string, type: string | null = null): unknown {
  if (type === 'str') {
    return text;
  }
  if ((type === 'list' || type === 'dict' || type === null || type === 'None') && /^[[{]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      // not JSON: read as below
    }
  }
  if (text === 'True') {
    return true;
  }
  if (text === 'False') {
    return false;
  }
  if (text === 'None') {
    return null;
  }
  const plain = text.trim().replace(/_/g, '');
  if (/^[+-]?\d+$/.test(plain)) {
    return Number(plain);
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(plain)) {
    return Number(plain);
  }
  if (/^[+-]?(inf|infinity)$/i.test(plain)) {
    return plain.startsWith('-') ? -Infinity : Infinity;
  }
  if (/^[+-]?nan$/i.test(plain)) {
    return NaN;
  }
  return text;
}

/**
 * A row's text as its values: comma-separated values make a sweep (`0.1, 0.01`), one
 * value a fixed parameter. Throws, naming the problem, on an empty value (`0.1,,0.2`).
 * A value that is JSON (`[1, 2]`) of a list or dict parameter is one value.
 */
export function splitValues(text: string, type: string | null = null): unknown[] {
  const trimmed = text.trim();
  if (!trimmed) {
    throw new Error('no value');
  }
  if ((type === 'list' || type === 'dict') && /^[[{]/.test(trimmed)) {
    try {
      return [JSON.parse(trimmed)];
    } catch {
      // a comma-separated list of JSON values, or text
    }
  }
  const parts = trimmed.split(',').map(p => p.trim());
  if (parts.some(p => p === '')) {
    throw new Error(`empty value in "${trimmed}" (separate the values with commas: 0.1, 0.01)`);
  }
  return parts.map(p => parseValue(p, type));
}

/** One row of the dialog: a parameter and what the user typed. */
export interface IParameterRow {
  name: string;
  type: string | null;
  /** The default's text: a row left at it runs with the default. */
  source: string;
  text: string;
}

export interface IBuiltRequest {
  request: IRunRequest | null;
  /** Problems by row name (`''`: parallelism). Empty when `request` is set. */
  errors: Record<string, string>;
  /** How many runs the request makes. */
  runs: number;
}

/**
 * `POST /notebook-runs` from the dialog's rows: a row left at its default (or empty) is
 * not sent, one value is a fixed parameter, several a sweep (every combination runs,
 * `parallel` at a time: a whole number >= 1). Nothing is sent while a row has a problem.
 */
export function buildRunRequest(path: string, rows: IParameterRow[], parallel: string): IBuiltRequest {
  const errors: Record<string, string> = {};
  const parameters: Record<string, unknown> = {};
  const sweep: Record<string, unknown[]> = {};
  let runs = 1;
  for (const row of rows) {
    const text = row.text.trim();
    if (!text || text === row.source.trim()) {
      continue;
    }
    try {
      const values = splitValues(text, row.type);
      if (values.length === 1) {
        parameters[row.name] = values[0];
      } else {
        sweep[row.name] = values;
        runs *= values.length;
      }
    } catch (error) {
      errors[row.name] = (error as Error).message;
    }
  }
  const request: IRunRequest = { path };
  if (Object.keys(parameters).length) {
    request.parameters = parameters;
  }
  if (Object.keys(sweep).length) {
    request.sweep = sweep;
    const p = parallel.trim();
    if (p) {
      if (!/^\d+$/.test(p) || Number(p) < 1) {
        errors[''] = `parallelism must be a whole number >= 1, not "${p}"`;
      } else {
        request.max_parallel = Number(p);
      }
    }
  }
  if (Object.keys(errors).length) {
    return { request: null, errors, runs };
  }
  return { request, errors, runs };
}

/** JSON as the server reads it: NaN and infinities as papermill's Python spells them. */
export function requestBody(request: IRunRequest): string {
  // JSON has no NaN/Infinity; Python's json (allow_nan) reads these tokens.
  return JSON.stringify(request, (_key, value) => {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      return `__kf_number_${Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity'}__`;
    }
    return value;
  }).replace(/"__kf_number_(NaN|Infinity|-Infinity)__"/g, '$1');
}

/** The client of `/notebook-runs…`. */
export class NotebookRunApi {
  constructor(readonly api: KFApi) {}

  parameters(path: string, signal?: AbortSignal): Promise<INotebookParameters> {
    return this.api.json(`notebook-runs/parameters?path=${encodeURIComponent(path)}`, { signal });
  }

  /** Start a run or a sweep; a refusal rejects with the server's message (a `KFApiError`). */
  start(request: IRunRequest): Promise<IJob> {
    return this.api.json('notebook-runs', { method: 'POST', body: requestBody(request) });
  }

  results(id: string, signal?: AbortSignal): Promise<IRunResults> {
    return this.api.json(`notebook-runs/${encodeURIComponent(id)}/results`, { signal });
  }

  /** A path under the server's root where the run's output notebook opens. */
  async outputPath(id: string): Promise<string> {
    const answer = await this.api.json<{ path: string }>(`notebook-runs/${encodeURIComponent(id)}/output`, {
      method: 'POST',
      body: '{}'
    });
    return answer.path;
  }
}

/**
 * How the job tab opens a document (a path under the server's root): set by the plugin
 * to JupyterLab's `docmanager:open`; null where no plugin did (e.g. a unit test).
 */
let opener: ((path: string) => Promise<unknown>) | null = null;

export function setDocumentOpener(open: ((path: string) => Promise<unknown>) | null): void {
  opener = open;
}

export function openDocument(path: string): Promise<unknown> {
  return opener ? opener(path) : Promise.resolve(undefined);
}
