import { curve, edgeLabel, IDagEdge, IDagLayout, layoutDag, orderOnly } from '../src/pipelinelayout';

type Box = { x0: number; x1: number; y0: number; y1: number };

const overlap = (a: Box, b: Box) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

const nodeBoxes = (out: IDagLayout): (Box & { name: string })[] =>
  out.nodes.map(n => ({ name: n.name, x0: n.x, x1: n.x + n.width, y0: n.y, y1: n.y + n.height }));

const labelBoxes = (out: IDagLayout): (Box & { edge: string })[] =>
  out.edges
    .filter(e => e.label)
    .map(e => ({
      edge: `${e.source}->${e.target}`,
      x0: e.labelX - e.labelWidth / 2,
      x1: e.labelX + e.labelWidth / 2,
      y0: e.labelY - e.labelHeight / 2,
      y1: e.labelY + e.labelHeight / 2
    }));

/** The numbers of an SVG path, as points. */
const pathPoints = (d: string) => [...d.matchAll(/(-?[\d.]+),(-?[\d.]+)/g)].map(m => ({ x: Number(m[1]), y: Number(m[2]) }));

const edge = (source: string, target: string, names: string[] = [], explicit = false): IDagEdge => ({
  source,
  target,
  names,
  explicit
});

// the demo: prepare → two models in parallel → evaluate (prepare → evaluate too)
const steps = ['prepare', 'train-logreg', 'train-forest', 'evaluate'];
const edges = [
  edge('prepare', 'train-logreg', ['X_train', 'y_train'], true),
  edge('prepare', 'train-forest', ['X_train', 'y_train'], true),
  edge('prepare', 'evaluate', ['X_test', 'y_test']),
  edge('train-logreg', 'evaluate', ['logreg']),
  edge('train-forest', 'evaluate', ['forest'])
];

