import { findCellIndex, stripCellMagic } from '../src/cells';

describe('findCellIndex', () => {
  const body = 'import time\nfor i in range(3):\n    print(i)';
  const cells = [
    '%load_ext kfjupyter',
    `%%kf_train --workers 2 --name ui-train\n${body}\n`,
    '%%kf_train --workers 2 --name other\nprint("other")'
  ];

  it('finds the cell from its body (magic line removed)', () => {
    expect(findCellIndex(cells, body)).toBe(1);
    expect(findCellIndex(cells, 'print("other")')).toBe(2);
  });

  it('matches a cell stored with its magic line, and ignores trailing spaces / CRLF', () => {
    expect(findCellIndex(cells, cells[2])).toBe(2);
    expect(findCellIndex(cells, body.replace(/\n/g, '  \r\n'))).toBe(1);
  });

  it('finds a cell edited around the body, and gives -1 when nothing matches', () => {
    const edited = [...cells.slice(0, 1), `%%kf_train\n# tweaked\n${body}\nprint("more")`];
    expect(findCellIndex(edited, body)).toBe(1);
    expect(findCellIndex(cells, 'print("nowhere")')).toBe(-1);
    expect(findCellIndex(cells, '')).toBe(-1);
    expect(findCellIndex(cells, null)).toBe(-1);
  });

  it('prefers an exact match over a containing cell', () => {
    const two = [`x = 1\n${body}`, body];
    expect(findCellIndex(two, body)).toBe(1);
  });
});

describe('stripCellMagic', () => {
  it('drops the first line of a cell magic only', () => {
    expect(stripCellMagic('%%kf_train -w 2\nprint(1)')).toBe('print(1)');
    expect(stripCellMagic('print(1)')).toBe('print(1)');
    expect(stripCellMagic('%%kf_train')).toBe('');
  });
});
