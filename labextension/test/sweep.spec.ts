import { formatResult } from '../src/components/sweep';

describe('formatResult', () => {
  it('shows integers as they are and rounds other numbers to 4 digits', () => {
    expect(formatResult(12)).toBe('12');
    expect(formatResult(0.123456)).toBe('0.1235');
  });
  it('shows missing values as empty and text as text', () => {
    expect(formatResult(null)).toBe('');
    expect(formatResult(undefined)).toBe('');
    expect(formatResult('Succeeded')).toBe('Succeeded');
  });
});
