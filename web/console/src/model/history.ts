// Undo and redo over immutable documents. Consecutive edits with the same non-empty
// `coalesce` key (typing into one field) make one step.

export class History<T> {
  private past: T[] = [];
  private future: T[] = [];
  private lastKey = '';

  constructor(
    private current: T,
    private readonly limit = 200,
  ) {}

  get present(): T {
    return this.current;
  }
  get canUndo(): boolean {
    return this.past.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }

  /** Makes `next` the present; the old present becomes undoable. Clears the redo list. */
  push(next: T, coalesce = ''): void {
    if (next === this.current) return;
    if (!(coalesce && coalesce === this.lastKey && this.past.length)) {
      this.past.push(this.current);
      if (this.past.length > this.limit) this.past.shift();
    }
    this.current = next;
    this.future = [];
    this.lastKey = coalesce;
  }

  undo(): T {
    const prev = this.past.pop();
    if (prev !== undefined) {
      this.future.push(this.current);
      this.current = prev;
    }
    this.lastKey = '';
    return this.current;
  }

  redo(): T {
    const next = this.future.pop();
    if (next !== undefined) {
      this.past.push(this.current);
      this.current = next;
    }
    this.lastKey = '';
    return this.current;
  }

  /** Starts over from `doc` with no history (after loading another document). */
  reset(doc: T): void {
    this.past = [];
    this.future = [];
    this.current = doc;
    this.lastKey = '';
  }
}
