/**
 * The Experiments panel of the Kubeflow sidebar: the runs of an experiment in a table
 * (columns the user picks, a filter in MLflow's search syntax and a sort, both applied by
 * the server), a run's detail with Re-run (changed params), and, for several runs
 * selected, a compare view: the params that differ, the final metrics, the metric curves
 * overlaid (the Jobs panel's chart) and parallel coordinates of params → a metric. Each
 * run links to its job's tab, the cell that started it and the model versions it made.
 * It re-reads what it shows when a job changes (the sidebar's job events).
 */

import * as React from 'react';

import { ReactWidget } from '@jupyterlab/ui-components';
import { ISignal } from '@lumino/signaling';

import {
  availableColumns,
  cellValue,
  changedParams,
  columnLabel,
  ColumnKey,
  comparisonSeries,
  defaultColumns,
  ExperimentsApi,
  formatCell,
  formatParam,
  IComparison,
  INamedValues,
  IRun,
  isRunEvent,
  nextOrder,
  runLabel
} from '../experiments';
import { IJob } from '../types';
import { EChart } from '../charts/EChart';
import { IParallelColumn, runsParallelOption } from '../charts/options';
import { MetricsChart, RANK_COLOURS } from './chart';
import { Button, StatusBadge, useRequest } from './common';

/** What the panel hands to the plugin (commands of the app). */
export interface IRunActions {
  openJob(id: string): void;
  openCell(jobId: string): void;
  openModel(model: string): void;
}

/** Job events closer together than this reload the panel once. */
const RELOAD_DELAY_MS = 300;

function errorText(error: unknown): string {
  return (error as Error)?.message ?? String(error);
}

/** A counter that moves on (at most every RELOAD_DELAY_MS) whenever a job changes. */
function useJobEvents(jobChanged: ISignal<unknown, IJob>): number {
  const [tick, setTick] = React.useState(0);
  React.useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const onJob = (_: unknown, job: IJob) => {
      if (isRunEvent(job) && timer === null) {
        timer = setTimeout(() => {
          timer = null;
          setTick(t => t + 1);
        }, RELOAD_DELAY_MS);
      }
    };
    jobChanged.connect(onJob);
    return () => {
      jobChanged.disconnect(onJob);
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [jobChanged]);
  return tick;
}

/** What went wrong, when something did (the server's message). */
function ErrorNote(props: { error: string }): JSX.Element | null {
  return props.error ? (
    <div className="kf-TuningPanel-error kf-Experiments-error" role="alert">
      {props.error}
    </div>
  ) : null;
}

function RunLinks(props: { run: IRun; actions: IRunActions }): JSX.Element {
  const { run, actions } = props;
  const link = (className: string, title: string, text: string, go: () => void) => (
    <a
      href="#"
      className={className}
      title={title}
      onClick={e => {
        e.preventDefault();
        go();
      }}
    >
      {text}
    </a>
  );
  return (
    <span className="kf-RunLinks">
      {link('kf-RunLinks-job', `Open job ${run.job_id}`, 'Job', () => actions.openJob(run.job_id))}
      {run.notebook
        ? link('kf-RunLinks-cell', 'Open the cell that started it', 'Cell', () => actions.openCell(run.job_id))
        : null}
      {run.models.map(m =>
        link('kf-RunLinks-model', `Model version ${m}`, m, () => actions.openModel(m.split('/')[0]))
      )}
    </span>
  );
}

