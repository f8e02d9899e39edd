import {
  cellSteps,
  emptyTags,
  parseTags,
  sameTags,
  serializeTags,
  stepNames,
  tagErrors,
  tagProblem,
  tagWarning,
  TAG_RE
} from '../src/pipelinetags';

declare const require: (path: string) => any;
const examples: { valid: unknown[][]; invalid: unknown[][] } = require('./tag-examples.json');

/** The tags the form writes after `edit` on a cell whose tags are `tags`. */
const edited = (tags: unknown[], edit: (t: ReturnType<typeof parseTags>) => Partial<ReturnType<typeof parseTags>>) => {
  const t = parseTags(tags);
  return serializeTags({ ...t, ...edit(t) });
};

describe('parseTags', () => {
  it('reads a step with every option (Kale vocabulary)', () => {
    const t = parseTags([
      'step:train',
      'prev:load',
      'prev:clean',
      'image:python:3.11',
      'limit:cpu:2',
      'limit:memory:1Gi',
      'limit:nvidia.com/gpu:1',
      'cache:false'
    ]);
    expect(t).toEqual({
      role: 'step',
      name: 'train',
      prev: ['load', 'clean'],
      image: 'python:3.11',
      limits: { cpu: '2', memory: '1Gi', 'nvidia.com/gpu': '1' },
      cache: false,
      other: [],
      conflicts: [],
      source: expect.any(Array)
    });
  });

  it('takes block: as step:, and the role tags', () => {
    expect(parseTags(['block:prep']).name).toBe('prep');
    expect(parseTags(['block:prep']).role).toBe('step');
    for (const role of ['imports', 'functions', 'pipeline-parameters', 'pipeline-metrics', 'skip']) {
      expect(parseTags([role]).role).toBe(role);
    }
    expect(parseTags([]).role).toBe('continue');
    expect(parseTags(undefined).role).toBe('continue');
    expect(parseTags('step:x').role).toBe('continue'); // not a list
  });

  it('keeps the tags that are not pipeline tags, non-strings included, in order', () => {
    const tags = ['parameters', 'step:a', 'annotation:x:y', 42, 'hide-input'];
    const t = parseTags(tags);
    expect(t.other).toEqual(['parameters', 'annotation:x:y', 42, 'hide-input']);
    expect(t.name).toBe('a');
    expect(t.conflicts).toEqual([]);
    expect(serializeTags(t)).toEqual(tags);
  });

  it('reads cache:true and an unknown limit key', () => {
    const t = parseTags(['step:a', 'cache:TRUE', 'limit:ephemeral-storage:2Gi']);
    expect(t.cache).toBe(true);
    expect(t.limits).toEqual({ 'ephemeral-storage': '2Gi' });
  });
});

describe('serializeTags', () => {
  it('round-trips a step exactly, other tags where they were', () => {
    const tags = ['parameters', 'step:train', 'prev:load', 'image:img:1', 'limit:cpu:2', 'cache:false'];
    const out = serializeTags(parseTags(tags));
    expect(out).toEqual(tags);
    expect(sameTags(out, tags)).toBe(true);
  });

  it('writes an edited value where its tag stood', () => {
    expect(edited(['mine', 'step:a', 'image:x', 'other'], () => ({ image: 'y' }))).toEqual(['mine', 'step:a', 'image:y', 'other']);
    expect(edited(['skip', 'keep-me'], () => ({ role: 'step', name: 'double' }))).toEqual(['step:double', 'keep-me']);
    expect(edited(['keep-me'], () => ({ role: 'step', name: 'd', prev: ['a'] }))).toEqual(['step:d', 'keep-me', 'prev:a']);
    expect(edited(['step:a', 'cache:false', 'x'], () => ({ cache: true }))).toEqual(['step:a', 'x']);
  });

  it('writes nothing for a cell that continues the step above, and a role alone', () => {
    expect(serializeTags(emptyTags())).toEqual([]);
    expect(serializeTags({ ...emptyTags(), role: 'imports', prev: ['x'], image: 'i' })).toEqual(['imports']);
    expect(serializeTags({ ...emptyTags(), role: 'skip', source: ['keep'] })).toEqual(['skip', 'keep']);
  });

  it('trims, drops empty limits and duplicate prevs, writes cache only when off', () => {
    const t = { ...emptyTags(), role: 'step' as const, name: ' b ', prev: ['a', ' a', ''], limits: { cpu: ' ', memory: '1Gi' } };
    expect(serializeTags(t)).toEqual(['step:b', 'prev:a', 'limit:memory:1Gi']);
  });

  it('changing the role keeps the other tags', () => {
    const t = parseTags(['step:a', 'prev:b', 'mytag']);
    expect(serializeTags({ ...t, role: 'continue' })).toEqual(['mytag']);
  });
});

