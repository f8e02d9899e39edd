import {
  buildRequest,
  controls,
  convertPayload,
  endpointStatus,
  formatAnswer,
  healthRows,
  IEndpoint,
  IEndpointStats,
  servingKey,
  shouldFollow,
  shouldPollStats,
  tensorInstances,
  trafficLabel,
  trafficSplit,
  v2Request
} from '../src/endpoints';

function endpoint(over: Partial<IEndpoint> = {}): IEndpoint {
  return {
    id: 'iris-1a2b',
    name: 'iris',
    kind: 'endpoint',
    backend: 'local',
    status: 'Running',
    workers: 1,
    created_at: '2026-11-25T10:00:00Z',
    url: 'http://127.0.0.1:8081',
    versions: { 'iris:1': 100 },
    model: 'iris@production',
    canary_percent: 0,
    spec: { version: { ref: 'iris:1' }, canary: null },
    ...over
  };
}

const canaryEp = (): IEndpoint =>
  endpoint({
    versions: { 'iris:2': 20, 'iris:1': 80 },
    canary_percent: 20,
    spec: { version: { ref: 'iris:1' }, canary: { ref: 'iris:2' }, canary_percent: 20 }
  });

describe('endpointStatus', () => {
  it('maps job statuses to what the panel says', () => {
    expect(endpointStatus('Running')).toEqual({ label: 'Ready', live: true, className: 'kf-status-running' });
    expect(endpointStatus('Pending')).toEqual({ label: 'Starting', live: true, className: 'kf-status-pending' });
    expect(endpointStatus('Cancelled')).toMatchObject({ label: 'Undeployed', live: false });
    expect(endpointStatus('Failed')).toMatchObject({ label: 'Failed', live: false, className: 'kf-status-failed' });
    expect(endpointStatus('Succeeded')).toMatchObject({ label: 'Stopped', live: false });
    expect(endpointStatus('Mystery')).toMatchObject({ label: 'Mystery', live: false });
  });
});

describe('trafficSplit', () => {
  it('is the one version at 100%', () => {
    const shares = trafficSplit(endpoint());
    expect(shares).toEqual([{ ref: 'iris:1', percent: 100, role: 'only' }]);
    expect(trafficLabel(shares)).toBe('iris:1 100%');
  });

  it('puts the stable version first and marks the canary, whatever the key order', () => {
    const shares = trafficSplit(canaryEp());
    expect(shares).toEqual([
      { ref: 'iris:1', percent: 80, role: 'stable' },
      { ref: 'iris:2', percent: 20, role: 'canary' }
    ]);
    expect(trafficLabel(shares)).toBe('iris:1 80% · iris:2 20% (canary)');
  });

  it('has nothing to show without versions', () => {
    expect(trafficSplit(endpoint({ versions: {} }))).toEqual([]);
  });
});

describe('controls', () => {
  it('offers promote and rollback with a canary, rollback after a promote, nothing once undeployed', () => {
    expect(controls(endpoint())).toEqual({ promote: false, rollback: false });
    expect(controls(canaryEp())).toEqual({ promote: true, rollback: true });
    const promoted = endpoint({ versions: { 'iris:2': 100 }, spec: { version: { ref: 'iris:2' }, previous: { ref: 'iris:1' } } });
    expect(controls(promoted)).toEqual({ promote: false, rollback: true });
    expect(controls({ ...canaryEp(), status: 'Cancelled' })).toEqual({ promote: false, rollback: false });
  });
});

