/**
 * A papermill run's or a sweep's part of the job tab (jobs of kind `notebook` and
 * `sweep`): the output notebook (opened in JupyterLab) and, for a sweep, its results
 * table — parameters, status, the scalars each run reported — one row per run, each with
 * its output notebook. Data: `GET /notebook-runs/{id}/results`. Also the body of the
 * "Run with parameters…" dialog (`RunDialogBody`).
 */

import * as React from 'react';

import { ReactWidget } from '@jupyterlab/ui-components';

import { KFApi } from '../api';
import {
  buildRunRequest,
  INotebookParameters,
  IParameterRow,
  IRunOfResults,
  IRunResults,
  isNotebookRunKind,
  NotebookRunApi,
  openDocument
} from '../notebookrun';
import { IJob, isTerminal } from '../types';
import { Button, StatusBadge } from './common';
import { formatResult } from './sweep';

/** How often an active run's results are re-read. */
export const RESULTS_REFRESH_MS = 2000;

function useResults(api: KFApi, job: IJob, visible: boolean): { results: IRunResults | null; error: string } {
  const [results, setResults] = React.useState<IRunResults | null>(null);
  const [error, setError] = React.useState('');
  // Re-read until the results say the job ended (the job's own status can be ahead of them).
  const ended = isTerminal(job.status) && results !== null && isTerminal(results.status);
  const active = visible && !ended;
  React.useEffect(() => {
    const client = new NotebookRunApi(api);
    const abort = new AbortController();
    const load = () =>
      client
        .results(job.id, abort.signal)
        .then(r => {
          setResults(r);
          setError('');
        })
        .catch(e => {
          if ((e as Error).name !== 'AbortError' && !abort.signal.aborted) {
            setError((e as Error).message || 'unknown error');
          }
        });
    void load();
    const timer = active ? window.setInterval(load, RESULTS_REFRESH_MS) : 0;
    return () => {
      abort.abort();
      if (timer) {
        window.clearInterval(timer);
      }
    };
  }, [api, job.id, job.status, active]);
  return { results, error };
}

