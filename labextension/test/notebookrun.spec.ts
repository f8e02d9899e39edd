import { buildRunRequest, IParameterRow, parseValue, requestBody, splitValues } from '../src/notebookrun';

const row = (name: string, type: string | null, source: string, text = source): IParameterRow => ({
  name,
  type,
  source,
  text
});

describe('parseValue', () => {
  it('reads values as papermill -p reads them', () => {
    expect(parseValue('1')).toBe(1);
    expect(parseValue('1_000')).toBe(1000);
    expect(parseValue('1e-3')).toBe(0.001);
    expect(parseValue('.5')).toBe(0.5);
    expect(parseValue('True')).toBe(true);
    expect(parseValue('False')).toBe(false);
    expect(parseValue('None')).toBeNull();
    expect(parseValue('true')).toBe('true');
    expect(parseValue('0.1.2')).toBe('0.1.2');
    expect(parseValue('-inf')).toBe(-Infinity);
    expect(Number.isNaN(parseValue('nan') as number)).toBe(true);
  });
  it('keeps the text of a string parameter and reads JSON for a list', () => {
    expect(parseValue('12', 'str')).toBe('12');
    expect(parseValue('[1, 2]', 'list')).toEqual([1, 2]);
    expect(parseValue('abc', 'float')).toBe('abc'); // refused by the server, naming it
  });
});

describe('splitValues', () => {
  it('splits a sweep on commas', () => {
    expect(splitValues('0.1, 0.01')).toEqual([0.1, 0.01]);
    expect(splitValues(' 3 ')).toEqual([3]);
    expect(splitValues('a,b', 'str')).toEqual(['a', 'b']);
    expect(splitValues('[1, 2]', 'list')).toEqual([[1, 2]]);
  });
  it('refuses an empty value, saying so', () => {
    expect(() => splitValues('0.1,,0.2')).toThrow('empty value in "0.1,,0.2"');
    expect(() => splitValues('0.1,')).toThrow('empty value');
    expect(() => splitValues('  ')).toThrow('no value');
  });
});

describe('buildRunRequest', () => {
  it('sends only what differs from the defaults: one value fixed, several swept', () => {
    const built = buildRunRequest(
      'sub/train.ipynb',
      [row('lr', 'float', '0.1', '0.5, 0.25'), row('layers', 'int', '2', '3'), row('name', 'str', "'x'")],
      '2'
    );
    expect(built.errors).toEqual({});
    expect(built.runs).toBe(2);
    expect(built.request).toEqual({
      path: 'sub/train.ipynb',
      parameters: { layers: 3 },
      sweep: { lr: [0.5, 0.25] },
      max_parallel: 2
    });
  });
  it('is a plain run with the defaults when nothing changed', () => {
    const built = buildRunRequest('a.ipynb', [row('lr', 'float', '0.1'), row('n', 'int', '1', '')], '2');
    expect(built.request).toEqual({ path: 'a.ipynb' });
    expect(built.runs).toBe(1);
  });
  it('counts the grid and names the problems, sending nothing', () => {
    const built = buildRunRequest('a.ipynb', [row('a', 'int', '1', '1,2,3'), row('b', 'int', '1', '1,,2')], '0');
    expect(built.request).toBeNull();
    expect(built.errors.b).toMatch('empty value');
    expect(built.errors['']).toBe('parallelism must be a whole number >= 1, not "0"');
    expect(buildRunRequest('a.ipynb', [row('a', 'int', '1', '1,2'), row('b', 'int', '1', '1,2,3')], '').runs).toBe(6);
  });
});

describe('requestBody', () => {
  it('writes NaN and infinities as Python json reads them', () => {
    expect(requestBody({ path: 'a.ipynb', sweep: { x: [NaN, Infinity, -Infinity, 1] } })).toBe(
      '{"path":"a.ipynb","sweep":{"x":[NaN,Infinity,-Infinity,1]}}'
    );
  });
});
