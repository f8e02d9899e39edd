import { Signal } from '@lumino/signaling';

import { KFApi, KFApiError } from '../src/api';
import { JobsModel } from '../src/model';
import { REREAD_DELAY_MS, StudiesModel } from '../src/studies';
import { IJob, IStudy, IStudyList, ITrial } from '../src/types';

function study(id: string, over: Partial<IStudy> = {}): IStudy {
  return {
    id,
    name: id.split('-')[0],
    status: 'Running',
    backend: 'local',
    message: null,
    error: null,
    objective: 'loss',
    direction: 'minimize',
    algorithm: 'random',
    early_stopping: null,
    trials_budget: 4,
    parallel: 2,
    workers_per_trial: 1,
    created_at: '2026-11-23T10:00:00+00:00',
    duration_s: 1,
    best: null,
    space: {},
    trials: [],
    ...over
  };
}

function trial(number: number, state = 'COMPLETE', value: number | null = 1): ITrial {
  return {
    number,
    state,
    value,
    params: {},
    intermediate: {},
    datetime_start: null,
    datetime_complete: null,
    duration_s: 1,
    error: null,
    worker: 0
  };
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An API whose answers the test hands out one by one. */
class FakeApi {
  list = deferred<IStudyList>();
  gets: { id: string; answer: ReturnType<typeof deferred<IStudy>> }[] = [];
  listCalls = 0;
  listStudies(): Promise<IStudyList> {
    this.listCalls++;
    return this.list.promise;
  }
  getStudy(id: string): Promise<IStudy> {
    const answer = deferred<IStudy>();
    this.gets.push({ id, answer });
    return answer.promise;
  }
  async cancelStudy(id: string): Promise<IStudy> {
    return study(id, { status: 'Cancelled' });
  }
}

class FakeJobs {
  jobChanged = new Signal<this, IJob>(this);
  connectionChanged = new Signal<this, string>(this);
  emit(id: string, kind = 'tune'): void {
    this.jobChanged.emit({ id, kind, name: id, backend: 'local', status: 'Running', workers: 2, created_at: '' });
  }
}

/** A started model whose (empty) first page has loaded. */
async function setup() {
  const api = new FakeApi();
  const jobs = new FakeJobs();
  const model = new StudiesModel(api as unknown as KFApi, jobs as unknown as JobsModel);
  model.start();
  api.list.resolve({ studies: [], total: 0, limit: 50, offset: 0 });
  await flushMicrotasks();
  expect(model.state.loaded).toBe(true);
  return { api, jobs, model };
}

describe('studies model', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('loads the list, then re-reads a study once per burst of its job events', async () => {
    const { api, jobs, model } = await setup();

    jobs.emit('a-1');
    jobs.emit('a-1');
    jobs.emit('train-1', 'train'); // not a study
    jobs.emit('a-1');
    expect(api.gets).toHaveLength(0);
    jest.advanceTimersByTime(REREAD_DELAY_MS);
    expect(api.gets.map(g => g.id)).toEqual(['a-1']);
    api.gets[0].answer.resolve(study('a-1', { trials: [trial(0), trial(1, 'RUNNING', null)] }));
    await flushMicrotasks();
    expect(model.state.studies.map(s => s.id)).toEqual(['a-1']);
    expect(model.state.studies[0].trial_counts?.RUNNING).toBe(1);
    expect(model.state.total).toBe(1);
    model.dispose();
  });

  it('shows the selected study, and a late answer never replaces a newer one', async () => {
    const { api, model } = await setup();
    model.select('a-1');
    expect(model.state.selected).toBe('a-1');
    void model.reread('a-1');
    expect(api.gets).toHaveLength(2);
    // the second (newer) read answers first
    api.gets[1].answer.resolve(study('a-1', { trials: [trial(0), trial(1)], status: 'Succeeded' }));
    await flushMicrotasks();
    expect(model.state.detail?.trials).toHaveLength(2);
    api.gets[0].answer.resolve(study('a-1', { trials: [trial(0, 'RUNNING', null)] }));
    await flushMicrotasks();
    expect(model.state.detail?.status).toBe('Succeeded');
    expect(model.state.detail?.trials).toHaveLength(2);
    expect(model.state.studies[0].status).toBe('Succeeded');
    model.dispose();
  });

  it('drops a study the server no longer has', async () => {
    const { api, model } = await setup();
    model.select('gone-1');
    api.gets[0].answer.reject(new KFApiError('no tuning study', 404, 'StudyNotFound'));
    await flushMicrotasks();
    expect(model.state.detail).toBeNull();
    expect(model.state.detailError).toMatch(/no longer exists/);
    model.dispose();
  });

  it('reads everything anew when the push channel comes back', async () => {
    const { api, jobs, model } = await setup();
    model.select('a-1');
    expect(api.listCalls).toBe(1);
    jobs.connectionChanged.emit('live'); // the first connection: nothing was missed
    expect(api.listCalls).toBe(1);
    jobs.connectionChanged.emit('offline');
    jobs.connectionChanged.emit('connecting');
    jobs.connectionChanged.emit('live');
    expect(api.listCalls).toBe(2);
    await flushMicrotasks();
    expect(api.gets.map(g => g.id)).toEqual(['a-1', 'a-1']); // the selection, read again
    model.dispose();
  });

  it('takes the answer of Cancel', async () => {
    const { api, model } = await setup();
    model.select('a-1');
    await model.cancel('a-1');
    expect(model.state.detail?.status).toBe('Cancelled');
    // the read started before the cancel answers later, with an older state
    api.gets[0].answer.resolve(study('a-1', { status: 'Running' }));
    await flushMicrotasks();
    expect(model.state.detail?.status).toBe('Cancelled');
    model.dispose();
  });
});

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.resolve();
  }
}
