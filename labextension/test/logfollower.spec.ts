import { KFApi, KFApiError } from '../src/api';
import {
  eventField,
  ILogStateDetail,
  LogFollower,
  LogFollowerState,
  logChannels,
  logRead,
  OpenLogStream,
  pickChannel
} from '../src/logfollower';
import { ISSEEvent } from '../src/sse';
import { IChannel } from '../src/types';

/** One connection the follower opened, answered by the test. */
interface IConnection {
  send: (event: string, data: unknown) => void;
  open: () => void;
  close: () => void;
  fail: (error: Error) => void;
  signal: AbortSignal;
}

function fakeServer() {
  const connections: IConnection[] = [];
  const open: OpenLogStream = (onEvent, signal, onOpen) =>
    new Promise<void>((resolve, reject) => {
      signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
      connections.push({
        send: (event, data) =>
          onEvent({ event, data: typeof data === 'string' ? data : JSON.stringify(data) } as ISSEEvent),
        open: onOpen,
        close: resolve,
        fail: reject,
        signal
      });
    });
  return { connections, open };
}

function recorder() {
  const seen: string[] = [];
  const states: [LogFollowerState, ILogStateDetail][] = [];
  return {
    seen,
    states,
    names: () => states.map(([s]) => s),
    handlers: {
      opened: () => seen.push('<opened>'),
      line: (text: string) => seen.push(text),
      state: (state: LogFollowerState, detail: ILogStateDetail) => states.push([state, detail])
    }
  };
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
};

describe('LogFollower', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('hands on the lines of a stream, then stops at its end', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    follower.start(); // once
    expect(server.connections).toHaveLength(1);
    expect(r.names()).toEqual(['connecting']);
    const c = server.connections[0];
    c.open();
    c.send('message', '"epoch 1 loss=0.42"');
    c.send('message', 'not JSON');
    c.send('end', { status: 'Succeeded' });
    c.close();
    await flush();
    expect(r.seen).toEqual(['<opened>', 'epoch 1 loss=0.42', 'not JSON']);
    expect(r.states).toEqual([
      ['connecting', {}],
      ['streaming', {}],
      ['ended', { status: 'Succeeded' }]
    ]);
    expect(follower.running).toBe(false);
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(server.connections).toHaveLength(1); // an ended log is not read again
  });

  it('connects again after an error event or an early close; each connection starts over', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    const first = server.connections[0];
    first.open();
    first.send('message', '"a"');
    first.send('error', { message: 'backend unreachable', reason: 'BackendError' });
    first.close();
    await flush();
    expect(r.states[r.states.length - 1]).toEqual(['error', { message: 'backend unreachable' }]);
    jest.advanceTimersByTime(999);
    await flush();
    expect(server.connections).toHaveLength(1);
    jest.advanceTimersByTime(1);
    await flush();
    expect(server.connections).toHaveLength(2);
    const second = server.connections[1];
    second.open();
    second.send('message', '"a"');
    second.send('message', '"b"');
    second.close(); // no end: the server went away
    await flush();
    expect(r.seen).toEqual(['<opened>', 'a', '<opened>', 'a', 'b']);
    expect(r.names()).toEqual(['connecting', 'streaming', 'error', 'streaming', 'error']);
    // the second opened well: the next try waits the least again
    jest.advanceTimersByTime(1000);
    await flush();
    expect(server.connections).toHaveLength(3);
    follower.stop();
  });

  it('waits longer after each failure in a row, at most 5 s', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    const at: number[] = [];
    for (let i = 0; i < 7; i++) {
      await flush();
      server.connections[i].fail(new KFApiError('Cannot reach the kfjupyter server extension', 0, 'network'));
      at.push(Date.now());
      await flush();
      for (let waited = 0; server.connections.length === i + 1; waited += 100) {
        jest.advanceTimersByTime(100);
        await flush();
        expect(waited).toBeLessThan(10_000);
      }
    }
    const waits = at.slice(1).map((t, i) => t - at[i]);
    expect(waits).toEqual([1000, 2000, 3000, 4000, 5000, 5000]);
    expect(r.states[1]).toEqual(['error', { message: 'Cannot reach the kfjupyter server extension' }]);
    follower.stop();
  });

  it('waits for a log that is not there yet (404), and gives up on a refusal (400)', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    server.connections[0].fail(new KFApiError('no such job', 404, 'NotFound'));
    await flush();
    expect(r.names()).toEqual(['connecting', 'waiting']);
    jest.advanceTimersByTime(1000);
    await flush();
    server.connections[1].fail(new KFApiError("job x has no log channel 'rank-7'", 400, 'BadRequest'));
    await flush();
    expect(r.states[r.states.length - 1]).toEqual(['failed', { message: "job x has no log channel 'rank-7'" }]);
    expect(follower.running).toBe(false);
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(server.connections).toHaveLength(2);
  });

  it('reads once without retry: a failure is final', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers, { retry: false });
    follower.start();
    server.connections[0].open();
    server.connections[0].send('error', { message: 'the job was deleted' });
    server.connections[0].close();
    await flush();
    expect(r.names()).toEqual(['connecting', 'streaming', 'failed']);
    expect(r.states[2][1]).toEqual({ message: 'the job was deleted' });
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(server.connections).toHaveLength(1);
  });

  it('aborts the connection on stop and hands on nothing after', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    const c = server.connections[0];
    c.open();
    c.send('message', '"kept"');
    follower.stop();
    expect(c.signal.aborted).toBe(true);
    expect(follower.running).toBe(false);
    c.send('message', '"late"');
    await flush();
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(r.seen).toEqual(['<opened>', 'kept']);
    expect(r.names()).toEqual(['connecting', 'streaming']);
    expect(server.connections).toHaveLength(1);
  });

  it('stops while waiting to try again: no new connection', async () => {
    const server = fakeServer();
    const r = recorder();
    const follower = new LogFollower(server.open, r.handlers);
    follower.start();
    server.connections[0].close();
    await flush();
    expect(r.names()).toEqual(['connecting', 'error']);
    follower.stop();
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(server.connections).toHaveLength(1);
  });
});

