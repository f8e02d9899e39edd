/**
 * A study's charts, one set for the sidebar's Tuning panel and the notebook's study view
 * (the MIME renderer): the objective per trial with the best so far, intermediate values
 * per trial, parallel coordinates of params → objective, parameter importances (Optuna's,
 * computed by the server) and a slice plot per param; a log-scale toggle for the
 * objective. Drawn by ECharts with the theme's colours (charts/).
 */

import * as React from 'react';

import { EChart } from '../charts/EChart';
import {
  IImportances,
  importanceOption,
  intermediateOption,
  intermediateSeries,
  objectiveCanLog,
  objectiveOption,
  parallelOption,
  plottedTrials,
  sliceOption
} from '../charts/study';
import { bestSoFar, stepLine } from '../tuning';
import { IParamRange, ITrial } from '../types';

export function ObjectivePlot(props: {
  trials: readonly ITrial[];
  objective: string;
  direction: string;
  log?: boolean;
}): JSX.Element {
  const { trials, objective, direction } = props;
  const points = plottedTrials(trials);
  if (points.length === 0) {
    return (
      <div className="kf-ObjectivePlot kf-ObjectivePlot-empty">
        No trial has reported <code>{objective}</code> yet.
      </div>
    );
  }
  const numbers = trials.map(t => t.number).filter((n): n is number => n !== null);
  const line = stepLine(bestSoFar(trials, direction), Math.max(...numbers));
  const log = !!props.log && objectiveCanLog(trials);
  return (
    <div
      className="kf-ObjectivePlot"
      data-points={points.length}
      data-pruned={points.filter(p => p.state === 'PRUNED').length}
      data-best-line={line.length}
      data-log={String(log)}
    >
      <EChart
        label={`${objective} per trial, with the best so far`}
        option={(theme, width) => objectiveOption(theme, trials, objective, direction, { log, width })}
        deps={[trials, objective, direction, log]}
      />
    </div>
  );
}

function IntermediatePlot(props: { trials: readonly ITrial[]; objective: string; log: boolean }): JSX.Element {
  const { trials, objective, log } = props;
  const curves = trials.filter(t => intermediateSeries(t).length > 0);
  if (!curves.length) {
    return <div className="kf-StudyChart-empty">No trial has reported intermediate values yet.</div>;
  }
  return (
    <div className="kf-IntermediatePlot" data-curves={curves.length}>
      <EChart
        label={`${objective} by step, a line per trial`}
        option={(theme, width) => intermediateOption(theme, trials, objective, { log, width })}
        deps={[trials, objective, log]}
      />
    </div>
  );
}

function ParallelPlot(props: {
  trials: readonly ITrial[];
  params: readonly string[];
  space: Record<string, IParamRange>;
  objective: string;
  direction: string;
  log: boolean;
}): JSX.Element {
  const { trials, params, space, objective, direction, log } = props;
  const points = plottedTrials(trials);
  if (!points.length || !params.length) {
    return <div className="kf-StudyChart-empty">No trial to draw yet.</div>;
  }
  return (
    <div className="kf-ParallelPlot" data-axes={params.length + 1} data-lines={points.length}>
      <EChart
        label={`parameters → ${objective}, a line per trial`}
        height={240}
        option={(theme, width) =>
          parallelOption(theme, trials, params, space, objective, direction, { log, width })
        }
        deps={[trials, params, space, objective, direction, log]}
      />
    </div>
  );
}

