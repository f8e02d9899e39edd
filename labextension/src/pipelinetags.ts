/**
 * A code cell's pipeline tags (Kale 2.3's vocabulary, and its older one), read from and
 * written back to the cell's metadata `tags` list. The server's grammar
 * (kfjupyter/pipelines/tags.py) decides what a pipeline is; this module mirrors its rules
 * and messages for the tag editor, and leaves every tag the editor does not change as it was.
 *
 *   imports | functions | pipeline-parameters | pipeline-metrics | skip   a cell's role; the
 *                                         first of them decides the cell, the tags after it are not read
 *   step:NAME (block:NAME, Kale's older spelling)    a step starts (or continues) here;
 *                                         `step:` with no name is an untagged cell
 *   prev:NAME (several)                   explicit upstream steps
 *   image:IMAGE                           the step's image
 *   limit:KEY:VALUE                       resource limits (cpu, memory, nvidia.com/gpu, …)
 *   annotation:KEY:VALUE, label:KEY:VALUE the step pod's annotations and labels
 *   secret:SECRET:KEY:ENV                 a Secret's key as an env var
 *   cache:enabled|disabled (true|false)   step cache
 *   report:enabled|disabled               Kale's step report
 *   notebook:NAME                         Kale's sub-pipeline reference
 *
 * Other Jupyter tools' tags (FOREIGN_TAGS: papermill's `parameters`, nbconvert's and Jupyter
 * Book's display tags) are ignored; any other tag is an error naming it.
 */

/** What a code cell is to the pipeline. */
export type CellRole =
  | 'continue' // no role tag: the cell continues the block above it
  | 'step'
  | 'skip'
  | 'imports'
  | 'functions'
  | 'pipeline-parameters'
  | 'pipeline-metrics'
  | 'notebook'; // notebook:NAME, Kale's sub-pipeline reference

/** tags.py KIND_TAGS: the tags that make the whole cell one kind of block (the first one decides). */
export const KIND_TAGS: readonly string[] = ['imports', 'functions', 'pipeline-parameters', 'pipeline-metrics', 'skip'];

/** The roles written as one tag of their own. */
export const ROLE_TAGS: readonly CellRole[] = ['skip', 'imports', 'functions', 'pipeline-parameters', 'pipeline-metrics'];

export const ROLE_LABELS: Record<CellRole, string> = {
  continue: 'Continues the block above',
  step: 'Starts a step',
  skip: 'Skipped',
  imports: 'Imports (every step)',
  functions: 'Functions (every step)',
  'pipeline-parameters': 'Pipeline parameters',
  'pipeline-metrics': 'Pipeline metrics',
  notebook: 'Sub-pipeline (notebook:)'
};

/** The limits the form offers (others found on a cell are kept as they are). */
export const LIMIT_KEYS = ['cpu', 'memory', 'nvidia.com/gpu'] as const;

/** tags.py FOREIGN_TAGS: tags other Jupyter tools own, ignored by the grammar. */
export const FOREIGN_TAGS: ReadonlySet<string> = new Set([
  'parameters',
  'injected-parameters',
  'remove-cell',
  'remove-input',
  'remove-output',
  'remove_cell',
  'remove_input',
  'remove_output',
  'hide-cell',
  'hide-input',
  'hide-output',
  'hide_input',
  'hide_output',
  'raises-exception',
  'skip-execution',
  'thebe-init',
  'full-width',
  'margin'
]);

/** tags.py EXAMPLES: what each parameterised tag looks like, for the message about one that does not parse. */
export const TAG_EXAMPLES: Readonly<Record<string, string>> = {
  step: 'step:train',
  block: 'block:train',
  prev: 'prev:prepare',
  image: 'image:python:3.11',
  limit: 'limit:cpu:2, limit:nvidia.com/gpu:1',
  annotation: 'annotation:team.io/owner:ana',
  label: 'label:team:vision',
  secret: 'secret:db-creds:password:DB_PASSWORD',
  cache: 'cache:disabled',
  report: 'report:disabled',
  notebook: 'notebook:features'
};

