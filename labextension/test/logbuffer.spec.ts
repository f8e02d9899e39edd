import { FollowState, isAtBottom, LogBuffer } from '../src/logbuffer';

describe('LogBuffer', () => {
  it('keeps the last `capacity` lines and counts the dropped ones', () => {
    const b = new LogBuffer({ capacity: 3 });
    b.append(['a', 'b']);
    expect(b.toArray()).toEqual(['a', 'b']);
    b.append(['c', 'd', 'e']);
    expect(b.toArray()).toEqual(['c', 'd', 'e']);
    expect(b.length).toBe(3);
    expect(b.dropped).toBe(2);
    expect(b.text()).toBe('c\nd\ne');
  });

  it('stays bounded over a long follow, one line at a time', () => {
    const b = new LogBuffer({ capacity: 100 });
    for (let i = 0; i < 10000; i++) {
      b.append([`line ${i}`]);
      expect(b.length).toBeLessThanOrEqual(100);
    }
    expect(b.toArray()[0]).toBe('line 9900');
    expect(b.toArray()[99]).toBe('line 9999');
    expect(b.dropped).toBe(9900);
    // The backing array is compacted, not grown without bound.
    expect((b as unknown as { _lines: string[] })._lines.length).toBeLessThanOrEqual(200);
  });

  it('bumps its version on change only, and clears', () => {
    const b = new LogBuffer({ capacity: 2 });
    const v0 = b.version;
    b.append([]);
    expect(b.version).toBe(v0);
    b.append(['x']);
    expect(b.version).toBe(v0 + 1);
    b.clear();
    expect(b.length).toBe(0);
    expect(b.dropped).toBe(0);
    expect(b.version).toBe(v0 + 2);
  });

  it('cuts very long lines', () => {
    const b = new LogBuffer({ capacity: 2, maxLineLength: 20 });
    b.append(['x'.repeat(100)]);
    expect(b.toArray()[0]).toBe('x'.repeat(20) + ' …[cut]');
  });
});

describe('FollowState', () => {
  const at = (scrollTop: number) => ({ scrollTop, clientHeight: 100, scrollHeight: 1000 });

  it('knows the bottom, with a tolerance', () => {
    expect(isAtBottom(at(900))).toBe(true);
    expect(isAtBottom(at(880))).toBe(true);
    expect(isAtBottom(at(800))).toBe(false);
  });

  it('stops following when the user scrolls up and resumes at the bottom', () => {
    const f = new FollowState(true);
    expect(f.onScroll(at(400))).toBe(true);
    expect(f.following).toBe(false);
    expect(f.onScroll(at(500))).toBe(false);
    expect(f.onScroll(at(900))).toBe(true);
    expect(f.following).toBe(true);
  });

  it('is not switched off by its own jump to the bottom', () => {
    const f = new FollowState(true);
    f.willAutoScroll();
    expect(f.onScroll(at(900))).toBe(false);
    expect(f.following).toBe(true);
  });

  it('toggles', () => {
    const f = new FollowState(true);
    expect(f.toggle()).toBe(false);
    expect(f.toggle()).toBe(true);
  });
});