function SlicePlot(props: {
  trials: readonly ITrial[];
  params: readonly string[];
  space: Record<string, IParamRange>;
  objective: string;
  log: boolean;
}): JSX.Element {
  const { trials, params, space, objective, log } = props;
  const [chosen, setChosen] = React.useState('');
  const param = params.includes(chosen) ? chosen : params[0];
  if (!param || !plottedTrials(trials).length) {
    return <div className="kf-StudyChart-empty">No trial to draw yet.</div>;
  }
  return (
    <div className="kf-SlicePlot" data-param={param}>
      {params.length > 1 ? (
        <label className="kf-StudyCharts-pick">
          Param{' '}
          <select
            className="jp-mod-styled"
            aria-label="Param of the slice plot"
            value={param}
            onChange={e => setChosen(e.target.value)}
          >
            {params.map(p => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
      ) : null}
      <EChart
        label={`${objective} against ${param}`}
        option={(theme, width) => sliceOption(theme, trials, param, space, objective, { log, width })}
        deps={[trials, param, space, objective, log]}
      />
    </div>
  );
}

/** How the importances are read: `GET /studies/{id}/importances`. */
export type ImportanceLoader = () => Promise<IImportances>;

function ImportancePlot(props: { load: ImportanceLoader; complete: number }): JSX.Element {
  const { load, complete } = props;
  const [answer, setAnswer] = React.useState<IImportances | null>(null);
  const [error, setError] = React.useState('');
  React.useEffect(() => {
    let live = true;
    load().then(
      a => live && (setAnswer(a), setError('')),
      e => live && setError(e instanceof Error ? e.message : String(e))
    );
    return () => {
      live = false;
    };
    // read again when another trial completed
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [complete]);
  if (error) {
    return (
      <div className="kf-StudyChart-empty kf-ImportancePlot-error" role="alert">
        Cannot compute the importances: {error}
      </div>
    );
  }
  if (!answer) {
    return <div className="kf-StudyChart-empty">Computing the importances…</div>;
  }
  const names = Object.keys(answer.importances);
  if (!names.length) {
    return (
      <div className="kf-StudyChart-empty kf-ImportancePlot-message" data-trials={answer.trials}>
        {answer.message ?? 'No importances yet.'}
      </div>
    );
  }
  return (
    <div className="kf-ImportancePlot" data-params={names.join(',')} data-trials={answer.trials}>
      <EChart
        label="parameter importances (fANOVA)"
        height={Math.max(90, 28 * names.length + 40)}
        option={theme => importanceOption(theme, answer.importances)}
        deps={[answer]}
      />
      <div className="kf-ImportancePlot-note">
        Optuna's fANOVA importances over {answer.trials} complete trials.
      </div>
    </div>
  );
}

export const STUDY_CHARTS = ['objective', 'intermediate', 'parallel', 'importance', 'slice'] as const;
export type StudyChart = (typeof STUDY_CHARTS)[number];
const CHART_LABELS: Record<StudyChart, string> = {
  objective: 'Objective',
  intermediate: 'Intermediate',
  parallel: 'Parallel',
  importance: 'Importance',
  slice: 'Slice'
};

/** The study's charts behind tabs, with one log-scale toggle for the objective. */
export function StudyCharts(props: {
  trials: readonly ITrial[];
  objective: string;
  direction: string;
  params: readonly string[];
  space: Record<string, IParamRange>;
  loadImportances?: ImportanceLoader;
}): JSX.Element {
  const { trials, objective, direction, params, space, loadImportances } = props;
  const [chart, setChart] = React.useState<StudyChart>('objective');
  const [log, setLog] = React.useState(false);
  const canLogScale = objectiveCanLog(trials) || trials.some(t => intermediateSeries(t).some(p => p[1] > 0));
  const complete = trials.filter(t => t.state === 'COMPLETE').length;
  const tabs = STUDY_CHARTS.filter(c => c !== 'importance' || loadImportances);
  return (
    <div className="kf-StudyCharts" data-chart={chart}>
      <div className="kf-StudyCharts-bar">
        <div className="kf-StudyCharts-tabs" role="tablist" aria-label="Study charts">
          {tabs.map(c => (
            <button
              key={c}
              type="button"
              role="tab"
              className={`kf-StudyCharts-tab${c === chart ? ' kf-mod-active' : ''}`}
              data-chart={c}
              aria-selected={c === chart}
              onClick={() => setChart(c)}
            >
              {CHART_LABELS[c]}
            </button>
          ))}
        </div>
        {canLogScale && chart !== 'importance' ? (
          <label className="kf-Chart-log" title={`Show ${objective} on a logarithmic scale`}>
            <input
              type="checkbox"
              className="kf-StudyCharts-log"
              checked={log}
              onChange={e => setLog(e.target.checked)}
            />{' '}
            log {objective}
          </label>
        ) : null}
      </div>
      <div className="kf-StudyCharts-body" role="tabpanel">
        {chart === 'objective' ? (
          <ObjectivePlot trials={trials} objective={objective} direction={direction} log={log} />
        ) : chart === 'intermediate' ? (
          <IntermediatePlot trials={trials} objective={objective} log={log} />
        ) : chart === 'parallel' ? (
          <ParallelPlot
            trials={trials}
            params={params}
            space={space}
            objective={objective}
            direction={direction}
            log={log}
          />
        ) : chart === 'importance' && loadImportances ? (
          <ImportancePlot load={loadImportances} complete={complete} />
        ) : (
          <SlicePlot trials={trials} params={params} space={space} objective={objective} log={log} />
        )}
      </div>
    </div>
  );
}