// The reviewer's table: each cell's tags, and what the first edit used to write.
describe('never loses or rewrites a tag', () => {
  it("['imports', 'skip']: a conflict naming both tags, written back unchanged", () => {
    const t = parseTags(['imports', 'skip']);
    expect(t.conflicts.join(' ')).toMatch(/"imports".*"skip"/);
    expect(serializeTags({ ...t, role: 'functions' })).toEqual(['imports', 'skip']);
  });

  it("['skip', 'step:a']: a conflict, unchanged", () => {
    const t = parseTags(['skip', 'step:a']);
    expect(t.conflicts.join(' ')).toMatch(/"skip".*"step:a"/);
    expect(serializeTags({ ...t, name: 'b' })).toEqual(['skip', 'step:a']);
  });

  it("['step:a', 'step:b']: two step names, unchanged", () => {
    const t = parseTags(['step:a', 'step:b']);
    expect(t.conflicts.join(' ')).toMatch(/two step names: "step:a", "step:b"/);
    expect(serializeTags({ ...t, image: 'img' })).toEqual(['step:a', 'step:b']);
  });

  it('[42, "step:a"]: the non-string stays, in place', () => {
    expect(parseTags([42, 'step:a']).conflicts).toEqual([]);
    expect(edited([42, 'step:a'], () => ({ name: 'b' }))).toEqual([42, 'step:b']);
    expect(edited([42, 'step:a'], () => ({ image: 'img:1' }))).toEqual([42, 'step:a', 'image:img:1']);
  });

  it("['step:a', 'cache:true']: the explicit cache:true stays", () => {
    expect(serializeTags(parseTags(['step:a', 'cache:true']))).toEqual(['step:a', 'cache:true']);
    expect(edited(['step:a', 'cache:true'], () => ({ name: 'b' }))).toEqual(['step:b', 'cache:true']);
    expect(edited(['step:a', 'cache:TRUE'], () => ({ cache: false }))).toEqual(['step:a', 'cache:false']);
  });

  it("['block:prep', …]: block: stays block:, renamed as block:", () => {
    const tags = ['block:prep', 'prev:load', 'annotation:x'];
    expect(serializeTags(parseTags(tags))).toEqual(tags);
    expect(edited(tags, () => ({ limits: { cpu: '2' } }))).toEqual([...tags, 'limit:cpu:2']);
    expect(edited(tags, () => ({ name: 'clean' }))).toEqual(['block:clean', 'prev:load', 'annotation:x']);
  });

  it('keeps duplicates and spelling of unchanged tags', () => {
    const tags = ['prev:a', ' step:b ', 'prev:a', 'cache:False', 'limit:ephemeral-storage:2Gi'];
    expect(serializeTags(parseTags(tags))).toEqual(tags);
    expect(edited(tags, () => ({ image: 'i' }))).toEqual([...tags, 'image:i']);
  });

  it('reports what tags.py accepts but the form cannot show as one value', () => {
    expect(parseTags(['step:a', 'image:x', 'image:y']).conflicts.join(' ')).toMatch(/two images: "image:x", "image:y"/);
    expect(parseTags(['step:a', 'limit:cpu:1', 'limit:cpu:2']).conflicts.join(' ')).toMatch(/two cpu limits/);
    expect(parseTags(['step:a', 'cache:true', 'cache:false']).conflicts.join(' ')).toMatch(/"cache:true" and "cache:false"/);
    expect(parseTags(['step:a', 'limit:memory:2GB']).conflicts.join(' ')).toMatch(/Malformed tag "limit:memory:2GB"/);
    expect(parseTags('step:x').conflicts.join(' ')).toMatch(/not a list/);
    expect(serializeTags(parseTags('step:x'))).toEqual([]);
  });

  it('round-trips every valid example exactly', () => {
    for (const tags of examples.valid) {
      const t = parseTags(tags);
      if (!t.conflicts.length) {
        expect(serializeTags(t)).toEqual(tags);
      }
    }
  });
});

