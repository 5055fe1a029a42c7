import {
  connectCode,
  decode,
  documentCode,
  encode,
  isTaskSource,
  magicCode,
  taskCells
} from '../document';

describe('taskCells', () => {
  it('keeps the %%task code cells, in notebook order, with id and source', () => {
    const cells = [
      { id: 'a', type: 'code', source: '%load_ext nbflow' },
      { id: 'b', type: 'code', source: '%%task\nx = 1' },
      { id: 'c', type: 'markdown', source: '%%task in a markdown cell' },
      { id: 'd', type: 'code', source: 'y = 2' },
      { id: 'e', type: 'code', source: '%%task total --retries 2\ntotal = x + 1' },
      { id: 'f', type: 'code', source: '%%taskforce = 1' }
    ];
    expect(taskCells(cells)).toEqual([
      { id: 'b', source: '%%task\nx = 1' },
      { id: 'e', source: '%%task total --retries 2\ntotal = x + 1' }
    ]);
  });

  it('tells a task cell by its first line only', () => {
    expect(isTaskSource('%%task')).toBe(true);
    expect(isTaskSource('%%task load\nx = 1')).toBe(true);
    expect(isTaskSource('# %%task\nx = 1')).toBe(false);
    expect(isTaskSource('%%timeit\nx = 1')).toBe(false);
  });
});

describe('encode', () => {
  it('round-trips sources with quotes, backslashes, newlines and non-ASCII text', () => {
    const cells = [{ id: 'c1', source: '%%task\ns = "a\\\\b\'c"\nπ = "ü ✓ 😀"\n' }];
    const text = encode(cells);
    expect(text).toMatch(/^[A-Za-z0-9+/=]+$/);
    expect(decode(text)).toEqual(cells);
  });
});

describe('magicCode', () => {
  it('loads the magics quietly, then runs the %flow line', () => {
    expect(magicCode('retry').split('\n')).toEqual([
      'get_ipython().extension_manager.load_extension("nbflow");',
      '%flow retry'
    ]);
  });
});

describe('documentCode', () => {
  it('loads the magics, then hands the kernel the task cells', () => {
    const cells = [{ id: 'c1', source: '%%task\nx = 1' }];
    const lines = documentCode(cells).split('\n');
    expect(lines[0]).toBe('get_ipython().extension_manager.load_extension("nbflow");');
    const sent = /use_document\(get_ipython\(\), "([^"]+)"\)$/.exec(lines[1]);
    expect(sent).not.toBeNull();
    expect(decode(sent![1])).toEqual(cells);
    expect(lines).toHaveLength(2);
  });
});

describe('connectCode', () => {
  it('asks the kernel to resend the states of the given cell ids', () => {
    const code = connectCode([{ id: 'c1', source: '%%task\nx = 1' }, { id: 'c2', source: '%%task\ny = x' }]);
    const sent = /resend\(get_ipython\(\), "([^"]+)"\)$/.exec(code);
    expect(sent).not.toBeNull();
    expect(decode(sent![1])).toEqual(['c1', 'c2']);
  });
});
