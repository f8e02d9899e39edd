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

/*
 * The tag grammar, as regular expressions. The source of truth is the server's
 * kfjupyter/pipelines/tags.py (STEP_NAME, STEP, PREV, IMAGE, LIMIT, CACHE, KIND_TAGS,
 * PREFIXES): these copy its patterns one for one, and test/tag-examples.json is checked
 * against both (jest here, pytest there), so a change to one side that the other does
 * not follow fails a test. Tags are stripped of surrounding blanks before matching, as
 * tags.py does.
 */
export const TAG_RE = {
  /** tags.py STEP_NAME: lower-case DNS-1123-ish; starts and ends with a letter or digit, '-' and '_' inside. */
  stepName: /^[a-z0-9](?:[-a-z0-9_]*[a-z0-9])?$/,
  /** tags.py STEP: `step:NAME` or Kale's older `block:NAME` (NAME then checked with stepName). */
  step: /^(step|block):(.*)$/,
  /** tags.py PREV: `prev:NAME` (NAME checked with stepName). */
  prev: /^prev:(.*)$/,
  /** tags.py IMAGE: `image:IMAGE`, any image reference without blanks. */
  image: /^image:(\S+)$/,
  /** tags.py LIMIT, the KEY part: cpu, memory, ephemeral-storage or a vendor resource (nvidia.com/gpu). */
  limitKey: /^(?:cpu|memory|ephemeral-storage|[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\/[a-z0-9](?:[-a-z0-9._]*[a-z0-9])?)$/,
  /** tags.py LIMIT, the VALUE part: a Kubernetes quantity (2, 500m, 1.5, 4Gi, 1e3 …). */
  quantity: /^[0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+|[numkMGTPE]i?|Ki)?$/,
  /** tags.py LIMIT, whole: `limit:KEY:VALUE`. */
  limit:
    /^limit:(cpu|memory|ephemeral-storage|[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\/[a-z0-9](?:[-a-z0-9._]*[a-z0-9])?):([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+|[numkMGTPE]i?|Ki)?)$/,
  /** tags.py CACHE: `cache:true` / `cache:false`, any case. */
  cache: /^cache:(true|false)$/i
};

/** tags.py KIND_TAGS: the tags that make the whole cell one kind of block. */
export const KIND_TAGS: readonly string[] = ROLE_TAGS;

/** tags.py PREFIXES: a tag starting with one of them must parse. */
export const TAG_PREFIXES: readonly string[] = ['step:', 'block:', 'prev:', 'image:', 'limit:', 'cache:'];

/** A step name the compiler takes: lower-case DNS-1123-ish. */
export const STEP_NAME_RE = TAG_RE.stepName;

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
  /** Tags that are not pipeline tags (non-strings included), in their order: written back untouched. */
  other: unknown[];
  /** The cell's `tags` as read (what `serializeTags` edits). */
  source?: unknown;
  /**
   * Why the form cannot edit these tags without changing what the user wrote (two roles,
   * two step names, skip + step, a malformed tag, two images …): each message names the
   * tags. The form shows them and writes nothing while there are any.
   */
  conflicts: string[];
}

export function emptyTags(): IStepTags {
  return { role: 'continue', name: '', prev: [], image: '', limits: {}, cache: true, other: [], conflicts: [] };
}

const q = (tag: string): string => `"${tag}"`;

/**
 * The errors the compiler (tags.py `parse_tags`) raises for a cell's tags, one message
 * per error ([] when it takes them). Non-strings and tags outside the vocabulary are
 * someone else's and never an error.
 */
export function tagErrors(tags: unknown): string[] {
  if (tags === undefined || tags === null) {
    return [];
  }
  if (!Array.isArray(tags)) {
    return ['The cell\'s "tags" metadata is not a list.'];
  }
  const errors: string[] = [];
  const kinds: [string, string][] = []; // [kind, tag]
  const stepTags: [string, string][] = []; // [name, tag]
  const options: string[] = [];
  const badName = (name: string, raw: string): void => {
    errors.push(
      `Invalid step name "${name}" in tag ${q(raw)}: use lower-case letters, digits, "-" and "_", starting and ending with a letter or digit.`
    );
  };
  for (const raw of tags) {
    if (typeof raw !== 'string') {
      continue;
    }
    const tag = raw.trim();
    let m: RegExpMatchArray | null;
    if (KIND_TAGS.includes(tag)) {
      kinds.push([tag, raw]);
    } else if ((m = tag.match(TAG_RE.step))) {
      if (!TAG_RE.stepName.test(m[2])) {
        badName(m[2], raw);
        continue;
      }
      stepTags.push([m[2], raw]);
      kinds.push(['step', raw]);
    } else if ((m = tag.match(TAG_RE.prev))) {
      if (!TAG_RE.stepName.test(m[1])) {
        badName(m[1], raw);
      }
      options.push(raw);
    } else if (TAG_RE.image.test(tag) || TAG_RE.limit.test(tag) || TAG_RE.cache.test(tag)) {
      options.push(raw);
    } else if (TAG_PREFIXES.some(p => tag.startsWith(p))) {
      errors.push(
        `Malformed tag ${q(raw)} (expected e.g. step:train, prev:prepare, image:python:3.11, limit:cpu:2, limit:memory:1Gi, limit:nvidia.com/gpu:1, cache:false).`
      );
    }
  }
  const names = [...new Set(stepTags.map(([n]) => n))];
  if (names.length > 1) {
    errors.push(`The cell has two step names: ${stepTags.map(([, t]) => q(t)).join(', ')}.`);
  }
  const distinct = [...new Set(kinds.map(([k]) => k))];
  if (distinct.length > 1) {
    const shown = [...new Set(kinds.map(([, t]) => q(t)))];
    errors.push(`The cell can be only one of ${shown.join(', ')}.`);
  }
  if (options.length && !(distinct.length === 1 && distinct[0] === 'step')) {
    if (distinct.length === 0) {
      errors.push(`Tag ${q(options[0])} needs a step:NAME tag on the same cell.`);
    } else if (distinct.length === 1) {
      errors.push(`Tag ${q(options[0])} needs a step:NAME tag on the same cell, not ${q(kinds[0][1])}.`);
    }
  }
  return errors;
}

/**
 * Read a cell's `tags` metadata for the form. Anything the form does not edit is kept in
 * `other` (and stays where it is when written back); tags the form cannot represent
 * without changing them are reported in `conflicts`.
 */
export function parseTags(tags: unknown): IStepTags {
  const out = emptyTags();
  out.source = tags;
  if (tags === undefined || tags === null) {
    return out;
  }
  out.conflicts = tagErrors(tags);
  if (!Array.isArray(tags)) {
    return out;
  }
  const images: string[] = [];
  const limitTags: Record<string, string[]> = {};
  const cacheTags: string[] = [];
  for (const raw of tags) {
    if (typeof raw !== 'string') {
      out.other.push(raw);
      continue;
    }
    const o = classify(raw);
    if (!o) {
      out.other.push(raw);
      continue;
    }
    if (o.slot === 'role') {
      if (out.role === 'continue') {
        if (o.value.startsWith('step:')) {
          out.role = 'step';
          out.name = o.value.slice(5);
        } else {
          out.role = o.value as CellRole;
        }
      }
    } else if (o.slot.startsWith('prev:')) {
      if (!out.prev.includes(o.value)) {
        out.prev.push(o.value);
      }
    } else if (o.slot === 'image') {
      images.push(raw);
      out.image = o.value;
    } else if (o.slot.startsWith('limit:')) {
      const key = o.slot.slice(6);
      (limitTags[key] = limitTags[key] || []).push(raw);
      out.limits[key] = o.value;
    } else if (o.slot === 'cache') {
      cacheTags.push(raw);
      out.cache = o.value === 'true';
    }
  }
  // Tags the compiler takes (the last one wins) but the form would have to rewrite.
  const differ = (list: string[], value: (t: string) => string): boolean => new Set(list.map(value)).size > 1;
  if (differ(images, t => classify(t)!.value)) {
    out.conflicts.push(`The cell has two images: ${images.map(q).join(', ')}.`);
  }
  for (const [key, list] of Object.entries(limitTags)) {
    if (differ(list, t => classify(t)!.value)) {
      out.conflicts.push(`The cell has two ${key} limits: ${list.map(q).join(', ')}.`);
    }
  }
  if (differ(cacheTags, t => classify(t)!.value)) {
    out.conflicts.push(`The cell has both ${cacheTags.map(q).join(' and ')}.`);
  }
  return out;
}

/** What a tag the form edits stands for: its slot (one value each) and normalised value; null for any other tag. */
function classify(raw: string): { slot: string; value: string } | null {
  const tag = raw.trim();
  let m: RegExpMatchArray | null;
  if (KIND_TAGS.includes(tag)) {
    return { slot: 'role', value: tag };
  }
  if ((m = tag.match(TAG_RE.step)) && TAG_RE.stepName.test(m[2])) {
    return { slot: 'role', value: `step:${m[2]}` };
  }
  if ((m = tag.match(TAG_RE.prev)) && TAG_RE.stepName.test(m[1])) {
    return { slot: `prev:${m[1]}`, value: m[1] };
  }
  if ((m = tag.match(TAG_RE.image))) {
    return { slot: 'image', value: m[1] };
  }
  if ((m = tag.match(TAG_RE.limit))) {
    return { slot: `limit:${m[1]}`, value: m[2] };
  }
  if ((m = tag.match(TAG_RE.cache))) {
    return { slot: 'cache', value: m[1].toLowerCase() };
  }
  return null; // not a pipeline tag, or a malformed one: kept as it is
}

/**
 * The cell's tags with the form's values `t` written in: `source` (default `t.source`,
 * the tags as read) edited in place. A tag whose value is unchanged stays exactly as it
 * was (spelling, `block:`, case, duplicates, position); a changed value replaces its tag
 * where it stood; a value the form clears removes its tag; a new one is added (the role
 * first, step options last). Every tag the form does not edit is kept where it is.
 * Tags with conflicts are returned unchanged. Step options are only written for a cell
 * that starts a step.
 */
export function serializeTags(t: IStepTags, source: unknown = t.source): unknown[] {
  const src: unknown[] = Array.isArray(source) ? source : [];
  if (t.conflicts && t.conflicts.length) {
    return [...src];
  }
  // The spelling of the step tag already there (Kale's block: stays block:).
  let prefix = 'step';
  for (const raw of src) {
    const m = typeof raw === 'string' ? raw.trim().match(TAG_RE.step) : null;
    if (m) {
      prefix = m[1];
      break;
    }
  }
  // slot → wanted value and the tag to write for it (null: keep a matching tag, add none).
  const wanted = new Map<string, { value: string; tag: string | null }>();
  if (t.role === 'step') {
    const name = t.name.trim();
    wanted.set('role', { value: `step:${name}`, tag: `${prefix}:${name}` });
    for (const p of t.prev) {
      const name = p.trim();
      if (name) {
        wanted.set(`prev:${name}`, { value: name, tag: `prev:${name}` });
      }
    }
    if (t.image.trim()) {
      wanted.set('image', { value: t.image.trim(), tag: `image:${t.image.trim()}` });
    }
    for (const [key, value] of Object.entries(t.limits)) {
      const v = String(value).trim();
      if (key.trim() && v) {
        wanted.set(`limit:${key.trim()}`, { value: v, tag: `limit:${key.trim()}:${v}` });
      }
    }
    wanted.set('cache', t.cache ? { value: 'true', tag: null } : { value: 'false', tag: 'cache:false' });
  } else if (t.role !== 'continue') {
    wanted.set('role', { value: t.role, tag: t.role });
  }
  const out: unknown[] = [];
  const written = new Map<string, string>();
  for (const raw of src) {
    const o = typeof raw === 'string' ? classify(raw) : null;
    if (!o) {
      out.push(raw);
      continue;
    }
    const want = wanted.get(o.slot);
    if (written.has(o.slot)) {
      if (want && written.get(o.slot) === o.value) {
        out.push(raw); // the user's duplicate
      }
      continue;
    }
    if (!want) {
      continue;
    }
    if (o.value === want.value) {
      out.push(raw);
      written.set(o.slot, o.value);
    } else if (want.tag !== null) {
      out.push(want.tag);
      written.set(o.slot, want.value);
    }
  }
  for (const [slot, want] of wanted) {
    if (!written.has(slot) && want.tag !== null) {
      if (slot === 'role') {
        out.unshift(want.tag);
      } else {
        out.push(want.tag);
      }
    }
  }
  return out;
}

/** Whether two tag lists are the same, in the same order. */
export function sameTags(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((v, i) => JSON.stringify(v) === JSON.stringify(b[i]));
}

/** A limit's label in messages. */
const LIMIT_NAMES: Record<string, string> = { cpu: 'CPU', memory: 'Memory', 'nvidia.com/gpu': 'GPUs' };

/**
 * What keeps `t` from being written ('' when nothing): a step without a name, a name the
 * compiler refuses, a step after itself, an image or a limit tags.py would reject.
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
  const image = t.image.trim();
  if (image && !TAG_RE.image.test(`image:${image}`)) {
    return `"${image}" is not an image reference: no spaces (e.g. python:3.11).`;
  }
  for (const [key, value] of Object.entries(t.limits)) {
    const v = String(value).trim();
    if (v && !TAG_RE.quantity.test(v)) {
      const label = LIMIT_NAMES[key] ?? key;
      const hint = key === 'memory' ? '512Mi, 2Gi, 1.5G' : key === 'cpu' ? '2, 500m, 1.5' : '1, 2';
      return `${label} limit "${v}" is not a Kubernetes quantity (e.g. ${hint}).`;
    }
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
