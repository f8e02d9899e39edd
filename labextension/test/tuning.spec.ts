import {
  bestSoFar,
  bestTrial,
  compareStudies,
  countStates,
  DEFAULT_SORT,
  formatParam,
  formatTrialDuration,
  lastIntermediate,
  nextSort,
  paramNames,
  plotValue,
  progress,
  sortTrials,
  stepLine,
  summarize,
  trialChannel,
  trialDuration,
  TRIAL_LOG_TAIL,
  trialLive,
  trialLogRead,
  upsertStudy
} from '../src/tuning';
import { IStudy, IStudySummary, ITrial } from '../src/types';

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
    worker: 0,
    ...over
  };
}

const done = (number: number, value: number, over: Partial<ITrial> = {}) =>
  trial(number, { value, ...over });

function study(over: Partial<IStudy> = {}): IStudy {
  return {
    id: 'lr-search-1a2b3',
    name: 'lr-search',
    status: 'Running',
    backend: 'local',
    message: null,
    error: null,
    objective: 'loss',
    direction: 'minimize',
    algorithm: 'random',
    early_stopping: null,
    trials_budget: 6,
    parallel: 2,
    workers_per_trial: 1,
    created_at: '2026-11-23T10:00:00+00:00',
    duration_s: 3,
    best: null,
    space: {},
    trials: [],
    ...over
  };
}

describe('best so far', () => {
  it('keeps the lowest value when minimizing, in trial order, complete trials only', () => {
    const trials = [
      done(2, 0.5),
      done(0, 0.9),
      trial(1, { state: 'PRUNED', intermediate: { '0': 0.1 } }),
      done(3, 0.7),
      trial(4, { state: 'RUNNING' }),
      trial(5, { state: 'FAIL' }),
      done(6, 0.2)
    ];
    expect(bestSoFar(trials, 'minimize')).toEqual([
      { x: 0, y: 0.9 },
      { x: 2, y: 0.5 },
      { x: 3, y: 0.5 },
      { x: 6, y: 0.2 }
    ]);
  });

  it('keeps the highest value when maximizing', () => {
    const trials = [done(0, 0.2), done(1, 0.8), done(2, 0.5)];
    expect(bestSoFar(trials, 'maximize').map(p => p.y)).toEqual([0.2, 0.8, 0.8]);
  });

  it('ignores non-finite and missing values', () => {
    const trials = [done(0, NaN), trial(1, { value: null }), done(2, 1)];
    expect(bestSoFar(trials, 'minimize')).toEqual([{ x: 2, y: 1 }]);
    expect(bestSoFar([], 'minimize')).toEqual([]);
  });

  it('draws as steps: flat to the next improvement, then down, then flat to the last trial', () => {
    const line = stepLine(
      [
        { x: 0, y: 0.9 },
        { x: 2, y: 0.5 },
        { x: 3, y: 0.5 },
        { x: 6, y: 0.2 }
      ],
      8
    );
    expect(line).toEqual([
      { x: 0, y: 0.9 },
      { x: 2, y: 0.9 },
      { x: 2, y: 0.5 },
      { x: 6, y: 0.5 },
      { x: 6, y: 0.2 },
      { x: 8, y: 0.2 }
    ]);
    // no improvement after the first: one flat segment to the last point
    expect(stepLine([{ x: 1, y: 2 }, { x: 4, y: 2 }])).toEqual([
      { x: 1, y: 2 },
      { x: 4, y: 2 }
    ]);
    expect(stepLine([])).toEqual([]);
  });

  it('finds the best trial, the lowest number among equals', () => {
    const trials = [done(0, 0.4), done(1, 0.3), done(2, 0.3), trial(3, { state: 'PRUNED' })];
    expect(bestTrial(trials, 'minimize')?.number).toBe(1);
    expect(bestTrial(trials, 'maximize')?.number).toBe(0);
    expect(bestTrial([trial(0, { state: 'RUNNING' })], 'minimize')).toBeNull();
  });

  it('plots pruned trials at their last reported value, by step', () => {
    const pruned = trial(0, { state: 'PRUNED', intermediate: { '2': 0.3, '10': 0.7, '9': 0.1 } });
    expect(lastIntermediate(pruned)).toBe(0.7);
    expect(plotValue(pruned)).toBe(0.7);
    expect(plotValue(done(1, 0.2))).toBe(0.2);
    expect(plotValue(trial(2, { state: 'RUNNING', intermediate: { '0': 1 } }))).toBeNull();
    expect(plotValue(trial(3, { state: 'PRUNED' }))).toBeNull();
  });
});

