/**
 * A forwarded head's own bytes with the original fields filters removed cut out and the ones they replaced rewritten in
 * place (HeaderList.originalEdits): byte ranges of the received head are copied, so a plugin that drops or sets a
 * field (jwt-authn dropping `authorization`, header-rewrite's remove) no longer makes the head be written anew field by
 * field. Appending the added fields is left to the writer (appendedFieldLines, Http1Transport.writeSpliced).
 */
import { FIELD_KEPT, FIELD_REMOVED, type HeaderList } from './header-list.js';
import { HOP_BY_HOP } from './http1-head-parser.js';

const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;

/** Byte ranges [start, end) of the head to copy, and after each, the new value of the replaced field whose line it stops at ('' for a cut). */
const RANGES: number[] = [];
const VALUES: (string | undefined)[] = [];
/** Where each replaced line's name ends (its colon). */
const COLONS: number[] = [];

/**
 * `raw` (MessageHead.verbatim: a head the parser accepted, start line to blank line) as `headers` now has its original
 * fields: `raw` itself when none was removed or replaced, a new buffer ending in the blank line when some were, or
 * undefined when the head must be written anew (requestHeadText): an edited field is one the writers drop or re-create
 * (hop-by-hop and framing fields; a request's host, whose line the authority decides, and traceparent).
 *
 * This relies on the parser's field list matching the head's field lines one to one and in order: every field line is
 * one entry (names are tchar, so the first colon ends them; values hold no CR or LF, so each LF ends one line, always
 * after a CR; obs-fold is refused, not unfolded), duplicates included, whatever whitespace surrounds a value. A head
 * whose lines do not come out as the field count says is still written anew rather than guessed at.
 */
export function splicedHead(raw: Buffer, headers: HeaderList, isRequest: boolean): Buffer | undefined {
  const edits = headers.originalEdits;
  if (edits === undefined) return raw;
  const f = headers.flat;
  const n = raw.length;
  let p = lineEnd(raw, 0);
  let from = 0;
  let size = 0;
  let parts = 0;
  let j = 0;
  for (let k = 0; k < edits.length; k++) {
    const line = p;
    p = lineEnd(raw, p);
    // Past the blank line's start: fewer lines than fields.
    if (p >= n) return undefined;
    const edit = edits[k];
    if (edit === FIELD_KEPT) {
      j += 2;
      continue;
    }
    let colon = line;
    while (colon < p && raw[colon] !== COLON) colon++;
    if (colon === p) return undefined;
    let value: string | undefined;
    if (edit === FIELD_REMOVED) {
      if (isRecreated(raw.latin1Slice(line, colon).toLowerCase(), isRequest)) return undefined;
    } else {
      if (isRecreated(f[j]!, isRequest)) return undefined;
      value = f[j + 1]!;
      j += 2;
      // The line's own name, then ": value" CRLF.
      size += colon - line + 4 + value.length;
    }
    RANGES[parts * 2] = from;
    RANGES[parts * 2 + 1] = line;
    VALUES[parts] = value;
    COLONS[parts] = colon;
    size += line - from;
    parts++;
    from = p;
  }
  // What is left must be exactly the blank line.
  if (p !== n - 2 || raw[p] !== CR || raw[p + 1] !== LF) return undefined;
  const out = Buffer.allocUnsafe(size + n - from);
  let at = 0;
  for (let i = 0; i < parts; i++) {
    at += raw.copy(out, at, RANGES[i * 2]!, RANGES[i * 2 + 1]!);
    const value = VALUES[i];
    if (value === undefined) continue;
    const line = RANGES[i * 2 + 1]!;
    at += raw.copy(out, at, line, COLONS[i]! + 1);
    out[at++] = 0x20;
    at += value.length === 0 ? 0 : out.latin1Write(value, at, value.length);
    out[at++] = CR;
    out[at++] = LF;
    VALUES[i] = undefined;
  }
  raw.copy(out, at, from, n);
  return out;
}

/** Index just past the LF that ends the line starting at `p` (raw.length when there is none). */
function lineEnd(raw: Buffer, p: number): number {
  const n = raw.length;
  while (p < n && raw[p] !== LF) p++;
  return p + 1;
}

/** A field whose line the head writers drop or write from their own decision, never from the list. */
function isRecreated(name: string, isRequest: boolean): boolean {
  return HOP_BY_HOP.has(name) || (isRequest && (name === 'host' || name === 'traceparent'));
}
