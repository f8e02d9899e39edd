import { cancelQuestion, formatDuration, jobClock, jobDuration, jobTag, notebookApiPath, parseTime } from '../src/format';
import { IJob } from '../src/types';

const base: IJob = {
  id: 'j',
  name: 'n',
  kind: 'train',
  backend: 'local',
  status: 'Running',
  workers: 1,
  created_at: '2026-11-23T10:00:00+00:00',
  started_at: '2026-11-23T10:00:02+00:00'
};

describe('parseTime', () => {
  it('reads times without an offset as UTC', () => {
    expect(parseTime('2026-11-23T10:00:00')).toBe(Date.UTC(2026, 10, 23, 10, 0, 0));
    expect(parseTime('2026-11-23T10:00:00.250000+00:00')).toBe(Date.UTC(2026, 10, 23, 10, 0, 0, 250));
    expect(parseTime('2026-11-23T12:00:00+02:00')).toBe(Date.UTC(2026, 10, 23, 10, 0, 0));
    expect(parseTime(null)).toBeNaN();
  });
});

describe('jobDuration', () => {
  const t0 = Date.UTC(2026, 10, 23, 10, 0, 2);

  it('ticks for a running job from its start', () => {
    expect(jobDuration(base, t0 + 5000)).toBe(5);
  });

  it('uses the server figure plus the time since it arrived (no clock skew)', () => {
    const job = { ...base, duration_s: 10 };
    // The browser clock is an hour off; the received time is on that clock too.
    const received = t0 + 3600e3;
    expect(jobDuration(job, received + 2500, received)).toBe(12.5);
  });

  it('is fixed once the job is over', () => {
    const done = { ...base, status: 'Succeeded', finished_at: '2026-11-23T10:01:02+00:00' };
    expect(jobDuration(done, t0 + 999e3)).toBe(60);
    expect(jobDuration({ ...done, duration_s: 59.5 }, t0 + 999e3, t0)).toBe(59.5);
  });

  it('counts a pending job from its creation', () => {
    expect(jobDuration({ ...base, status: 'Pending', started_at: null }, t0 + 1000)).toBe(3);
  });
});

describe('jobClock', () => {
  const t0 = Date.UTC(2026, 10, 23, 10, 0, 2);

  it('labels a pending job\'s time as its wait, so Running\'s smaller run time is no jump back', () => {
    const pending = jobClock({ ...base, status: 'Pending', started_at: null }, t0 + 1000);
    expect(pending.text).toBe('queued 3.0s');
    expect(jobClock(base, t0 + 1000).text).toBe('1.0s');
  });
});

describe('jobTag', () => {
  it('is the end of the id after the name, or the whole id', () => {
    expect(jobTag({ id: 'quickstart-3f9a2', name: 'quickstart' })).toBe('3f9a2');
    expect(jobTag({ id: 'abc123', name: 'quickstart' })).toBe('abc123');
    expect(jobTag({ id: 'quickstart-', name: 'quickstart' })).toBe('quickstart-');
  });
});

describe('cancelQuestion', () => {
  it('says what stops and what is kept', () => {
    const q = cancelQuestion({ name: 'quickstart', kind: 'train', workers: 2 });
    expect(q.title).toBe('Cancel quickstart?');
    expect(q.body).toContain('2 ranks are stopped');
    expect(q.body).toContain('kept');
    expect(cancelQuestion({ name: 's', kind: 'tune', workers: 2 }).body).toContain('trials');
    expect(cancelQuestion({ name: 'x', kind: 'something-new', workers: 1 }).body).toContain('It is stopped');
  });
});

describe('formatDuration', () => {
  it('formats seconds, minutes and hours', () => {
    expect(formatDuration(0)).toBe('0.0s');
    expect(formatDuration(1.34)).toBe('1.3s');
    expect(formatDuration(42.9)).toBe('42s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(3723)).toBe('1h 02m 03s');
    expect(formatDuration(null)).toBe('–');
  });
});

describe('notebookApiPath', () => {
  it('makes absolute kernel paths relative to the server root', () => {
    expect(notebookApiPath('/srv/nb/dir/a.ipynb', '/srv/nb')).toBe('dir/a.ipynb');
    expect(notebookApiPath('/srv/nb/a.ipynb', '/srv/nb/')).toBe('a.ipynb');
    expect(notebookApiPath('C:\\work\\a.ipynb', 'C:\\work')).toBe('a.ipynb');
    expect(notebookApiPath('/home/x/a.ipynb', '/')).toBe('home/x/a.ipynb');
  });

  it('keeps relative paths and refuses paths outside the root', () => {
    expect(notebookApiPath('dir/a.ipynb', '/srv/nb')).toBe('dir/a.ipynb');
    expect(notebookApiPath('/srv/nbother/a.ipynb', '/srv/nb')).toBeNull();
    expect(notebookApiPath('/srv/nb/a.ipynb', '')).toBeNull();
    expect(notebookApiPath(null, '/srv/nb')).toBeNull();
  });
});
