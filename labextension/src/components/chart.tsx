/**
 * Reported metrics as an ECharts line chart: one line per rank (named by the job's metric
 * channel of that rank), one metric at a time, axes with ticks, a log-scale toggle.
 * Colours come from JupyterLab's theme (charts/theme.ts).
 */

import * as React from 'react';

import { EChart } from '../charts/EChart';
import { canLog, ILineSeries, metricsOption } from '../charts/options';
import { formatValue, metricNames, metricSeries, seriesLabel } from '../metrics';
import { IChannel, IMetricRow } from '../types';

/** Line colours by rank (theme variables, the order of the charts' palette). */
export const RANK_COLOURS = [
  'var(--jp-brand-color1)',
  'var(--jp-warn-color1)',
  'var(--jp-success-color1)',
  'var(--jp-error-color1)',
  'var(--jp-info-color1)',
  'var(--jp-accent-color1)'
];

/** A "log scale" checkbox, shown only where a log scale can draw the values. */
export function LogToggle(props: {
  values: readonly number[];
  log: boolean;
  onChange: (log: boolean) => void;
}): JSX.Element | null {
  if (!canLog(props.values)) {
    return null;
  }
  return (
    <label className="kf-Chart-log" title="Show the values on a logarithmic scale">
      <input type="checkbox" checked={props.log} onChange={e => props.onChange(e.target.checked)} /> log
    </label>
  );
}

export function MetricsChart(props: {
  rows: IMetricRow[];
  /** The job's metric channels (`job.channels.metrics`): each series is named by its label. */
  channels?: readonly IChannel[];
  height?: number;
}): JSX.Element {
  const { rows, channels } = props;
  const names = metricNames(rows);
  const [chosen, setChosen] = React.useState<string>('');
  const [log, setLog] = React.useState(false);
  const name = names.includes(chosen) ? chosen : names.includes('loss') ? 'loss' : names[0];

  if (!name) {
    return (
      <div className="kf-Chart kf-Chart-empty">
        No metrics yet. Call <code>kfjupyter.report(step=…, loss=…)</code> in the cell.
      </div>
    );
  }

  const series = metricSeries(rows, name);
  const lines: ILineSeries[] = series.map(s => ({
    label: seriesLabel(s.rank, channels),
    points: s.points,
    index: s.rank
  }));
  const values = series.flatMap(s => s.points.map(p => p.y));
  const logOn = log && canLog(values);
  const last = series.map(s => s.points[s.points.length - 1]);

  return (
    <div className="kf-Chart" data-metric={name} data-log={String(logOn)}>
      <div className="kf-Chart-bar">
        {names.length > 1 ? (
          <select
            className="jp-mod-styled"
            value={name}
            aria-label="Metric"
            onChange={e => setChosen(e.target.value)}
          >
            {names.map(n => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        ) : (
          <span className="kf-Chart-name">{name}</span>
        )}
        <LogToggle values={values} log={logOn} onChange={setLog} />
        <span className="kf-Chart-legend">
          {series.map((s, i) => (
            <span key={s.rank} className="kf-Chart-legendItem">
              <span
                className="kf-Chart-swatch"
                style={{ background: RANK_COLOURS[s.rank % RANK_COLOURS.length] }}
              />
              {seriesLabel(s.rank, channels)}: {formatValue(last[i].y)}
            </span>
          ))}
        </span>
      </div>
      <EChart
        className="kf-Chart-canvas"
        label={`${name} by step`}
        height={props.height ?? 220}
        option={(theme, width) => metricsOption(theme, lines, name, { log: logOn, width })}
        deps={[rows, channels, name, logOn]}
        data={{ series: lines.length }}
      />
      {/* The chart's data as text: for screen readers (and tests). */}
      <ul className="kf-Chart-data kf-VisuallyHidden">
        {series.map((s, i) => (
          <li
            key={s.rank}
            className="kf-Chart-series"
            data-rank={s.rank}
            data-label={seriesLabel(s.rank, channels)}
            data-points={s.points.length}
          >
            {seriesLabel(s.rank, channels)}: {s.points.length} points, last {name} ={' '}
            {formatValue(last[i].y)}
          </li>
        ))}
      </ul>
    </div>
  );
}
