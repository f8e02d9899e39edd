/**
 * The results table of a papermill sweep (job kind "sweep"): one row per
 * parameter set, with the last value of each metric the run reported.
 */

import * as React from 'react';

import { KFApi } from '../api';
import { IJob, isTerminal } from '../types';

/** The `results` of a sweep's job object (GET /jobs/{id}). */
export interface ISweepResults {
  columns: string[];
  rows: unknown[][];
}

/** How often a running sweep's table is re-read. */
export const SWEEP_REFRESH_MS = 3000;

/** A cell of the table as text: numbers rounded for reading, empty for missing. */
export function formatResult(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return String(value);
}

export function SweepResults(props: { api: KFApi; job: IJob; visible: boolean }): JSX.Element | null {
  const { api, job, visible } = props;
  const [results, setResults] = React.useState<ISweepResults | null>(null);
  // '' while nothing failed; the last failure's message otherwise (cleared by a good read).
  const [error, setError] = React.useState('');
  const [loaded, setLoaded] = React.useState(false);
  const active = !isTerminal(job.status) && visible;
  React.useEffect(() => {
    const abort = new AbortController();
    const load = () =>
      api
        .getJob(job.id, abort.signal)
        .then(full => {
          setResults(((full as unknown) as { results?: ISweepResults }).results ?? null);
          setError('');
          setLoaded(true);
        })
        .catch(e => {
          if ((e as Error).name !== 'AbortError' && !abort.signal.aborted) {
            setError((e as Error).message || 'unknown error');
          }
        });
    void load();
    const timer = active ? window.setInterval(load, SWEEP_REFRESH_MS) : 0;
    return () => {
      abort.abort();
      if (timer) {
        window.clearInterval(timer);
      }
    };
  }, [api, job.id, job.status, active]);
  if (!results || results.rows.length === 0) {
    if (error) {
      return <div className="kf-SweepResults kf-SweepResults-error">Cannot load the results: {error}</div>;
    }
    return (
      <div className="kf-SweepResults kf-SweepResults-empty">{loaded ? 'No runs yet.' : 'Loading the results…'}</div>
    );
  }
  return (
    <table className="kf-SweepResults">
      <thead>
        <tr>
          {results.columns.map(c => (
            <th key={c}>{c}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {results.rows.map((row, i) => (
          <tr key={i} data-row={i}>
            {row.map((cell, j) => (
              <td key={j} data-column={results.columns[j]}>
                {formatResult(cell)}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
