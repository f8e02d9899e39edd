import {
  appendPage,
  comparisonBars,
  describeAliasEvent,
  formatMetric,
  IModelVersion,
  metricNames,
  modelQuery,
  parseMetricFilter
} from '../src/models';

function version(number: number, metrics: Record<string, number | null>): IModelVersion {
  return {
    id: String(number),
    model: 'iris',
    number,
    name: String(number),
    ref: `iris:${number}`,
    state: 'LIVE',
    framework: 'sklearn',
    metrics,
    params: {},
    lineage: {},
    aliases: []
  };
}

describe('modelQuery', () => {
  it('keeps set filters, repeats metric ranges and encodes them', () => {
    expect(modelQuery({ q: ' iris ', framework: '', metrics: ['accuracy>=0.9', 'loss<=0.3'] }, 50)).toBe(
      '?q=iris&metric=accuracy%3E%3D0.9&metric=loss%3C%3D0.3&limit=50&offset=50'
    );
    expect(modelQuery({}, 0, 10)).toBe('?limit=10&offset=0');
  });
  it('splits the metric box on commas', () => {
    expect(parseMetricFilter(' accuracy >= 0.9, ,loss<=0.3;f1=0.5..0.8')).toEqual([
      'accuracy>=0.9',
      'loss<=0.3',
      'f1=0.5..0.8'
    ]);
  });
});

describe('appendPage', () => {
  it('adds a later page without repeating what shifted into it', () => {
    const shown = [{ name: 'a' }, { name: 'b' }];
    const page = { items: [{ name: 'b' }, { name: 'c' }], total: 3, offset: 2, limit: 2, next_offset: null };
    expect(appendPage(shown, page, m => m.name).map(m => m.name)).toEqual(['a', 'b', 'c']);
  });
});

describe('metrics', () => {
  it('columns in first-seen order', () => {
    expect(metricNames([version(2, { acc: 1 }), version(1, { loss: 0.1, acc: 0.5 })])).toEqual(['acc', 'loss']);
  });
  it('formats numbers compactly', () => {
    expect(formatMetric(0.123456)).toBe('0.1235');
    expect(formatMetric(null)).toBe('–');
    expect(formatMetric(123456)).toBe('1.23e+5');
    expect(formatMetric(0)).toBe('0');
  });
});

describe('comparisonBars', () => {
  it('orders by version number, scales from zero, skips versions without the metric', () => {
    const { bars, max } = comparisonBars(
      [version(3, { acc: 1 }), version(1, { acc: 0.5 }), version(2, { loss: 3 })],
      'acc',
      100,
      114,
      14
    );
    expect(bars.map(b => b.label)).toEqual(['v1', 'v3']);
    expect(max).toBe(1);
    expect(bars[1].height).toBeCloseTo(100);
    expect(bars[0].height).toBeCloseTo(50);
    expect(bars[1].y).toBeCloseTo(0);
    expect(bars[0].x).toBeLessThan(bars[1].x);
  });
  it('handles negative values and no data', () => {
    const { bars, min } = comparisonBars([version(1, { d: -1 }), version(2, { d: 1 })], 'd', 100, 100, 0);
    expect(min).toBe(-1);
    expect(bars[0].y).toBeCloseTo(50);
    expect(bars[0].height).toBeCloseTo(50);
    expect(comparisonBars([version(1, {})], 'd', 100, 100).bars).toEqual([]);
  });
});

describe('describeAliasEvent', () => {
  const base = { model: 'iris', alias: 'production', who: 'me', at: null };
  it('says set, moved and removed', () => {
    expect(describeAliasEvent({ ...base, from_version: null, to_version: 1 })).toBe('production set on v1');
    expect(describeAliasEvent({ ...base, from_version: 1, to_version: 2 })).toBe('production: v1 → v2');
    expect(describeAliasEvent({ ...base, from_version: 2, to_version: null })).toBe('production removed (was v2)');
  });
});
