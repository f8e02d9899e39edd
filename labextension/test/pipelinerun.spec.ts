import { formatDuration } from '../src/format';
import { IPipeline, IPipelineRun, IRunStep } from '../src/pipelineapi';
import {
  backendLabel,
  cacheText,
  cellBadges,
  displayStatus,
  formatBytes,
  outputText,
  RUN_BACKENDS,
  STATUS_INFO,
  statusInfo,
  paramText,
  restPath,
  runActive,
  runMatchesPipeline,
  sameNotebook,
  runParameters,
  RUNNING_LOG_TAIL,
  stepChannel,
  stepLogRead,
  stepSeconds,
  stepStates
} from '../src/pipelinerun';

const step = (patch: Partial<IRunStep>): IRunStep => ({
  name: 's',
  status: 'Pending',
  cached: false,
  cache_reason: '',
  started_at: null,
  finished_at: null,
  duration_s: null,
  error: null,
  ...patch
});

const run = (status: string, steps: IRunStep[]): IPipelineRun =>
  ({ id: 'r', name: 'p', kind: 'pipeline', status, steps } as unknown as IPipelineRun);

describe('a run as the panel shows it', () => {
  it('is active until the run and its steps end', () => {
    expect(runActive(null)).toBe(false);
    expect(runActive(run('Running', []))).toBe(true);
    expect(runActive(run('Succeeded', [step({ status: 'Succeeded' })]))).toBe(false);
    expect(runActive(run('Cancelled', [step({ status: 'Running' })]))).toBe(true); // the step still stops
  });

  it('shows a cached step as Cached, with its reason', () => {
    const s = step({ status: 'Succeeded', cached: true, cache_reason: 'same code, inputs and parameters as run r1' });
    expect(displayStatus(s)).toBe('Cached');
    expect(cacheText(s)).toEqual({ label: 'cached', reason: 'same code, inputs and parameters as run r1' });
    const ran = step({ status: 'Succeeded', cache_reason: 'code changed' });
    expect(displayStatus(ran)).toBe('Succeeded');
    expect(cacheText(ran)).toEqual({ label: 'ran', reason: 'code changed' });
    expect(cacheText(step({ status: 'Pending' }))).toEqual({ label: '', reason: '' });
    expect(stepStates(run('Succeeded', [{ ...s, name: 'a' }, { ...ran, name: 'b' }]))).toEqual({ a: 'Cached', b: 'Succeeded' });
  });

  it('ticks a running step on the client and takes the server figure when done', () => {
    const start = '2026-11-25T10:00:00+00:00';
    const now = Date.parse(start) + 2500;
    expect(stepSeconds(step({ status: 'Running', started_at: start }), now)).toBeCloseTo(2.5);
    expect(stepSeconds(step({ status: 'Succeeded', started_at: start, duration_s: 1.25 }), now)).toBe(1.25);
    expect(stepSeconds(step({ status: 'Pending' }), now)).toBeNull();
    expect(formatDuration(1.34)).toBe('1.3s');
    expect(formatDuration(75)).toBe('1m 15s');
    expect(formatDuration(null)).toBe('–');
  });
});

describe("a step's log", () => {
  it("is the run's channel step/NAME", () => {
    expect(stepChannel(step({ name: 'prep', channel: 'step/prep' }))).toBe('step/prep');
    expect(stepChannel(step({ name: 'train' }))).toBe('step/train'); // a server that does not say
  });

  it("follows a running step from its tail, and reads another step's whole log once", () => {
    expect(stepLogRead(step({ status: 'Running' }))).toEqual({ follow: true, tail: RUNNING_LOG_TAIL });
    expect(RUNNING_LOG_TAIL).toBe(2000);
    for (const status of ['Pending', 'Succeeded', 'Failed', 'Cancelled', 'Skipped', 'Cached']) {
      expect(stepLogRead(step({ status }))).toEqual({ follow: false, tail: 0 });
    }
  });
});

describe('parameters of the next run', () => {
  const pipeline = {
    parameters: {
      lr: { name: 'lr', type: 'float', default: 0.1 },
      name: { name: 'name', type: 'str', default: 'a "b"' },
      layers: { name: 'layers', type: 'json', default: [64, 32] },
      on: { name: 'on', type: 'bool', default: true }
    }
  } as unknown as IPipeline;

  it('shows the defaults as text', () => {
    expect(paramText(0.1, 'float')).toBe('0.1');
    expect(paramText('a "b"', 'str')).toBe('a "b"');
    expect(paramText([64, 32], 'json')).toBe('[64,32]');
    expect(paramText(true, 'bool')).toBe('true');
  });

  it('sends only the values changed, as typed, and none for unknown names', () => {
    expect(runParameters(pipeline, {})).toEqual({});
    expect(runParameters(pipeline, { lr: '0.1', name: 'x', layers: '[64,32]', ghost: '1' })).toEqual({ name: 'x' });
    expect(runParameters(pipeline, { lr: '0.5', on: 'false' })).toEqual({ lr: '0.5', on: 'false' });
    expect(runParameters(null, { lr: '0.5' })).toEqual({});
  });
});

