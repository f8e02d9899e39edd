/**
 * The Tuning panel of the Kubeflow sidebar: the workspace's tuning studies
 * (status, progress, best value) and, for the one selected, its trials live
 * (table and objective plot), its best trial, Cancel, and a trial's log on
 * demand (the study job's channel `trial/N`, streamed).
 */

import * as React from 'react';

import { IStudiesState, StudiesModel } from '../studies';
import {
  DEFAULT_SORT,
  formatParam,
  formatTrialDuration,
  ISort,
  isMaximize,
  nextSort,
  paramNames,
  progress,
  progressText,
  shownValue,
  sortTrials,
  trialChannel,
  trialDuration,
  trialLogRead
} from '../tuning';
import { isTerminal, IStudy, IStudySummary, ITrial } from '../types';
import { Button, StatusBadge, useNow, usePageVisible, useSignal, VisibilityAwareWidget } from './common';
import { useChannelLog } from './logs';
import { StudyCharts } from './objective';
import { studyImportances } from '../studies';

/** What the panel's buttons do (the plugin's commands). */
export interface IStudyActions {
  cancel(id: string): Promise<void>;
  /** Start the study's cell as a training job with the best params, and open it. */
  retrainBest?(id: string): Promise<void>;
  /** Ask a model name and register what the best trial saved. */
  registerBest?(id: string): Promise<void>;
}

function formatObjective(value: number | null | undefined): string {
  return typeof value === 'number' && isFinite(value) ? formatParam(value) : '–';
}

function ProgressBar(props: { study: IStudySummary }): JSX.Element | null {
  const p = progress(props.study);
  if (!p) {
    return null;
  }
  return (
    <span
      className="kf-StudyProgress"
      title={`${p.done} of ${p.budget} trials done, ${p.running} running`}
    >
      <span className="kf-StudyProgress-bar" aria-hidden="true">
        <span className="kf-StudyProgress-fill" style={{ width: `${p.fraction * 100}%` }} />
      </span>
      <span className="kf-StudyProgress-text">
        {p.done}/{p.budget}
        {p.running ? ` · ${p.running} running` : ''}
      </span>
    </span>
  );
}

function StudyRow(props: {
  study: IStudySummary;
  selected: boolean;
  onSelect: () => void;
}): JSX.Element {
  const { study, selected, onSelect } = props;
  return (
    <li
      className={`kf-StudyRow kf-status-${study.status.toLowerCase()}${
        selected ? ' kf-mod-selected' : ''
      }`}
      data-study-id={study.id}
      data-study-name={study.name}
      data-status={study.status}
      aria-selected={selected}
      role="option"
      tabIndex={0}
      title={`${study.name} (${study.id}): ${selected ? 'hide' : 'show'} its trials`}
      onClick={onSelect}
      onKeyDown={e => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          onSelect();
        }
      }}
    >
      <div className="kf-JobRow-line">
        <span className="kf-JobRow-name">{study.name}</span>
        <StatusBadge status={study.status} />
      </div>
      <div className="kf-JobRow-line kf-JobRow-meta">
        <ProgressBar study={study} />
        <span className="kf-StudyRow-best" title={`Best ${study.objective} so far`}>
          best {study.objective}{' '}
          <span className="kf-StudyRow-bestValue">{formatObjective(study.best?.value)}</span>
        </span>
      </div>
    </li>
  );
}

/**
 * A trial's log: the channel `trial/N` of the study's job, streamed while the panel is
 * shown. A running (or waiting) trial's tail, followed until the trial ends (the stream's
 * `end`); an ended trial's whole log, read once (again when its state changes, or on
 * Reload).
 */
