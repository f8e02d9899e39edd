import {
  cellSteps,
  closeMatch,
  emptyTags,
  KIND_TAGS,
  parseTags,
  sameTags,
  serializeTags,
  stepNames,
  tagErrors,
  tagProblem,
  tagWarning,
  TAG_EXAMPLES,
  TAG_RE,
  writeProblem
} from '../src/pipelinetags';

declare const require: (path: string) => any;
const examples: { valid: unknown[][]; invalid: unknown[][] } = require('./tag-examples.json');

/** The tags the form writes after `edit` on a cell whose tags are `tags`. */
const edited = (tags: unknown[], edit: (t: ReturnType<typeof parseTags>) => Partial<ReturnType<typeof parseTags>>) => {
  const t = parseTags(tags);
  return serializeTags({ ...t, ...edit(t) });
};

describe('parseTags', () => {
  it('reads a step with every option (Kale 2.3 vocabulary)', () => {
    const t = parseTags([
      'step:train',
      'prev:load',
      'prev:clean',
      'image:python:3.11',
      'limit:cpu:2',
      'limit:memory:1Gi',
      'limit:nvidia.com/gpu:1',
      'annotation:team.io/owner:ana',
      'label:team:vision',
      'secret:db-creds:password:DB_PASSWORD',
      'cache:disabled',
      'report:enabled'
    ]);
    expect(t).toEqual({
      role: 'step',
      name: 'train',
      prev: ['load', 'clean'],
      image: 'python:3.11',
      limits: { cpu: '2', memory: '1Gi', 'nvidia.com/gpu': '1' },
      cache: false,
      report: true,
      annotations: [['team.io/owner', 'ana']],
      labels: [['team', 'vision']],
      secrets: [['db-creds', 'password', 'DB_PASSWORD']],
      other: [],
      unread: [],
      conflicts: [],
      source: expect.any(Array)
    });
  });

  it('takes block: as step:, the role tags, Kale names and notebook:', () => {
    expect(parseTags(['block:prep']).name).toBe('prep');
    expect(parseTags(['block:prep']).role).toBe('step');
    for (const role of ['imports', 'functions', 'pipeline-parameters', 'pipeline-metrics', 'skip']) {
      expect(parseTags([role]).role).toBe(role);
    }
    expect(parseTags(['step:_private']).name).toBe('_private');
    expect(parseTags(['step:load_']).name).toBe('load_');
    expect(parseTags(['notebook:features'])).toMatchObject({ role: 'notebook', name: 'features', conflicts: [] });
    expect(parseTags([]).role).toBe('continue');
    expect(parseTags(undefined).role).toBe('continue');
    expect(parseTags('step:x').role).toBe('continue'); // not a list
  });

  it('keeps the foreign tags and non-strings, in order', () => {
    const tags = ['parameters', 'step:a', 'hide-input'];
    const t = parseTags(tags);
    expect(t.other).toEqual(['parameters', 'hide-input']);
    expect(t.name).toBe('a');
    expect(t.conflicts).toEqual([]);
    expect(serializeTags(t)).toEqual(tags);
  });

  it('reads cache:true|false in any case, enabled|disabled, and an unknown limit key', () => {
    const t = parseTags(['step:a', 'cache:TRUE', 'limit:ephemeral-storage:2Gi']);
    expect(t.cache).toBe(true);
    expect(t.limits).toEqual({ 'ephemeral-storage': '2Gi' });
    expect(parseTags(['step:a', 'cache:False']).cache).toBe(false);
    expect(parseTags(['step:a', 'cache:enabled']).cache).toBe(true);
    expect(parseTags(['step:a', 'cache:disabled']).cache).toBe(false);
    expect(parseTags(['step:a']).report).toBeNull();
  });

  it('the first kind tag decides the cell; the tags after it are not read', () => {
    const t = parseTags(['skip', 'step:a', 'prev:b', 'hide-input']);
    expect(t).toMatchObject({ role: 'skip', conflicts: [], unread: ['step:a', 'prev:b'] });
    // the skipped step's values stay in the form: making it a step again brings them back
    expect(t).toMatchObject({ name: 'a', prev: ['b'] });
    expect(parseTags(['imports', 'skip'])).toMatchObject({ role: 'imports', conflicts: [], unread: ['skip'] });
    expect(parseTags(['skip', 'mytag']).conflicts).toEqual([]);
    expect(parseTags(['step:a', 'skip']).role).toBe('skip');
    // tags before it are checked
    expect(parseTags(['mytag', 'skip']).conflicts.join(' ')).toMatch(/Unknown tag "mytag"/);
    expect(parseTags(['step:Bad', 'skip']).conflicts.join(' ')).toMatch(/Invalid step name "Bad"/);
  });

  it('step: with no name is an untagged cell, its options not read', () => {
    expect(parseTags(['step:', 'prev:a', 'image:x'])).toMatchObject({ role: 'continue', unread: ['prev:a', 'image:x'], conflicts: [] });
    expect(parseTags(['block:']).role).toBe('continue');
  });
});

