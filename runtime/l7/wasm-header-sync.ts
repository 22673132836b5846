/**
 * Between the L7 path's header lists and the proxy-wasm header maps plugins edit, with Envoy's semantics: the request
 * map leads with :method, :path, :authority and :scheme and carries no `host` (Envoy's HTTP/1 codec turns Host into
 * :authority); after the plugins ran, their map is read by name, never by position, so a plugin may reorder it, drop
 * the pseudo-headers (Kong's key-auth replaces the whole map without them) or edit them (a canary filter rewriting
 * :authority), and each edit takes effect.
 */
import type { HeaderPair, HeaderPairs } from '../wasm/header-map-codec.js';
import type { HeaderList } from './header-list.js';

/** The request line as plugins see and edit it. */
export interface RequestLine {
  method: string;
  /** The request target with its query (origin-form). */
  path: string;
  authority: string;
}

/** A request pseudo-header as filters see it, read from the request line (`:scheme` is always http here). */
export function requestPseudoHeader(line: RequestLine, name: string): string | undefined {
  switch (name) {
    case ':method':
      return line.method;
    case ':path':
      return line.path;
    case ':authority':
      return line.authority;
    case ':scheme':
      return 'http';
    default:
      return undefined;
  }
}

/** The field a request map shows as :authority instead. */
export const HOST = 'host';
const COLON = 0x3a;

/**
 * Pseudo-header pairs shared between requests. Safe because no hostcall edits a pair in place (they replace map
 * entries), and cheaper than a new array (and for :status, a new string) per request.
 */
const SCHEME_HTTP: HeaderPair = [':scheme', 'http'];
const statusPairs: HeaderPair[] = [];
/** The latest pair of each request pseudo-header: consecutive requests mostly repeat them. */
let lastMethod: HeaderPair = [':method', 'GET'];
let lastPath: HeaderPair = [':path', '/'];
let lastAuthority: HeaderPair = [':authority', ''];

function methodPair(value: string): HeaderPair {
  return lastMethod[1] === value ? lastMethod : (lastMethod = [':method', value]);
}

function pathPair(value: string): HeaderPair {
  return lastPath[1] === value ? lastPath : (lastPath = [':path', value]);
}

function authorityPair(value: string): HeaderPair {
  return lastAuthority[1] === value ? lastAuthority : (lastAuthority = [':authority', value]);
}

function statusPair(status: number): HeaderPair {
  if (status < 100 || status > 999) return [':status', String(status)];
  return (statusPairs[status] ??= [':status', String(status)]);
}

/** The :status value a response map shows for `status`. */
export function statusValue(status: number): string {
  return statusPair(status)[1];
}

/** Fills `out` with the request map a plugin sees: the pseudo-headers, then the fields but `host`. */
export function requestPairs(headers: HeaderList, line: RequestLine, out: HeaderPairs): HeaderPairs {
  out.length = 0;
  out.push(methodPair(line.method), pathPair(line.path), authorityPair(line.authority), SCHEME_HTTP);
  const f = headers.flat;
  for (let i = 0; i < f.length; i += 2) if (f[i] !== HOST) out.push([f[i]!, f[i + 1]!]);
  return out;
}

/** Fills `out` with the response (or trailer, `status` undefined) map a plugin sees. */
export function responsePairs(headers: HeaderList, status: number | undefined, out: HeaderPairs): HeaderPairs {
  out.length = 0;
  if (status !== undefined) out.push(statusPair(status));
  const f = headers.flat;
  for (let i = 0; i < f.length; i += 2) out.push([f[i]!, f[i + 1]!]);
  return out;
}

function isRegular(name: string, hidden: string | undefined): boolean {
  return name.charCodeAt(0) !== COLON && name !== hidden;
}

/**
 * Copies the regular fields of `pairs` back into `headers`; pseudo-headers and `hidden` (a field the plugin does not
 * see) are skipped on both sides wherever they sit. Untouched maps cost one comparison pass, and fields a plugin only
 * appended are added as such, so the list still knows its original fields are unchanged (HeaderList.appendedFrom)
 * and the head can leave as it came. Returns whether any field changed.
 */
