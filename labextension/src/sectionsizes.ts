/**
 * How tall each section of the Kubeflow sidebar's accordion is: pure arithmetic on
 * pixel heights, so that it can be tested without a DOM (the sidebar measures, calls
 * these, and hands the result to `AccordionPanel.setRelativeSizes`).
 *
 * Rules: an open section is never shorter than `min` (a usable list: a row, its
 * actions and the section's toolbar) while there is room for that; space goes to the
 * sections whose content wants it, so an empty section does not take what a full one
 * needs; a section opened for the user gets a good share of the height.
 */

/** The least height (px) of an open section's content. */
export const MIN_SECTION_PX = 110;

/** A section whose content is taller is not given more than this share of the height. */
export const MAX_SHARE = 0.7;

/**
 * Heights (px) for the sections: `wanted[i]` is section i's content height, `open[i]`
 * whether it is expanded (a closed one gets 0), `total` the height for them all.
 */
export function fitSections(
  wanted: number[],
  open: boolean[],
  total: number,
  min = MIN_SECTION_PX
): number[] {
  const sizes = wanted.map(() => 0);
  const shown = wanted.map((_, i) => i).filter(i => open[i]);
  if (!shown.length || total <= 0) {
    return sizes;
  }
  const floor = Math.min(min, total / shown.length);
  const want = shown.map(i => Math.min(Math.max(wanted[i] || 0, floor), total * MAX_SHARE));
  const sum = want.reduce((a, b) => a + b, 0);
  if (sum <= total) {
    // Everyone has what it wants; the rest goes to them in proportion (they fill the
    // sidebar) but more to those that were capped or want much.
    const extra = total - sum;
    shown.forEach((i, k) => {
      sizes[i] = want[k] + (extra * want[k]) / sum;
    });
    return sizes;
  }
  // Not enough room: each gets the floor, the rest in proportion to what it wants above it.
  const above = want.map(w => w - floor);
  const aboveSum = above.reduce((a, b) => a + b, 0);
  const rest = total - floor * shown.length;
  shown.forEach((i, k) => {
    sizes[i] = floor + (aboveSum > 0 ? (rest * above[k]) / aboveSum : rest / shown.length);
  });
  return sizes;
}

/**
 * `sizes` with section `index` given at least `share` of their total, taken from the
 * other open sections in proportion to what they have above `min` (none is pushed
 * below `min` while that can be helped).
 */
export function giveRoom(sizes: number[], index: number, share = 0.45, min = MIN_SECTION_PX): number[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  const target = Math.max(sizes[index] || 0, total * share);
  const need = target - (sizes[index] || 0);
  const out = sizes.slice();
  if (need <= 0 || total <= 0) {
    return out;
  }
  const others = sizes.map((_, i) => i).filter(i => i !== index && sizes[i] > 0);
  const spare = others.map(i => Math.max(0, sizes[i] - min));
  const spareSum = spare.reduce((a, b) => a + b, 0);
  let taken = 0;
  if (spareSum > 0) {
    const fromSpare = Math.min(need, spareSum);
    others.forEach((i, k) => {
      const cut = (fromSpare * spare[k]) / spareSum;
      out[i] -= cut;
      taken += cut;
    });
  }
  if (taken < need) {
    // Everyone is at its floor already: share the rest of the cut evenly.
    const left = need - taken;
    const pool = others.reduce((a, i) => a + out[i], 0);
    others.forEach(i => {
      const cut = pool > 0 ? (left * out[i]) / pool : 0;
      out[i] -= cut;
      taken += cut;
    });
  }
  out[index] = (sizes[index] || 0) + taken;
  return out;
}

/** What the sidebar remembers of its sections (by section id), from `localStorage`. */
export interface ISavedSections {
  [id: string]: { open: boolean; size: number };
}

/** `saved` read back for the sections `ids`: null when it does not fit them. */
export function restoreSections(
  saved: unknown,
  ids: string[]
): { open: boolean[]; sizes: number[] } | null {
  if (!saved || typeof saved !== 'object') {
    return null;
  }
  const entries = ids.map(id => (saved as ISavedSections)[id]);
  if (entries.some(e => !e || typeof e.open !== 'boolean' || typeof e.size !== 'number' || !isFinite(e.size))) {
    return null;
  }
  return { open: entries.map(e => e.open), sizes: entries.map(e => (e.open ? Math.max(0, e.size) : 0)) };
}