describe('tagErrors (the messages of tags.py)', () => {
  const first = (tags: unknown[]): string => tagErrors(tags)[0] ?? '';
  it('names an unknown tag, with a did-you-mean', () => {
    expect(first(['stpe:x'])).toMatch(/^Unknown tag "stpe:x"; did you mean "step:x"\? \(pipeline tags: imports, .*notebook:…\)\.$/);
    expect(first(['Imports'])).toMatch(/did you mean "imports"/);
    expect(first(['mytag'])).toMatch(/^Unknown tag "mytag" \(pipeline tags:/);
    expect(first(['step:a', 'skip-me'])).toMatch(/^Unknown tag "skip-me" \(/);
    expect(first(['foo:bar'])).toMatch(/Unknown tag "foo:bar"/);
  });
  it('says what a parameterised tag looks like', () => {
    expect(first(['step:a', 'cache:no'])).toBe('Malformed tag "cache:no" (expected e.g. cache:disabled).');
    expect(first(['step:a', 'secret:db:key'])).toMatch(/Malformed tag "secret:db:key" \(expected e.g. secret:db-creds:password:DB_PASSWORD\)/);
    expect(first(['notebook:'])).toMatch(/Malformed tag "notebook:"/);
    expect(first(['step:a', 'limit:cpu:-1'])).toMatch(/Malformed tag "limit:cpu:-1"/);
  });
  it('checks limits for a Kubernetes resource and quantity', () => {
    expect(first(['step:a', 'limit:gpu:1'])).toMatch(/"gpu" is not a Kubernetes resource/);
    expect(first(['step:a', 'limit:memory:2GB'])).toMatch(/"2GB" is not a Kubernetes quantity/);
  });
  it('refuses non-strings, two step tags, options without a step', () => {
    expect(first([42, 'step:a'])).toBe('A tag must be a string, not int 42.');
    expect(first([null])).toMatch(/not NoneType null/);
    expect(first(['step:a', 'block:a'])).toBe('The cell has 2 step tags ("step:a", "block:a"); a cell belongs to one step.');
    expect(first(['step:a', 'step:a'])).toMatch(/2 step tags/);
    expect(first(['annotation:x:y'])).toBe('Tag "annotation:x:y" needs a step:NAME tag on the same cell.');
    expect(first(['notebook:sub', 'prev:a'])).toMatch(/notebook:sub cell takes no step tags \("prev:a"\)/);
    expect(first(['step:a b'])).toMatch(/Invalid step name "a b" in tag "step:a b"/);
  });
  it('ignores the foreign tags and what follows the kind tag', () => {
    expect(tagErrors(['parameters', 'injected-parameters', 'remove-output', 'hide_input', 'margin'])).toEqual([]);
    expect(tagErrors(['skip', 42, 'mytag', 'step:a', 'step:b'])).toEqual([]);
  });
  it('did-you-mean is difflib.get_close_matches(n=1, cutoff=0.75)', () => {
    const vocab = [...KIND_TAGS, ...Object.keys(TAG_EXAMPLES)];
    // what Python's difflib answers for these
    const table: Record<string, string | null> = {
      stpe: 'step', 'skip-me': null, imprts: 'imports', lable: 'label', secert: 'secret', anotation: 'annotation',
      cach: 'cache', reprot: 'report', 'pipeline-param': 'pipeline-parameters', pipeline_metrics: 'pipeline-metrics',
      img: 'image', limits: 'limit', mytag: null, parameters: null, sk: null, '': null
    };
    for (const [word, want] of Object.entries(table)) {
      expect([word, closeMatch(word, vocab)]).toEqual([word, want]);
    }
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
    expect(edited(['hide-input', 'step:a', 'image:x', 'parameters'], () => ({ image: 'y' }))).toEqual([
      'hide-input',
      'step:a',
      'image:y',
      'parameters'
    ]);
    expect(edited(['skip', 'hide-input'], () => ({ role: 'step', name: 'double' }))).toEqual(['step:double', 'hide-input']);
    expect(edited(['hide-input'], () => ({ role: 'step', name: 'd', prev: ['a'] }))).toEqual(['step:d', 'hide-input', 'prev:a']);
    expect(edited(['step:a', 'cache:false', 'parameters'], () => ({ cache: true }))).toEqual(['step:a', 'parameters']);
  });

  it('writes a disabled cache as cache:disabled (Kale 2.3), keeps a cache:false the user wrote', () => {
    expect(edited(['step:a'], () => ({ cache: false }))).toEqual(['step:a', 'cache:disabled']);
    expect(edited(['step:a', 'cache:TRUE'], () => ({ cache: false }))).toEqual(['step:a', 'cache:disabled']);
    expect(edited(['step:a', 'cache:false'], () => ({ image: 'i' }))).toEqual(['step:a', 'cache:false', 'image:i']);
    expect(edited(['step:a', 'cache:enabled'], () => ({ name: 'b' }))).toEqual(['step:b', 'cache:enabled']);
    expect(edited(['step:a', 'cache:disabled'], () => ({ cache: true }))).toEqual(['step:a']);
  });

  it('writes annotations, labels and secrets', () => {
    expect(
      edited(['step:a'], () => ({
        annotations: [['team.io/owner', 'ana']],
        labels: [['team', ' vision ']],
        secrets: [['db-creds', 'password', 'DB_PASSWORD']]
      }))
    ).toEqual(['step:a', 'annotation:team.io/owner:ana', 'label:team:vision', 'secret:db-creds:password:DB_PASSWORD']);
    const tags = ['step:a', 'annotation:x:1', 'label:l:v', 'secret:s:k:E'];
    expect(edited(tags, () => ({ annotations: [['x', '2']] }))).toEqual(['step:a', 'annotation:x:2', 'label:l:v', 'secret:s:k:E']);
    expect(edited(tags, () => ({ labels: [] }))).toEqual(['step:a', 'annotation:x:1', 'secret:s:k:E']);
    expect(edited(tags, () => ({ secrets: [['s', 'other', 'E']] }))).toEqual(['step:a', 'annotation:x:1', 'label:l:v', 'secret:s:other:E']);
    // blank rows (just added in the form) write nothing
    expect(edited(tags, t => ({ annotations: [...t.annotations, ['', '']], secrets: [...t.secrets, ['', '', '']] }))).toEqual(tags);
    // an annotation value may be empty, or hold ':'
    expect(edited(['step:a'], () => ({ annotations: [['x', ''], ['y', 'a:b']] }))).toEqual(['step:a', 'annotation:x:', 'annotation:y:a:b']);
  });

  it('keeps report: (no field in the form)', () => {
    expect(edited(['step:a', 'report:disabled'], () => ({ image: 'i' }))).toEqual(['step:a', 'report:disabled', 'image:i']);
  });

  it('writes nothing for a cell that continues the block above, and a role alone', () => {
    expect(serializeTags(emptyTags())).toEqual([]);
    expect(serializeTags({ ...emptyTags(), role: 'imports', prev: ['x'], image: 'i' })).toEqual(['imports']);
    expect(serializeTags({ ...emptyTags(), role: 'skip', source: ['hide-input'] })).toEqual(['skip', 'hide-input']);
  });

  it('trims, drops empty limits and duplicate prevs, writes cache only when off', () => {
    const t = { ...emptyTags(), role: 'step' as const, name: ' b ', prev: ['a', ' a', ''], limits: { cpu: ' ', memory: '1Gi' } };
    expect(serializeTags(t)).toEqual(['step:b', 'prev:a', 'limit:memory:1Gi']);
  });

  it('changing the role to "continues" keeps the foreign tags', () => {
    const t = parseTags(['step:a', 'prev:b', 'hide-input']);
    expect(serializeTags({ ...t, role: 'continue' })).toEqual(['hide-input']);
  });

  it('skipping a step keeps its tags (not read after skip), un-skipping brings them back', () => {
    const step = ['step:a', 'prev:b', 'limit:cpu:2'];
    const skipped = edited(step, () => ({ role: 'skip' }));
    expect(skipped).toEqual(['skip', ...step]);
    expect(tagErrors(skipped)).toEqual([]);
    expect(edited(skipped, () => ({ role: 'step' }))).toEqual(step);
    // another kind replaces the kind tag where it is; the rest stays
    expect(edited(['imports', 'skip'], () => ({ role: 'functions' }))).toEqual(['functions', 'skip']);
    expect(edited(['hide-input', 'skip', 'step:a'], () => ({ role: 'imports' }))).toEqual(['hide-input', 'imports', 'step:a']);
  });

  it('a step cell gets one step tag: the kind tags and a second step tag go', () => {
    expect(edited(['skip', ' block:a ', 'prev:b'], () => ({ role: 'step' }))).toEqual([' block:a ', 'prev:b']);
    expect(edited(['skip', 'step:a'], () => ({ role: 'step', name: 'c' }))).toEqual(['step:c']);
    expect(edited(['step:', 'prev:a'], () => ({ role: 'step', name: 'c' }))).toEqual(['step:c']);
  });
});

describe('writeProblem', () => {
  it('refuses to write tags the compiler would refuse (a tag skip kept from being read)', () => {
    const t = parseTags(['skip', 'mytag']);
    expect(t.conflicts).toEqual([]);
    expect(writeProblem({ ...t, role: 'step', name: 'a' })).toMatch(/would not compile: Unknown tag "mytag"/);
    expect(writeProblem({ ...t, role: 'continue' })).toMatch(/Unknown tag "mytag"/);
    expect(writeProblem({ ...t, role: 'imports' })).toBe('');
    expect(writeProblem({ ...parseTags(['step:a']), image: 'i' })).toBe('');
    expect(writeProblem({ ...parseTags(['step:a']), name: 'B' })).toMatch(/not a step name/);
  });
});

// The reviewer's table: each cell's tags, and what the first edit used to write.
describe('never loses or rewrites a tag', () => {
  it("['imports', 'skip']: an imports cell (the first kind tag decides)", () => {
    const t = parseTags(['imports', 'skip']);
    expect(t.conflicts).toEqual([]);
    expect(t.role).toBe('imports');
    expect(serializeTags(t)).toEqual(['imports', 'skip']);
  });

  it("['skip', 'step:a']: a skip cell, unchanged until edited", () => {
    const t = parseTags(['skip', 'step:a']);
    expect(t.role).toBe('skip');
    expect(serializeTags({ ...t, name: 'b' })).toEqual(['skip', 'step:a']); // a skip cell's name is not written
  });

  it("['step:a', 'step:b']: two step tags, unchanged", () => {
    const t = parseTags(['step:a', 'step:b']);
    expect(t.conflicts.join(' ')).toMatch(/2 step tags \("step:a", "step:b"\)/);
    expect(serializeTags({ ...t, image: 'img' })).toEqual(['step:a', 'step:b']);
  });

  it('[42, "step:a"]: a non-string is an error, the tags stay', () => {
    const t = parseTags([42, 'step:a']);
    expect(t.conflicts.join(' ')).toMatch(/must be a string, not int 42/);
    expect(serializeTags({ ...t, name: 'b' })).toEqual([42, 'step:a']);
  });

  it('tags with an error are never edited, whatever the form holds', () => {
    expect(serializeTags({ ...emptyTags(), role: 'skip' }, ['mytag'])).toEqual(['mytag']);
    expect(serializeTags({ ...emptyTags(), role: 'step', name: 'a' }, ['step:a', 'cache:no'])).toEqual(['step:a', 'cache:no']);
  });

  it("['step:a', 'cache:true']: the explicit cache:true stays", () => {
    expect(serializeTags(parseTags(['step:a', 'cache:true']))).toEqual(['step:a', 'cache:true']);
    expect(edited(['step:a', 'cache:true'], () => ({ name: 'b' }))).toEqual(['step:b', 'cache:true']);
  });

  it("['block:prep', …]: block: stays block:, renamed as block:", () => {
    const tags = ['block:prep', 'prev:load', 'annotation:x:y'];
    expect(serializeTags(parseTags(tags))).toEqual(tags);
    expect(edited(tags, () => ({ limits: { cpu: '2' } }))).toEqual([...tags, 'limit:cpu:2']);
    expect(edited(tags, () => ({ name: 'clean' }))).toEqual(['block:clean', 'prev:load', 'annotation:x:y']);
  });

  it('keeps duplicates and spelling of unchanged tags', () => {
    const tags = ['prev:a', ' step:b ', 'prev:a', 'cache:False', 'limit:ephemeral-storage:2Gi'];
    expect(serializeTags(parseTags(tags))).toEqual(tags);
    expect(edited(tags, () => ({ image: 'i' }))).toEqual([...tags, 'image:i']);
  });

  it('reports what tags.py accepts but the form cannot show as one value', () => {
    expect(parseTags(['step:a', 'image:x', 'image:y']).conflicts.join(' ')).toMatch(/two images: "image:x", "image:y"/);
    expect(parseTags(['step:a', 'limit:cpu:1', 'limit:cpu:2']).conflicts.join(' ')).toMatch(/two cpu limits/);
    expect(parseTags(['step:a', 'cache:true', 'cache:disabled']).conflicts.join(' ')).toMatch(/"cache:true" and "cache:disabled"/);
    expect(parseTags(['step:a', 'cache:true', 'cache:enabled']).conflicts).toEqual([]); // the same value
    expect(parseTags(['step:a', 'annotation:x:1', 'annotation:x:2']).conflicts.join(' ')).toMatch(/two values of the annotation x/);
    expect(parseTags(['step:a', 'secret:s:k:E', 'secret:t:k:E']).conflicts.join(' ')).toMatch(/env var E from two secrets/);
    expect(parseTags(['step:a', 'limit:memory:2GB']).conflicts.join(' ')).toMatch(/"2GB" is not a Kubernetes quantity/);
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
    expect(tagProblem(step('_private'))).toBe('');
    expect(tagProblem(step('load_'))).toBe('');
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
      expect(tagErrors(serializeTags({ ...s, limits: { memory: v } }))).toEqual([]);
    }
  });

  it('refuses an annotation, a label or a secret the compiler would reject', () => {
    const s = step('a');
    expect(tagProblem({ ...s, annotations: [['team.io/owner', 'ana']], labels: [['team', '']] })).toBe('');
    expect(tagProblem({ ...s, annotations: [['', 'ana']] })).toMatch(/needs a key/);
    expect(tagProblem({ ...s, labels: [['-x', 'v']] })).toMatch(/not a Kubernetes label key/);
    expect(tagProblem({ ...s, labels: [['x', '1'], ['x', '2']] })).toMatch(/Two labels "x"/);
    expect(tagProblem({ ...s, secrets: [['db-creds', 'password', 'DB_PASSWORD']] })).toBe('');
    expect(tagProblem({ ...s, secrets: [['', '', '']] })).toBe('');
    expect(tagProblem({ ...s, secrets: [['db', '', 'E']] })).toMatch(/needs the Secret's name, the key in it and the env var/);
    expect(tagProblem({ ...s, secrets: [['Bad_Name', 'k', 'E']] })).toMatch(/not a secret tag/);
    expect(tagProblem({ ...s, secrets: [['a', 'k', 'E'], ['b', 'k', 'E']] })).toMatch(/Two secrets set the env var E/);
  });

  it('warns about a name another cell starts', () => {
    expect(tagWarning(step('a'), ['a', 'b'])).toMatch(/also starts step "a": this cell's code is added to that step/);
    expect(tagWarning(step('c'), ['a', 'b'])).toBe('');
  });
});

describe('notebook-wide', () => {
  const cells = [['imports'], null, ['step:load'], [], ['step:train', 'prev:load'], ['skip'], [], ['block:eval'], ['pipeline-metrics'], []];
  it('lists the step names in order', () => {
    expect(stepNames(cells)).toEqual(['load', 'train', 'eval']);
  });
  it('tells which step each cell belongs to (an untagged cell after skip continues the step before it)', () => {
    expect(cellSteps(cells)).toEqual([null, null, 'load', 'load', 'train', null, 'train', 'eval', null, null]);
    expect(cellSteps([[], ['step:a'], ['step:'], ['skip', 'step:b'], []])).toEqual([null, 'a', 'a', null, 'a']);
  });
});
