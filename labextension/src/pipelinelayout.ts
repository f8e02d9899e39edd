/**
 * A layered layout of the pipeline's DAG for the SVG drawing: top to bottom, a step's
 * layer is the longest path to it from a step without upstream steps; inside a layer the
 * steps are ordered by the mean position of their upstream steps (then notebook order),
 * so edges cross little. Plain numbers, no DOM: unit-tested.
 */

export interface IDagEdge {
  source: string;
  target: string;
  names: string[];
  explicit: boolean;
}

export interface INodeBox {
  name: string;
  layer: number;
  /** Position inside its layer (0 …). */
  order: number;
  /** Top-left corner. */
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IEdgePath {
  source: string;
  target: string;
  names: string[];
  explicit: boolean;
  /** SVG path data: a cubic curve from the source's bottom to the target's top. */
  d: string;
  /** Where the label goes. */
  labelX: number;
  labelY: number;
  /** The names carried, shortened for the drawing. */
  label: string;
  /** Which side of (labelX, labelY) the label's text goes: right ('start') or left ('end'). */
  labelAnchor: 'start' | 'end';
}

export interface IDagLayout {
  nodes: INodeBox[];
  edges: IEdgePath[];
  width: number;
  height: number;
  layers: string[][];
}

export interface ILayoutOptions {
  nodeWidth?: number;
  nodeHeight?: number;
  /** Vertical gap between layers (room for the edge labels). */
  layerGap?: number;
  /** Horizontal gap between the steps of a layer. */
  gap?: number;
  margin?: number;
  /** Longest label, in characters. */
  labelChars?: number;
}

/** Estimated width of one character of an edge label (10 px monospace). */
export const LABEL_CHAR_PX = 6.2;

/** Edge names for a label: "a, b" or "a, b +2" when more than fit. */
export function edgeLabel(names: readonly string[], maxChars = 24): string {
  let out = '';
  for (let i = 0; i < names.length; i++) {
    const next = out ? `${out}, ${names[i]}` : names[i];
    if (next.length > maxChars && out) {
      return `${out} +${names.length - i}`;
    }
    out = next;
  }
  return out.length > maxChars ? `${out.slice(0, maxChars - 1)}…` : out;
}

/**
 * Lay out `steps` (in the pipeline's order) and `edges`. Edges naming an unknown step are
 * left out; a cycle (which the compiler refuses) cannot hang it: a step's layer is at
 * most the number of steps.
 */
export function layoutDag(steps: readonly string[], edges: readonly IDagEdge[], options: ILayoutOptions = {}): IDagLayout {
  const nodeWidth = options.nodeWidth ?? 120;
  const nodeHeight = options.nodeHeight ?? 30;
  const layerGap = options.layerGap ?? 46;
  const gap = options.gap ?? 16;
  const margin = options.margin ?? 8;
  const known = new Set(steps);
  const valid = edges.filter(e => known.has(e.source) && known.has(e.target) && e.source !== e.target);
  const upstream = new Map<string, string[]>(steps.map(s => [s, []]));
  for (const e of valid) {
    upstream.get(e.target)!.push(e.source);
  }

  // Layer: longest path from a root (memoised; a cycle is cut at the step count).
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const layerOf = (s: string): number => {
    const known = layer.get(s);
    if (known !== undefined) {
      return known;
    }
    if (visiting.has(s)) {
      return 0;
    }
    visiting.add(s);
    let value = 0;
    for (const u of upstream.get(s)!) {
      value = Math.max(value, layerOf(u) + 1);
    }
    visiting.delete(s);
    value = Math.min(value, steps.length);
    layer.set(s, value);
    return value;
  };
  steps.forEach(s => layerOf(s));

  const depth = steps.length ? Math.max(...steps.map(s => layer.get(s)!)) + 1 : 0;
  const layers: string[][] = Array.from({ length: depth }, () => []);
  steps.forEach(s => layers[layer.get(s)!].push(s));

  // Order inside a layer: barycentre of the upstream steps' positions, then notebook order.
  const position = new Map<string, number>();
  const index = new Map(steps.map((s, i) => [s, i]));
  layers.forEach(row => {
    const key = (s: string): number => {
      const ups = upstream.get(s)!.filter(u => position.has(u));
      return ups.length ? ups.reduce((sum, u) => sum + position.get(u)!, 0) / ups.length : -1;
    };
    const keyed = row.map(s => ({ s, k: key(s) }));
    keyed.sort((a, b) => (a.k !== b.k ? a.k - b.k : index.get(a.s)! - index.get(b.s)!));
    row.splice(0, row.length, ...keyed.map(x => x.s));
    // Positions centred on 0, in node units, so layers of different widths line up.
    row.forEach((s, i) => position.set(s, i - (row.length - 1) / 2));
  });

  const widest = Math.max(1, ...layers.map(r => r.length));
  let width = margin * 2 + widest * nodeWidth + (widest - 1) * gap;
  const height = depth ? margin * 2 + depth * nodeHeight + (depth - 1) * layerGap : margin * 2;
  const centre = width / 2;
  const boxes = new Map<string, INodeBox>();
  layers.forEach((row, li) => {
    row.forEach((s, order) => {
      const x = centre + position.get(s)! * (nodeWidth + gap) - nodeWidth / 2;
      const y = margin + li * (nodeHeight + layerGap);
      boxes.set(s, { name: s, layer: li, order, x, y, width: nodeWidth, height: nodeHeight });
    });
  });

  // An edge over more than one layer goes around the steps in between: through a point
  // beside them, on the side nearer to the straight line.
  let right = width;
  let left = 0;
  const detour = (a: INodeBox, b: INodeBox, x1: number, x2: number): number | null => {
    const between = layers.slice(a.layer + 1, b.layer).flat().map(s => boxes.get(s)!);
    const hit = between.some(n => {
      const t = (n.layer - a.layer) / (b.layer - a.layer);
      const x = x1 + (x2 - x1) * t;
      return x > n.x - gap / 2 && x < n.x + n.width + gap / 2;
    });
    if (!hit) {
      return null;
    }
    const lo = Math.min(...between.map(n => n.x)) - gap;
    const hi = Math.max(...between.map(n => n.x + n.width)) + gap;
    const mid = (x1 + x2) / 2;
    return mid - lo <= hi - mid ? lo : hi;
  };

  // Each edge: its path, and spots along it where its label may go.
  const spots = new Map<IEdgePath, { x: number; y: number }[]>();
  const paths: IEdgePath[] = valid.map(e => {
    const a = boxes.get(e.source)!;
    const b = boxes.get(e.target)!;
    const x1 = a.x + a.width / 2;
    const y1 = a.y + a.height;
    const x2 = b.x + b.width / 2;
    const y2 = b.y;
    const via = detour(a, b, x1, x2);
    const common = { source: e.source, target: e.target, names: [...e.names], explicit: e.explicit };
    const label = edgeLabel(e.names, options.labelChars ?? 24);
    let d: string;
    let along: { x: number; y: number }[];
    if (via !== null) {
      // Down from the source, along the side, into the target.
      right = Math.max(right, via + margin);
      left = Math.min(left, via - margin);
      const yA = y1 + layerGap / 2;
      const yB = y2 - layerGap / 2;
      d =
        `M${r(x1)},${r(y1)} C${r(x1)},${r(yA)} ${r(via)},${r(y1)} ${r(via)},${r(yA)} ` +
        `L${r(via)},${r(yB)} C${r(via)},${r(y2)} ${r(x2)},${r(yB)} ${r(x2)},${r(y2)}`;
      along = [0.5, 0.3, 0.7, 0.15, 0.85].map(t => ({ x: via, y: yA + 10 + (yB - yA - 10) * t }));
    } else {
      const bend = Math.max(12, (y2 - y1) / 2);
      d = `M${r(x1)},${r(y1)} C${r(x1)},${r(y1 + bend)} ${r(x2)},${r(y2 - bend)} ${r(x2)},${r(y2)}`;
      // Spots in the gaps between layers (not level with the steps an edge passes).
      const span = Math.max(1, b.layer - a.layer); // (a cycle, refused by the compiler, has edges upwards)
      const ts: number[] = [];
      for (const f of [0.5, 0.3, 0.7, 0.2, 0.8]) {
        for (let k = 0; k < span; k++) {
          ts.push((k + f) / span);
        }
      }
      along = ts.map(t => ({ x: bezier(x1, x1, x2, x2, t), y: bezier(y1, y1 + bend, y2 - bend, y2, t) + 3 }));
    }
    const path: IEdgePath = { ...common, d, labelX: 0, labelY: 0, label, labelAnchor: 'start' };
    spots.set(path, along);
    return path;
  });

  // Labels: the first spot (and side) where a label covers no step and no other label;
  // short edges choose first. The text's box is estimated (about 6 px a character).
  const taken: { x0: number; y0: number; x1: number; y1: number }[] = [...boxes.values()].map(n => ({
    x0: n.x - 2,
    y0: n.y - 2,
    x1: n.x + n.width + 2,
    y1: n.y + n.height + 2
  }));
  const centre0 = width / 2;
  const order = [...paths].sort(
    (p, q) => boxes.get(p.target)!.layer - boxes.get(p.source)!.layer - (boxes.get(q.target)!.layer - boxes.get(q.source)!.layer)
  );
  for (const p of order) {
    const all = spots.get(p)!;
    if (!p.label) {
      p.labelX = r(all[0].x);
      p.labelY = r(all[0].y);
      continue;
    }
    const w = p.label.length * LABEL_CHAR_PX;
    const boxOf = (x: number, y: number, anchor: 'start' | 'end') =>
      anchor === 'start' ? { x0: x + 4, y0: y - 9, x1: x + 4 + w, y1: y + 3 } : { x0: x - 4 - w, y0: y - 9, x1: x - 4, y1: y + 3 };
    const free = (bx: { x0: number; y0: number; x1: number; y1: number }) =>
      !taken.some(o => bx.x0 < o.x1 && o.x0 < bx.x1 && bx.y0 < o.y1 && o.y0 < bx.y1);
    let chosen: { x: number; y: number; anchor: 'start' | 'end' } | null = null;
    for (const spot of all) {
      const outward: 'start' | 'end' = spot.x < centre0 - 1 ? 'end' : 'start';
      for (const anchor of [outward, outward === 'start' ? 'end' : 'start'] as const) {
        if (free(boxOf(spot.x, spot.y, anchor))) {
          chosen = { x: spot.x, y: spot.y, anchor };
          break;
        }
      }
      if (chosen) {
        break;
      }
    }
    if (!chosen) {
      chosen = { x: all[0].x, y: all[0].y, anchor: all[0].x < centre0 - 1 ? 'end' : 'start' };
    }
    const bx = boxOf(chosen.x, chosen.y, chosen.anchor);
    taken.push(bx);
    left = Math.min(left, bx.x0 - 2);
    right = Math.max(right, bx.x1 + 2);
    p.labelX = r(chosen.x);
    p.labelY = r(chosen.y);
    p.labelAnchor = chosen.anchor;
  }

  // Room for the detours and labels: shift everything right by what went past the left edge.
  if (left < 0) {
    const dx = -left;
    boxes.forEach(n => (n.x += dx));
    for (const p of paths) {
      p.d = shiftPath(p.d, dx);
      p.labelX = r(p.labelX + dx);
    }
    right += dx;
  }
  width = Math.max(width, right);

  return { nodes: steps.map(s => boxes.get(s)!), edges: paths, width, height, layers };
}

/** Path data `d` moved `dx` to the right (its numbers are x,y pairs). */
function shiftPath(d: string, dx: number): string {
  return d.replace(/(-?[\d.]+),(-?[\d.]+)/g, (_, x, y) => `${r(Number(x) + dx)},${y}`);
}

function bezier(p0: number, p1: number, p2: number, p3: number, t: number): number {
  const u = 1 - t;
  return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3;
}

function r(v: number): number {
  return Math.round(v * 10) / 10;
}

/**
 * Whether an edge is drawn dashed: an explicit `prev:` edge that passes no variable
 * (order only). An edge that carries data is solid, `prev:` or not (the same rule as
 * kfjupyter/pipelines/render.py's SVG).
 */
export function orderOnly(edge: { explicit: boolean; names: readonly string[] }): boolean {
  return edge.explicit && edge.names.length === 0;
}
