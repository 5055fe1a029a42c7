/**
 * The badge model: what the kernel said about each `%%task` cell, by cell id.
 *
 * Pure data, no DOM: the kernel sends cell-level updates on the `nbflow` comm and
 * this model folds them into one badge per cell (tested with jest).
 */

/** State values are the same lower-case strings as Python's `nbflow.State`. */
export const STATES = [
  'pending',
  'running',
  'retrying',
  'paused',
  'success',
  'cached',
  'failed',
  'timed_out',
  'skipped',
  'upstream_failed',
  'cancelled'
] as const;

export type StateName = (typeof STATES)[number];

/** One cell's update, as sent by the kernel. */
export interface ICellUpdate {
  cell_id: string;
  task: string;
  state: StateName;
  attempts?: number;
  retries?: number;
  duration?: number | null;
  done?: number | null;
  total?: number | null;
}

/** A message on the `nbflow` comm. */
export interface IChannelMessage {
  type: 'cells' | 'reset';
  cells?: ICellUpdate[];
}

/** What a badge shows. */
export interface IBadge {
  cellId: string;
  task: string;
  state: StateName;
  text: string;
  title: string;
}

const FINISHED: ReadonlySet<StateName> = new Set<StateName>([
  'success',
  'cached',
  'failed',
  'timed_out',
  'skipped',
  'upstream_failed',
  'cancelled'
]);

export function isState(value: unknown): value is StateName {
  return typeof value === 'string' && (STATES as readonly string[]).includes(value);
}

function formatDuration(seconds: number): string {
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** The badge for one update: its text and tooltip. */
export function badgeFor(update: ICellUpdate): IBadge {
  const label = update.state.replace('_', ' ');
  const parts: string[] = [label];
  if (update.state === 'retrying' && update.retries) {
    parts[0] = `retrying ${update.attempts ?? 1}/${update.retries + 1}`;
  }
  if (update.total !== undefined && update.total !== null) {
    parts.push(`${update.done ?? 0}/${update.total}`);
  }
  if (FINISHED.has(update.state) && update.duration !== undefined && update.duration !== null) {
    if (update.state !== 'cached') {
      parts.push(formatDuration(update.duration));
    }
  }
  const attempts = update.attempts ?? 0;
  const title =
    `nbflow task '${update.task}': ${label}` +
    (attempts > 1 ? `, ${attempts} attempts` : '') +
    (update.state === 'failed' ? ' (click to see the error)' : '');
  return { cellId: update.cell_id, task: update.task, state: update.state, text: parts.join(' · '), title };
}

/** Badges by cell id, folded from the kernel's messages. */
export class BadgeModel {
  private _badges = new Map<string, IBadge>();

  /** Apply one comm message; returns the cell ids whose badge changed. */
  apply(message: IChannelMessage): string[] {
    if (message.type === 'reset') {
      const ids = [...this._badges.keys()];
      this._badges.clear();
      return ids;
    }
    const changed: string[] = [];
    for (const update of message.cells ?? []) {
      if (!update || typeof update.cell_id !== 'string' || !isState(update.state)) {
        continue; // a newer kernel may send states this version does not know
      }
      const badge = badgeFor(update);
      const old = this._badges.get(update.cell_id);
      if (!old || old.text !== badge.text || old.state !== badge.state) {
        this._badges.set(update.cell_id, badge);
        changed.push(update.cell_id);
      }
    }
    return changed;
  }

  get(cellId: string): IBadge | undefined {
    return this._badges.get(cellId);
  }

  get size(): number {
    return this._badges.size;
  }

  /** The cells whose task failed, in no particular order. */
  failed(): string[] {
    return [...this._badges.values()]
      .filter(b => b.state === 'failed' || b.state === 'timed_out')
      .map(b => b.cellId);
  }
}
