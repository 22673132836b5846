/** RateLimit-Policy / RateLimit header values (draft-ietf-httpapi-ratelimit-headers -08..-11 Structured Fields) plus Retry-After, from the descriptor closest to its limit. */

export interface HeaderSource {
  readonly policyName: string;
  readonly quota: number;
  readonly windowMs: number;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
  readonly overLimit: boolean;
}

/** An sf-string: quotes and backslashes escaped, anything outside printable ASCII replaced (SF strings cannot carry it). */
function sfString(text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Policy names are the configured rules' names: a few, answered on every decision. */
const sfNames = new Map<string, string>();
export function sfName(policyName: string): string {
  let q = sfNames.get(policyName);
  if (q === undefined) {
    if (sfNames.size >= 1024) sfNames.clear();
    sfNames.set(policyName, (q = sfString(policyName)));
  }
  return q;
}

/** The header values' numbers, one definition for the text form below and the binary answer (rate-limit-binary.ts). */
export const policyWindowS = (source: HeaderSource): number => Math.max(1, Math.round(source.windowMs / 1000));
export const remainingOf = (source: HeaderSource): number => Math.max(0, Math.floor(source.remaining));
export const resetS = (source: HeaderSource): number => Math.max(0, Math.ceil(source.resetMs / 1000));
export const retryAfterS = (source: HeaderSource): number => Math.max(1, Math.ceil(source.retryAfterMs / 1000));

export function rateLimitHeaders(source: HeaderSource | undefined): Record<string, string> {
  if (source === undefined) return {};
  const name = sfName(source.policyName);
  const headers: Record<string, string> = {
    'ratelimit-policy': `${name};q=${source.quota};w=${policyWindowS(source)}`,
    ratelimit: `${name};r=${remainingOf(source)};t=${resetS(source)}`,
  };
  if (source.overLimit) headers['retry-after'] = String(retryAfterS(source));
  return headers;
}
