import {
  axis,
  baseOption,
  canLog,
  metricsOption,
  runsParallelOption
} from '../src/charts/options';
import {
  importanceOption,
  intermediateOption,
  intermediateSeries,
  objectiveCanLog,
  objectiveOption,
  OBJECTIVE_SERIES,
  parallelOption,
  plottedTrials,
  sliceOption
} from '../src/charts/study';
import { seriesColour, themeFrom, THEME_VARIABLES } from '../src/charts/theme';
import { progressText, shownValue } from '../src/tuning';
import { IParamRange, ITrial } from '../src/types';

/* eslint-disable @typescript-eslint/no-explicit-any */

const DARK: Record<string, string> = {
  '--jp-ui-font-color1': 'rgba(255, 255, 255, 0.87)',
  '--jp-layout-color1': '#111111',
  '--jp-border-color1': '#616161',
  '--jp-brand-color1': '#42a5f5'
};
const theme = themeFrom(name => DARK[name] ?? '', true);

function trial(number: number, over: Partial<ITrial> = {}): ITrial {
  return {
    number,
    state: 'COMPLETE',
    value: null,
    params: {},
    intermediate: {},
    datetime_start: null,
    datetime_complete: null,
    duration_s: null,
    error: null,
    worker: null,
    ...over
  };
}

const SPACE: Record<string, IParamRange> = {
  lr: { name: 'lr', type: 'double', low: 1e-4, high: 1, log: true },
  hidden: { name: 'hidden', type: 'categorical', choices: [4, 16] }
};

const TRIALS: ITrial[] = [
  trial(0, { value: 3, params: { lr: 0.01, hidden: 4 }, intermediate: { '0': 5, '1': 3 } }),
  trial(1, { state: 'PRUNED', params: { lr: 0.5, hidden: 16 }, intermediate: { '0': 9, '2': 7, '1': 8 } }),
  trial(2, { value: 1, params: { lr: 0.001, hidden: 16 }, intermediate: { '0': 2, '1': 1 } }),
  trial(3, { state: 'RUNNING', params: { lr: 0.1, hidden: 4 }, intermediate: { '0': 4 } }),
  trial(4, { state: 'FAIL', params: { lr: 0.2, hidden: 4 } })
];

describe('the theme', () => {
  it('reads JupyterLab variables, falling back to light defaults', () => {
    expect(theme.text).toBe('rgba(255, 255, 255, 0.87)');
    expect(theme.background).toBe('#111111');
    expect(theme.primary).toBe('#42a5f5');
    expect(theme.warn).toBe(THEME_VARIABLES['--jp-warn-color1']);
    expect(theme.dark).toBe(true);
    expect(seriesColour(theme, 7)).toBe(theme.palette[1]);
  });

  it('gives every chart the theme text colour, no animation and a themed tooltip', () => {
    const base = baseOption(theme) as any;
    expect(base.textStyle.color).toBe(theme.text);
    expect(base.tooltip.backgroundColor).toBe('#111111');
    expect(base.legend.textStyle.color).toBe(theme.text);
    expect(base.animation).toBe(false);
  });

  it('draws axes with lines, ticks and labels in the theme', () => {
    const a = axis(theme, 'step') as any;
    expect(a.type).toBe('value');
    expect(a.axisLine.show && a.axisTick.show).toBe(true);
    expect(a.axisLabel.color).toBe(theme.text);
    expect((axis(theme, 'x', { log: true }) as any).type).toBe('log');
    expect((axis(theme, 'x', { categories: ['a'] }) as any).data).toEqual(['a']);
  });
});

