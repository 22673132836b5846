import { describe, expect, it } from 'vitest';
import { HeaderList } from './header-list.js';

const parsed = (): HeaderList => new HeaderList(['host', 'a', 'accept', '*/*', 'x-tag', '1']);

describe('HeaderList edits', () => {
  it('is unedited as parsed', () => {
    const h = parsed();
    expect(h.edited).toBe(false);
    expect(h.appendedFrom).toBe(6);
  });

  it('knows fields added after the original ones, by add or by set of a new name', () => {
    const h = parsed();
    h.add('x-new', 'v');
    h.set('x-other', 'w');
    expect(h.edited).toBe(true);
    expect(h.appendedFrom).toBe(6);
    expect(h.flat.slice(6)).toEqual(['x-new', 'v', 'x-other', 'w']);
    // Editing or removing an appended field leaves the original fields intact.
    h.set('x-new', 'v2');
    h.remove('x-other');
    expect(h.appendedFrom).toBe(6);
    expect(h.flat.slice(6)).toEqual(['x-new', 'v2']);
  });

  it('has no append point once an original field is changed or removed', () => {
    const changed = parsed();
    changed.set('accept', 'text/plain');
    expect(changed.appendedFrom).toBe(-1);
    const removed = parsed();
    removed.remove('x-tag');
    expect(removed.edited).toBe(true);
    expect(removed.appendedFrom).toBe(-1);
    const replaced = parsed();
    replaced.replaceAll([['host', 'a']]);
    expect(replaced.appendedFrom).toBe(-1);
  });

  it('counts a set that folds an appended duplicate away without touching the originals', () => {
    const h = parsed();
    h.add('x-new', '1');
    h.add('x-new', '2');
    h.set('x-new', '3');
    expect(h.flat.slice(6)).toEqual(['x-new', '3']);
    expect(h.appendedFrom).toBe(6);
    // A set of a name the original list holds twice changes the original fields.
    const twice = new HeaderList(['x-a', '1', 'x-a', '2']);
    twice.set('x-a', '3');
    expect(twice.flat).toEqual(['x-a', '3']);
    expect(twice.appendedFrom).toBe(-1);
  });
});