describe('eventField', () => {
  it("reads a string field of an event's JSON data", () => {
    expect(eventField('{"status": "Failed"}', 'status')).toBe('Failed');
    expect(eventField('{"status": 3}', 'status')).toBe('');
    expect(eventField('oops', 'status')).toBe('');
  });
});

describe('channels', () => {
  const ch = (name: string, rank: number | null): IChannel => ({ name, label: name, rank, child: null });

  it('picks the channel chosen while it exists, else rank 0, else the first', () => {
    const ranks = [ch('rank-0', 0), ch('rank-1', 1)];
    expect(pickChannel(ranks, null)?.name).toBe('rank-0');
    expect(pickChannel(ranks, 'rank-1')?.name).toBe('rank-1');
    // a failed job opens on its failing rank, unless the user chose another
    expect(pickChannel(ranks, null, 1)?.name).toBe('rank-1');
    expect(pickChannel(ranks, 'rank-0', 1)?.name).toBe('rank-0');
    expect(pickChannel(ranks, null, 7)?.name).toBe('rank-0');
    expect(pickChannel(ranks, 'rank-5')?.name).toBe('rank-0');
    const servers = [ch('server/router', -1), ch('server/primary', 0), ch('server/canary', 1)];
    expect(pickChannel(servers, null)?.name).toBe('server/primary');
    expect(pickChannel([ch('run', null)], null)?.name).toBe('run');
    expect(pickChannel([], 'run')).toBeNull();
  });

  it("are the job's own log channels, none before the job reached its backend", () => {
    expect(logChannels({ channels: { logs: [ch('worker-0', 0)] } }).map(c => c.name)).toEqual(['worker-0']);
    expect(logChannels({ channels: { logs: [] } })).toEqual([]);
    expect(logChannels({})).toEqual([]);
  });

  it("of a live task are followed from their tail; an ended task's read whole, once", () => {
    expect(logRead(true, 500)).toEqual({ follow: true, tail: 500 });
    expect(logRead(false, 500)).toEqual({ follow: false, tail: 0 });
  });
});

describe('KFApi.streamLogs', () => {
  class Recording extends KFApi {
    paths: string[] = [];
    async fetch(path: string): Promise<Response> {
      this.paths.push(path);
      const bytes = new TextEncoder().encode('data: "one"\n\nevent: end\ndata: {"status": "Running"}\n\n');
      let done = false;
      const body = {
        getReader: () => ({
          read: async () => (done ? { done: true, value: undefined } : ((done = true), { done: false, value: bytes })),
          releaseLock: () => undefined
        })
      };
      return { body } as unknown as Response;
    }
  }

  it('names the channel, the tail and whether to follow', async () => {
    const api = new Recording({ baseUrl: 'http://127.0.0.1:8888/' } as never);
    const events: ISSEEvent[] = [];
    const opened = jest.fn();
    const abort = new AbortController();
    await api.streamLogs('pipe-1', { channel: 'step/prep', tail: 2000, follow: true }, e => events.push(e), abort.signal, opened);
    await api.streamLogs('pipe-1', { channel: 'step/prep', tail: 0, follow: false }, () => undefined, abort.signal);
    await api.streamLogs('train 1', { rank: 1, tail: 1000 }, () => undefined, abort.signal);
    await api.streamLogs('tune-1', { channel: 'trial/3', tail: 1000, follow: true }, () => undefined, abort.signal);
    expect(api.paths).toEqual([
      'jobs/pipe-1/logs/stream?channel=step%2Fprep&tail=2000&follow=true',
      'jobs/pipe-1/logs/stream?channel=step%2Fprep&tail=0&follow=false',
      'jobs/train%201/logs/stream?rank=1&tail=1000',
      'jobs/tune-1/logs/stream?channel=trial%2F3&tail=1000&follow=true'
    ]);
    expect(opened).toHaveBeenCalledTimes(1);
    expect(events).toEqual([
      { event: 'message', data: '"one"' },
      { event: 'end', data: '{"status": "Running"}' }
    ]);
  });
});
