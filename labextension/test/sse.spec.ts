import { SSEParser, readEventStream, ISSEEvent } from '../src/sse';

describe('SSEParser', () => {
  it('parses the job events and keepalives the server sends', () => {
    const p = new SSEParser();
    const events = p.push(
      ': keepalive\n\nevent: job\ndata: {"id": "a", "status": "Running"}\n\n: keepalive\n\n'
    );
    expect(events).toEqual([{ event: 'job', data: '{"id": "a", "status": "Running"}' }]);
    expect(p.comments).toBe(2);
  });

  it('names unnamed events "message" and joins multi-line data', () => {
    const p = new SSEParser();
    expect(p.push('data: one\ndata: two\n\n')).toEqual([{ event: 'message', data: 'one\ntwo' }]);
  });

  it('survives chunks split anywhere, including inside \\r\\n', () => {
    const text = 'data: "line 1"\r\n\r\nevent: end\r\ndata: {"status": "Succeeded"}\r\n\r\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SSEParser();
      const got = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(got).toEqual([
        { event: 'message', data: '"line 1"' },
        { event: 'end', data: '{"status": "Succeeded"}' }
      ]);
    }
  });

  it('feeds one character at a time', () => {
    const p = new SSEParser();
    const got: ISSEEvent[] = [];
    for (const c of 'event: job\rdata: x\r\rdata:y\n\n') {
      got.push(...p.push(c));
    }
    got.push(...p.end());
    expect(got).toEqual([
      { event: 'job', data: 'x' },
      { event: 'message', data: 'y' }
    ]);
  });

  it('keeps only one leading space of a value, and the id', () => {
    const p = new SSEParser();
    expect(p.push('id: 7\ndata:  two spaces\n\n')).toEqual([
      { event: 'message', data: ' two spaces', id: '7' }
    ]);
  });

  it('ignores event names without data and drops an unfinished event at the end', () => {
    const p = new SSEParser();
    expect(p.push('event: job\n\n')).toEqual([]);
    expect(p.push('data: half')).toEqual([]);
    expect(p.end()).toEqual([]);
  });
});

function streamOf(chunks: Uint8Array[]): Response {
  let i = 0;
  const body = {
    getReader() {
      return {
        read: async () =>
          i < chunks.length ? { done: false, value: chunks[i++] } : { done: true, value: undefined },
        releaseLock: () => undefined
      };
    }
  };
  return { body } as unknown as Response;
}

describe('readEventStream', () => {
  it('decodes UTF-8 split across chunks', async () => {
    const bytes = new TextEncoder().encode('data: "héllo ✓"\n\n');
    // Cut inside the multi-byte "✓".
    const cut = bytes.length - 5;
    const events: ISSEEvent[] = [];
    await readEventStream(streamOf([bytes.slice(0, cut), bytes.slice(cut)]), e => events.push(e));
    expect(events).toEqual([{ event: 'message', data: '"héllo ✓"' }]);
  });
});
