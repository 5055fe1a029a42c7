import { BadgeModel, badgeFor, isState } from '../model';

describe('badgeFor', () => {
  it('shows a running task with its state only', () => {
    const b = badgeFor({ cell_id: 'c1', task: 'load', state: 'running', attempts: 1 });
    expect(b.text).toBe('running');
    expect(b.state).toBe('running');
    expect(b.title).toBe("nbflow task 'load': running");
  });

  it('counts retries as attempt n of retries + 1', () => {
    const b = badgeFor({ cell_id: 'c1', task: 'load', state: 'retrying', attempts: 2, retries: 3 });
    expect(b.text).toBe('retrying 2/4');
  });

  it('gives finished tasks a duration, but not cached ones', () => {
    expect(badgeFor({ cell_id: 'c', task: 't', state: 'success', duration: 0.25 }).text).toBe(
      'success · 250 ms'
    );
    expect(badgeFor({ cell_id: 'c', task: 't', state: 'success', duration: 75 }).text).toBe(
      'success · 1 min 15 s'
    );
    expect(badgeFor({ cell_id: 'c', task: 't', state: 'cached', duration: 3 }).text).toBe('cached');
  });

  it('writes upstream_failed with a space and says a failed badge can be clicked', () => {
    expect(badgeFor({ cell_id: 'c', task: 't', state: 'upstream_failed' }).text).toBe(
      'upstream failed'
    );
    const failed = badgeFor({ cell_id: 'c', task: 't', state: 'failed', attempts: 3, duration: 2 });
    expect(failed.text).toBe('failed · 2.0 s');
    expect(failed.title).toBe("nbflow task 't': failed, 3 attempts (click to see the error)");
  });

  it('shows mapped progress as done/total', () => {
    const b = badgeFor({ cell_id: 'c', task: 'm', state: 'running', done: 3, total: 10 });
    expect(b.text).toBe('running · 3/10');
  });
});

describe('BadgeModel', () => {
  it('folds updates by cell id and reports only what changed', () => {
    const m = new BadgeModel();
    expect(
      m.apply({
        type: 'cells',
        cells: [
          { cell_id: 'a', task: 'load', state: 'running' },
          { cell_id: 'b', task: 'clean', state: 'pending' }
        ]
      })
    ).toEqual(['a', 'b']);
    expect(m.apply({ type: 'cells', cells: [{ cell_id: 'a', task: 'load', state: 'running' }] })).toEqual(
      []
    );
    expect(
      m.apply({ type: 'cells', cells: [{ cell_id: 'a', task: 'load', state: 'failed', duration: 1 }] })
    ).toEqual(['a']);
    expect(m.get('a')?.state).toBe('failed');
    expect(m.get('b')?.state).toBe('pending');
    expect(m.failed()).toEqual(['a']);
    expect(m.size).toBe(2);
  });

  it('ignores states it does not know and malformed updates', () => {
    const m = new BadgeModel();
    const changed = m.apply({
      type: 'cells',
      cells: [
        { cell_id: 'a', task: 'x', state: 'exploded' as never },
        null as never,
        { cell_id: 'b', task: 'y', state: 'success' }
      ]
    });
    expect(changed).toEqual(['b']);
    expect(m.get('a')).toBeUndefined();
  });

  it('forgets every badge on reset (a new kernel)', () => {
    const m = new BadgeModel();
    m.apply({ type: 'cells', cells: [{ cell_id: 'a', task: 'x', state: 'success' }] });
    expect(m.apply({ type: 'reset' })).toEqual(['a']);
    expect(m.size).toBe(0);
  });

  it('knows exactly the Python state names', () => {
    for (const s of ['pending', 'running', 'retrying', 'paused', 'success', 'cached', 'failed',
                     'timed_out', 'skipped', 'upstream_failed', 'cancelled']) {
      expect(isState(s)).toBe(true);
    }
    expect(isState('done')).toBe(false);
  });
});
