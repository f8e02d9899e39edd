/**
 * Reported metrics as a plain SVG line chart: one line per rank (named by the job's
 * metric channel of that rank), one metric at a time. Colours come from JupyterLab's
 * theme variables.
 */

import * as React from 'react';

import {
  formatValue,
  linePath,
  metricNames,
  metricSeries,
  niceTicks,
  scale,
  seriesLabel
} from '../metrics';
import { IChannel, IMetricRow } from '../types';

const WIDTH = 560;
const HEIGHT = 220;
const MARGIN = { top: 12, right: 16, bottom: 28, left: 52 };

/** Line colours by rank (theme variables, so light and dark both work). */
export const RANK_COLOURS = [
  'var(--jp-brand-color1)',
  'var(--jp-warn-color1)',
  'var(--jp-success-color1)',
  'var(--jp-error-color1)',
  'var(--jp-info-color1)',
  'var(--jp-accent-color1)'
];

export function MetricsChart(props: {
  rows: IMetricRow[];
  /** The job's metric channels (`job.channels.metrics`): each series is named by its label. */
  channels?: readonly IChannel[];
}): JSX.Element {
  const { rows, channels } = props;
  const names = metricNames(rows);
  const [chosen, setChosen] = React.useState<string>('');
  const name = names.includes(chosen) ? chosen : names.includes('loss') ? 'loss' : names[0];

  if (!name) {
    return (
      <div className="kf-Chart kf-Chart-empty">
        No metrics yet. Call <code>kfjupyter.report(step=…, loss=…)</code> in the cell.
      </div>
    );
  }

  const series = metricSeries(rows, name);
  const xs = series.flatMap(s => s.points.map(p => p.x));
  const ys = series.flatMap(s => s.points.map(p => p.y));
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const x0 = xTicks[0];
  const x1 = xTicks[xTicks.length - 1];
  const y0 = yTicks[0];
  const y1 = yTicks[yTicks.length - 1];
  const sx = scale(x0, x1, MARGIN.left, WIDTH - MARGIN.right);
  const sy = scale(y0, y1, HEIGHT - MARGIN.bottom, MARGIN.top);
  const last = series.map(s => s.points[s.points.length - 1]);

  return (
    <div className="kf-Chart" data-metric={name}>
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
      <svg
        className="kf-Chart-svg"
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`${name} by step`}
      >
        <g className="kf-Chart-grid">
          {yTicks.map(t => (
            <g key={`y${t}`}>
              <line x1={MARGIN.left} x2={WIDTH - MARGIN.right} y1={sy(t)} y2={sy(t)} />
              <text x={MARGIN.left - 6} y={sy(t)} textAnchor="end" dominantBaseline="middle">
                {formatValue(t)}
              </text>
            </g>
          ))}
          {xTicks.map(t => (
            <text key={`x${t}`} x={sx(t)} y={HEIGHT - MARGIN.bottom + 16} textAnchor="middle">
              {formatValue(t)}
            </text>
          ))}
          <text
            x={WIDTH - MARGIN.right}
            y={HEIGHT - 2}
            textAnchor="end"
            className="kf-Chart-axisLabel"
          >
            step
          </text>
        </g>
        {series.map(s => {
          const colour = RANK_COLOURS[s.rank % RANK_COLOURS.length];
          return (
            <g key={s.rank} className="kf-Chart-series" data-rank={s.rank} data-label={seriesLabel(s.rank, channels)}>
              <path d={linePath(s.points, sx, sy)} fill="none" stroke={colour} strokeWidth={2} />
              {s.points.length <= 60
                ? s.points.map((p, i) => (
                    <circle key={i} cx={sx(p.x)} cy={sy(p.y)} r={2.5} fill={colour}>
                      <title>{`${seriesLabel(s.rank, channels)}, step ${p.x}: ${name} = ${p.y}`}</title>
                    </circle>
                  ))
                : null}
            </g>
          );
        })}
      </svg>
    </div>
  );
}