describe('which run, which notebook', () => {
  const pipe = (programs: Record<string, string>): IPipeline =>
    ({
      name: 'p',
      steps: Object.fromEntries(Object.entries(programs).map(([name, program]) => [name, { name, program } as any])),
      edges: [],
      parameters: {},
      notebook: null,
      metrics: []
    }) as IPipeline;
  const runOf = (p: IPipeline): IPipelineRun => ({ id: 'r', pipeline: p, steps: [] }) as unknown as IPipelineRun;

  it('colours a compiled pipeline only from a run of the same steps and programs', () => {
    const before = pipe({ a: 'x = 1', b: 'print(x)' });
    expect(runMatchesPipeline(runOf(before), before)).toBe(true);
    expect(runMatchesPipeline(runOf(before), pipe({ b: 'print(x)', a: 'x = 1' }))).toBe(true);
    expect(runMatchesPipeline(runOf(before), pipe({ a: 'x = 2', b: 'print(x)' }))).toBe(false);
    expect(runMatchesPipeline(runOf(before), pipe({ a: 'x = 1', c: 'print(x)' }))).toBe(false);
    expect(runMatchesPipeline(runOf(before), pipe({ a: 'x = 1' }))).toBe(false);
    expect(runMatchesPipeline(null, before)).toBe(false);
  });

  it('drops the drive prefix of a path (RTC)', () => {
    expect(restPath('RTC:sub/nb.ipynb')).toBe('sub/nb.ipynb');
    expect(restPath('sub/nb.ipynb')).toBe('sub/nb.ipynb');
    expect(restPath('a/b:c.ipynb')).toBe('a/b:c.ipynb');
    expect(restPath('RTC:sub/nb.ipynb', 'sub/nb.ipynb')).toBe('sub/nb.ipynb');
  });

  it("matches a job's notebook, relative or absolute", () => {
    expect(sameNotebook('sub/nb.ipynb', 'sub/nb.ipynb')).toBe(true);
    expect(sameNotebook('/home/u/work/sub/nb.ipynb', 'sub/nb.ipynb')).toBe(true);
    expect(sameNotebook('/home/u/work/other/nb.ipynb', 'sub/nb.ipynb')).toBe(false);
    expect(sameNotebook('/home/u/work/xnb.ipynb', 'nb.ipynb')).toBe(false);
    expect(sameNotebook(null, 'nb.ipynb')).toBe(false);
  });
});

describe('status icons, backends, cell badges, values', () => {
  it('gives every status its own icon and meaning; Skipped and Cancelled differ', () => {
    const shown = ['Pending', 'Running', 'Succeeded', 'Cached', 'Failed', 'Skipped', 'Cancelled'];
    const icons = shown.map((s) => statusInfo(s).icon);
    expect(new Set(icons).size).toBe(shown.length);
    expect(statusInfo('Skipped').icon).not.toBe(statusInfo('Cancelled').icon);
    expect(statusInfo('Skipped').meaning).toMatch(/failed or was cancelled/);
    expect(STATUS_INFO.every(s => s.meaning.length > 5)).toBe(true);
    expect(statusInfo('Weird')).toEqual({ status: 'Weird', icon: '•', meaning: 'Weird' });
  });

  it('names the backends as the user knows them', () => {
    expect(RUN_BACKENDS.map(b => b.value)).toEqual(['local', 'kubernetes']);
    expect(backendLabel('kubernetes')).toBe('Kubeflow Pipelines');
    expect(backendLabel('local')).toBe('local');
    expect(backendLabel(undefined)).toBe('');
  });

  it('badges each cell of a step with the step and its status', () => {
    const out = cellBadges([null, 'load', 'load', null, 'train'], { load: 'Succeeded' });
    expect(out[0]).toBeNull();
    expect(out[1]).toEqual({ step: 'load', status: 'Succeeded', label: 'step load · ✓ Succeeded' });
    expect(out[2]!.step).toBe('load');
    expect(out[4]).toEqual({ step: 'train', status: '', label: 'step train' });
  });

  it('describes a handed-on value', () => {
    expect(outputText({ type: 'numpy.ndarray', size: 2048, preview: null, available: true })).toBe('numpy.ndarray · 2.0 KiB');
    expect(outputText({ type: null, size: null, preview: null, available: false })).toBe('not handed on in this run');
    expect(formatBytes(12)).toBe('12 B');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MiB');
  });
});