/** A Kubernetes annotation or label key (tags.py _K8S_KEY): `[prefix/]name`. */
const SEGMENT = '[a-zA-Z0-9]+(?:[a-zA-Z0-9\\-_.]*[a-zA-Z0-9])?';
const K8S_KEY = `${SEGMENT}(?:/${SEGMENT})?`;

/*
 * The tag grammar, as regular expressions: tags.py's patterns one for one (`.` there is
 * `[^\n]` here, as Python's `.` only stops at a newline). test/tag-examples.json is
 * checked against both (jest here, pytest there), so a change to one side that the other
 * does not follow fails a test. Tags are stripped of surrounding blanks before matching,
 * as tags.py does.
 */
export const TAG_RE = {
  /** tags.py STEP_NAME: Kale's `[_a-z][_a-z0-9]*`, or the older DNS-like names (`load-data`, `2nd_pass`). */
  stepName: /^(?:[_a-z][_a-z0-9]*|[a-z0-9](?:[-a-z0-9_]*[a-z0-9])?)$/,
  /** tags.py STEP: `step:NAME` or Kale's older `block:NAME`; an empty NAME makes an untagged cell. */
  step: /^(step|block):([^\n]*)$/,
  /** tags.py PREV: `prev:NAME` (NAME checked with stepName). */
  prev: /^prev:([^\n]*)$/,
  /** tags.py IMAGE: `image:IMAGE`, any image reference without blanks. */
  image: /^image:(\S+)$/,
  /** tags.py LIMIT: Kale's shape `limit:KEY:VALUE`; KEY then checked with limitKey, VALUE with quantity. */
  limit: /^limit:([_a-z\-./]+):([_a-zA-Z0-9.]+)$/,
  /** tags.py RESOURCE: cpu, memory, ephemeral-storage or a vendor resource (nvidia.com/gpu). */
  limitKey:
    /^(?:cpu|memory|ephemeral-storage|[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\/[a-z0-9](?:[-a-z0-9._]*[a-z0-9])?)$/,
  /** tags.py QUANTITY: a Kubernetes quantity (2, 500m, 1.5, 4Gi, 1e3 …). */
  quantity: /^[0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+|[numkMGTPE]i?|Ki)?$/,
  /** tags.py ANNOTATION: `annotation:KEY:VALUE`, VALUE the rest of the tag. */
  annotation: new RegExp(`^annotation:(${K8S_KEY}):([^\\n]*)$`),
  /** tags.py LABEL: `label:KEY:VALUE`. */
  label: new RegExp(`^label:(${K8S_KEY}):([^\\n]*)$`),
  /** A key alone (the form's check). */
  k8sKey: new RegExp(`^${K8S_KEY}$`),
  /** tags.py SECRET: `secret:SECRET:KEY:ENV` (a DNS-1123 Secret name, a key in it, an env var name). */
  secret:
    /^secret:([a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*):([-._a-zA-Z0-9]+):([a-zA-Z_][a-zA-Z0-9_]*)$/,
  /** tags.py CACHE: `cache:enabled|disabled` (Kale 2.3) or `cache:true|false`, any case. */
  cache: /^cache:(enabled|disabled|true|false)$/i,
  /** tags.py REPORT: `report:enabled|disabled`. */
  report: /^report:(enabled|disabled)$/,
  /** tags.py NOTEBOOK: `notebook:NAME` (NAME checked with stepName). */
  notebook: /^notebook:([^\n]*)$/
};

/** A step name the compiler takes. */
export const STEP_NAME_RE = TAG_RE.stepName;

/** What a step name may be, in messages. */
const NAME_RULE = 'use lower-case letters, digits and "_" (Kale\'s names, e.g. load_data), or "-" inside';

export interface IStepTags {
  role: CellRole;
  /** The step's name (role `step`), or the referenced notebook (role `notebook`). */
  name: string;
  /** Explicit upstream steps, in tag order. */
  prev: string[];
  image: string;
  /** Limit key → value (`cpu` → `2`, `memory` → `1Gi`, `nvidia.com/gpu` → `1`). */
  limits: Record<string, string>;
  /** False: `cache:disabled` (or the older `cache:false`). */
  cache: boolean;
  /** `report:enabled` / `report:disabled`; null: no report tag. */
  report: boolean | null;
  /** The pod's annotations, [key, value] in tag order (the form's rows; blank rows are not written). */
  annotations: [string, string][];
  /** The pod's labels, [key, value]. */
  labels: [string, string][];
  /** Secrets as env vars, [secret, key, env] (`secret:SECRET:KEY:ENV`). */
  secrets: [string, string, string][];
  /** Tags that are not pipeline tags (foreign tags, non-strings), in their order: written back untouched. */
  other: unknown[];
  /**
   * The tags the grammar does not read (after the kind tag that decides the cell, or the
   * options of a `step:` with no name), as shown: kept as they are.
   */
  unread: string[];
  /** The cell's `tags` as read (what `serializeTags` edits). */
  source?: unknown;
  /**
   * Why the form cannot edit these tags without changing what the user wrote (a tag the
   * compiler refuses, two images …): each message names the tags. The form shows them
   * and writes nothing while there are any.
   */
  conflicts: string[];
}

export function emptyTags(): IStepTags {
  return {
    role: 'continue',
    name: '',
    prev: [],
    image: '',
    limits: {},
    cache: true,
    report: null,
    annotations: [],
    labels: [],
    secrets: [],
    other: [],
    unread: [],
    conflicts: []
  };
}

const q = (tag: string): string => `"${tag}"`;
const shown = (tag: unknown): string => (typeof tag === 'string' ? tag : JSON.stringify(tag));

/* ---------------------------------------------------------------- reading one tag */

/** One tag as the grammar reads it. */
type Read =
  | { kind: 'kind'; role: CellRole } // imports, functions, … skip
  | { kind: 'foreign' }
  | { kind: 'step'; name: string } // '' for `step:` alone
  | { kind: 'notebook'; name: string }
  | { kind: 'option'; slot: string; value: string; tag: string }
  | { kind: 'error'; message: string };

/** Python's name of a JSON value's type, as tags.py's message says it. */
function pyType(value: unknown): string {
  if (value === null) {
    return 'NoneType';
  }
  if (Array.isArray(value)) {
    return 'list';
  }
  switch (typeof value) {
    case 'number':
      return Number.isInteger(value) ? 'int' : 'float';
    case 'boolean':
      return 'bool';
    case 'object':
      return 'dict';
    default:
      return typeof value;
  }
}

const badName = (name: string, tag: string): string => `Invalid step name ${q(name)} in tag ${q(tag)}: ${NAME_RULE}.`;

/** Ratcliff/Obershelp matching characters of `a` and `b`, as difflib.SequenceMatcher counts them. */
function matchingChars(a: string[], b: string[]): number {
  const b2j = new Map<string, number[]>();
  b.forEach((c, j) => {
    const list = b2j.get(c);
    if (list) {
      list.push(j);
    } else {
      b2j.set(c, [j]);
    }
  });
  const longest = (alo: number, ahi: number, blo: number, bhi: number): [number, number, number] => {
    let [besti, bestj, bestsize] = [alo, blo, 0];
    let j2len = new Map<number, number>();
    for (let i = alo; i < ahi; i++) {
      const next = new Map<number, number>();
      for (const j of b2j.get(a[i]) ?? []) {
        if (j < blo) {
          continue;
        }
        if (j >= bhi) {
          break;
        }
        const k = (j2len.get(j - 1) ?? 0) + 1;
        next.set(j, k);
        if (k > bestsize) {
          [besti, bestj, bestsize] = [i - k + 1, j - k + 1, k];
        }
      }
      j2len = next;
    }
    return [besti, bestj, bestsize];
  };
  let total = 0;
  const queue: [number, number, number, number][] = [[0, a.length, 0, b.length]];
  while (queue.length) {
    const [alo, ahi, blo, bhi] = queue.pop()!;
    const [i, j, k] = longest(alo, ahi, blo, bhi);
    if (k) {
      total += k;
      if (alo < i && blo < j) {
        queue.push([alo, i, blo, j]);
      }
      if (i + k < ahi && j + k < bhi) {
        queue.push([i + k, ahi, j + k, bhi]);
      }
    }
  }
  return total;
}

/** difflib.get_close_matches(word, possibilities, n=1, cutoff=0.75)[0], or null. */
export function closeMatch(word: string, possibilities: readonly string[], cutoff = 0.75): string | null {
  const w = Array.from(word);
  let best: [number, string] | null = null;
  for (const x of possibilities) {
    const p = Array.from(x);
    const total = p.length + w.length;
    const score = total ? (2 * matchingChars(p, w)) / total : 1;
    if (score >= cutoff && (!best || score > best[0] || (score === best[0] && x > best[1]))) {
      best = [score, x];
    }
  }
  return best ? best[1] : null;
}

/** tags.py `_unknown`: a parameterised tag that does not parse, or a tag outside the vocabulary. */
function unknownTag(tag: string): string {
  const colon = tag.indexOf(':');
  const head = colon < 0 ? tag : tag.slice(0, colon);
  if (Object.prototype.hasOwnProperty.call(TAG_EXAMPLES, head)) {
    return `Malformed tag ${q(tag)} (expected e.g. ${TAG_EXAMPLES[head]}).`;
  }
  const guess = closeMatch(head, [...KIND_TAGS, ...Object.keys(TAG_EXAMPLES)]);
  const hint = guess ? `; did you mean ${q(guess + (colon < 0 ? '' : tag.slice(colon)))}?` : '';
  const vocabulary = [...KIND_TAGS, ...Object.keys(TAG_EXAMPLES).map(k => `${k}:…`)].join(', ');
  return `Unknown tag ${q(tag)}${hint} (pipeline tags: ${vocabulary}).`;
}

/** One tag as tags.py `parse_tags` reads it (stripped of surrounding blanks). */
function readTag(raw: unknown): Read {
  if (typeof raw !== 'string') {
    return { kind: 'error', message: `A tag must be a string, not ${pyType(raw)} ${JSON.stringify(raw)}.` };
  }
  const tag = raw.trim();
  let m: RegExpMatchArray | null;
  if (KIND_TAGS.includes(tag)) {
    return { kind: 'kind', role: tag as CellRole };
  }
  if (FOREIGN_TAGS.has(tag)) {
    return { kind: 'foreign' };
  }
  if ((m = tag.match(TAG_RE.step))) {
    if (m[2] && !TAG_RE.stepName.test(m[2])) {
      return { kind: 'error', message: badName(m[2], tag) };
    }
    return { kind: 'step', name: m[2] };
  }
  if ((m = tag.match(TAG_RE.notebook))) {
    if (!m[1] || !TAG_RE.stepName.test(m[1])) {
      return { kind: 'error', message: unknownTag(tag) };
    }
    return { kind: 'notebook', name: m[1] };
  }
  const option = (slot: string, value: string): Read => ({ kind: 'option', slot, value, tag });
  if ((m = tag.match(TAG_RE.prev))) {
    return TAG_RE.stepName.test(m[1]) ? option(`prev:${m[1]}`, m[1]) : { kind: 'error', message: badName(m[1], tag) };
  }
  if ((m = tag.match(TAG_RE.image))) {
    return option('image', m[1]);
  }
  if ((m = tag.match(TAG_RE.limit))) {
    if (!TAG_RE.limitKey.test(m[1])) {
      return {
        kind: 'error',
        message: `Tag ${q(tag)}: ${q(m[1])} is not a Kubernetes resource (cpu, memory, ephemeral-storage, or a vendor resource such as nvidia.com/gpu).`
      };
    }
    if (!TAG_RE.quantity.test(m[2])) {
      return { kind: 'error', message: `Tag ${q(tag)}: ${q(m[2])} is not a Kubernetes quantity (2, 500m, 1.5, 4Gi …).` };
    }
    return option(`limit:${m[1]}`, m[2]);
  }
  if ((m = tag.match(TAG_RE.annotation))) {
    return option(`annotation:${m[1]}`, m[2]);
  }
  if ((m = tag.match(TAG_RE.label))) {
    return option(`label:${m[1]}`, m[2]);
  }
  if ((m = tag.match(TAG_RE.secret))) {
    return option(`secret:${m[3]}`, `${m[1]}:${m[2]}`);
  }
  if ((m = tag.match(TAG_RE.cache))) {
    return option('cache', ['enabled', 'true'].includes(m[1].toLowerCase()) ? 'true' : 'false');
  }
  if ((m = tag.match(TAG_RE.report))) {
    return option('report', m[1]);
  }
  return { kind: 'error', message: unknownTag(tag) };
}

/** The cell's tags as a list; null when the metadata is not one (tags.py reads a missing or empty value as no tags). */
function tagList(tags: unknown): unknown[] | null {
  if (Array.isArray(tags)) {
    return tags;
  }
  if (!tags || (typeof tags === 'object' && Object.keys(tags as object).length === 0)) {
    return [];
  }
  return null;
}

/* ---------------------------------------------------------------- the cell's tags */

/**
 * The errors the compiler (tags.py `parse_tags`) raises for a cell's tags ([] when it
 * takes them): every tag up to the first kind tag is checked (tags.py stops at the first
 * error; this lists each), the tags after it are not read.
 */
export function tagErrors(tags: unknown): string[] {
  const list = tagList(tags);
  if (list === null) {
    return ['The cell\'s "tags" metadata is not a list.'];
  }
  const errors: string[] = [];
  const steps: string[] = []; // the step tags, as written (stripped)
  const options: string[] = [];
  let notebook: string | null = null;
  for (const raw of list) {
    const r = readTag(raw);
    if (r.kind === 'kind') {
      return errors; // the first kind tag decides the cell: the rest is not read
    }
    if (r.kind === 'error') {
      errors.push(r.message);
    } else if (r.kind === 'step') {
      steps.push((raw as string).trim());
    } else if (r.kind === 'notebook') {
      notebook = r.name;
    } else if (r.kind === 'option') {
      options.push(r.tag);
    }
  }
  if (steps.length > 1) {
    errors.push(`The cell has ${steps.length} step tags (${steps.map(q).join(', ')}); a cell belongs to one step.`);
  } else if (notebook !== null) {
    if (steps.length || options.length) {
      errors.push(`A notebook:${notebook} cell takes no step tags (${q(steps[0] ?? options[0])}).`);
    }
  } else if (!steps.length && options.length) {
    errors.push(`Tag ${q(options[0])} needs a step:NAME tag on the same cell.`);
  }
  return errors;
}

/**
 * Read a cell's `tags` metadata for the form. Anything the form does not edit is kept in
 * `other` (and stays where it is when written back); tags the form cannot represent
 * without changing them are reported in `conflicts`. A cell that a kind tag decides
 * (`skip`, `imports` …) but that also has a step's tags keeps that step's values in the
 * form's fields (not read by the compiler): making it a step again brings them back.
 */
export function parseTags(tags: unknown): IStepTags {
  const out = emptyTags();
  out.source = tags;
  if (tags === undefined || tags === null) {
    return out;
  }
  out.conflicts = tagErrors(tags);
  const list = tagList(tags);
  if (list === null) {
    return out;
  }
  const reads = list.map(readTag);
  out.other = list.filter((_, i) => reads[i].kind === 'foreign' || typeof list[i] !== 'string');

  const decides = reads.findIndex(r => r.kind === 'kind');
  if (decides >= 0) {
    out.role = (reads[decides] as Extract<Read, { kind: 'kind' }>).role;
    out.unread = list.slice(decides + 1).filter((_, i) => reads[decides + 1 + i].kind !== 'foreign').map(shown);
    const shadow = parseTags(list.filter((_, i) => reads[i].kind !== 'kind'));
    if (shadow.role === 'step' && !shadow.conflicts.length) {
      const { name, prev, image, limits, cache, report, annotations, labels, secrets } = shadow;
      Object.assign(out, { name, prev, image, limits, cache, report, annotations, labels, secrets });
    }
    return out;
  }

  const steps = reads.filter((r): r is Extract<Read, { kind: 'step' }> => r.kind === 'step');
  const notebooks = reads.filter((r): r is Extract<Read, { kind: 'notebook' }> => r.kind === 'notebook');
  const options = reads.filter((r): r is Extract<Read, { kind: 'option' }> => r.kind === 'option');
  if (notebooks.length) {
    out.role = 'notebook';
    out.name = notebooks[notebooks.length - 1].name;
    return out;
  }
  if (steps.length !== 1 || !steps[0].name) {
    // untagged (a `step:` alone: its options are not read), or two step tags (a conflict)
    if (steps.length === 1) {
      out.unread = options.map(o => o.tag);
    }
    return out;
  }
  out.role = 'step';
  out.name = steps[0].name;
  const annotations = new Map<string, string>();
  const labels = new Map<string, string>();
  const secrets = new Map<string, [string, string, string]>();
  const bySlot = new Map<string, { values: Set<string>; tags: string[] }>();
  for (const o of options) {
    const seen = bySlot.get(o.slot) ?? { values: new Set<string>(), tags: [] };
    seen.values.add(o.value);
    seen.tags.push(o.tag);
    bySlot.set(o.slot, seen);
    const [kind, key] = [o.slot.split(':')[0], o.slot.slice(o.slot.indexOf(':') + 1)];
    if (kind === 'prev') {
      if (!out.prev.includes(o.value)) {
        out.prev.push(o.value);
      }
    } else if (kind === 'image') {
      out.image = o.value;
    } else if (kind === 'limit') {
      out.limits[key] = o.value;
    } else if (kind === 'annotation') {
      annotations.set(key, o.value);
    } else if (kind === 'label') {
      labels.set(key, o.value);
    } else if (kind === 'secret') {
      const colon = o.value.indexOf(':');
      secrets.set(key, [o.value.slice(0, colon), o.value.slice(colon + 1), key]);
    } else if (kind === 'cache') {
      out.cache = o.value === 'true';
    } else if (kind === 'report') {
      out.report = o.value === 'enabled';
    }
  }
  out.annotations = [...annotations];
  out.labels = [...labels];
  out.secrets = [...secrets.values()];
  // Tags the compiler takes (the last one wins) but the form would have to rewrite.
  for (const [slot, { values, tags: written }] of bySlot) {
    if (values.size < 2) {
      continue;
    }
    const [kind, key] = [slot.split(':')[0], slot.slice(slot.indexOf(':') + 1)];
    const list = written.map(q).join(', ');
    if (kind === 'image') {
      out.conflicts.push(`The cell has two images: ${list}.`);
    } else if (kind === 'limit') {
      out.conflicts.push(`The cell has two ${key} limits: ${list}.`);
    } else if (kind === 'cache' || kind === 'report') {
      out.conflicts.push(`The cell has both ${written.map(q).join(' and ')}.`);
    } else if (kind === 'secret') {
      out.conflicts.push(`The cell sets the env var ${key} from two secrets: ${list}.`);
    } else {
      out.conflicts.push(`The cell has two values of the ${kind} ${key}: ${list}.`);
    }
  }
  return out;
}

/** A tag the form edits: its slot (one value each) and normalised value; null for any other tag (kept as it is). */
function classify(raw: unknown): { slot: string; value: string } | null {
  const r = readTag(raw);
  switch (r.kind) {
    case 'kind':
      return { slot: 'role', value: r.role };
    case 'step':
      return { slot: 'role', value: r.name ? `step:${r.name}` : 'continue' };
    case 'notebook':
      return { slot: 'role', value: `notebook:${r.name}` };
    case 'option':
      return { slot: r.slot, value: r.value };
    default:
      return null; // not a pipeline tag, or a malformed one
  }
}

/** The slots the form's values `t` fill: slot → value, and the tag to write for it (null: keep a matching tag, add none). */
function wantedSlots(t: IStepTags, prefix = 'step'): Map<string, { value: string; tag: string | null }> {
  const wanted = new Map<string, { value: string; tag: string | null }>();
  const set = (slot: string, value: string, tag: string | null = `${slot}:${value}`): void => {
    wanted.set(slot, { value, tag });
  };
  if (t.role === 'step') {
    const name = t.name.trim();
    set('role', `step:${name}`, `${prefix}:${name}`);
    for (const p of t.prev) {
      const name = p.trim();
      if (name) {
        set(`prev:${name}`, name, `prev:${name}`);
      }
    }
    if (t.image.trim()) {
      set('image', t.image.trim());
    }
    for (const [key, value] of Object.entries(t.limits)) {
      const v = String(value).trim();
      if (key.trim() && v) {
        set(`limit:${key.trim()}`, v);
      }
    }
    for (const [kind, rows] of [
      ['annotation', t.annotations ?? []],
      ['label', t.labels ?? []]
    ] as const) {
      for (const [key, value] of rows) {
        if (key.trim()) {
          set(`${kind}:${key.trim()}`, value.trim());
        }
      }
    }
    for (const [secret, key, env] of t.secrets ?? []) {
      const [s, k, e] = [secret.trim(), key.trim(), env.trim()];
      if (s && k && e) {
        set(`secret:${e}`, `${s}:${k}`, `secret:${s}:${k}:${e}`);
      }
    }
    set('cache', t.cache ? 'true' : 'false', t.cache ? null : 'cache:disabled');
    if (t.report !== null && t.report !== undefined) {
      set('report', t.report ? 'enabled' : 'disabled');
    }
  } else if (t.role === 'notebook') {
    set('role', `notebook:${t.name.trim()}`);
  } else if (t.role !== 'continue') {
    set('role', t.role, t.role);
  }
  return wanted;
}

/**
 * The cell's tags with the form's values `t` written in: `source` (default `t.source`,
 * the tags as read) edited in place. When the values are those the tags already say, the
 * tags are returned as they are. Otherwise a tag whose value is unchanged stays exactly as
 * it was (spelling, `block:`, case, duplicates, position); a changed value replaces its tag
 * where it stood; a value the form clears removes its tag; a new one is added (the role
 * first, step options last). A kind tag (`skip` …) replaces the kind tag there is, or
 * goes first, and leaves every other tag as it was (not read after it: a skipped step
 * keeps its tags). Every tag the form does not edit is kept where it is. Tags with
 * conflicts are returned unchanged. Step options are only written for a cell that starts a
 * step. A new `cache` tag is Kale 2.3's `cache:disabled`.
 */
export function serializeTags(t: IStepTags, source: unknown = t.source): unknown[] {
  const src: unknown[] = Array.isArray(source) ? source : [];
  const current = parseTags(src);
  if ((t.conflicts && t.conflicts.length) || current.conflicts.length) {
    return [...src]; // the form does not resolve a conflict: the user edits the tags
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
  const wanted = wantedSlots(t, prefix);
  const before = wantedSlots(current);
  if (wanted.size === before.size && [...wanted].every(([slot, w]) => before.get(slot)?.value === w.value)) {
    return [...src]; // nothing the form holds changed
  }
  const role = wanted.get('role');
  if (role && ROLE_TAGS.includes(t.role)) {
    const out = [...src];
    const at = src.findIndex(raw => readTag(raw).kind === 'kind');
    if (at >= 0) {
      out[at] = role.tag;
    } else {
      out.unshift(role.tag);
    }
    return out;
  }
  // The role tag: one already saying it stays where it is, else the first role tag is
  // replaced; every other role tag goes (a step cell has one step tag and no kind tag).
  const keepRole = role ? src.findIndex(raw => classify(raw)?.slot === 'role' && classify(raw)?.value === role.value) : -1;
  const out: unknown[] = [];
  const written = new Map<string, string>();
  for (const [i, raw] of src.entries()) {
    const o = classify(raw);
    if (!o) {
      out.push(raw);
      continue;
    }
    const want = wanted.get(o.slot);
    if (o.slot === 'role' && keepRole >= 0) {
      if (i === keepRole) {
        out.push(raw);
        written.set('role', o.value);
      }
      continue;
    }
    if (written.has(o.slot)) {
      if (want && o.slot !== 'role' && written.get(o.slot) === o.value) {
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
 * compiler refuses, a step after itself, an image, a limit, an annotation, a label or a
 * secret tags.py would reject.
 */
export function tagProblem(t: IStepTags): string {
  if (t.role === 'notebook') {
    return STEP_NAME_RE.test(t.name.trim()) ? '' : `"${t.name.trim()}" is not a notebook name: ${NAME_RULE}.`;
  }
  if (t.role !== 'step') {
    return '';
  }
  const name = t.name.trim();
  if (!name) {
    return 'A step needs a name.';
  }
  if (!STEP_NAME_RE.test(name)) {
    return `"${name}" is not a step name: ${NAME_RULE}.`;
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
    if (v && !(TAG_RE.limit.test(`limit:${key}:${v}`) && TAG_RE.limitKey.test(key))) {
      return `"${key}" is not a Kubernetes resource (cpu, memory, ephemeral-storage, or a vendor resource such as nvidia.com/gpu).`;
    }
  }
  for (const [kind, rows] of [
    ['annotation', t.annotations ?? []],
    ['label', t.labels ?? []]
  ] as const) {
    const keys = new Set<string>();
    for (const [key, value] of rows) {
      const k = key.trim();
      if (!k && value.trim()) {
        return `The ${kind} with the value "${value.trim()}" needs a key.`;
      }
      if (k && !TAG_RE.k8sKey.test(k)) {
        return `"${k}" is not a Kubernetes ${kind} key: letters, digits, "-", "_" and "." (starting and ending with a letter or digit), with an optional prefix/ (e.g. team.io/owner).`;
      }
      if (k && keys.has(k)) {
        return `Two ${kind}s "${k}": keep one.`;
      }
      keys.add(k);
    }
  }
  const envs = new Set<string>();
  for (const [secret, key, env] of t.secrets ?? []) {
    const [s, k, e] = [secret.trim(), key.trim(), env.trim()];
    if (!s && !k && !e) {
      continue;
    }
    if (!s || !k || !e) {
      return 'A secret needs the Secret\'s name, the key in it and the env var to set.';
    }
    if (!TAG_RE.secret.test(`secret:${s}:${k}:${e}`)) {
      return `"secret:${s}:${k}:${e}" is not a secret tag: a Secret name of lower-case letters, digits, "-" and "." (e.g. db-creds), a key of letters, digits, "-", "_" and ".", an env var name (e.g. DB_PASSWORD).`;
    }
    if (envs.has(e)) {
      return `Two secrets set the env var ${e}: keep one.`;
    }
    envs.add(e);
  }
  return '';
}

/**
 * What keeps the form from writing `t` into the cell whose tags are `source` ('' when
 * nothing): `tagProblem`, or a tag the compiler would then refuse (a tag the kind tag that
 * decided the cell kept from being read, such as an unknown tag after `skip`).
 */
export function writeProblem(t: IStepTags, source: unknown = t.source): string {
  const problem = tagProblem(t);
  if (problem || (t.conflicts && t.conflicts.length)) {
    return problem;
  }
  const errors = tagErrors(serializeTags(t, source));
  return errors.length ? `Written, the cell's tags would not compile: ${errors[0]} Edit the cell's tags to fix it.` : '';
}

/**
 * A warning that does not stop the write: the name is started by another cell too (Kale's
 * rule: this cell's code then continues that step, its options are added to the step's).
 */
export function tagWarning(t: IStepTags, otherSteps: readonly string[]): string {
  if (t.role === 'step' && otherSteps.includes(t.name.trim())) {
    return `Another cell also starts step "${t.name.trim()}": this cell's code is added to that step (Kale's rule), its options to the step's.`;
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
 * The step each code cell belongs to, following the compiler's rules (graph.py `_blocks`):
 * a `step:` cell starts its step (or continues it, when the name was used before); an
 * untagged cell continues the block above it, `skip` cells in between notwithstanding;
 * imports, functions, parameters and metrics cells belong to no step; untagged cells before
 * the first tagged one are not part of the pipeline (`null` entries are not code cells and
 * belong to none).
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
    if (t.role !== 'skip') {
      current = null; // untagged cells after imports, parameters … continue that block, not a step
    }
    return null;
  });
}
