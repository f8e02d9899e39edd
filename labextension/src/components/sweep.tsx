/**
 * How a cell of a papermill sweep's results table reads (the table is
 * `NotebookRunView`'s, in notebookrun.tsx).
 */

/** A cell of the table as text: numbers rounded for reading, empty for missing. */
export function formatResult(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return String(value);
}