function RunDetail(props: {
  api: ExperimentsApi;
  id: string;
  reload: number;
  actions: IRunActions;
}): JSX.Element {
  const { api, id, actions } = props;
  const { value: run, error: readError } = useRequest(signal => api.run(id, signal), [id, props.reload]);
  const [edited, setEdited] = React.useState<Record<string, string>>({});
  const [rerunError, setError] = React.useState('');
  const [started, setStarted] = React.useState<IJob | null>(null);
  const [busy, setBusy] = React.useState(false);
  const error = rerunError || readError;

  if (!run) {
    return <div className="kf-RunDetail">{error || 'Loading…'}</div>;
  }
  const rerun = async () => {
    setBusy(true);
    setError('');
    try {
      setStarted(await api.rerun(run.run_id, changedParams(run.params, edited)));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  const names = Object.keys(run.params);
  return (
    <section className="kf-RunDetail" data-run={run.run_id} aria-label={`Run ${run.run_id}`}>
      <header className="kf-RunDetail-header">
        <span className="kf-RunDetail-name">{run.name}</span>
        <StatusBadge status={run.status} />
        <RunLinks run={run} actions={actions} />
      </header>
      {run.source_run ? <div className="kf-RunDetail-source">re-run of {run.source_run}</div> : null}
      <table className="kf-RunDetail-metrics">
        <tbody>
          {Object.entries(run.metrics).map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td className="kf-num">{formatCell(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {run.child === null ? (
        <form
          className="kf-Rerun"
          onSubmit={e => {
            e.preventDefault();
            void rerun();
          }}
        >
          {names.map(n => (
            <label key={n} className="kf-Rerun-param">
              <span>{n}</span>
              <input
                className="jp-mod-styled"
                aria-label={`param ${n}`}
                data-param={n}
                value={edited[n] ?? formatParam(run.params[n])}
                onChange={e => setEdited({ ...edited, [n]: e.target.value })}
              />
            </label>
          ))}
          <button type="submit" className="jp-Button kf-Button kf-Rerun-button" disabled={busy}>
            Re-run
          </button>
        </form>
      ) : null}
      {started ? (
        <div className="kf-Rerun-started">
          Started{' '}
          <a
            href="#"
            className="kf-Rerun-job"
            onClick={e => {
              e.preventDefault();
              actions.openJob(started.id);
            }}
          >
            {started.id}
          </a>
        </div>
      ) : null}
      <ErrorNote error={error} />
    </section>
  );
}

function ParallelCoordinates(props: { comparison: IComparison; metric: string }): JSX.Element | null {
  const { comparison, metric } = props;
  const columns: IParallelColumn[] = comparison.params.map(p => ({ ...p, kind: 'param' }));
  const final = comparison.metrics.find(m => m.name === metric);
  if (final) {
    columns.push({ ...final, kind: 'metric' });
  }
  if (columns.length < 2) {
    return null;
  }
  const lines = comparison.runs.map((r, index) => ({ label: runLabel(r), index }));
  return (
    <div className="kf-Parallel" data-axes={columns.map(c => c.name).join(',')} data-lines={lines.length}>
      <EChart
        label={`params → ${metric}`}
        height={200}
        option={theme => runsParallelOption(theme, columns, lines)}
        deps={[comparison, metric]}
      />
      <ul className="kf-VisuallyHidden">
        {lines.map(l => (
          <li key={l.index} className="kf-Parallel-line" data-run={comparison.runs[l.index].run_id}>
            {l.label}:{' '}
            {columns.map(c => `${c.name}=${formatCell(c.values[l.index])}`).join(', ')}
          </li>
        ))}
        {columns.map(c => (
          <li key={`${c.kind}-${c.name}`} className={`kf-Parallel-axis kf-mod-${c.kind}`} data-axis={c.name}>
            axis {c.name}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** One param's or metric's values across the compared runs. */
function ValuesRow(props: { row: INamedValues; kind: 'param' | 'metric' }): JSX.Element {
  const { row, kind } = props;
  return (
    <tr className={`kf-Compare-${kind}`} {...{ [`data-${kind}`]: row.name }}>
      <th>{row.name}</th>
      {row.values.map((v, i) => (
        <td key={i} className="kf-num">
          {formatCell(v)}
        </td>
      ))}
    </tr>
  );
}

function CompareView(props: {
  api: ExperimentsApi;
  ids: string[];
  reload: number;
  actions: IRunActions;
  onClose: () => void;
}): JSX.Element {
  const { api, ids, actions } = props;
  const { value: comparison, error } = useRequest(signal => api.compare(ids, signal), [ids.join(','), props.reload]);
  const [metric, setMetric] = React.useState('');

  if (!comparison) {
    return <div className="kf-Compare">{error || 'Comparing…'}</div>;
  }
  const metrics = comparison.metrics.map(m => m.name);
  const chosen = metrics.includes(metric) ? metric : metrics.includes('loss') ? 'loss' : metrics[0] ?? '';
  const curves = comparisonSeries(comparison, chosen);
  return (
    <section className="kf-Compare" aria-label="Compare runs">
      <header className="kf-Compare-header">
        <span>Comparing {comparison.runs.length} runs</span>
        <Button className="kf-Compare-close" onClick={props.onClose}>
          Close
        </Button>
      </header>
      <ErrorNote error={error} />
      <div className="kf-Compare-scroll">
        <table className="kf-Compare-table">
          <thead>
            <tr>
              <th />
              {comparison.runs.map((r, i) => (
                <th key={r.run_id} className="kf-Compare-run" data-run={r.run_id}>
                  <span
                    className="kf-Chart-swatch"
                    style={{ background: RANK_COLOURS[i % RANK_COLOURS.length] }}
                  />
                  {runLabel(r)}
                  <div>
                    <RunLinks run={r} actions={actions} />
                  </div>
                </th>
              ))}
            </tr>
          </thead>
          <tbody className="kf-Compare-params">
            {comparison.params.length ? null : (
              <tr>
                <td colSpan={comparison.runs.length + 1}>No param differs.</td>
              </tr>
            )}
            {comparison.params.map(p => (
              <ValuesRow key={p.name} row={p} kind="param" />
            ))}
          </tbody>
          <tbody className="kf-Compare-metrics">
            {comparison.metrics.map(m => (
              <ValuesRow key={m.name} row={m} kind="metric" />
            ))}
          </tbody>
        </table>
      </div>
      {metrics.length ? (
        <label className="kf-Compare-metricPick">
          Metric{' '}
          <select
            className="jp-mod-styled"
            aria-label="Metric to compare"
            value={chosen}
            onChange={e => setMetric(e.target.value)}
          >
            {metrics.map(m => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
      ) : null}
      {curves.rows.length ? (
        <MetricsChart key={chosen} rows={curves.rows} channels={curves.channels} />
      ) : null}
      <ParallelCoordinates comparison={comparison} metric={chosen} />
    </section>
  );
}

export function ExperimentsPanel(props: {
  api: ExperimentsApi;
  jobChanged: ISignal<unknown, IJob>;
  actions: IRunActions;
}): JSX.Element {
  const { api, actions } = props;
  const reload = useJobEvents(props.jobChanged);
  const experiments = useRequest(signal => api.experiments(signal), [reload]).value?.experiments ?? [];
  const [experiment, setExperiment] = React.useState('');
  const [filterText, setFilterText] = React.useState('');
  const [filter, setFilter] = React.useState('');
  const [orderBy, setOrderBy] = React.useState<string[]>([]);
  const [picked, setPicked] = React.useState<ColumnKey[] | null>(null);
  const [choosing, setChoosing] = React.useState(false);
  const [checked, setChecked] = React.useState<string[]>([]);
  const [comparing, setComparing] = React.useState<string[] | null>(null);
  const [selected, setSelected] = React.useState<string | null>(null);

  const { value: page, error } = useRequest(
    signal => api.runs({ experiment, filter, orderBy }, signal),
    [experiment, filter, orderBy.join('|'), reload]
  );
  const runs: IRun[] = page?.runs ?? [];
  const total = page?.total ?? 0;
  const loaded = page !== null || error !== '';

  const columns = picked ?? defaultColumns(runs);
  const toggle = (id: string) =>
    setChecked(c => (c.includes(id) ? c.filter(x => x !== id) : [...c, id]));
  const sortMark = (c: ColumnKey) =>
    orderBy[0] === `${c} ASC` ? ' ▲' : orderBy[0] === `${c} DESC` ? ' ▼' : '';

  return (
    <div className="kf-Experiments">
      <div className="kf-Experiments-filters">
        <select
          className="jp-mod-styled kf-Experiments-experiment"
          aria-label="Experiment"
          value={experiment}
          onChange={e => setExperiment(e.target.value)}
        >
          <option value="">all experiments</option>
          {experiments.map(x => (
            <option key={x.name} value={x.name}>
              {x.name} ({x.runs})
            </option>
          ))}
        </select>
        <form
          className="kf-Experiments-filterForm"
          onSubmit={e => {
            e.preventDefault();
            setFilter(filterText);
          }}
        >
          <input
            className="jp-mod-styled kf-Experiments-filter"
            type="search"
            placeholder="metrics.loss < 0.2 and params.lr = 0.1"
            aria-label="Filter runs"
            title="MLflow's search syntax, as kfjupyter.runs(filter=…); Enter applies it"
            value={filterText}
            onChange={e => setFilterText(e.target.value)}
          />
        </form>
        <Button className="kf-Experiments-columnsButton" onClick={() => setChoosing(!choosing)}>
          Columns
        </Button>
        <Button
          className="kf-Experiments-compare"
          disabled={checked.length < 2}
          onClick={() => setComparing([...checked])}
        >
          Compare ({checked.length})
        </Button>
      </div>
      {choosing ? (
        <div className="kf-Experiments-columns" aria-label="Columns">
          {availableColumns(runs).map(c => (
            <label key={c}>
              <input
                type="checkbox"
                checked={columns.includes(c)}
                onChange={() =>
                  setPicked(columns.includes(c) ? columns.filter(x => x !== c) : [...columns, c])
                }
              />
              {c}
            </label>
          ))}
        </div>
      ) : null}
      <ErrorNote error={error} />
      {loaded && !runs.length && !error ? (
        <div className="kf-TuningPanel-empty">
          No runs{filter || experiment ? ' match' : ' yet'}. Every training, tuning, pipeline or notebook job is a
          run.
        </div>
      ) : null}
      <div className="kf-Experiments-scroll">
        <table className="kf-RunsTable" aria-label="Runs">
          <thead>
            <tr>
              <th />
              <th>run</th>
              {columns.map(c => (
                <th
                  key={c}
                  className="kf-RunsTable-sort"
                  data-column={c}
                  title={`Sort by ${c}`}
                  onClick={() => setOrderBy(nextOrder(orderBy, c))}
                >
                  {columnLabel(c)}
                  {sortMark(c)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {runs.map(r => (
              <tr
                key={r.run_id}
                className={`kf-RunRow${r.run_id === selected ? ' jp-mod-selected' : ''}`}
                data-run={r.run_id}
                onClick={() => setSelected(r.run_id === selected ? null : r.run_id)}
              >
                <td onClick={e => e.stopPropagation()}>
                  <input
                    type="checkbox"
                    className="kf-RunRow-check"
                    aria-label={`Select ${r.run_id}`}
                    checked={checked.includes(r.run_id)}
                    onChange={() => toggle(r.run_id)}
                  />
                </td>
                <td className="kf-RunRow-name" title={r.run_id}>
                  {r.name}
                </td>
                {columns.map(c => (
                  <td key={c} data-column={c} className={c.startsWith('attributes.') ? '' : 'kf-num'}>
                    {formatCell(cellValue(r, c), c)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="kf-Experiments-count">
        {runs.length}
        {total > runs.length ? ` of ${total}` : ''} runs
      </div>
      {selected ? <RunDetail key={selected} api={api} id={selected} reload={reload} actions={actions} /> : null}
      {comparing ? (
        <CompareView
          api={api}
          ids={comparing}
          reload={reload}
          actions={actions}
          onClose={() => setComparing(null)}
        />
      ) : null}
    </div>
  );
}

/** The Experiments section of the sidebar. */
export class ExperimentsPanelWidget extends ReactWidget {
  constructor(
    private readonly _options: {
      api: ExperimentsApi;
      jobChanged: ISignal<unknown, IJob>;
      actions: IRunActions;
    }
  ) {
    super();
    this.id = 'kfjupyter-experiments';
    this.title.label = 'Experiments';
    this.title.caption = 'Runs of the kfjupyter workspace: filter, sort, compare, re-run';
    this.addClass('kf-ExperimentsPanelWidget');
  }

  render(): JSX.Element {
    return (
      <ExperimentsPanel
        api={this._options.api}
        jobChanged={this._options.jobChanged}
        actions={this._options.actions}
      />
    );
  }
}
