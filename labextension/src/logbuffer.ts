/**
 * The log viewer's memory: a bounded buffer of lines, and the follow rule.
 */

export interface ILogBufferOptions {
  /** The most lines kept; older lines are dropped first. */
  capacity?: number;
  /** Longer lines are cut to this many characters (with a marker). */
  maxLineLength?: number;
}

/**
 * The last `capacity` lines of a stream, and how many fell off the front.
 *
 * Appending is amortised O(batch): the array is compacted only when the
 * dropped head grows past the capacity, so a long follow never copies the
 * whole buffer per line.
 */
export class LogBuffer {
  readonly capacity: number;
  readonly maxLineLength: number;

  constructor(options: ILogBufferOptions = {}) {
    this.capacity = Math.max(1, Math.floor(options.capacity ?? 5000));
    this.maxLineLength = Math.max(16, Math.floor(options.maxLineLength ?? 8192));
  }

  /** Lines dropped from the front since the last `clear`. */
  get dropped(): number {
    return this._dropped;
  }

  /** Lines held now (never more than `capacity`). */
  get length(): number {
    return this._lines.length - this._head;
  }

  /** Bumped by every change, so a view can tell whether to redraw. */
  get version(): number {
    return this._version;
  }

  append(lines: Iterable<string>): void {
    let added = false;
    for (const raw of lines) {
      const line =
        raw.length > this.maxLineLength
          ? raw.slice(0, this.maxLineLength) + ' …[cut]'
          : raw;
      this._lines.push(line);
      added = true;
    }
    if (!added) {
      return;
    }
    const excess = this.length - this.capacity;
    if (excess > 0) {
      this._head += excess;
      this._dropped += excess;
    }
    if (this._head >= this.capacity) {
      this._lines = this._lines.slice(this._head);
      this._head = 0;
    }
    this._version++;
  }

  clear(): void {
    this._lines = [];
    this._head = 0;
    this._dropped = 0;
    this._version++;
  }

  toArray(): string[] {
    return this._lines.slice(this._head);
  }

  /** The held lines as one text, the way a `<pre>` shows them. */
  text(): string {
    return this.toArray().join('\n');
  }

  private _lines: string[] = [];
  private _head = 0;
  private _dropped = 0;
  private _version = 0;
}

/** How close to the bottom (in pixels) still counts as "at the bottom". */
export const FOLLOW_TOLERANCE_PX = 24;

export interface IScrollState {
  scrollTop: number;
  clientHeight: number;
  scrollHeight: number;
}

export function isAtBottom(
  s: IScrollState,
  tolerance = FOLLOW_TOLERANCE_PX
): boolean {
  return s.scrollHeight - s.clientHeight - s.scrollTop <= tolerance;
}

/**
 * Follow mode: while on, the view sticks to the newest line. Scrolling up
 * turns it off; scrolling back to the bottom (or the toggle) turns it on.
 *
 * `onScroll` ignores the scroll events that the view's own jump to the
 * bottom causes, so a burst of lines never switches following off.
 */
export class FollowState {
  constructor(public following = true) {}

  /** The view is about to jump to the bottom by itself. */
  willAutoScroll(): void {
    this._selfScrolls++;
  }

  /** A scroll event happened; returns whether following changed. */
  onScroll(s: IScrollState): boolean {
    if (this._selfScrolls > 0) {
      this._selfScrolls--;
      if (isAtBottom(s)) {
        return false;
      }
    }
    const next = isAtBottom(s);
    if (next !== this.following) {
      this.following = next;
      return true;
    }
    return false;
  }

  toggle(): boolean {
    this.following = !this.following;
    return this.following;
  }

  private _selfScrolls = 0;
}
