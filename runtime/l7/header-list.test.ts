import { describe, expect, it } from 'vitest';
import { FIELD_KEPT, FIELD_REMOVED, FIELD_REPLACED, HeaderList } from './header-list.js';

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

describe('HeaderList original edits (what a head splice needs)', () => {
  const marks = (h: HeaderList): number[] | undefined => (h.originalEdits === undefined ? undefined : [...h.originalEdits]);

  it('marks removed and replaced original fields by their original position, whatever was removed before them', () => {
    const h = new HeaderList(['host', 'a', 'x-1', '1', 'x-2', '2', 'x-3', '3', 'x-4', '4']);
    h.add('x-new', 'n');
    expect(marks(h)).toBeUndefined();
    h.remove('x-1');
    h.remove('x-3');
    h.set('x-4', 'four');
    h.set('x-2', 'two');
    expect(marks(h)).toEqual([FIELD_KEPT, FIELD_REMOVED, FIELD_REPLACED, FIELD_REMOVED, FIELD_REPLACED]);
    expect(h.flat).toEqual(['host', 'a', 'x-2', 'two', 'x-4', 'four', 'x-new', 'n']);
    expect(h.addedFrom).toBe(6);
    expect(h.appendedFrom).toBe(-1);
  });

  it('records a whole-map replacement as the removals, replacements and additions that give the same list', () => {
    const h = new HeaderList(['host', 'a', 'authorization', 'Bearer t', 'x-user', 'mallory', 'accept', '*/*']);
    h.replaceAll([['host', 'a'], ['x-user', 'alice'], ['accept', '*/*'], ['x-sub', 'alice']]);
    expect(h.flat).toEqual(['host', 'a', 'x-user', 'alice', 'accept', '*/*', 'x-sub', 'alice']);
    expect(marks(h)).toEqual([FIELD_KEPT, FIELD_REMOVED, FIELD_REPLACED, FIELD_KEPT]);
    expect(h.addedFrom).toBe(6);
    // A reordered map: the fields it moved are removed and added again in its order.
    const moved = new HeaderList(['host', 'a', 'x-1', '1', 'x-2', '2']);
    moved.replaceAll([['host', 'a'], ['x-2', '2'], ['X-1', '1']]);
    expect(moved.flat).toEqual(['host', 'a', 'x-2', '2', 'x-1', '1']);
    expect(marks(moved)).toEqual([FIELD_KEPT, FIELD_REMOVED, FIELD_KEPT]);
    expect(moved.addedFrom).toBe(4);
    // The same pairs again change nothing.
    const same = new HeaderList(['host', 'a', 'x-1', '1']);
    same.replaceAll(same.pairs());
    expect(same.edited).toBe(false);
  });

  it('validates every pair of a whole-map replacement before changing anything', () => {
    const h = new HeaderList(['host', 'a', 'x-1', '1']);
    expect(() => h.replaceAll([['host', 'a'], ['bad name', 'v']])).toThrow(TypeError);
    expect(() => h.replaceAll([['x-2', 'a\r\nx-injected: 1']])).toThrow(TypeError);
    expect(h.flat).toEqual(['host', 'a', 'x-1', '1']);
    expect(h.edited).toBe(false);
  });

  it('refuses a value a latin1 write would turn into a line break (U+010A is written as LF)', () => {
    const h = new HeaderList([]);
    expect(() => h.set('x-a', 'a\u010ax-injected: 1')).toThrow(TypeError);
    expect(() => h.add('x-a', '\u20ac')).toThrow(TypeError);
    h.add('x-a', 'caf\xe9');
    expect(h.flat).toEqual(['x-a', 'caf\xe9']);
  });

  it('checks every value, a new one per request as a rate-limit count makes them, however many came before', () => {
    const h = new HeaderList(['host', 'a']);
    for (let i = 0; i < 10_000; i++) h.set('ratelimit', `"api.user";r=${999_999_999 - i};t=1`);
    expect(h.get('ratelimit')).toBe('"api.user";r=999990000;t=1');
    expect(() => h.set('ratelimit', '"api.user";r=1\r\nx-injected: 1')).toThrow(TypeError);
    expect(() => h.add('ratelimit', '"api.user";r=1\u0000')).toThrow(TypeError);
    expect(h.get('ratelimit')).toBe('"api.user";r=999990000;t=1');
  });
});
