/**
 * The request and response header maps plugins see, served from the exchange's own HeaderList (lazy-header-map.ts):
 * a lookup reads the list (a response's fields by name from the undecoded head: response-head-fields.ts), an add or a
 * set of a new name is kept beside it, a remove or set of one of its fields is kept as a field edit, and the
 * [name, value] pairs are built only when a plugin edits a pseudo-header or `host`, reads the whole map or rewrites
 * it. Writing back an unbuilt map is applying the field edits to the list by name (which the head splice sees as
 * removed or replaced lines) and adding what was appended; a built one goes through wasm-header-sync.ts as before.
 */
import type { HeaderPairs } from '../wasm/header-map-codec.js';
import { LazyHeaderMap } from '../wasm/lazy-header-map.js';
import type { HeaderList } from './header-list.js';
import { HOST, requestPairs, requestPseudoHeader, responsePairs, statusValue, type RequestLine } from './wasm-header-sync.js';

const COLON = 0x3a;

/**
 * Adds the appended regular fields to `list` and keeps in `appended` only what is no field there: a pseudo-header
 * (a repeat, which Envoy's get never reads: the first wins) and, on requests, `host` (it stands for :authority).
 * Returns whether a field was added.
 */
function addAppended(list: HeaderList, appended: HeaderPairs, hidden: string | undefined): boolean {
  // An empty `appended` may be the maps' shared frozen one (lazy-header-map.ts).
  if (appended.length === 0) return false;
  let kept = 0;
  let added = false;
  for (let i = 0; i < appended.length; i++) {
    const p = appended[i]!;
    if (p[0].charCodeAt(0) === COLON || p[0] === hidden) appended[kept++] = p;
    else {
      list.add(p[0], p[1]);
      added = true;
    }
  }
  appended.length = kept;
  return added;
}

/** Applies an unbuilt map's field edits to `list` (removes, and replaces in place as Envoy's setCopy). Returns whether there was one. */
function applyFieldEdits(list: HeaderList, edits: readonly (string | undefined)[]): boolean {
  for (let i = 0; i < edits.length; i += 2) {
    const value = edits[i + 1];
    if (value === undefined) list.remove(edits[i]!);
    else list.set(edits[i]!, value);
  }
  return edits.length > 0;
}

/**
 * The request map: :method, :path, :authority, :scheme from the request line, then the list's fields but `host`. The
 * map is its own RequestLine (the line as the plugins last left it): one object per request instead of two.
 */
export class RequestHeaderMap extends LazyHeaderMap implements RequestLine {
  // `declare`d: set by the constructor, no class field definitions (see LazyHeaderMap on why).
  declare list: HeaderList;
  declare method: string;
  declare path: string;
  declare authority: string;

  constructor(list: HeaderList, method: string, path: string, authority: string) {
    super();
    this.list = list;
    this.method = method;
    this.path = path;
    this.authority = authority;
  }

  /** Shows the list as it is now (before a body or trailer callback, after edits were applied). */
  reset(list: HeaderList): void {
    this.list = list;
    this.resetMap();
  }

  /** The request line after an applied edit (the pairs, if built, already show it). */
  setLine(line: RequestLine): void {
    this.method = line.method;
    this.path = line.path;
    this.authority = line.authority;
  }

  protected get sourceLength(): number {
    const f = this.list.flat;
    let n = 4;
    for (let i = 0; i < f.length; i += 2) if (f[i] !== HOST) n++;
    return n;
  }

  protected fillSource(out: HeaderPairs): void {
    requestPairs(this.list, this, out);
  }

  protected sourceFirst(name: string): string | undefined {
    if (name.charCodeAt(0) === COLON) return requestPseudoHeader(this, name);
    return name === HOST ? undefined : this.list.get(name);
  }

  protected sourceJoined(name: string): string | undefined {
    if (name.charCodeAt(0) === COLON) return requestPseudoHeader(this, name);
    return name === HOST ? undefined : this.list.joined(name);
  }

  protected isSourceField(name: string): boolean {
    return name.charCodeAt(0) !== COLON && name !== HOST;
  }

  protected sourceCount(name: string): number {
    return this.list.count(name);
  }

  /** Applies an unbuilt map's field edits, then its appended entries (fields are added to the list). Returns whether a field changed. */
  applyAppended(): boolean {
    const edited = applyFieldEdits(this.list, this.fieldEdits);
    this.clearFieldEdits();
    return addAppended(this.list, this.appended, HOST) || edited;
  }

  /** The first `host` a plugin added to an unbuilt map: it stands for :authority, as in a built map's write-back. */
  appendedHost(): string | undefined {
    const a = this.appended;
    for (let i = 0; i < a.length; i++) if (a[i]![0] === HOST) return a[i]![1];
    return undefined;
  }
}

/** The response map: :status, then the list's fields. */
export class ResponseHeaderMap extends LazyHeaderMap {
  declare list: HeaderList;
  declare status: number;

  constructor(list: HeaderList, status: number) {
    super();
    this.list = list;
    this.status = status;
  }

  reset(list: HeaderList, status: number): void {
    this.list = list;
    this.status = status;
    this.resetMap();
  }

  protected get sourceLength(): number {
    return 1 + this.list.size;
  }

  protected fillSource(out: HeaderPairs): void {
    responsePairs(this.list, this.status, out);
  }

  protected sourceFirst(name: string): string | undefined {
    if (name.charCodeAt(0) === COLON) return name === ':status' ? statusValue(this.status) : undefined;
    return this.list.get(name);
  }

  protected sourceJoined(name: string): string | undefined {
    if (name.charCodeAt(0) === COLON) return name === ':status' ? statusValue(this.status) : undefined;
    return this.list.joined(name);
  }

  protected isSourceField(name: string): boolean {
    return name.charCodeAt(0) !== COLON;
  }

  protected sourceCount(name: string): number {
    return this.list.count(name);
  }

  /** Applies an unbuilt map's field edits, then its appended entries (a repeated :status is not the first, so it changes nothing). */
  applyAppended(): boolean {
    const edited = applyFieldEdits(this.list, this.fieldEdits);
    this.clearFieldEdits();
    return addAppended(this.list, this.appended, undefined) || edited;
  }
}
