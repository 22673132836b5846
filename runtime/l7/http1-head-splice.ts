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
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

/** Byte ranges [start, end) of the head to copy, and after each, the new value of the replaced field whose line it stops at (undefined for a cut). */
const RANGES: number[] = [];
const VALUES: (string | undefined)[] = [];
/** Where each replaced line's name ends (its colon). */
const COLONS: number[] = [];

/** Names whose lines the head writers drop or write from their own decision, never from the list, by length. */
const RESPONSE_RECREATED: string[][] = [];
const REQUEST_RECREATED: string[][] = [];
for (const name of HOP_BY_HOP) {
  (RESPONSE_RECREATED[name.length] ??= []).push(name);
  (REQUEST_RECREATED[name.length] ??= []).push(name);
}
for (const name of ['host', 'traceparent']) (REQUEST_RECREATED[name.length] ??= []).push(name);

/**
 * `raw` (MessageHead.verbatim: a head the parser accepted, start line to blank line) as `headers` now has its original
 * fields: `raw` itself when none was removed or replaced, a new buffer ending in the blank line when some were, or
 * undefined when the head must be written anew (requestHeadText): an edited field is one the writers drop or re-create
 * (hop-by-hop and framing fields; a request's host, whose line the authority decides, and traceparent).
 *
 * This relies on the parser's field list matching the head's field lines one to one and in order: every field line is
 * one entry (names are tchar, so the first colon ends them; values hold no CR or LF, so each LF ends one line, always
 * after a CR; obs-fold is refused, not unfolded), duplicates included, with the value trimmed of the whitespace around
 * it. So a kept field's line is passed over by its name's and value's lengths, and only an edited one is searched for
 * its end. A head whose lines do not come out as the list says is still written anew rather than guessed at.
 */
export function splicedHead(raw: Buffer, headers: HeaderList, isRequest: boolean): Buffer | undefined {
  const edits = headers.originalEdits;
  if (edits === undefined) return raw;
  const f = headers.flat;
  const n = raw.length;
  let p = 0;
  while (p < n && raw[p] !== LF) p++;
  p++;
  let from = 0;
  let size = 0;
  let parts = 0;
  let j = 0;
  for (let k = 0; k < edits.length; k++) {
    const line = p;
    const edit = edits[k];
    if (edit === FIELD_KEPT) {
      p += f[j]!.length;
      if (raw[p] !== COLON) return undefined;
      p++;
      while (raw[p] === SP || raw[p] === HT) p++;
      p += f[j + 1]!.length;
      while (raw[p] === SP || raw[p] === HT) p++;
      if (raw[p] !== CR || raw[p + 1] !== LF) return undefined;
      p += 2;
      j += 2;
      continue;
    }
    let colon = line;
    while (colon < n && raw[colon] !== COLON && raw[colon] !== LF) colon++;
    // An edited line's value may be long (a bearer token): its end is searched natively.
    const lf = raw.indexOf(LF, colon);
    // No colon before the line's end, or the line is the blank one: fewer lines than fields.
    if (raw[colon] !== COLON || lf < 0 || lf + 1 >= n) return undefined;
    p = lf + 1;
    let value: string | undefined;
    if (edit === FIELD_REMOVED) {
      if (isRecreated(raw, line, colon, isRequest)) return undefined;
    } else {
      if (HOP_BY_HOP.has(f[j]!) || (isRequest && (f[j] === 'host' || f[j] === 'traceparent'))) return undefined;
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
    at = copyRange(raw, out, at, RANGES[i * 2]!, RANGES[i * 2 + 1]!);
    const value = VALUES[i];
    if (value === undefined) continue;
    const line = RANGES[i * 2 + 1]!;
    at = copyRange(raw, out, at, line, COLONS[i]! + 1);
    out[at++] = SP;
    // One byte per character: HeaderList refuses values with characters above U+00FF.
    for (let c = 0; c < value.length; c++) out[at++] = value.charCodeAt(c);
    out[at++] = CR;
    out[at++] = LF;
    VALUES[i] = undefined;
  }
  copyRange(raw, out, at, from, n);
  return out;
}

/** Copies raw[start, end) to `out` at `at`; returns where it ended. Short ranges in JavaScript (a native copy costs more than a field line's bytes). */
function copyRange(raw: Buffer, out: Buffer, at: number, start: number, end: number): number {
  if (end - start > 64) return at + raw.copy(out, at, start, end);
  for (let i = start; i < end; i++) out[at++] = raw[i]!;
  return at;
}

/** raw[start, end) names (in any case) a field whose line the head writers drop or re-create. */
function isRecreated(raw: Buffer, start: number, end: number, isRequest: boolean): boolean {
  const list = (isRequest ? REQUEST_RECREATED : RESPONSE_RECREATED)[end - start];
  if (list === undefined) return false;
  // Names are tchar, where OR-ing 0x20 folds only A-Z onto a-z.
  next: for (const name of list) {
    for (let i = 0; i < name.length; i++) if ((raw[start + i]! | 0x20) !== name.charCodeAt(i)) continue next;
    return true;
  }
  return false;
}
