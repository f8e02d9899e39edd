import {
  cellSteps,
  emptyTags,
  parseTags,
  sameTags,
  serializeTags,
  stepNames,
  tagProblem,
  tagWarning
} from '../src/pipelinetags';

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
      other: []
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

  it('keeps the tags that are not pipeline tags, in order', () => {
    const t = parseTags(['parameters', 'step:a', 'annotation:x:y', 42, 'hide-input']);
    expect(t.other).toEqual(['parameters', 'annotation:x:y', 'hide-input']);
    expect(t.name).toBe('a');
  });

  it('reads cache:true and an unknown limit key', () => {
    const t = parseTags(['step:a', 'cache:TRUE', 'limit:ephemeral-storage:2Gi']);
    expect(t.cache).toBe(true);
    expect(t.limits).toEqual({ 'ephemeral-storage': '2Gi' });
  });
});

describe('serializeTags', () => {
  it('round-trips a step, other tags after the pipeline tags', () => {
    const tags = ['parameters', 'step:train', 'prev:load', 'image:img:1', 'limit:cpu:2', 'cache:false'];
    const out = serializeTags(parseTags(tags));
    expect(out).toEqual(['step:train', 'prev:load', 'image:img:1', 'limit:cpu:2', 'cache:false', 'parameters']);
    expect(sameTags(out, tags)).toBe(true);
  });

  it('writes nothing for a cell that continues the step above, and a role alone', () => {
    expect(serializeTags(emptyTags())).toEqual([]);
    expect(serializeTags({ ...emptyTags(), role: 'imports', prev: ['x'], image: 'i' })).toEqual(['imports']);
    expect(serializeTags({ ...emptyTags(), role: 'skip', other: ['keep'] })).toEqual(['skip', 'keep']);
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
