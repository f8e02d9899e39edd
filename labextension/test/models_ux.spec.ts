import {
  confirmControl,
  emptyLogNote,
  endpointsServing,
  failureSummary,
  IEndpoint,
  jobAction
} from '../src/endpoints';
import {
  aliasMoveText,
  deployState,
  differingParams,
  formatBytes,
  inputRecord,
  paramsLine,
  plural,
  versionParams,
  versionSize
} from '../src/models';

function ep(over: Partial<IEndpoint>): IEndpoint {
  return {
    id: 'iris-1',
    name: 'iris',
    kind: 'endpoint',
    backend: 'local',
    status: 'Running',
    workers: 1,
    created_at: '2026-01-01T00:00:00Z',
    url: 'http://127.0.0.1:1',
    versions: { 'iris:1': 100 },
    model: 'iris@production',
    canary_percent: 0,
    spec: {},
    ...over
  };
}

describe('the model card', () => {
  it('counts versions in words', () => {
    expect(plural(1, 'version')).toBe('1 version');
    expect(plural(0, 'version')).toBe('0 versions');
    expect(plural(3, 'version')).toBe('3 versions');
  });

  it('prints sizes', () => {
    expect(formatBytes(812)).toBe('812 B');
    expect(formatBytes(4300)).toBe('4.2 KB');
    expect(formatBytes(13 * 1024 * 1024)).toBe('13 MB');
    expect(formatBytes(null)).toBe('–');
    expect(versionSize({ artifacts: [{ name: 'model', size: 1000, format: 'x' }, { name: 's', size: 24, format: 'n' }] })).toBe(
      1024
    );
    expect(versionSize({ artifacts: [] })).toBeNull();
  });

  it("shows the run's params under the version's own, and the ones that differ", () => {
    const a = { params: { C: 0.1 }, run: { run_id: 'r1', params: { C: 1, kernel: 'rbf' } } };
    const b = { params: {}, run: { run_id: 'r2', params: { C: 10, kernel: 'rbf' } } };
    expect(versionParams(a)).toEqual({ C: 0.1, kernel: 'rbf' });
    expect(paramsLine(versionParams(b))).toBe('C=10, kernel=rbf');
    expect(differingParams([a, b])).toEqual(['C']);
    expect(differingParams([a])).toEqual(['C', 'kernel']);
  });

  it('disables Deploy with the reason the server gave', () => {
    const reason = 'version q:1 is a PyTorch state dict: the server needs the model class';
    expect(deployState({ ref: 'q:1', state: 'LIVE', servable: { ok: false, reason, needs: 'model_class' } })).toEqual({
      enabled: false,
      reason
    });
    expect(deployState({ ref: 'q:2', state: 'LIVE', servable: { ok: true } }).enabled).toBe(true);
    expect(deployState({ ref: 'q:3', state: 'ARCHIVED', servable: { ok: true } }).enabled).toBe(false);
    expect(deployState({ ref: 'q:4', state: 'LIVE' }).enabled).toBe(true); // an older server: no preflight
  });

  it('finds a recorded signature and input example', () => {
    const rec = inputRecord({
      custom_properties: { signature: { inputs: 'float[4]' }, input_example: [[1, 2, 3, 4]] },
      artifacts: [{ name: 'training_sample', size: 1, format: 'numpy' }]
    });
    expect(rec).toEqual({ signature: '{"inputs":"float[4]"}', example: '[[1,2,3,4]]', sample: true });
    expect(inputRecord({})).toEqual({ signature: null, example: null, sample: false });
  });

  it('says which endpoints keep serving the version an alias leaves', () => {
    const eps = [
      ep({ name: 'a', versions: { 'iris:1': 100 } }),
      ep({ name: 'b', versions: { 'iris:1': 70, 'iris:2': 30 }, model: 'iris:1' }),
      ep({ name: 'c', status: 'Cancelled', versions: { 'iris:1': 100 } })
    ];
    const serving = endpointsServing(eps, 'iris:1');
    expect(serving.map(s => s.name)).toEqual(['a', 'b']);
    const text = aliasMoveText('iris', 'production', 1, 2, serving);
    expect(text.title).toBe('Move production from v1 to v2?');
    expect(text.body).toContain('a (100%, deployed as iris@production), b (70%, deployed as iris:1)');
    expect(aliasMoveText('iris', 'production', 1, 2, []).body).toContain('No endpoint serves v1.');
    expect(aliasMoveText('iris', 'staging', null, 2, []).title).toBe('Set staging on iris v2?');
  });
});

describe('endpoint feedback', () => {
  it('summarises a traceback: what stopped and the exception line, the rest folded', () => {
    const text = [
      'the model server of quick:1 exited with code 1 before it was ready:',
      'Traceback (most recent call last):',
      '  File "/x/runpy.py", line 198, in _run_module_as_main',
      '  File "/x/server.py", line 40, in main',
      "AttributeError: 'collections.OrderedDict' object has no attribute 'eval'",
      'INFO: shutting down'
    ].join('\n');
    const f = failureSummary(text);
    expect(f.summary).toBe(
      "the model server of quick:1 exited with code 1 before it was ready: AttributeError: 'collections.OrderedDict' object has no attribute 'eval'"
    );
    expect(f.detail).toBe(text);
    expect(failureSummary('port 8000 is in use')).toEqual({ summary: 'port 8000 is in use', detail: null });
    expect(failureSummary(null)).toEqual({ summary: '', detail: null });
  });

  it('explains an empty log', () => {
    expect(emptyLogNote({ status: 'Failed' })).toContain('reason is above');
    expect(emptyLogNote({ status: 'Running' })).toBe('(empty)');
  });

  it('says what Undeploy, Promote and Rollback will do', () => {
    const u = confirmControl('undeploy', ep({}));
    expect(u).toMatchObject({ title: 'Undeploy iris?', accept: 'Undeploy', warn: true });
    expect(u.body).toContain('stops serving iris:1 100%');
    const canary = ep({ versions: { 'iris:1': 70, 'iris:2': 30 }, spec: { canary: { ref: 'iris:2' } }, canary_percent: 30 });
    expect(confirmControl('promote', canary).body).toContain('iris:2 takes all the traffic of iris (now 30%)');
    expect(confirmControl('rollback', canary).body).toContain('The canary iris:2 is dropped');
    const promoted = ep({ versions: { 'iris:2': 100 }, spec: { previous: { ref: 'iris:1' } } });
    expect(confirmControl('rollback', promoted).body).toContain('goes back to iris:1');
  });

  it('gives an endpoint job Undeploy instead of Cancel', () => {
    expect(jobAction({ kind: 'endpoint', status: 'Running' })).toBe('undeploy');
    expect(jobAction({ kind: 'endpoint', status: 'Cancelled' })).toBeNull();
    expect(jobAction({ kind: 'train', status: 'Pending' })).toBe('cancel');
    expect(jobAction({ kind: 'train', status: 'Succeeded' })).toBeNull();
  });
});