describe('a job metrics chart', () => {
  const series = [
    { label: 'rank 0', index: 0, points: [{ x: 0, y: 1 }, { x: 1, y: 0.5 }] },
    { label: 'rank 1', index: 1, points: [{ x: 0, y: 2 }, { x: 1, y: 0.1 }] }
  ];

  it('has a line per rank, a legend, step on x and the metric on y', () => {
    const o = metricsOption(theme, series, 'loss') as any;
    expect(o.series.map((s: any) => s.name)).toEqual(['rank 0', 'rank 1']);
    expect(o.legend.data).toEqual(['rank 0', 'rank 1']);
    expect(o.xAxis.name).toBe('step');
    expect(o.yAxis.name).toBe('loss');
    expect(o.series[1].data).toEqual([[0, 2], [1, 0.1]]);
    expect(o.series[1].lineStyle.color).toBe(theme.palette[1]);
  });

  it('uses a log scale only where every value is positive', () => {
    expect((metricsOption(theme, series, 'loss', { log: true }) as any).yAxis.type).toBe('log');
    const negative = [{ label: 'r', index: 0, points: [{ x: 0, y: -1 }] }];
    expect((metricsOption(theme, negative, 'loss', { log: true }) as any).yAxis.type).toBe('value');
    expect(canLog([])).toBe(false);
    expect(canLog([1, 0])).toBe(false);
  });
});

describe('a study objective plot', () => {
  it('plots complete trials and pruned ones at their last step, x the trial number', () => {
    const points = plottedTrials(TRIALS);
    expect(points.map(p => [p.number, p.y])).toEqual([[0, 3], [1, 7], [2, 1]]);
    const o = objectiveOption(theme, TRIALS, 'loss', 'minimize') as any;
    expect(o.xAxis.name).toBe('trial');
    expect(o.xAxis.minInterval).toBe(1);
    expect(o.yAxis.name).toBe('loss (min)');
    expect(o.legend.data).toEqual([
      OBJECTIVE_SERIES.complete,
      OBJECTIVE_SERIES.pruned,
      OBJECTIVE_SERIES.best,
      OBJECTIVE_SERIES.bestTrial
    ]);
    const byName = Object.fromEntries(o.series.map((s: any) => [s.name, s]));
    expect(byName[OBJECTIVE_SERIES.complete].data.map((d: any) => d.value)).toEqual([[0, 3], [2, 1]]);
    expect(byName[OBJECTIVE_SERIES.pruned].data.map((d: any) => d.value)).toEqual([[1, 7]]);
    expect(byName[OBJECTIVE_SERIES.pruned].symbol).toBe('emptyCircle');
    // best so far: 3 at 0, 3 until 2, then 1, flat to the last trial (4)
    expect(byName[OBJECTIVE_SERIES.best].data).toEqual([[0, 3], [2, 3], [2, 1], [4, 1]]);
    expect(byName[OBJECTIVE_SERIES.bestTrial].data[0].value).toEqual([2, 1]);
    expect(o.tooltip.formatter({ seriesName: 'complete', value: [2, 1] })).toBe('trial 2 (complete): loss = 1');
  });

  it('switches to a log scale when asked and possible', () => {
    expect(objectiveCanLog(TRIALS)).toBe(true);
    expect((objectiveOption(theme, TRIALS, 'loss', 'minimize', { log: true }) as any).yAxis.type).toBe('log');
    const zero = [trial(0, { value: 0 })];
    expect(objectiveCanLog(zero)).toBe(false);
    expect((objectiveOption(theme, zero, 'loss', 'minimize', { log: true }) as any).yAxis.type).toBe('value');
  });

  it('has no pruned or best series before there is one', () => {
    const o = objectiveOption(theme, [trial(0, { state: 'RUNNING' })], 'acc', 'maximize') as any;
    expect(o.series.map((s: any) => s.name)).toEqual([OBJECTIVE_SERIES.complete]);
    expect(o.yAxis.name).toBe('acc (max)');
  });
});

describe('intermediate values', () => {
  it('orders steps numerically and draws a line per trial, pruned dashed', () => {
    expect(intermediateSeries(TRIALS[1])).toEqual([[0, 9], [1, 8], [2, 7]]);
    const o = intermediateOption(theme, TRIALS, 'loss') as any;
    expect(o.series.map((s: any) => s.name)).toEqual(['trial 0', 'trial 1', 'trial 2', 'trial 3']);
    expect(o.series[1].lineStyle.type).toBe('dashed');
    expect(o.series[0].lineStyle.type).toBe('solid');
    expect(o.xAxis.name).toBe('step');
  });
});

