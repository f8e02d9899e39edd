/**
 * The layout of the pipeline's DAG for the SVG drawing, by dagre (@dagrejs/dagre: the
 * layered "Sugiyama" layout Graphviz's dot uses): ranks top to bottom (or left to right),
 * crossings reduced, and the edges' labels placed by dagre as nodes of their own, so no
 * label covers a step or another label. This module only turns the pipeline's steps and
 * edges into dagre's graph and its answer into boxes, SVG paths and label spots. Plain
 * numbers, no DOM: unit-tested.
 */

import dagre from '@dagrejs/dagre';
import type { EdgeLabel, GraphLabel, NodeLabel } from '@dagrejs/dagre';

export interface IDagEdge {
  source: string;
  target: string;
  names: string[];
  explicit: boolean;
}

export interface INodeBox {
  name: string;
  /** The rank (0 for a step without upstream steps). */
  layer: number;
  /** Position inside its rank (0 …, left to right or top to bottom). */
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
  /** SVG path data through dagre's points, from the source's border to the target's. */
  d: string;
  /** The centre of the label's box (the text is drawn centred there). */
  labelX: number;
  labelY: number;
  /** The names carried, shortened for the drawing ('' when none). */
  label: string;
  /** The label's box (estimated text size plus padding), for hit tests. */
  labelWidth: number;
  labelHeight: number;
}

export interface IDagLayout {
  nodes: INodeBox[];
  edges: IEdgePath[];
  width: number;
  height: number;
  /** The steps by rank, each rank in drawing order. */
  layers: string[][];
}

export interface ILayoutOptions {
  nodeWidth?: number;
  nodeHeight?: number;
  /** Gap between ranks. */
  layerGap?: number;
  /** Gap between the steps of a rank. */
  gap?: number;
  margin?: number;
  /** Longest label, in characters. */
  labelChars?: number;
  /** Top to bottom (default) or left to right. */
  direction?: 'TB' | 'LR';
}

/** Estimated width of one character of an edge label (10 px monospace). */
export const LABEL_CHAR_PX = 6.2;
/** Height of an edge label's box. */
export const LABEL_HEIGHT = 14;

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
 * Lay out `steps` (in the pipeline's order) and `edges` with dagre. Edges naming an
 * unknown step, and an edge from a step to itself, are left out; a cycle (which the
 * compiler refuses) is broken by dagre's acyclic pass, so it cannot hang.
 */
export function layoutDag(steps: readonly string[], edges: readonly IDagEdge[], options: ILayoutOptions = {}): IDagLayout {
  const nodeWidth = options.nodeWidth ?? 120;
  const nodeHeight = options.nodeHeight ?? 30;
  const margin = options.margin ?? 8;
  const direction = options.direction ?? 'TB';
  const known = new Set(steps);
  const seen = new Set<string>();
  const valid = edges.filter(e => {
    const key = `${e.source}\u0000${e.target}`;
    if (!known.has(e.source) || !known.has(e.target) || e.source === e.target || seen.has(key)) {
      return false;
    }
    seen.add(key);
    return true;
  });

  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({
    rankdir: direction,
    nodesep: options.gap ?? 16,
    ranksep: options.layerGap ?? 30,
    edgesep: 8,
    marginx: margin,
    marginy: margin
  });
  g.setDefaultEdgeLabel(() => ({}));
  steps.forEach(s => g.setNode(s, { width: nodeWidth, height: nodeHeight }));
  const labels = new Map<IDagEdge, string>();
  valid.forEach(e => {
    const label = edgeLabel(e.names, options.labelChars ?? 24);
    labels.set(e, label);
    g.setEdge(e.source, e.target, {
      width: label ? label.length * LABEL_CHAR_PX + 6 : 0,
      height: label ? LABEL_HEIGHT : 0,
      labelpos: 'c',
      minlen: 1
    });
  });
  dagre.layout(g);

  const graph = g.graph() as GraphLabel;
  const width = Math.max(nodeWidth + 2 * margin, graph.width ?? 0);
  const height = steps.length ? Math.max(nodeHeight + 2 * margin, graph.height ?? 0) : 2 * margin;

  // The rank of a step: the ranks are the distinct positions along the flow.
  const along = (n: { x?: number; y?: number }): number => (direction === 'TB' ? n.y ?? 0 : n.x ?? 0);
  const across = (n: { x?: number; y?: number }): number => (direction === 'TB' ? n.x ?? 0 : n.y ?? 0);
  const positions = [...new Set(steps.map(s => r(along(g.node(s)))))].sort((a, b) => a - b);
  const layers: string[][] = positions.map(() => []);
  steps.forEach(s => layers[positions.indexOf(r(along(g.node(s))))].push(s));
  layers.forEach(row => row.sort((a, b) => across(g.node(a)) - across(g.node(b))));

  const boxes = new Map<string, INodeBox>();
  layers.forEach((row, layer) =>
    row.forEach((s, order) => {
      const n = g.node(s) as NodeLabel;
      boxes.set(s, {
        name: s,
        layer,
        order,
        x: r((n.x ?? 0) - nodeWidth / 2),
        y: r((n.y ?? 0) - nodeHeight / 2),
        width: nodeWidth,
        height: nodeHeight
      });
    })
  );

  const paths: IEdgePath[] = valid.map(e => {
    const label = g.edge(e.source, e.target) as EdgeLabel;
    const text = labels.get(e) ?? '';
    const points = (label.points ?? []).map(p => ({ x: r(p.x), y: r(p.y) }));
    return {
      source: e.source,
      target: e.target,
      names: [...e.names],
      explicit: e.explicit,
      d: curve(points),
      labelX: r(label.x ?? 0),
      labelY: r(label.y ?? 0),
      label: text,
      labelWidth: text ? text.length * LABEL_CHAR_PX + 6 : 0,
      labelHeight: text ? LABEL_HEIGHT : 0
    };
  });

  return { nodes: steps.map(s => boxes.get(s)!), edges: paths, width: r(width), height: r(height), layers };
}

/**
 * A smooth SVG path through `points`: straight from the first point to the midpoint of the
 * first two, then quadratic curves with each inner point as control, ending at the last.
 */
export function curve(points: readonly { x: number; y: number }[]): string {
  if (!points.length) {
    return '';
  }
  const p = points;
  if (p.length < 3) {
    return `M${p[0].x},${p[0].y}` + (p.length === 2 ? ` L${p[1].x},${p[1].y}` : '');
  }
  let d = `M${p[0].x},${p[0].y}`;
  for (let i = 1; i < p.length - 1; i++) {
    const mx = r((p[i].x + p[i + 1].x) / 2);
    const my = r((p[i].y + p[i + 1].y) / 2);
    d += i === p.length - 2 ? ` Q${p[i].x},${p[i].y} ${p[i + 1].x},${p[i + 1].y}` : ` Q${p[i].x},${p[i].y} ${mx},${my}`;
  }
  return d;
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