function TrialLogView(props: {
  model: StudiesModel;
  study: IStudy;
  trial: ITrial;
  visible: boolean;
  onClose: () => void;
}): JSX.Element {
  const { model, study, trial, visible, onClose } = props;
  const [reload, setReload] = React.useState(0);
  const number = trial.number as number;
  const read = trialLogRead(trial);
  const { buffer: log, state, error } = useChannelLog(model.api, study.id, {
    channel: trialChannel(number),
    tail: read.tail,
    follow: read.follow,
    active: visible,
    restart: `${trial.state}#${reload}`
  });
  const failed = state === 'failed' || state === 'error';
  const loading = (state === 'idle' || state === 'connecting') && !log.length;
  return (
    <section
      className="kf-TrialLog"
      data-trial={number}
      data-follow={read.follow}
      data-stream={state}
      aria-label={`Log of trial ${number}`}
    >
      <div className="kf-TrialLog-bar">
        <span className="kf-TrialLog-title">Trial {number} log</span>
        {read.follow && state === 'streaming' ? (
          <span className="kf-TrialLog-state" title="Streamed as the trial prints">
            live
          </span>
        ) : null}
        <span className="kf-JobDetail-spacer" />
        <Button onClick={() => setReload(r => r + 1)} title="Read the log again">
          Reload
        </Button>
        <Button onClick={onClose} title="Close the log">
          Close
        </Button>
      </div>
      {failed && error ? (
        <div className="kf-TuningPanel-error" role="alert">
          {state === 'error' ? `${error} (retrying)` : error}
        </div>
      ) : null}
      {state === 'failed' && !log.length ? null : (
        <pre className="kf-TrialLog-text">
          {log.dropped ? `(${log.dropped} earlier lines not kept)\n` : ''}
          {log.length ? (
            log.text()
          ) : loading ? (
            <span className="kf-LogViewer-empty">Loading…</span>
          ) : state === 'waiting' ? (
            <span className="kf-LogViewer-empty">Waiting for the trial's log…</span>
          ) : state === 'ended' || !read.follow ? (
            <span className="kf-LogViewer-empty">The trial has printed nothing.</span>
          ) : (
            <span className="kf-LogViewer-empty">The trial has printed nothing yet.</span>
          )}
        </pre>
      )}
    </section>
  );
}

function SortHeader(props: {
  label: string;
  column: string;
  sort: ISort;
  onSort: (key: string) => void;
  numeric?: boolean;
  title?: string;
}): JSX.Element {
  const { label, column, sort, onSort, numeric, title } = props;
  const active = sort.key === column;
  return (
    <th
      className={`${numeric ? 'kf-mod-numeric' : ''}${active ? ' kf-mod-sorted' : ''}`}
      aria-sort={active ? (sort.ascending ? 'ascending' : 'descending') : 'none'}
      data-column={column}
    >
      <button
        type="button"
        className="kf-TrialTable-sort"
        onClick={() => onSort(column)}
        title={title ?? `Sort by ${label}`}
      >
        {label}
        <span className="kf-TrialTable-arrow" aria-hidden="true">
          {active ? (sort.ascending ? '▲' : '▼') : ''}
        </span>
      </button>
    </th>
  );
}

