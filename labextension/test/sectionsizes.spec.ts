import { fitSections, giveRoom, MIN_SECTION_PX, restoreSections } from '../src/sectionsizes';

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('fitSections', () => {
  it('gives every open section at least the minimum when there is room, closed ones nothing', () => {
    // the 300 px sidebar of a 900 px window: six sections, one of them closed
    const sizes = fitSections([400, 60, 20, 0, 300, 90], [true, true, true, true, true, false], 650);
    expect(sizes[5]).toBe(0);
    for (const s of sizes.slice(0, 5)) {
      expect(s).toBeGreaterThanOrEqual(MIN_SECTION_PX - 1e-9);
    }
    expect(sum(sizes)).toBeCloseTo(650);
  });

  it('gives the space to the sections whose content wants it', () => {
    const [jobs, tuning] = fitSections([500, 30], [true, true], 600);
    expect(jobs).toBeGreaterThan(tuning * 2);
    expect(tuning).toBeGreaterThanOrEqual(MIN_SECTION_PX);
  });

  it('caps one section so that a very long list does not take everything', () => {
    const sizes = fitSections([5000, 40, 40], [true, true, true], 1000);
    expect(sizes[0]).toBeLessThan(1000 - 2 * MIN_SECTION_PX + 1);
    expect(sum(sizes)).toBeCloseTo(1000);
  });

  it('shares evenly when even the minimum does not fit', () => {
    const sizes = fitSections([300, 300, 300], [true, true, true], 150);
    expect(sizes).toEqual([50, 50, 50]);
  });

  it('returns zeros when nothing is open', () => {
    expect(fitSections([10, 20], [false, false], 500)).toEqual([0, 0]);
  });
});

describe('giveRoom', () => {
  it('opens a 20 px strip to a good share, taken from the others above their minimum', () => {
    const out = giveRoom([500, 280, 20], 2);
    expect(sum(out)).toBeCloseTo(800);
    expect(out[2]).toBeGreaterThanOrEqual(0.45 * 800 - 1e-9);
    expect(out[0]).toBeGreaterThanOrEqual(MIN_SECTION_PX);
    expect(out[1]).toBeGreaterThanOrEqual(MIN_SECTION_PX);
  });

  it('leaves sizes alone when the section already has its share', () => {
    expect(giveRoom([100, 500], 1)).toEqual([100, 500]);
  });

  it('leaves closed sections closed', () => {
    const out = giveRoom([400, 0, 100], 2);
    expect(out[1]).toBe(0);
  });
});

describe('restoreSections', () => {
  it('reads back what was saved for the same sections', () => {
    const saved = { jobs: { open: true, size: 300 }, tuning: { open: false, size: 120 } };
    expect(restoreSections(saved, ['jobs', 'tuning'])).toEqual({ open: [true, false], sizes: [300, 0] });
  });

  it('ignores what does not fit the sections there are now', () => {
    expect(restoreSections({ jobs: { open: true, size: 1 } }, ['jobs', 'models'])).toBeNull();
    expect(restoreSections('garbage', ['jobs'])).toBeNull();
    expect(restoreSections({ jobs: { open: 'yes', size: 1 } }, ['jobs'])).toBeNull();
  });
});
