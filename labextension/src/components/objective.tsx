/**
 * A study's objective per trial as a plain SVG: one dot per finished trial
 * (pruned trials hollow, at their last reported value), the best-so-far step
 * line, and the best trial ringed. Colours are JupyterLab's theme variables.
 */

import * as React from 'react';

import { formatValue, niceTicks, scale } from '../metrics';
import { bestSoFar, bestTrial, isMaximize, plotValue, stepLine } from '../tuning';
import { ITrial } from '../types';

const WIDTH = 480;
const HEIGHT = 200;
const MARGIN = { top: 10, right: 12, bottom: 28, left: 48 };

export function ObjectivePlot(props: {
  trials: readonly ITrial[];
  objective: string;
  direction: string;
}): JSX.Element {
  const { trials, objective, direction } = props;
  const points = trials
    .map(t => ({ trial: t, y: plotValue(t) }))
    .filter((p): p is { trial: ITrial; y: number } => p.y !== null && p.trial.number !== null);

  if (points.length === 0) {
    return (
      <div className="kf-ObjectivePlot kf-ObjectivePlot-empty">
        No trial has reported <code>{objective}</code> yet.
      </div>
    );
  }

  const numbers = trials.map(t => t.number).filter((n): n is number => n !== null);
  const xMax = Math.max(...numbers);
  const ys = points.map(p => p.y);
  const xTicks = niceTicks(0, Math.max(xMax, 1), Math.min(6, Math.max(1, xMax)));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const sx = scale(xTicks[0], xTicks[xTicks.length - 1], MARGIN.left, WIDTH - MARGIN.right);
  const sy = scale(yTicks[0], yTicks[yTicks.length - 1], HEIGHT - MARGIN.bottom, MARGIN.top);
  const line = stepLine(bestSoFar(trials, direction), xMax);
  const best = bestTrial(trials, direction);
  const path = line
    .map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`)
    .join(' ');

  return (
    <div className="kf-ObjectivePlot" data-points={points.length}>
      <div className="kf-ObjectivePlot-legend">
        <span className="kf-ObjectivePlot-name">
          {objective} ({isMaximize(direction) ? 'max' : 'min'})
        </span>
        <span className="kf-ObjectivePlot-key">
          <span className="kf-ObjectivePlot-dot kf-trial-complete" /> complete
        </span>
        {points.some(p => p.trial.state === 'PRUNED') ? (
          <span className="kf-ObjectivePlot-key">
            <span className="kf-ObjectivePlot-dot kf-trial-pruned" /> pruned
          </span>
        ) : null}
        <span className="kf-ObjectivePlot-key">
          <span className="kf-ObjectivePlot-swatch" /> best so far
        </span>
      </div>
      <svg
        className="kf-ObjectivePlot-svg"
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`${objective} per trial, with the best so far`}
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
            <text key={`x${t}`} x={sx(t)} y={HEIGHT - MARGIN.bottom + 14} textAnchor="middle">
              {formatValue(t)}
            </text>
          ))}
          <text x={WIDTH - MARGIN.right} y={HEIGHT - 2} textAnchor="end">
            trial
          </text>
        </g>
        {line.length > 0 ? (
          <path className="kf-BestSoFar" d={path} fill="none" data-points={line.length} />
        ) : null}
        <g className="kf-TrialPoints">
          {points.map(({ trial, y }) => (
            <circle
              key={trial.number as number}
              className={`kf-TrialPoint kf-trial-${trial.state.toLowerCase()}`}
              data-trial={trial.number as number}
              cx={sx(trial.number as number)}
              cy={sy(y)}
              r={3.5}
            >
              <title>
                {`trial ${trial.number} (${trial.state.toLowerCase()}): ${objective} = ${y}`}
              </title>
            </circle>
          ))}
          {best && best.number !== null ? (
            <circle
              className="kf-TrialPoint-best"
              cx={sx(best.number)}
              cy={sy(best.value as number)}
              r={7}
              fill="none"
            />
          ) : null}
        </g>
      </svg>
    </div>
  );
}