describe('buildRequest', () => {
  it('wraps a list of instances for either protocol', () => {
    expect(buildRequest('[[5.1, 3.5, 1.4, 0.2]]', 'v1')).toEqual({ instances: [[5.1, 3.5, 1.4, 0.2]] });
    expect(buildRequest('[[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]', 'v2')).toEqual({
      inputs: [{ name: 'input-0', shape: [2, 4], datatype: 'FP64', data: [5.1, 3.5, 1.4, 0.2, 6.7, 3, 5.2, 2.3] }]
    });
  });

  it('sends a whole request of the chosen protocol as it is', () => {
    const v1 = { instances: [[1, 2]], parameters: { x: 1 } };
    expect(buildRequest(JSON.stringify(v1), 'v1')).toEqual(v1);
    const v2 = { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }], parameters: {} };
    expect(buildRequest(JSON.stringify(v2), 'v2')).toEqual(v2);
    expect(buildRequest('{"inputs": [[1, 2]]}', 'v1')).toEqual({ inputs: [[1, 2]] }); // V1's other key
  });

  it('converts a request of the other protocol', () => {
    expect(buildRequest('{"instances": [[1, 2], [3, 4]]}', 'v2')).toEqual({
      inputs: [{ name: 'input-0', shape: [2, 2], datatype: 'INT64', data: [1, 2, 3, 4] }]
    });
    const v2 = { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP64', data: [1.5, 2, 3, 4] }] };
    expect(buildRequest(JSON.stringify(v2), 'v1')).toEqual({ instances: [[1.5, 2], [3, 4]] });
  });

  it('says what is wrong', () => {
    expect(() => buildRequest('{"instances": [[1, 2]', 'v1')).toThrow(/not JSON/);
    expect(() => buildRequest('42', 'v1')).toThrow(/JSON object .* or a list of instances/);
    expect(() => buildRequest('[]', 'v1')).toThrow(/no instances/);
    expect(() => buildRequest('{"instances": 3}', 'v1')).toThrow(/"instances" must be a list/);
    expect(() => buildRequest('{"data": [1]}', 'v1')).toThrow(/V1 request is/);
    expect(() => buildRequest('{"data": [1]}', 'v2')).toThrow(/V2 request is/);
    expect(() => buildRequest('[[1, 2], [3]]', 'v2')).toThrow(/ragged: instances\[1\] has shape \[1\], instances\[0\] has \[2\]/);
    expect(() => buildRequest('[["a", "b"]]', 'v2')).toThrow(/numbers or booleans, not "a"/);
    const two = { inputs: [0, 1].map(i => ({ name: `x${i}`, shape: [1], datatype: 'FP64', data: [i] })) };
    expect(() => buildRequest(JSON.stringify(two), 'v1')).toThrow(/several inputs/);
    const short = { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP64', data: [1, 2, 3] }] };
    expect(() => buildRequest(JSON.stringify(short), 'v1')).toThrow(/x has 3 values for shape \[2, 2\] \(4\)/);
  });
});

describe('v2Request and tensorInstances', () => {
  it('types the data and keeps the shape', () => {
    expect(v2Request([true, false]).inputs[0]).toMatchObject({ shape: [2], datatype: 'BOOL' });
    expect(v2Request([[1, 2, 3]]).inputs[0]).toMatchObject({ shape: [1, 3], datatype: 'INT64' });
    expect(v2Request([[[1.5], [2]]]).inputs[0]).toMatchObject({ shape: [1, 2, 1], datatype: 'FP64', data: [1.5, 2] });
    expect(() => v2Request([1, true])).toThrow(/numbers or booleans/);
  });

  it('round-trips', () => {
    const instances = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]];
    expect(tensorInstances(v2Request(instances).inputs[0])).toEqual(instances);
  });
});

describe('convertPayload', () => {
  it('rewrites the payload when the protocol is switched, and leaves what does not convert', () => {
    const v2 = convertPayload('{"instances": [[5.1, 3.5]]}', 'v2');
    expect(JSON.parse(v2)).toEqual({ inputs: [{ name: 'input-0', shape: [1, 2], datatype: 'FP64', data: [5.1, 3.5] }] });
    expect(JSON.parse(convertPayload(v2, 'v1'))).toEqual({ instances: [[5.1, 3.5]] });
    const typed = '{"instances": [[1, 2]]}';
    expect(convertPayload(typed, 'v1')).toBe(typed); // already V1: the user's text, spacing kept
    expect(convertPayload('[[1, 2]]', 'v2')).toBe('[[1, 2]]'); // a bare list suits both
    expect(convertPayload('{"instances": [[1, 2]', 'v2')).toBe('{"instances": [[1, 2]');
  });
});

