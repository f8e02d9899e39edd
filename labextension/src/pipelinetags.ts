/**
 * A code cell's pipeline tags (Kale's vocabulary), read from and written back to the
 * cell's metadata `tags` list. The server's grammar (kfjupyter/pipelines/tags.py) decides
 * what a pipeline is; this module only edits tags, and leaves every tag that is not a
 * pipeline tag as it was.
 *
 *   imports | functions | pipeline-parameters | pipeline-metrics | skip   a cell's role
 *   step:NAME (block:NAME, Kale's older spelling)                         a step starts here
 *   prev:NAME (several)                                                   explicit upstream steps
 *   image:IMAGE                                                           the step's image
 *   limit:KEY:VALUE  (cpu, memory, nvidia.com/gpu, …)                     resource limits
 *   cache:false | cache:true                                              step cache
 */

/** What a code cell is to the pipeline. */
export type CellRole =
  | 'continue' // no role tag: the cell continues the step above it
  | 'step'
  | 'skip'
  | 'imports'
  | 'functions'
  | 'pipeline-parameters'
  | 'pipeline-metrics';

export const ROLE_TAGS: readonly CellRole[] = ['skip', 'imports', 'functions', 'pipeline-parameters', 'pipeline-metrics'];

export const ROLE_LABELS: Record<CellRole, string> = {
  continue: 'Continues the step above',
  step: 'Starts a step',
  skip: 'Skipped',
  imports: 'Imports (every step)',
  functions: 'Functions (every step)',
  'pipeline-parameters': 'Pipeline parameters',
  'pipeline-metrics': 'Pipeline metrics'
};

/** The limits the form offers (others found on a cell are kept as they are). */
export const LIMIT_KEYS = ['cpu', 'memory', 'nvidia.com/gpu'] as const;

/** A step name the compiler takes: lower-case DNS-1123-ish. */
export const STEP_NAME_RE = /^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$/;

export interface IStepTags {
  role: CellRole;
  /** The step's name (role `step`). */
  name: string;
  /** Explicit upstream steps, in tag order. */
  prev: string[];
  image: string;
  /** Limit key → value (`cpu` → `2`, `memory` → `1Gi`, `nvidia.com/gpu` → `1`). */
  limits: Record<string, string>;
  /** False: `cache:false`. */
  cache: boolean;
  /** Tags that are not pipeline tags, in their order: written back untouched. */
  other: string[];
}

export function emptyTags(): IStepTags {
  return { role: 'continue', name: '', prev: [], image: '', limits: {}, cache: true, other: [] };
}

/** Read a cell's `tags` metadata (anything that is not a list of strings reads as none). */
export function parseTags(tags: unknown): IStepTags {
  const out = emptyTags();
  if (!Array.isArray(tags)) {
    return out;
  }
  for (const raw of tags) {
    if (typeof raw !== 'string') {
      continue;
    }
    const tag = raw.trim();
    let m: RegExpMatchArray | null;
    if ((ROLE_TAGS as readonly string[]).includes(tag)) {
      if (out.role === 'continue') {
        out.role = tag as CellRole;
      }
    } else if ((m = tag.match(/^(?:step|block):(.+)$/))) {
      out.name = m[1];
      out.role = 'step';
    } else if ((m = tag.match(/^prev:(.+)$/))) {
      if (!out.prev.includes(m[1])) {
        out.prev.push(m[1]);
      }
    } else if ((m = tag.match(/^image:(.+)$/))) {
      out.image = m[1];
    } else if ((m = tag.match(/^limit:(.+):([^:]+)$/))) {
      out.limits[m[1]] = m[2];
    } else if ((m = tag.match(/^cache:(true|false)$/i))) {
      out.cache = m[1].toLowerCase() === 'true';
    } else {
      out.other.push(raw);
    }
  }
  return out;
}

/**
 * The tags list for `t`: the pipeline tags (role or step, prev…, image, limits, cache)
 * then the other tags as they were. Step options (prev, image, limits, cache) are only
 * written for a cell that starts a step.
 */
export function serializeTags(t: IStepTags): string[] {
  const tags: string[] = [];
  if (t.role === 'step') {
    tags.push(`step:${t.name.trim()}`);
    for (const p of t.prev) {
      const name = p.trim();
      if (name && !tags.includes(`prev:${name}`)) {
        tags.push(`prev:${name}`);
      }
    }
    if (t.image.trim()) {
      tags.push(`image:${t.image.trim()}`);
    }
    for (const [key, value] of Object.entries(t.limits)) {
      if (key.trim() && String(value).trim()) {
        tags.push(`limit:${key.trim()}:${String(value).trim()}`);
      }
    }
    if (!t.cache) {
      tags.push('cache:false');
    }
  } else if (t.role !== 'continue') {
    tags.push(t.role);
  }
  return [...tags, ...t.other];
}

/** Whether two tag lists hold the same tags (order aside). */
export function sameTags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) {
    return false;
  }
  const sa = [...a].sort();
  const sb = [...b].sort();
  return sa.every((v, i) => v === sb[i]);
}

/**
 * What keeps `t` from being written ('' when nothing): a step without a name, a name the
 * compiler refuses, a step after itself.
 */
export function tagProblem(t: IStepTags): string {
  if (t.role !== 'step') {
    return '';
  }
  const name = t.name.trim();
  if (!name) {
    return 'A step needs a name.';
  }
  if (!STEP_NAME_RE.test(name)) {
    return `"${name}" is not a step name: lower-case letters, digits, "-" and "_", starting and ending with a letter or digit.`;
  }
  if (t.prev.map(p => p.trim()).includes(name)) {
    return 'A step cannot come after itself.';
  }
  return '';
}

/**
 * A warning that does not stop the write: the name is started by another cell too (one
 * step when the cells follow each other, as Kale notebooks do; elsewhere Compile says
 * which cells clash).
 */
export function tagWarning(t: IStepTags, otherSteps: readonly string[]): string {
  if (t.role === 'step' && otherSteps.includes(t.name.trim())) {
    return `Another cell also starts step "${t.name.trim()}": next to it, the cells make one step; elsewhere it is an error.`;
  }
  return '';
}

/** The step names the notebook's code cells start, in notebook order (`null`: not a code cell). */
export function stepNames(cellTags: ReadonlyArray<unknown | null>): string[] {
  const names: string[] = [];
  for (const tags of cellTags) {
    if (tags === null) {
      continue;
    }
    const t = parseTags(tags);
    if (t.role === 'step' && t.name && !names.includes(t.name)) {
      names.push(t.name);
    }
  }
  return names;
}

/**
 * The step each code cell belongs to, following the compiler's rule: a `step:` cell starts
 * a step, untagged cells continue the block above them, other roles belong to no step (`null` entries are not
 * code cells and belong to none).
 */
export function cellSteps(cellTags: ReadonlyArray<unknown | null>): (string | null)[] {
  let current: string | null = null;
  return cellTags.map(tags => {
    if (tags === null) {
      return null;
    }
    const t = parseTags(tags);
    if (t.role === 'step') {
      current = t.name || null;
      return current;
    }
    if (t.role === 'continue') {
      return current;
    }
    current = null; // untagged cells after imports, skip … continue that block, not a step
    return null;
  });
}