export function writeBackFields(headers: HeaderList, pairs: HeaderPairs, hidden: string | undefined): boolean {
  const f = headers.flat;
  let j = 0;
  let i = 0;
  for (; i < pairs.length; i++) {
    const p = pairs[i]!;
    if (!isRegular(p[0], hidden)) continue;
    while (j < f.length && f[j] === hidden) j += 2;
    if (j >= f.length) break;
    if (p[0] !== f[j] || p[1] !== f[j + 1]) return replaceFields(headers, pairs, hidden);
    j += 2;
  }
  while (j < f.length && f[j] === hidden) j += 2;
  // Original fields the plugin's map no longer has.
  if (j < f.length) return replaceFields(headers, pairs, hidden);
  let changed = false;
  for (; i < pairs.length; i++) {
    const p = pairs[i]!;
    if (!isRegular(p[0], hidden)) continue;
    headers.add(p[0], p[1]);
    changed = true;
  }
  return changed;
}

function replaceFields(headers: HeaderList, pairs: HeaderPairs, hidden: string | undefined): true {
  const out: [string, string][] = [];
  if (hidden !== undefined) for (const v of headers.getAll(hidden)) out.push([hidden, v]);
  for (const p of pairs) if (isRegular(p[0], hidden)) out.push(p);
  headers.replaceAll(out);
  return true;
}

/**
 * The request line after the plugins ran, or undefined when it did not change. Each pseudo-header is read by name (the
 * first one, as Envoy's get); one the plugin dropped keeps its value. A `host` field the plugin added stands for
 * :authority unless :authority itself changed.
 */
export function editedRequestLine(pairs: HeaderPairs, line: RequestLine): RequestLine | undefined {
  let method: string | undefined;
  let path: string | undefined;
  let authority: string | undefined;
  let host: string | undefined;
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    const name = p[0];
    if (name.charCodeAt(0) === COLON) {
      if (name === ':method') method ??= p[1];
      else if (name === ':path') path ??= p[1];
      else if (name === ':authority') authority ??= p[1];
    } else if (name === HOST) host ??= p[1];
  }
  method ??= line.method;
  path ??= line.path;
  authority ??= line.authority;
  if (host !== undefined && authority === line.authority) authority = host;
  if (method === line.method && path === line.path && authority === line.authority) return undefined;
  return { method, path, authority };
}

const STATUS_RE = /^[1-9][0-9][0-9]$/;

/**
 * The response status after the plugins ran: undefined when :status is unchanged (or gone: a whole-map write without
 * it keeps it), the new status, or why the value cannot be sent (not three digits, or an interim 1xx).
 */
export function editedStatus(pairs: HeaderPairs, status: number): number | string | undefined {
  let value: string | undefined;
  for (let i = 0; i < pairs.length; i++) {
    if (pairs[i]![0] === ':status') {
      value = pairs[i]![1];
      break;
    }
  }
  if (value === undefined || value === statusPair(status)[1]) return undefined;
  const n = finalStatus(value);
  return n === status ? undefined : n;
}

/** A filter's `:status` value as a final status code, or why it cannot be sent (not three digits, or an interim 1xx). */
export function finalStatus(value: string): number | string {
  if (!STATUS_RE.test(value)) return `"${value}" is not a status code`;
  const n = Number(value);
  return n < 200 ? `${n} is an interim status, not a response's` : n;
}

const METHOD_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** origin-form (RFC 9112 §3.2.1): visible ASCII after the leading slash; `*` only for OPTIONS. */
const PATH_RE = /^\/[\x21-\x7e]*$/;
/** RFC 3986 authority characters: host (reg-name, IPv4, [IPv6]) and an optional port; no userinfo. */
const AUTHORITY_RE = /^[A-Za-z0-9\-._~!$&'()*+,;=:[\]%]+$/;

/** Why an edited request line cannot be sent, or undefined when it can. CONNECT is neither set nor left by an edit. */
export function requestLineProblem(edit: RequestLine, original: RequestLine): string | undefined {
  if (!METHOD_RE.test(edit.method)) return `:method "${edit.method}" is not a token`;
  if ((edit.method === 'CONNECT') !== (original.method === 'CONNECT')) return 'a plugin cannot turn a request into CONNECT or back';
  if (!PATH_RE.test(edit.path) && !(edit.path === '*' && edit.method === 'OPTIONS')) return `:path "${edit.path}" is not an origin-form target`;
  if (!AUTHORITY_RE.test(edit.authority)) return `:authority "${edit.authority}" is not a host[:port]`;
  return undefined;
}
