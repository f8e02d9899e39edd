/**
 * Server-sent events read from a `fetch` response.
 *
 * The browser's `EventSource` cannot send the `Authorization` header that
 * `ServerConnection.makeRequest` adds, so the stream is read with
 * `response.body.getReader()` and parsed here, incrementally: chunks may split
 * a line, a `\r\n` pair or a multi-byte character anywhere.
 */

export interface ISSEEvent {
  /** The `event:` field, `message` when absent. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last `id:` seen, if any. */
  id?: string;
}

/**
 * An incremental parser of the `text/event-stream` format.
 *
 * Feed it text with `push`; it returns the events completed by that text.
 * Comments (`: keepalive`) are counted, not returned.
 */
export class SSEParser {
  /** How many comment lines (keepalives) were seen. */
  comments = 0;

  /**
   * Parse more text; return the events it completes.
   */
  push(chunk: string): ISSEEvent[] {
    this._buffer += chunk;
    const events: ISSEEvent[] = [];
    let start = 0;
    for (;;) {
      let end = -1;
      let next = -1;
      for (let i = start; i < this._buffer.length; i++) {
        const c = this._buffer.charCodeAt(i);
        if (c === 10) {
          end = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          if (i + 1 === this._buffer.length) {
            // A lone \r at the end: a \n may follow in the next chunk.
            break;
          }
          end = i;
          next = this._buffer.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          break;
        }
      }
      if (end < 0) {
        break;
      }
      const event = this._line(this._buffer.slice(start, end));
      if (event) {
        events.push(event);
      }
      start = next;
    }
    this._buffer = this._buffer.slice(start);
    return events;
  }

  /**
   * The stream ended: an event without its closing blank line is dropped,
   * as the specification says.
   */
  end(): ISSEEvent[] {
    const events = this._buffer ? this.push('\n') : [];
    this._data = [];
    this._event = '';
    this._buffer = '';
    return events;
  }

  private _line(line: string): ISSEEvent | null {
    if (line === '') {
      if (this._data.length === 0) {
        this._event = '';
        return null;
      }
      const event: ISSEEvent = {
        event: this._event || 'message',
        data: this._data.join('\n')
      };
      if (this._id !== undefined) {
        event.id = this._id;
      }
      this._data = [];
      this._event = '';
      return event;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      this.comments++;
      return null;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* space */) {
      value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this._data.push(value);
        break;
      case 'event':
        this._event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this._id = value;
        }
        break;
      default:
        // `retry` and unknown fields are ignored.
        break;
    }
    return null;
  }

  private _buffer = '';
  private _data: string[] = [];
  private _event = '';
  private _id: string | undefined = undefined;
}

/**
 * Read a `text/event-stream` response to its end, calling `onEvent` for each
 * event. Resolves when the server closes the stream; rejects with an
 * `AbortError` when the request's signal aborts it.
 */
export async function readEventStream(
  response: Response,
  onEvent: (event: ISSEEvent) => void
): Promise<void> {
  if (!response.body) {
    throw new Error('The response has no body to stream.');
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      for (const event of parser.push(decoder.decode(value, { stream: true }))) {
        onEvent(event);
      }
    }
    for (const event of parser.push(decoder.decode())) {
      onEvent(event);
    }
    for (const event of parser.end()) {
      onEvent(event);
    }
  } finally {
    reader.releaseLock();
  }
}

/** Whether an error is the rejection of an aborted request. */
export function isAbortError(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: string }).name === 'AbortError'
  );
}
