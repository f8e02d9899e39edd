import {
  availableColumns,
  cellValue,
  changedParams,
  comparisonSeries,
  defaultColumns,
  formatCell,
  IComparison,
  IRun,
  isRunEvent,
  nextOrder,
  parallelCoordinates,
  runsQuery
} from '../src/experiments';

function run(id: string, params: Record<string, unknown>, metrics: Record<string, number | null>): IRun {
  return {
    run_id: id,
    job_id: id,
    child: null,
    experiment: 'exp',
    name: 'fit',
    kind: 'train',
    status: 'Succeeded',
    params,
    metrics,
    tags: {},
    env: {},
    parent_run: null,
    source_run: null,
    created_at: '2026-12-01T10:00:00+00:00',
    started_at: null,
    finished_at: null,
    duration_s: 1.5,
    models: []
  };
}

const A = run('fit-aaaaaa', { lr: 0.1, epochs: 3, opt: 'sgd' }, { loss: 0.3 });
const B = run('fit-bbbbbb', { lr: 0.05, epochs: 3, opt: 'adam' }, { loss: 0.15, acc: 0.9 });

const COMPARISON: IComparison = {
  runs: [A, B],
  params: [
    { name: 'lr', values: [0.1, 0.05] },
    { name: 'opt', values: ['sgd', 'adam'] }
  ],
  metrics: [{ name: 'loss', values: [0.3, 0.15] }],
  curves: {
    loss: [
      { run_id: 'fit-aaaaaa', points: [[0, 0.6], [1, 0.3]] },
      { run_id: 'fit-bbbbbb', points: [[0, 0.3], [1, 0.15]] }
    ]
  }
};

describe('runsQuery', () => {
  it('sends the filter and every order_by as kfjupyter.runs() takes them', () => {
    const q = runsQuery({ experiment: 'churn', filter: ' metrics.loss < 0.2 ', orderBy: ['params.lr DESC', ' '] });
    const params = new URLSearchParams(q.slice(1));
    expect(params.get('experiment')).toBe('churn');
    expect(params.get('filter')).toBe('metrics.loss < 0.2');
    expect(params.getAll('order_by')).toEqual(['params.lr DESC']);
    expect(params.get('limit')).toBe('100');
    expect(runsQuery({})).toBe('?limit=100&offset=0');
  });
});

describe('columns', () => {
  it('reads a run by search key and offers every key', () => {
    expect(cellValue(A, 'params.lr')).toBe(0.1);
    expect(cellValue(B, 'metrics.acc')).toBe(0.9);
    expect(cellValue(A, 'metrics.acc')).toBeUndefined();
    expect(cellValue(A, 'attributes.status')).toBe('Succeeded');
    const all = availableColumns([A, B]);
    expect(all).toContain('params.opt');
    expect(all.indexOf('params.lr')).toBeLessThan(all.indexOf('metrics.loss'));
  });

  it('shows what differs and the metrics by default', () => {
    expect(defaultColumns([A, B])).toEqual([
      'attributes.status',
      'params.lr',
      'params.opt',
      'metrics.loss',
      'metrics.acc'
    ]);
  });

  it('sorts ascending, descending, then not', () => {
    expect(nextOrder([], 'metrics.loss')).toEqual(['metrics.loss ASC']);
    expect(nextOrder(['metrics.loss ASC'], 'metrics.loss')).toEqual(['metrics.loss DESC']);
    expect(nextOrder(['metrics.loss DESC'], 'metrics.loss')).toEqual([]);
    expect(nextOrder(['metrics.loss DESC'], 'params.lr')).toEqual(['params.lr ASC']);
  });

  it('formats cells', () => {
    expect(formatCell(null)).toBe('–');
    expect(formatCell(0.123456)).toBe('0.1235');
    expect(formatCell(1e-5)).toBe('1.00e-5');
    expect(formatCell(true)).toBe('true');
  });
});

describe('compare view', () => {
  it('turns curves into one chart series per run, labelled by the run', () => {
    const { rows, channels } = comparisonSeries(COMPARISON, 'loss');
    expect(rows).toEqual([
      { rank: 0, step: 0, loss: 0.6 },
      { rank: 0, step: 1, loss: 0.3 },
      { rank: 1, step: 0, loss: 0.3 },
      { rank: 1, step: 1, loss: 0.15 }
    ]);
    expect(channels.map(c => c.label)).toEqual(['fit (aaaaaa)', 'fit (bbbbbb)']);
    expect(comparisonSeries(COMPARISON, 'nope').rows).toEqual([]);
  });

  it('draws parallel coordinates: an axis per differing param, the metric last', () => {
    const { axes, lines } = parallelCoordinates(COMPARISON, 'loss', 400, 200);
    expect(axes.map(a => [a.name, a.kind, a.numeric])).toEqual([
      ['lr', 'param', true],
      ['opt', 'param', false],
      ['loss', 'metric', true]
    ]);
    expect(axes[0].x).toBe(40);
    expect(axes[2].x).toBe(360);
    expect(axes[1].ticks.map(t => t.label)).toEqual(['adam', 'sgd']);
    expect(lines).toHaveLength(2);
    // the higher lr sits higher (smaller y); categorical values sit on their ticks
    expect(lines[0].points[0].y).toBeLessThan(lines[1].points[0].y);
    expect(lines[1].points[1].y).toBe(axes[1].ticks[0].y);
    expect(lines[0].points).toHaveLength(3);
  });

  it('skips an axis a run has no value on', () => {
    const c = { ...COMPARISON, params: [{ name: 'lr', values: [0.1, null] }] };
    const { lines } = parallelCoordinates(c, 'loss', 400, 200);
    expect(lines[1].points).toHaveLength(1);
  });
});

describe('re-run params', () => {
  it('sends only what changed, typed as the run had it', () => {
    expect(changedParams({ lr: 0.1, epochs: 3, opt: 'sgd', flag: false }, { lr: '0.05', epochs: '3', opt: 'adam', flag: 'True' })).toEqual({
      lr: 0.05,
      opt: 'adam',
      flag: true
    });
    expect(changedParams({ lr: 0.1 }, { lr: 'abc' })).toEqual({ lr: 'abc' });
  });

  it('reloads on every job but an endpoint', () => {
    expect(isRunEvent({ kind: 'train' })).toBe(true);
    expect(isRunEvent({ kind: 'endpoint' })).toBe(false);
  });
});
