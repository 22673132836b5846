/**
 * Which authority an HTTP/1 request names (RFC 9112 §3.2, RFC 9110 §7.2) and the target it is forwarded with: the one
 * answer that routing, authorization, plugins, the access log and the forwarded Host all use. An absolute-form target
 * wins over the Host header, which is then replaced (RFC 9112 §3.2.2); CONNECT names its authority in the target.
 */
import type { RequestHead } from './http1-head-parser.js';

export type RequestAuthority =
  | {
      /** host[:port] as the client wrote it; '' when an HTTP/1.0 request named none. */
      authority: string;
      /** The target to forward: origin-form (`/path?query`), `*`, or CONNECT's authority-form. */
      target: string;
      /** The Host field must be replaced with `authority` (absolute-form). */
      replaceHost: boolean;
    }
  | { error: string };

/** authority = host [ ":" port ] with host an IP-literal or a reg-name (RFC 3986 §3.2.2); no userinfo. */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;
/** CONNECT needs host and port (RFC 9110 §9.3.6). */
const CONNECT_AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%]+):[0-9]{1,5}$/;
/** http(s)://authority followed by an absolute path or a query, or nothing; the scheme is case-insensitive. */
const ABSOLUTE_FORM = /^[Hh][Tt][Tt][Pp][Ss]?:\/\/([^/?#]*)([/?][^#]*)?$/;

export function requestAuthority(head: RequestHead): RequestAuthority {
  const target = head.target;
  if (target.charCodeAt(0) === 0x2f) return { authority: head.host ?? '', target, replaceHost: false };
  if (head.method === 'CONNECT') {
    if (!CONNECT_AUTHORITY.test(target)) return { error: `CONNECT target "${target}" is not host:port` };
    return { authority: target, target, replaceHost: false };
  }
  if (target === '*') {
    if (head.method !== 'OPTIONS') return { error: 'asterisk-form is only for OPTIONS' };
    return { authority: head.host ?? '', target, replaceHost: false };
  }
  const m = ABSOLUTE_FORM.exec(target);
  if (m === null) return { error: 'invalid request target' };
  const authority = m[1]!;
  // userinfo ("user@host") is deprecated and a classic way to make two parsers disagree about the host (RFC 9110 §4.2.4).
  if (!AUTHORITY.test(authority)) return { error: `invalid authority "${authority}" in the request target` };
  const rest = m[2] ?? '';
  return { authority, target: rest.charCodeAt(0) === 0x2f ? rest : `/${rest}`, replaceHost: true };
}
