/** A small cache of forwarded DNS answers, each kept for the smallest TTL it carries (RFC 1035 §3.2.1; negative answers by their SOA, RFC 2308 §5) and served with the TTLs counted down. */
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Question } from 'dns-packet';

/** Header bits (RFC 1035 §4.1.1, RFC 4035 §3.2.2): a cached answer is keyed by the ones that change what upstream says. */
const FLAG_RD = 0x0100;
const FLAG_CD = 0x0010;
/** An upstream TTL above this is cut to it: a cache this small should not pin a name for a day. */
const MAX_TTL_SECONDS = 3_600;

interface Entry {
  reply: DecodedPacket;
  storedAt: number;
  expiresAt: number;
  /** The reply encoded with the TTLs of one whole second of age: hits within that second only patch ID and question. */
  encoded?: { age: number; bytes: Buffer };
}

/** Bytes of the first question of a query (name labels, type, class), or -1 if the name uses compression. */
function questionLength(message: Buffer): number {
  let at = 12;
  while (at < message.length) {
    const len = message[at] as number;
    if (len === 0) return at + 1 + 4 <= message.length ? at + 1 + 4 - 12 : -1;
    if ((len & 0xc0) !== 0) return -1;
    at += 1 + len;
  }
  return -1;
}

export interface DnsCacheOptions {
  /** `dns.cacheEntries`, read on each store (a reload may change it); 0 turns the cache off. */
  maxEntries: () => number;
  /** Milliseconds; tests pass their own clock. */
  now?: () => number;
}

type ResourceRecord = Exclude<Answer, OptAnswer>;
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;

function records(reply: DecodedPacket): ResourceRecord[] {
  return [...(reply.answers ?? []), ...(reply.authorities ?? []), ...(reply.additionals ?? [])].filter((r): r is ResourceRecord => r.type !== 'OPT');
}

/**
 * How long `reply` may be reused, in seconds, or 0 when it must not be: only NOERROR and NXDOMAIN, never truncated.
 * A positive answer lives as long as its shortest record; a negative one (NXDOMAIN, or NOERROR without an answer) as
 * its SOA says, min(SOA TTL, SOA minimum), and not at all without a SOA (RFC 2308 §5).
 */
function ttlOf(reply: DecodedPacket): number {
  const rcode = (reply.flags ?? 0) & 0x000f;
  if (reply.flag_tc === true || (rcode !== RCODE_NOERROR && rcode !== RCODE_NXDOMAIN)) return 0;
  if (rcode === RCODE_NOERROR && (reply.answers?.length ?? 0) > 0) return Math.min(MAX_TTL_SECONDS, ...records(reply).map((r) => r.ttl ?? 0));
  const soa = reply.authorities?.find((r) => r.type === 'SOA');
  if (soa === undefined || soa.type !== 'SOA') return 0;
  return Math.min(MAX_TTL_SECONDS, soa.ttl ?? 0, soa.data.minimum ?? 0);
}

export class DnsCache {
  readonly #opts: DnsCacheOptions;
  readonly #entries = new Map<string, Entry>();

  constructor(opts: DnsCacheOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** What makes two queries ask the same thing: name (case-insensitive), type, class, EDNS and its DO bit, RD and CD. */
  static key(question: Question, query: DecodedPacket): string {
    const opt = query.additionals?.find((a): a is OptAnswer => a.type === 'OPT');
    const flags = (query.flags ?? 0) & (FLAG_RD | FLAG_CD);
    return `${question.name.toLowerCase().replace(/\.$/, '')} ${question.type} ${question.class ?? 'IN'} ${flags} ${opt === undefined ? '-' : `edns${opt.flag_do ? ' do' : ''}`}`;
  }

  /**
   * The cached answer for `query` (`message` as received), with its ID and question, and every TTL less the whole
   * seconds it has been held.
   */
  get(key: string, query: DecodedPacket, message: Buffer): Buffer | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (now >= entry.expiresAt) {
      this.#entries.delete(key);
      return undefined;
    }
    // Least recently used goes first when full: a hit moves the entry to the end.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    const elapsed = Math.floor((now - entry.storedAt) / 1000);
    if (entry.encoded?.age !== elapsed) {
      const age = (list: Answer[] | undefined): Answer[] => (list ?? []).map((r) => (r.type === 'OPT' ? r : { ...r, ttl: Math.max(0, (r.ttl ?? 0) - elapsed) }));
      entry.encoded = { age: elapsed, bytes: dnsPacket.encode({ ...entry.reply, answers: age(entry.reply.answers), authorities: age(entry.reply.authorities), additionals: age(entry.reply.additionals) }) };
    }
    const bytes = Buffer.from(entry.encoded.bytes);
    bytes.writeUInt16BE(query.id ?? 0, 0);
    // The asker's question, byte for byte (its letter case, RFC 1035 §7.3 / the 0x20 trick): same name, so same length.
    const length = questionLength(message);
    if (length > 0 && length === questionLength(bytes)) message.copy(bytes, 12, 12, 12 + length);
    else return dnsPacket.encode({ ...dnsPacket.decode(bytes), questions: query.questions ?? [] });
    return bytes;
  }

  /** Keeps an upstream `reply` to the query `key` names, when its TTL allows (see ttlOf). */
  set(key: string, reply: Buffer): void {
    const max = this.#opts.maxEntries();
    if (max <= 0) return;
    let decoded: DecodedPacket;
    try {
      decoded = dnsPacket.decode(reply);
    } catch {
      return;
    }
    const ttl = ttlOf(decoded);
    if (ttl <= 0) return;
    const now = this.#now();
    this.#entries.delete(key);
    while (this.#entries.size >= max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { reply: decoded, storedAt: now, expiresAt: now + ttl * 1000 });
  }

  clear(): void {
    this.#entries.clear();
  }

  #now(): number {
    return this.#opts.now?.() ?? performance.now();
  }
}