function TrialTable(props: {
  study: IStudy;
  receivedAt: number;
  now: number;
  openLog: number | null;
  onOpenLog: (n: number | null) => void;
}): JSX.Element {
  const { study, receivedAt, now, openLog, onOpenLog } = props;
  const [sort, setSort] = React.useState<ISort>(DEFAULT_SORT);
  const names = paramNames(study);
  const rows = sortTrials(study.trials, sort);
  const head = { sort, onSort: (key: string) => setSort(s => nextSort(s, key)) };
  const bestNumber = study.best?.number;
  if (study.trials.length === 0) {
    return <div className="kf-TrialTable-empty">No trial has started yet.</div>;
  }
  return (
    <div className="kf-TrialTable-scroll">
      <table className="kf-TrialTable" aria-label="Trials">
        <thead>
          <tr>
            <SortHeader {...head} label="#" column="number" numeric title="Sort by trial number" />
            <SortHeader {...head} label="state" column="state" />
            <SortHeader {...head} label={study.objective} column="value" numeric />
            <SortHeader {...head} label="duration" column="duration" numeric />
            {names.map(n => (
              <SortHeader {...head} key={n} label={n} column={`param:${n}`} numeric />
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map(t => {
            const n = t.number as number;
            const best = n === bestNumber && t.state === 'COMPLETE';
            return (
              <tr
                key={n}
                className={[
                  'kf-TrialRow',
                  `kf-trial-${t.state.toLowerCase()}`,
                  best ? 'kf-mod-best' : '',
                  openLog === n ? 'kf-mod-selected' : ''
                ].join(' ')}
                data-trial={n}
                data-state={t.state}
                title={t.error ? `${t.state}: ${t.error}` : `Trial ${n}: click for its log`}
                onClick={() => onOpenLog(openLog === n ? null : n)}
              >
                <td className="kf-mod-numeric">{n}</td>
                <td>
                  <span className="kf-TrialState">
                    <span className="kf-TrialState-dot" aria-hidden="true" />
                    {t.state.toLowerCase()}
                  </span>
                </td>
                <td
                  className={`kf-mod-numeric kf-TrialRow-value${
                    t.state === 'PRUNED' ? ' kf-mod-lastValue' : ''
                  }`}
                  title={t.state === 'PRUNED' ? 'pruned: its last reported value' : undefined}
                >
                  {formatObjective(shownValue(t))}
                </td>
                <td className="kf-mod-numeric">
                  {formatTrialDuration(trialDuration(t, now, receivedAt))}
                </td>
                {names.map(name => (
                  <td key={name} className="kf-mod-numeric">
                    {formatParam(t.params?.[name])}
                  </td>
                ))}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** The best trial: its value and params, and "Retrain with the best" (where offered). */
export function BestTrialView(props: {
  study: IStudy;
  retrainBest?: (id: string) => Promise<void>;
  registerBest?: (id: string) => Promise<void>;
}): JSX.Element {
  const { study, retrainBest, registerBest } = props;
  const best = study.best;
  const [retraining, setRetraining] = React.useState(false);
  return (
      <div className="kf-BestTrial" data-trial={best?.number ?? ''}>
        {best ? (
          <>
            <span className="kf-BestTrial-head">
              Best: trial {best.number ?? '?'} · {study.objective} ={' '}
              <strong className="kf-BestTrial-value">{formatObjective(best.value)}</strong>
            </span>
            <span className="kf-BestTrial-params">
              {Object.entries(best.params ?? {}).map(([k, v]) => (
                <code key={k}>
                  {k}={formatParam(v)}
                </code>
              ))}
            </span>
            <span className="kf-BestTrial-actions">
              {retrainBest ? (
                <Button
                  className="kf-RetrainBest"
                  disabled={retraining}
                  title="Run the study's cell again as a training job with these params, and open it"
                  onClick={async () => {
                    setRetraining(true);
                    try {
                      await retrainBest(study.id);
                    } finally {
                      setRetraining(false);
                    }
                  }}
                >
                  {retraining ? 'Starting…' : 'Retrain with the best'}
                </Button>
              ) : null}
              {registerBest ? (
                <Button
                  className="kf-RegisterBest"
                  title="Register what the best trial saved to kfjupyter.output_dir() as a model version"
                  onClick={() => void registerBest(study.id)}
                >
                  Register the best…
                </Button>
              ) : null}
            </span>
          </>
        ) : (
          <span className="kf-BestTrial-none">No trial has completed yet.</span>
        )}
      </div>
  );
}

function StudyDetail(props: {
  model: StudiesModel;
  state: IStudiesState;
  actions: IStudyActions;
  visible: boolean;
}): JSX.Element | null {
  const { model, state, actions, visible } = props;
  const study = state.detail;
  const [cancelling, setCancelling] = React.useState(false);
  const [openLog, setOpenLog] = React.useState<number | null>(null);
  const running = study ? study.trials.some(t => t.state === 'RUNNING') : false;
  const now = useNow(running);
  React.useEffect(() => setOpenLog(null), [state.selected]);

  if (!study) {
    return (
      <div className="kf-StudyDetail kf-StudyDetail-loading">
        {state.detailError ?? `Loading ${state.selected}…`}
      </div>
    );
  }
  const active = !isTerminal(study.status);
  const logTrial = openLog !== null ? study.trials.find(t => t.number === openLog) : undefined;
  return (
    <section
      className="kf-StudyDetail"
      data-study-id={study.id}
      data-status={study.status}
      aria-label={`Study ${study.name}`}
    >
      <header className="kf-StudyDetail-header">
        <span className="kf-StudyDetail-name">{study.name}</span>
        <StatusBadge status={study.status} />
        <span className="kf-JobDetail-spacer" />
        {active ? (
          <Button
            accent="warn"
            className="kf-Cancel"
            disabled={cancelling}
            title="Cancel the study: stop every running trial"
            onClick={async () => {
              setCancelling(true);
              try {
                await actions.cancel(study.id);
              } finally {
                setCancelling(false);
              }
            }}
          >
            {cancelling ? 'Cancelling…' : 'Cancel'}
          </Button>
        ) : null}
      </header>
      <div className="kf-StudyDetail-meta">
        {isMaximize(study.direction) ? 'maximize' : 'minimize'} <code>{study.objective}</code>
        {' · '}
        {study.algorithm}
        {study.early_stopping ? ` · ${study.early_stopping} stopping` : ''}
        {` · ${study.parallel} at a time`}
        {study.workers_per_trial > 1 ? ` · ${study.workers_per_trial} workers per trial` : ''}
      </div>
      {study.trials.length || study.message ? (
        <div className="kf-StudyDetail-message" title={study.message ?? undefined}>
          {study.trials.length ? progressText(study) : study.message}
        </div>
      ) : null}
      {state.detailError ? (
        <div className="kf-TuningPanel-error" role="alert">
          {state.detailError}
        </div>
      ) : null}
      {study.error ? (
        <pre className="kf-JobDetail-error" role="alert">
          {study.error}
        </pre>
      ) : null}
      <BestTrialView study={study} retrainBest={actions.retrainBest} registerBest={actions.registerBest} />
      <StudyCharts
        trials={study.trials}
        objective={study.objective}
        direction={study.direction}
        params={paramNames(study)}
        space={study.space ?? {}}
        loadImportances={() => studyImportances(model.api, study.id)}
      />
      <TrialTable
        study={study}
        receivedAt={state.detailAt}
        now={now}
        openLog={openLog}
        onOpenLog={setOpenLog}
      />
      {logTrial ? (
        <TrialLogView
          model={model}
          study={study}
          trial={logTrial}
          visible={visible}
          onClose={() => setOpenLog(null)}
        />
      ) : null}
    </section>
  );
}

export function TuningPanel(props: {
  model: StudiesModel;
  actions: IStudyActions;
  /** The section is shown (not folded, the sidebar open): a trial's log streams only then. */
  visible?: boolean;
}): JSX.Element {
  const { model, actions } = props;
  const state = useSignal(model.stateChanged, () => model.state);
  const pageVisible = usePageVisible();
  const visible = (props.visible ?? true) && pageVisible;
  return (
    <div className="kf-TuningPanel">
      {state.error ? (
        <div className="kf-TuningPanel-error" role="alert">
          {state.error}
        </div>
      ) : null}
      {state.loaded && state.studies.length === 0 && !state.error ? (
        <div className="kf-TuningPanel-empty">
          No tuning studies yet. Run a <code>%%kf_tune --objective loss</code> cell that declares
          its search space with <code>kfjupyter.param(…)</code> and reports{' '}
          <code>kfjupyter.report(loss=…)</code>; it shows up here.
        </div>
      ) : null}
      <ul className="kf-JobList kf-StudyList" aria-label="Tuning studies" role="listbox">
        {state.studies.map(s => (
          <StudyRow
            key={s.id}
            study={s}
            selected={s.id === state.selected}
            onSelect={() => model.select(s.id === state.selected ? null : s.id)}
          />
        ))}
      </ul>
      {state.selected ? <StudyDetail model={model} state={state} actions={actions} visible={visible} /> : null}
      {state.loaded && state.total > state.studies.length ? (
        <div className="kf-TuningPanel-footer">
          {state.studies.length} of {state.total} studies (the newest)
        </div>
      ) : null}
    </div>
  );
}

/** The Tuning section of the sidebar (a trial's log is streamed only while it is shown). */
export class TuningPanelWidget extends VisibilityAwareWidget {
  constructor(private readonly _options: { model: StudiesModel; actions: IStudyActions }) {
    super();
    this.id = 'kfjupyter-tuning';
    this.title.label = 'Tuning';
    this.title.caption = 'Hyperparameter tuning studies of the kfjupyter workspace';
    this.addClass('kf-TuningPanelWidget');
  }

  protected render(): JSX.Element {
    return <TuningPanel {...this._options} visible={this.isVisible} />;
  }
}