describe('formatAnswer', () => {
  it('shows the response and the version that answered', () => {
    expect(formatAnswer({ predictions: [0, 2] }, null)).toBe('{\n  "predictions": [\n    0,\n    2\n  ]\n}');
    expect(formatAnswer({ predictions: [1] }, 'iris:2')).toBe('(from iris:2)\n{\n  "predictions": [\n    1\n  ]\n}');
  });
});

describe('shouldFollow', () => {
  it('follows an open log of a live endpoint in a shown panel', () => {
    expect(shouldFollow(true, true, 'Running')).toBe(true);
    expect(shouldFollow(true, true, 'Pending')).toBe(true);
    expect(shouldFollow(false, true, 'Running')).toBe(false);
    expect(shouldFollow(true, false, 'Running')).toBe(false);
    expect(shouldFollow(true, true, 'Cancelled')).toBe(false);
    expect(shouldFollow(true, true, 'Failed')).toBe(false);
  });
});

describe('servingKey', () => {
  const servers = (...names: string[]) => ({
    logs: names.map((name, rank) => ({ name, label: name, rank, child: null })),
    metrics: []
  });

  it('changes when promote or rollback replaces the servers, not otherwise', () => {
    const before = canaryEp();
    before.channels = servers('server/primary', 'server/canary', 'server/router');
    const again = canaryEp();
    again.channels = servers('server/primary', 'server/canary', 'server/router');
    again.message = 'serving';
    expect(servingKey(again)).toBe(servingKey(before));
    const promoted = endpoint({ versions: { 'iris:2': 100 }, channels: servers('server/primary', 'server/router') });
    expect(servingKey(promoted)).not.toBe(servingKey(before));
    const rolledBack = endpoint({ versions: { 'iris:1': 100 }, channels: servers('server/primary', 'server/router') });
    expect(servingKey(rolledBack)).not.toBe(servingKey(promoted));
  });
});

describe('the health table', () => {
  const canaryEp = endpoint({
    versions: { 'iris:1': 70, 'iris:2': 30 },
    canary_percent: 30,
    spec: { version: { ref: 'iris:1' }, canary: { ref: 'iris:2' } }
  });
  const stats: IEndpointStats = {
    endpoint: 'iris-1a2b',
    window_s: 60,
    time: 0,
    versions: {
      transformer: { role: 'transformer', requests: 10, requests_per_s: 0.17, error_rate: 0, p50_ms: 2.5, p95_ms: 3, p99_ms: 4 },
      'iris:2': { role: 'predictor', requests: 3, requests_per_s: 0.05, error_rate: 0.333, p50_ms: 31.2, p95_ms: 40, p99_ms: 41,
                  traffic_percent: 30, drift: { samples: 3, drifted: ['x2'] } },
      'iris:1': { role: 'predictor', requests: 7, requests_per_s: 0.12, error_rate: 0, p50_ms: 1.25, p95_ms: null, p99_ms: 2,
                  traffic_percent: 70, drift: { samples: 7, drifted: [] } }
    }
  };

  it('lists the stable version, the canary, then the components, flagging errors and drift', () => {
    const rows = healthRows(stats, canaryEp);
    expect(rows.map(r => r.key)).toEqual(['iris:1', 'iris:2', 'transformer']);
    expect(rows[0]).toMatchObject({ role: 'version', traffic: '70%', rate: '0.1/s', errors: '0%', latency: '1.3/–/2.0',
                                    drift: 'no drift (7)', failing: false, drifted: false });
    expect(rows[1]).toMatchObject({ role: 'canary', traffic: '30%', errors: '33%', latency: '31/40/41',
                                    drift: 'drift: x2', failing: true, drifted: true });
    expect(rows[2]).toMatchObject({ role: 'transformer', traffic: '', drift: '' });
  });

  it('is read while a live local endpoint is shown', () => {
    expect(shouldPollStats(true, endpoint())).toBe(true);
    expect(shouldPollStats(false, endpoint())).toBe(false);
    expect(shouldPollStats(true, endpoint({ status: 'Cancelled' }))).toBe(false);
    expect(shouldPollStats(true, endpoint({ backend: 'kubernetes' }))).toBe(false);
  });
});