describe('study progress and list', () => {
  it('counts finished trials against the budget', () => {
    const counts = countStates([
      done(0, 1),
      trial(1, { state: 'PRUNED' }),
      trial(2, { state: 'FAIL' }),
      trial(3, { state: 'RUNNING' }),
      trial(4, { state: 'RUNNING' })
    ]);
    expect(counts).toEqual({ COMPLETE: 1, PRUNED: 1, FAIL: 1, CANCELLED: 0, RUNNING: 2, WAITING: 0 });
    expect(progress({ trial_counts: counts, trials_budget: 6 })).toEqual({
      done: 3,
      running: 2,
      budget: 6,
      fraction: 0.5
    });
    expect(progress({ trial_counts: null, trials_budget: 6 })).toBeNull();
    expect(progress({ trial_counts: { COMPLETE: 9 }, trials_budget: 6 })?.fraction).toBe(1);
  });

  it('summarizes a study as the server does', () => {
    const s = study({ trials: [done(0, 1), trial(1, { state: 'RUNNING' })], space: { x: { name: 'x', type: 'double' } } });
    const summary = summarize(s);
    expect(summary).not.toHaveProperty('trials');
    expect(summary).not.toHaveProperty('space');
    expect(summary.n_trials).toBe(2);
    expect(summary.trial_counts?.RUNNING).toBe(1);
    expect(summary.id).toBe(s.id);
  });

  it('keeps the list newest first and replaces a study by id', () => {
    const a = summarize(study({ id: 'a-1', created_at: '2026-11-23T10:00:00+00:00' }));
    const b = summarize(study({ id: 'b-1', created_at: '2026-11-23T11:00:00+00:00' }));
    // a naive UTC time and one with an offset are compared as times
    const c = summarize(study({ id: 'c-1', created_at: '2026-11-23T13:30:00+02:00' }));
    let list: IStudySummary[] = upsertStudy([], a);
    list = upsertStudy(list, b);
    list = upsertStudy(list, c);
    expect(list.map(s => s.id)).toEqual(['c-1', 'b-1', 'a-1']);
    list = upsertStudy(list, { ...a, status: 'Succeeded' });
    expect(list.map(s => s.id)).toEqual(['c-1', 'b-1', 'a-1']);
    expect(list[2].status).toBe('Succeeded');
    expect(compareStudies({ id: 'x', created_at: null }, b)).toBeGreaterThan(0);
  });
});

describe('trial table', () => {
  const trials = [
    done(0, 0.5, { params: { lr: 0.01, opt: 'sgd' }, duration_s: 3 }),
    trial(1, { state: 'RUNNING', params: { lr: 0.1, opt: 'adam' }, duration_s: 1 }),
    done(2, 0.2, { params: { lr: 0.001, opt: 'adam' }, duration_s: 2 }),
    trial(3, { state: 'FAIL', params: { lr: 0.05 }, duration_s: null })
  ];
  const order = (key: string, ascending = true) => sortTrials(trials, { key, ascending }).map(t => t.number);

  it('toggles a column, and starts another ascending', () => {
    let sort = DEFAULT_SORT;
    expect(sort).toEqual({ key: 'number', ascending: true });
    sort = nextSort(sort, 'number');
    expect(sort).toEqual({ key: 'number', ascending: false });
    sort = nextSort(sort, 'value');
    expect(sort).toEqual({ key: 'value', ascending: true });
    sort = nextSort(sort, 'value');
    expect(sort).toEqual({ key: 'value', ascending: false });
  });

  it('sorts by each column, trials without a value last either way', () => {
    expect(order('number')).toEqual([0, 1, 2, 3]);
    expect(order('number', false)).toEqual([3, 2, 1, 0]);
    expect(order('value')).toEqual([2, 0, 1, 3]);
    expect(order('value', false)).toEqual([0, 2, 1, 3]);
    expect(order('duration')).toEqual([1, 2, 0, 3]);
    expect(order('param:lr')).toEqual([2, 0, 3, 1]);
    expect(order('param:opt')).toEqual([1, 2, 0, 3]);
    expect(order('state')).toEqual([1, 0, 2, 3]);
    expect(trials.map(t => t.number)).toEqual([0, 1, 2, 3]); // not sorted in place
  });

  it('lists the space parameters first, then others the trials have', () => {
    const s = study({
      space: { lr: { name: 'lr', type: 'double' }, layers: { name: 'layers', type: 'int' } },
      trials: [trial(0, { params: { lr: 1, layers: 2, extra: 'x' } })]
    });
    expect(paramNames(s)).toEqual(['lr', 'layers', 'extra']);
  });

  it('formats parameters compactly', () => {
    expect(formatParam(3)).toBe('3');
    expect(formatParam(0.123456)).toBe('0.1235');
    expect(formatParam(0.00012345)).toBe('1.23e-4');
    expect(formatParam(123456.7)).toBe('1.23e5');
    expect(formatParam('adam')).toBe('adam');
    expect(formatParam(true)).toBe('true');
    expect(formatParam(null)).toBe('–');
  });

  it('shows short trials to the tenth of a second', () => {
    expect(formatTrialDuration(1.26)).toBe('1.2s');
    expect(formatTrialDuration(0)).toBe('0.0s');
    expect(formatTrialDuration(9.99)).toBe('9.9s');
    expect(formatTrialDuration(12.4)).toBe('12s');
    expect(formatTrialDuration(75)).toBe('1m 15s');
    expect(formatTrialDuration(null)).toBe('–');
  });

  it('ticks the duration of a running trial from when it arrived', () => {
    const running = trial(0, { state: 'RUNNING', duration_s: 4 });
    expect(trialDuration(running, 10_000, 7_000)).toBe(7);
    expect(trialDuration(done(1, 1, { duration_s: 4 }), 10_000, 7_000)).toBe(4);
    expect(trialDuration(trial(2, { state: 'WAITING' }), 10_000, 7_000)).toBeNull();
  });
});

describe("a trial's log", () => {
  it("is the study job's channel trial/N", () => {
    expect(trialChannel(0)).toBe('trial/0');
    expect(trialChannel(12)).toBe('trial/12');
  });

  it('follows a running or waiting trial from its tail, and reads an ended one whole, once', () => {
    expect(TRIAL_LOG_TAIL).toBe(1000);
    for (const state of ['RUNNING', 'WAITING']) {
      expect(trialLive(trial(1, { state }))).toBe(true);
      expect(trialLogRead(trial(1, { state }))).toEqual({ follow: true, tail: TRIAL_LOG_TAIL });
    }
    for (const state of ['COMPLETE', 'PRUNED', 'FAIL', 'CANCELLED']) {
      expect(trialLive(trial(1, { state }))).toBe(false);
      expect(trialLogRead(trial(1, { state }))).toEqual({ follow: false, tail: 0 });
    }
  });
});