/** "Open output" of one run: its executed notebook, opened in JupyterLab. */
function OpenOutput(props: { api: KFApi; run: IRunOfResults; label?: string }): JSX.Element {
  const { api, run, label = 'Open output' } = props;
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState('');
  if (!run.output_notebook) {
    return <span className="kf-NotebookRun-nooutput">{isTerminal(run.status) ? 'no output' : 'not yet'}</span>;
  }
  return (
    <span className="kf-NotebookRun-open">
      <Button
        className="kf-NotebookRun-openOutput"
        disabled={busy}
        title={`Open the executed notebook of ${run.id}`}
        onClick={async () => {
          setBusy(true);
          setError('');
          try {
            const path = await new NotebookRunApi(api).outputPath(run.id);
            await openDocument(path);
          } catch (e) {
            setError((e as Error).message || String(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy ? 'Opening…' : label}
      </Button>
      {error ? (
        <span className="kf-NotebookRun-error" role="alert">
          {error}
        </span>
      ) : null}
    </span>
  );
}

/** The results table: parameters, status, the reported scalars, the output of each run. */
function ResultsTable(props: { api: KFApi; results: IRunResults }): JSX.Element {
  const { api, results } = props;
  const statusAt = results.columns.indexOf('status');
  const idAt = results.columns.indexOf('job_id');
  const shown = results.columns.map((c, i) => i).filter(i => i !== statusAt && i !== idAt);
  const params = new Set(results.runs.flatMap(r => Object.keys(r.parameters)));
  const runs = new Map(results.runs.map(r => [r.id, r]));
  return (
    <table className="kf-NotebookRun-table">
      <thead>
        <tr>
          <th>#</th>
          {shown.map(i => (
            <th key={results.columns[i]} className={params.has(results.columns[i]) ? 'kf-mod-param' : 'kf-mod-metric'}>
              {results.columns[i]}
            </th>
          ))}
          <th>status</th>
          <th>output</th>
        </tr>
      </thead>
      <tbody>
        {results.rows.map((row, n) => {
          const id = String(row[idAt] ?? '');
          const run = runs.get(id);
          return (
            <tr key={id || n} data-run-id={id} data-status={String(row[statusAt] ?? '')}>
              <td>{n + 1}</td>
              {shown.map(i => (
                <td
                  key={results.columns[i]}
                  data-column={results.columns[i]}
                  className={typeof row[i] === 'number' ? 'kf-mod-number' : undefined}
                >
                  {formatResult(row[i])}
                </td>
              ))}
              <td>
                <StatusBadge status={String(row[statusAt] ?? '')} />
              </td>
              <td>{run ? <OpenOutput api={api} run={run} /> : null}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function NotebookRunView(props: { job: IJob; api: KFApi; visible?: boolean }): JSX.Element | null {
  const { job, api, visible = true } = props;
  const { results, error } = useResults(api, job, visible);
  if (!isNotebookRunKind(job.kind)) {
    return null;
  }
  const sweep = job.kind === 'sweep';
  let body: React.ReactNode;
  if (!results) {
    body = error ? (
      <div className="kf-NotebookRun-error" role="alert">
        Cannot load the results: {error}
      </div>
    ) : (
      <div className="kf-NotebookRun-empty">Loading the results…</div>
    );
  } else if (!sweep) {
    const run = results.runs[0];
    body = (
      <>
        <div className="kf-NotebookRun-output">
          <span className="kf-NotebookRun-label">Output notebook</span>
          {run ? <OpenOutput api={api} run={run} label="Open output notebook" /> : null}
        </div>
        {results.rows.length ? <ResultsTable api={api} results={results} /> : null}
      </>
    );
  } else {
    const done = results.runs.filter(r => isTerminal(r.status)).length;
    body = (
      <>
        <div className="kf-NotebookRun-summary">
          {done} of {results.runs.length} run{results.runs.length === 1 ? '' : 's'} done
        </div>
        {results.rows.length ? (
          <ResultsTable api={api} results={results} />
        ) : (
          <div className="kf-NotebookRun-empty">No runs yet.</div>
        )}
      </>
    );
  }
  return (
    <section className="kf-JobDetail-section kf-NotebookRun" data-kind={job.kind}>
      <h3>{sweep ? 'Sweep results' : 'Notebook run'}</h3>
      {error && results ? (
        <div className="kf-NotebookRun-error" role="alert">
          Cannot re-read the results: {error}
        </div>
      ) : null}
      {body}
    </section>
  );
}

// -- the "Run with parameters…" dialog's body ---------------------------------------------

function RunForm(props: { form: RunDialogBody }): JSX.Element {
  const { form } = props;
  const { info, rows, errors, serverError, busy } = form;
  const built = buildRunRequest(form.path, rows, form.parallel);
  const swept = built.request?.sweep !== undefined || rows.some(r => r.text.includes(','));
  const where =
    info.tag === 'pipeline-parameters'
      ? "Kale's pipeline-parameters cell"
      : info.tag
        ? 'the cell tagged parameters'
        : null;
  return (
    <div className="kf-NotebookRunForm">
      <p className="kf-NotebookRunForm-path">
        <code>{form.path}</code>
        {where ? (
          <>
            {' '}
            — parameters from {where} (cell {(info.cell ?? 0) + 1})
          </>
        ) : null}
      </p>
      {rows.length ? (
        <>
          <p className="kf-NotebookRunForm-hint">
            A value per parameter, or several separated by commas to sweep them: every combination runs.
          </p>
          <table className="kf-NotebookRunForm-rows">
            <tbody>
              {rows.map((row, i) => (
                <tr key={row.name} data-name={row.name}>
                  <th>
                    <label htmlFor={`kf-nr-${row.name}`}>{row.name}</label>
                  </th>
                  <td>
                    <input
                      id={`kf-nr-${row.name}`}
                      className="jp-mod-styled kf-NotebookRunForm-value"
                      name={row.name}
                      value={row.text}
                      placeholder={row.source}
                      spellCheck={false}
                      aria-invalid={errors[row.name] ? true : undefined}
                      onChange={e => form.setText(i, e.currentTarget.value)}
                    />
                    {errors[row.name] ? (
                      <div className="kf-NotebookRunForm-error" role="alert">
                        {errors[row.name]}
                      </div>
                    ) : null}
                  </td>
                  <td className="kf-NotebookRunForm-type">{row.type ?? 'expression'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : (
        <p className="kf-NotebookRunForm-hint">
          {info.readable
            ? 'This notebook has no parameters cell: it runs as it is. Tag a cell "parameters" to set values.'
            : 'The parameters cell is not Python that can be read: the notebook runs with its defaults.'}
        </p>
      )}
      <div className="kf-NotebookRunForm-parallel">
        <label htmlFor="kf-nr-parallel">Parallel runs</label>
        <input
          id="kf-nr-parallel"
          className="jp-mod-styled"
          name="max_parallel"
          type="number"
          min={1}
          value={form.parallel}
          disabled={!swept}
          onChange={e => form.setParallel(e.currentTarget.value)}
        />
        <span className="kf-NotebookRunForm-count">
          {built.runs === 1 ? '1 run' : `${built.runs} runs (a sweep)`}
        </span>
      </div>
      {errors[''] ? (
        <div className="kf-NotebookRunForm-error" role="alert">
          {errors['']}
        </div>
      ) : null}
      {serverError ? (
        <div className="kf-NotebookRunForm-error kf-NotebookRunForm-serverError" role="alert">
          {serverError}
        </div>
      ) : null}
      {busy ? <div className="kf-NotebookRunForm-busy">Starting…</div> : null}
    </div>
  );
}

/**
 * The dialog's body: one row per parameter (its default's text to start with), the
 * parallelism, and the problems found — here, or by the server when it refuses the start.
 */
export class RunDialogBody extends ReactWidget {
  rows: IParameterRow[];
  parallel = '2';
  errors: Record<string, string> = {};
  serverError = '';
  busy = false;
  /** The job, once started. */
  started: IJob | null = null;

  constructor(
    private readonly _api: NotebookRunApi,
    readonly path: string,
    readonly info: INotebookParameters
  ) {
    super();
    this.addClass('kf-NotebookRunDialogBody');
    this.rows = info.parameters.map(p => ({ name: p.name, type: p.type, source: p.source, text: p.source }));
  }

  setText(index: number, text: string): void {
    this.rows = this.rows.map((r, i) => (i === index ? { ...r, text } : r));
    this.errors = {};
    this.serverError = '';
    this.update();
  }

  setParallel(text: string): void {
    this.parallel = text;
    this.errors = {};
    this.update();
  }

  getValue(): IJob | null {
    return this.started;
  }

  /** Start the run; false (the problems shown) when it is refused. */
  async start(): Promise<boolean> {
    if (this.busy) {
      return false;
    }
    const built = buildRunRequest(this.path, this.rows, this.parallel);
    this.errors = built.errors;
    this.serverError = '';
    if (!built.request) {
      this.update();
      return false;
    }
    this.busy = true;
    this.update();
    try {
      this.started = await this._api.start(built.request);
      return true;
    } catch (error) {
      this.serverError = (error as Error).message || String(error);
      return false;
    } finally {
      this.busy = false;
      this.update();
    }
  }

  protected render(): JSX.Element {
    return <RunForm form={this} />;
  }
}
