import {
  formatValue,
  latestValues,
  linePath,
  metricNames,
  metricSeries,
  niceTicks,
  scale,
  seriesLabel
} from '../src/metrics';
import { IChannel, IMetricRow } from '../src/types';

const rows: IMetricRow[] = [
  { rank: 0, step: 1, time: 1.0, loss: 0.9, acc: 0.1 },
  { rank: 1, step: 1, time: 1.1, loss: 1.0 },
  { rank: 0, step: 0, time: 0.5, loss: 1.2, note: 'text' as unknown as number },
  { rank: 1, step: 2, time: 2.0, loss: 0.7 },
  { rank: 0, time: 3.0, loss: 0.5 }
];

describe('metrics', () => {
  it('lists numeric metric names, not rank/step/time', () => {
    expect(metricNames(rows)).toEqual(['loss', 'acc']);
  });

  it('makes one series per rank sorted by step', () => {
    const series = metricSeries(rows, 'loss');
    expect(series.map(s => s.rank)).toEqual([0, 1]);
    // A report without a step takes its order within the rank.
    expect(series[0].points).toEqual([
      { x: 0, y: 1.2 },
      { x: 1, y: 0.9 },
      { x: 2, y: 0.5 }
    ]);
    expect(series[1].points).toEqual([
      { x: 1, y: 1.0 },
      { x: 2, y: 0.7 }
    ]);
  });

  it("names a series by the job's metric channel of its rank, else rank N", () => {
    const ch = (name: string, label: string, rank: number): IChannel => ({ name, label, rank, child: null });
    expect(seriesLabel(0, [ch('trials', 'trials', 0)])).toBe('trials');
    const ranks = [ch('rank-0', 'rank 0', 0), ch('rank-1', 'rank 1', 1)];
    expect(seriesLabel(1, ranks)).toBe('rank 1');
    expect(seriesLabel(2, ranks)).toBe('rank 2'); // a rank the channels do not list
    expect(seriesLabel(0)).toBe('rank 0'); // a job without channels yet
  });

  it('gives the latest values', () => {
    expect(latestValues(rows, 0)).toEqual({ loss: 0.5, acc: 0.1 });
  });

  it('chooses round ticks covering the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    const t = niceTicks(0.13, 0.91, 4);
    expect(t[0]).toBeLessThanOrEqual(0.13);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(0.91);
    expect(t).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(5, 5).length).toBeGreaterThan(1);
    expect(niceTicks(NaN, 1)).toEqual([]);
  });

  it('scales and draws a path', () => {
    const sx = scale(0, 10, 0, 100);
    const sy = scale(0, 1, 50, 0);
    expect(sx(5)).toBe(50);
    expect(linePath([{ x: 0, y: 0 }, { x: 10, y: 1 }], sx, sy)).toBe('M0.0 50.0 L100.0 0.0');
  });

  it('formats tick values compactly', () => {
    expect(formatValue(0)).toBe('0');
    expect(formatValue(0.123456)).toBe('0.123');
    expect(formatValue(2500)).toBe('2.5k');
    expect(formatValue(0.00001)).toBe('1.0e-5');
  });
});