describe('tag-examples.json (also checked against kfjupyter/pipelines/tags.py)', () => {
  it.each(examples.valid.map(t => [JSON.stringify(t), t]))('valid: %s', (_, tags) => {
    expect(tagErrors(tags)).toEqual([]);
  });
  it.each(examples.invalid.map(t => [JSON.stringify(t), t]))('invalid: %s', (_, tags) => {
    expect(tagErrors(tags).length).toBeGreaterThan(0);
    expect(parseTags(tags).conflicts.length).toBeGreaterThan(0);
  });
});

describe('checks', () => {
  const step = (name: string, prev: string[] = []) => ({ ...emptyTags(), role: 'step' as const, name, prev });
  it('refuses a step without a valid name or after itself', () => {
    expect(tagProblem(step(''))).toMatch(/needs a name/);
    expect(tagProblem(step('Train'))).toMatch(/not a step name/);
    expect(tagProblem(step('-a'))).toMatch(/not a step name/);
    expect(tagProblem(step('a', ['a']))).toMatch(/after itself/);
    expect(tagProblem(step('train-2_x'))).toBe('');
    expect(tagProblem({ ...emptyTags(), role: 'imports' })).toBe('');
  });

  it('refuses an image or a limit the compiler would reject (the tags.py patterns)', () => {
    const s = step('a');
    expect(tagProblem({ ...s, image: 'my image' })).toMatch(/not an image reference/);
    expect(tagProblem({ ...s, image: 'python:3.11' })).toBe('');
    expect(tagProblem({ ...s, limits: { memory: '2GB' } })).toMatch(/Memory limit "2GB" is not a Kubernetes quantity/);
    expect(tagProblem({ ...s, limits: { cpu: 'two' } })).toMatch(/CPU limit/);
    expect(tagProblem({ ...s, limits: { 'nvidia.com/gpu': '1 ' } })).toBe('');
    expect(tagProblem({ ...s, limits: { memory: '1.5Gi', cpu: '500m', 'nvidia.com/gpu': '2' } })).toBe('');
    // every form value the check passes makes a tag the grammar takes
    for (const v of ['2', '500m', '1Gi', '1e3', '4Ki']) {
      expect(TAG_RE.limit.test(`limit:memory:${v}`)).toBe(true);
    }
  });

  it('warns about a name another cell starts', () => {
    expect(tagWarning(step('a'), ['a', 'b'])).toMatch(/also starts step "a"/);
    expect(tagWarning(step('c'), ['a', 'b'])).toBe('');
  });
});

describe('notebook-wide', () => {
  const cells = [['imports'], null, ['step:load'], [], ['step:train', 'prev:load'], ['skip'], [], ['block:eval']];
  it('lists the step names in order', () => {
    expect(stepNames(cells)).toEqual(['load', 'train', 'eval']);
  });
  it('tells which step each cell belongs to', () => {
    expect(cellSteps(cells)).toEqual([null, null, 'load', 'load', 'train', null, null, 'eval']);
  });
});
