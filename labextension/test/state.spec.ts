import { activeCount, initialState, IJobsState, isStale, matches, reduce } from '../src/state';
import { IJob } from '../src/types';

let counter = 0;
function job(over: Partial<IJob> = {}): IJob {
  counter++;
  return {
    id: `job-${counter}`,
    name: `train-${counter}`,
    kind: 'train',
    backend: 'local',
    status: 'Running',
    workers: 2,
    created_at: `2026-11-23T10:00:${String(counter).padStart(2, '0')}+00:00`,
    ...over
  };
}

function loaded(jobs: IJob[], total = jobs.length, state = initialState()): IJobsState {
  return reduce(state, { type: 'loaded', jobs, total, now: 1 });
}

const ids = (s: IJobsState) => s.entries.map(e => e.job.id);

describe('jobs reducer', () => {
  it('loads a page newest first', () => {
    const a = job();
    const b = job();
    const s = loaded([a, b]);
    expect(ids(s)).toEqual([b.id, a.id]);
    expect(s.total).toBe(2);
    expect(s.loaded).toBe(true);
    expect(s.kinds).toEqual(['train']);
  });

  it('inserts a new job from an event at the top and counts it', () => {
    const a = job();
    const s = reduce(loaded([a]), { type: 'upsert', job: job({ id: 'new' }), now: 2 });
    expect(ids(s)).toEqual(['new', a.id]);
    expect(s.total).toBe(2);
  });

  it('replaces a job on a status change, keeping its place', () => {
    const a = job();
    const b = job();
    let s = loaded([a, b]);
    s = reduce(s, { type: 'upsert', job: { ...a, status: 'Succeeded' }, now: 5 });
    expect(ids(s)).toEqual([b.id, a.id]);
    expect(s.entries[1].job.status).toBe('Succeeded');
    expect(s.entries[1].receivedAt).toBe(5);
    expect(s.total).toBe(2);
  });

  it('ignores news older than what it has (events out of order)', () => {
    const a = job({ status: 'Cancelled' });
    const s = loaded([a]);
    const after = reduce(s, { type: 'upsert', job: { ...a, status: 'Running' }, now: 3 });
    expect(after.entries[0].job.status).toBe('Cancelled');
    expect(isStale({ ...a, status: 'Running' }, { ...a, status: 'Pending' })).toBe(true);
    expect(isStale({ ...a, status: 'Pending' }, { ...a, status: 'Running' })).toBe(false);
  });

  it('keeps an event that beat the page it belongs to', () => {
    const a = job();
    let s = reduce(initialState(), { type: 'upsert', job: { ...a, status: 'Succeeded' }, now: 1 });
    // The page was read before the job finished.
    s = reduce(s, { type: 'loaded', jobs: [a], total: 1, now: 2 });
    expect(s.entries[0].job.status).toBe('Succeeded');
    expect(s.total).toBe(1);
  });

  it('applies the filters to events', () => {
    let s = reduce(initialState(), { type: 'filters', filters: { kind: '', status: 'Running' } });
    const a = job();
    s = loaded([a], 1, s);
    s = reduce(s, { type: 'upsert', job: job({ status: 'Succeeded' }), now: 2 });
    expect(ids(s)).toEqual([a.id]);
    // The running job finishes: it leaves the "Running" view.
    s = reduce(s, { type: 'upsert', job: { ...a, status: 'Succeeded' }, now: 3 });
    expect(ids(s)).toEqual([]);
    expect(s.total).toBe(0);
    expect(matches(job({ kind: 'tune' }), { kind: 'train', status: '' })).toBe(false);
  });

  it('counts but does not show an old job beyond the loaded page', () => {
    const old = job();
    const newer = [job(), job()];
    let s = loaded(newer, 5); // 5 on the server, 2 shown
    s = reduce(s, { type: 'upsert', job: old, now: 2 });
    expect(ids(s)).toEqual([newer[1].id, newer[0].id]);
    expect(s.total).toBe(6);
  });

  it('appends further pages without duplicates', () => {
    const [a, b, c] = [job(), job(), job()];
    let s = loaded([c, b], 3);
    s = reduce(s, { type: 'loaded', jobs: [b, a], total: 3, append: true, now: 2 });
    expect(ids(s)).toEqual([c.id, b.id, a.id]);
  });

  it('clears the list when the filters change, and records errors', () => {
    let s = loaded([job()]);
    s = reduce(s, { type: 'filters', filters: { kind: 'tune', status: '' } });
    expect(s.entries).toEqual([]);
    expect(s.loaded).toBe(false);
    s = reduce(s, { type: 'loading' });
    expect(s.loading).toBe(true);
    s = reduce(s, { type: 'error', message: 'boom' });
    expect(s.error).toBe('boom');
    expect(s.loading).toBe(false);
  });

  it('counts the active jobs and collects kinds', () => {
    let s = loaded([job(), job({ status: 'Failed' }), job({ status: 'Pending' })]);
    expect(activeCount(s)).toBe(2);
    s = reduce(s, { type: 'upsert', job: job({ kind: 'tune' }), now: 2 });
    expect(s.kinds).toEqual(['train', 'tune']);
  });
});
