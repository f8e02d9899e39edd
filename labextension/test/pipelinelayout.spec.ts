import { edgeLabel, IDagEdge, IDagLayout, LABEL_CHAR_PX, layoutDag, orderOnly } from '../src/pipelinelayout';

/** The boxes of the labels drawn (as the SVG places the text) and of the steps. */
function labelBoxes(out: IDagLayout) {
  return out.edges
    .filter(e => e.label)
    .map(e => {
      const w = e.label.length * LABEL_CHAR_PX;
      const x0 = e.labelAnchor === 'start' ? e.labelX + 4 : e.labelX - 4 - w;
      return { edge: `${e.source}->${e.target}`, x0, x1: x0 + w, y0: e.labelY - 9, y1: e.labelY + 3 };
    });
}

const overlap = (a: { x0: number; x1: number; y0: number; y1: number }, b: { x0: number; x1: number; y0: number; y1: number }) =>
  a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

const edge = (source: string, target: string, names: string[] = [], explicit = false): IDagEdge => ({
  source,
  target,
  names,
  explicit
});

describe('layoutDag', () => {
  // the demo: prepare → two models in parallel → evaluate (prepare → evaluate too)
  const steps = ['prepare', 'train-logreg', 'train-forest', 'evaluate'];
  const edges = [
    edge('prepare', 'train-logreg', ['X_train', 'y_train'], true),
    edge('prepare', 'train-forest', ['X_train', 'y_train'], true),
    edge('prepare', 'evaluate', ['X_test', 'y_test']),
    edge('train-logreg', 'evaluate', ['logreg']),
    edge('train-forest', 'evaluate', ['forest'])
  ];

  it('puts a step one layer below its deepest upstream step', () => {
    const out = layoutDag(steps, edges);
    expect(out.layers).toEqual([['prepare'], ['train-logreg', 'train-forest'], ['evaluate']]);
    const by = Object.fromEntries(out.nodes.map(n => [n.name, n]));
    expect(by['prepare'].y).toBeLessThan(by['train-logreg'].y);
    expect(by['train-logreg'].y).toBe(by['train-forest'].y);
    expect(by['train-logreg'].y).toBeLessThan(by['evaluate'].y);
    // the parallel steps side by side, without overlap; the single ones centred
    expect(by['train-logreg'].x + by['train-logreg'].width).toBeLessThanOrEqual(by['train-forest'].x);
    const centre = (n: { x: number; width: number }) => n.x + n.width / 2;
    expect(centre(by['prepare'])).toBeCloseTo(out.width / 2);
    expect(centre(by['evaluate'])).toBeCloseTo(out.width / 2);
    expect(out.nodes.every(n => n.x >= 0 && n.x + n.width <= out.width && n.y + n.height <= out.height)).toBe(true);
  });

  it('draws every edge from the bottom of its source to the top of its target', () => {
    const out = layoutDag(steps, edges, { nodeWidth: 100, nodeHeight: 20 });
    expect(out.edges).toHaveLength(5);
    const e = out.edges.find(x => x.source === 'prepare' && x.target === 'train-forest')!;
    const src = out.nodes.find(n => n.name === 'prepare')!;
    const dst = out.nodes.find(n => n.name === 'train-forest')!;
    expect(e.d.startsWith(`M${src.x + 50},${src.y + 20} C`)).toBe(true);
    expect(e.d.endsWith(`${dst.x + 50},${dst.y}`)).toBe(true);
    expect(e.explicit).toBe(true);
    expect(e.label).toBe('X_train, y_train');
    expect(e.labelY).toBeGreaterThan(src.y + 20);
    expect(e.labelY).toBeLessThan(dst.y);
  });

  it('places the labels where they cover no step and no other label, inside the drawing', () => {
    const out = layoutDag(steps, edges);
    const labels = labelBoxes(out);
    expect(labels).toHaveLength(5);
    const nodes = out.nodes.map(n => ({ x0: n.x, x1: n.x + n.width, y0: n.y, y1: n.y + n.height }));
    for (const [i, a] of labels.entries()) {
      expect(a.x0).toBeGreaterThanOrEqual(0);
      expect(a.x1).toBeLessThanOrEqual(out.width);
      for (const n of nodes) {
        expect(overlap(a, n)).toBe(false);
      }
      for (const b of labels.slice(i + 1)) {
        expect([a.edge, b.edge, overlap(a, b)]).toEqual([a.edge, b.edge, false]);
      }
    }
  });

  it('orders a layer by the position of the upstream steps', () => {
    // b2 hangs under b, a2 under a: although listed first, b2 goes to the right
    const out = layoutDag(['a', 'b', 'b2', 'a2'], [edge('a', 'a2'), edge('b', 'b2')]);
    expect(out.layers).toEqual([['a', 'b'], ['a2', 'b2']]);
  });

  it('keeps a prev-only edge (no names) and ignores edges to unknown steps and cycles', () => {
    const out = layoutDag(['x', 'y'], [edge('x', 'y', [], true), edge('x', 'ghost'), edge('y', 'y')]);
    expect(out.edges.map(e => [e.source, e.target, e.label])).toEqual([['x', 'y', '']]);
    const cyc = layoutDag(['p', 'q'], [edge('p', 'q'), edge('q', 'p')]);
    expect(cyc.nodes).toHaveLength(2); // terminates
  });

  it('routes an edge over a layer around the step in between', () => {
    // load → double → report, and load → report (a prev: edge): it must not cross double
    const out = layoutDag(['load', 'double', 'report'], [edge('load', 'double', ['x']), edge('double', 'report', ['y']), edge('load', 'report', [], true)]);
    const long = out.edges.find(e => e.source === 'load' && e.target === 'report')!;
    const double = out.nodes.find(n => n.name === 'double')!;
    expect(long.d).toContain(' L');
    const xs = [...long.d.matchAll(/(-?[\d.]+),(-?[\d.]+)/g)].map(m => Number(m[1]));
    const side = xs.filter(x => x < double.x || x > double.x + double.width);
    expect(side.length).toBeGreaterThan(0); // it goes beside double
    expect(out.nodes.every(n => n.x >= 0 && n.x + n.width <= out.width)).toBe(true);
    expect(Math.max(...xs)).toBeLessThanOrEqual(out.width);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    // the short edges stay straight curves
    expect(out.edges.find(e => e.source === 'load' && e.target === 'double')!.d).not.toContain(' L');
  });

  it('lets a long edge pass straight between two parallel steps', () => {
    const out = layoutDag(steps, edges);
    expect(out.edges.find(e => e.source === 'prepare' && e.target === 'evaluate')!.d).not.toContain(' L');
  });

  it('lays out one step, and none', () => {
    expect(layoutDag(['only'], []).layers).toEqual([['only']]);
    const none = layoutDag([], []);
    expect(none.nodes).toEqual([]);
    expect(none.height).toBeGreaterThan(0);
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
    expect(orderOnly({ explicit: true, names: ['y'] })).toBe(false); // double -> report carries y
    expect(orderOnly({ explicit: false, names: ['x'] })).toBe(false);
    expect(orderOnly({ explicit: false, names: [] })).toBe(false);
  });
});