describe('layoutDag (dagre)', () => {
  it('ranks a step below all its upstream steps, top to bottom', () => {
    const out = layoutDag(steps, edges);
    expect(out.layers.map(l => [...l].sort())).toEqual([['prepare'], ['train-forest', 'train-logreg'], ['evaluate']]);
    const by = Object.fromEntries(out.nodes.map(n => [n.name, n]));
    for (const e of edges) {
      expect(by[e.source].y + by[e.source].height).toBeLessThanOrEqual(by[e.target].y);
      expect(by[e.source].layer).toBeLessThan(by[e.target].layer);
    }
    expect(by['train-logreg'].y).toBe(by['train-forest'].y);
  });

  it('ranks left to right when asked', () => {
    const out = layoutDag(steps, edges, { direction: 'LR' });
    const by = Object.fromEntries(out.nodes.map(n => [n.name, n]));
    for (const e of edges) {
      expect(by[e.source].x + by[e.source].width).toBeLessThanOrEqual(by[e.target].x);
    }
    expect(by['train-logreg'].x).toBe(by['train-forest'].x);
  });

  it('keeps every step and label inside the drawing, none overlapping another', () => {
    // a wider graph: a fan-out of six steps, two joins, long names
    const wide = ['load', 'a', 'b', 'c', 'd', 'e', 'f', 'join1', 'join2', 'report'];
    const wideEdges = [
      ...['a', 'b', 'c', 'd', 'e', 'f'].map(s => edge('load', s, [`frame_${s}`, 'labels'])),
      ...['a', 'b', 'c'].map(s => edge(s, 'join1', [`model_${s}`])),
      ...['d', 'e', 'f'].map(s => edge(s, 'join2', [`model_${s}`])),
      edge('join1', 'report', ['score_one']),
      edge('join2', 'report', ['score_two']),
      edge('load', 'report', [], true)
    ];
    for (const [s, e] of [
      [steps, edges],
      [wide, wideEdges]
    ] as const) {
      const out = layoutDag(s, e);
      const boxes = [...nodeBoxes(out), ...labelBoxes(out)];
      expect(labelBoxes(out).length).toBe(e.filter(x => x.names.length).length);
      for (const [i, a] of boxes.entries()) {
        expect(a.x0).toBeGreaterThanOrEqual(0);
        expect(a.y0).toBeGreaterThanOrEqual(0);
        expect(a.x1).toBeLessThanOrEqual(out.width);
        expect(a.y1).toBeLessThanOrEqual(out.height);
        for (const b of boxes.slice(i + 1)) {
          expect([a, b, overlap(a, b)]).toEqual([a, b, false]);
        }
      }
    }
  });

  it('draws every edge from its source border to its target border', () => {
    const out = layoutDag(steps, edges, { nodeWidth: 100, nodeHeight: 20 });
    expect(out.edges).toHaveLength(5);
    const by = Object.fromEntries(out.nodes.map(n => [n.name, n]));
    for (const e of out.edges) {
      const pts = pathPoints(e.d);
      expect(e.d.startsWith('M')).toBe(true);
      const first = pts[0];
      const last = pts[pts.length - 1];
      const src = by[e.source];
      const dst = by[e.target];
      expect(first.y).toBeCloseTo(src.y + src.height, 0); // leaves the bottom
      expect(last.y).toBeCloseTo(dst.y, 0); // enters the top
      expect(last.x).toBeGreaterThanOrEqual(dst.x - 0.5);
      expect(last.x).toBeLessThanOrEqual(dst.x + dst.width + 0.5);
    }
    const e = out.edges.find(x => x.source === 'prepare' && x.target === 'train-forest')!;
    expect(e.explicit).toBe(true);
    expect(e.label).toBe('X_train, y_train');
    expect(e.labelY).toBeGreaterThan(by['prepare'].y + 20);
    expect(e.labelY).toBeLessThan(by['train-forest'].y);
  });

  it('routes an edge over a rank around the step in between', () => {
    const out = layoutDag(['load', 'double', 'report'], [edge('load', 'double', ['x']), edge('double', 'report', ['y']), edge('load', 'report', [], true)]);
    const long = out.edges.find(e => e.source === 'load' && e.target === 'report')!;
    const double = nodeBoxes(out).find(n => n.name === 'double')!;
    // sampled along its polyline, the long edge never enters the middle step's box
    const pts = pathPoints(long.d);
    for (let i = 1; i < pts.length; i++) {
      for (let t = 0; t <= 1; t += 0.05) {
        const x = pts[i - 1].x + (pts[i].x - pts[i - 1].x) * t;
        const y = pts[i - 1].y + (pts[i].y - pts[i - 1].y) * t;
        expect(x > double.x0 && x < double.x1 && y > double.y0 && y < double.y1).toBe(false);
      }
    }
  });

  it('keeps a prev-only edge (no names) and ignores edges to unknown steps, loops and duplicates', () => {
    const out = layoutDag(['x', 'y'], [edge('x', 'y', [], true), edge('x', 'ghost'), edge('y', 'y'), edge('x', 'y', [], true)]);
    expect(out.edges.map(e => [e.source, e.target, e.label])).toEqual([['x', 'y', '']]);
    const cyc = layoutDag(['p', 'q'], [edge('p', 'q'), edge('q', 'p')]);
    expect(cyc.nodes).toHaveLength(2); // terminates
  });

  it('lays out one step, and none', () => {
    expect(layoutDag(['only'], []).layers).toEqual([['only']]);
    const none = layoutDag([], []);
    expect(none.nodes).toEqual([]);
    expect(none.height).toBeGreaterThan(0);
  });
});

describe('curve', () => {
  it('passes through the first and last points', () => {
    expect(curve([])).toBe('');
    expect(curve([{ x: 1, y: 2 }, { x: 3, y: 4 }])).toBe('M1,2 L3,4');
    const d = curve([
      { x: 0, y: 0 },
      { x: 10, y: 10 },
      { x: 20, y: 10 },
      { x: 30, y: 30 }
    ]);
    expect(d.startsWith('M0,0 Q10,10 15,10')).toBe(true);
    expect(d.endsWith('Q20,10 30,30')).toBe(true);
  });
});

describe('edgeLabel', () => {
  it('shortens long lists of names', () => {
    expect(edgeLabel(['a', 'b'])).toBe('a, b');
    expect(edgeLabel(['alpha', 'beta', 'gamma', 'delta', 'epsilon'], 16)).toBe('alpha, beta +3');
    expect(edgeLabel(['a_really_long_variable_name_here'], 10)).toBe('a_really_…');
    expect(edgeLabel([])).toBe('');
  });
});

describe('orderOnly (dashed edges)', () => {
  it('dashes only a prev: edge that passes nothing', () => {
    expect(orderOnly({ explicit: true, names: [] })).toBe(true);
    expect(orderOnly({ explicit: true, names: ['y'] })).toBe(false);
    expect(orderOnly({ explicit: false, names: ['x'] })).toBe(false);
    expect(orderOnly({ explicit: false, names: [] })).toBe(false);
  });
});
