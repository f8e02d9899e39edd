/**
 * Finding the cell that started a job among a notebook's cells.
 *
 * A job records the cell's body (`%%kf_train …` line removed, IPython syntax
 * transformed); the notebook holds what the user typed, which may since have
 * been edited. The best match wins: same text, same text without the magic
 * line, then a cell containing the body; among equals, the first cell.
 */

function normalise(source: string): string {
  return source
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map(line => line.replace(/\s+$/, ''))
    .join('\n')
    .trim();
}

/** The source without a leading cell magic line (`%%kf_train --workers 2`). */
export function stripCellMagic(source: string): string {
  const text = source.replace(/\r\n?/g, '\n').replace(/^\s*\n/, '');
  if (!text.startsWith('%%')) {
    return text;
  }
  const newline = text.indexOf('\n');
  return newline < 0 ? '' : text.slice(newline + 1);
}

/**
 * The index of the cell whose source best matches `cell`, or -1.
 */
export function findCellIndex(sources: readonly string[], cell: string | null | undefined): number {
  if (!cell) {
    return -1;
  }
  const wanted = normalise(cell);
  if (!wanted) {
    return -1;
  }
  const whole = sources.map(normalise);
  const bodies = sources.map(s => normalise(stripCellMagic(s)));
  const tests: ((i: number) => boolean)[] = [
    i => whole[i] === wanted,
    i => bodies[i] === wanted,
    i => bodies[i].includes(wanted)
  ];
  for (const test of tests) {
    for (let i = 0; i < sources.length; i++) {
      if (test(i)) {
        return i;
      }
    }
  }
  return -1;
}