describe('parallel coordinates', () => {
  it('has an axis per param (log, categories) and the objective last, a line per plotted trial', () => {
    const o = parallelOption(theme, TRIALS, ['lr', 'hidden'], SPACE, 'loss', 'minimize') as any;
    expect(o.parallelAxis.map((a: any) => [a.name, a.type])).toEqual([
      ['lr', 'log'],
      ['hidden', 'category'],
      ['loss', 'value']
    ]);
    expect(o.parallelAxis[1].data).toEqual(['4', '16']);
    expect(o.parallelAxis[0].axisLabel.color).toBe(theme.text);
    const [rest, best] = o.series;
    expect(rest.data.map((d: any) => d.value)).toEqual([
      [0.01, '4', 3],
      [0.5, '16', 7]
    ]);
    expect(rest.data[1].lineStyle.type).toBe('dashed'); // pruned
    expect(best.name).toBe('best trial');
    expect(best.data[0].value).toEqual([0.001, '16', 1]);
  });

  it('runs of a comparison: numbers on a scale, text as categories', () => {
    const o = runsParallelOption(
      theme,
      [
        { name: 'lr', kind: 'param', values: [0.1, 0.2] },
        { name: 'opt', kind: 'param', values: ['adam', null] },
        { name: 'loss', kind: 'metric', values: [0.3, 0.1] }
      ],
      [
        { label: 'a', index: 0 },
        { label: 'b', index: 1 }
      ]
    ) as any;
    expect(o.parallelAxis.map((a: any) => a.type)).toEqual(['value', 'category', 'value']);
    expect(o.series[1].data[0].value).toEqual([0.2, null, 0.1]);
    expect(o.series[1].lineStyle.color).toBe(theme.palette[1]);
  });
});

describe('importances and slices', () => {
  it('puts the most important param first, as percentages', () => {
    const o = importanceOption(theme, { b: 0.2, a: 0.8 }) as any;
    expect(o.yAxis.data).toEqual(['a', 'b']);
    expect(o.series[0].data).toEqual([0.8, 0.2]);
    expect(o.series[0].label.formatter({ value: 0.8 })).toBe('80.0%');
    expect(o.xAxis.axisLabel.formatter(0.5)).toBe('50%');
  });

  it('plots the objective against one param (log or categories on x)', () => {
    const lr = sliceOption(theme, TRIALS, 'lr', SPACE, 'loss') as any;
    expect(lr.xAxis.type).toBe('log');
    expect(lr.xAxis.name).toBe('lr');
    expect(lr.series[0].data.map((d: any) => d.value)).toEqual([[0.01, 3], [0.001, 1]]);
    const hidden = sliceOption(theme, TRIALS, 'hidden', SPACE, 'loss') as any;
    expect(hidden.xAxis.type).toBe('category');
    expect(hidden.series[1].data.map((d: any) => d.value)).toEqual([['16', 7]]);
  });
});

describe("a study's headline", () => {
  it('counts done as complete + pruned + failed, beside running', () => {
    expect(progressText({ trials: TRIALS, trials_budget: 8 })).toBe(
      '4/8 trials done (2 complete, 1 pruned, 1 failed), 1 running'
    );
    expect(progressText({ trials: [], trials_budget: 8 })).toBe('0/8 trials done, 0 running');
  });

  it("shows a pruned trial's last reported value", () => {
    expect(shownValue(TRIALS[1])).toBe(7);
    expect(shownValue(TRIALS[0])).toBe(3);
    expect(shownValue(TRIALS[3])).toBeNull();
  });
});

describe('the legend', () => {
  it('wraps onto a second row in a narrow chart, scrolls beyond two rows', () => {
    const { legendFor } = jest.requireActual('../src/charts/options');
    const labels = ['complete', 'pruned (last value)', 'best so far', 'best trial'];
    const wide = legendFor(theme, labels, 800);
    expect(wide.legend.type).toBe('plain');
    expect(wide.top).toBe(32);
    const narrow = legendFor(theme, labels, 250);
    expect(narrow.legend.type).toBe('plain');
    expect(narrow.top).toBe(52);
    const many = legendFor(theme, Array.from({ length: 30 }, (_, i) => `trial ${i}`), 250);
    expect(many.legend.type).toBe('scroll');
    expect(legendFor(theme, [], 250).legend.show).toBe(false);
  });
});
