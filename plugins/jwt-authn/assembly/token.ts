// A JWT split and decoded (RFC 7519 §7.2: three base64url segments, JSON header and payload), with Envoy's wording for
// each way it can be malformed, and the claim lookups the request path copies into headers.
import { JsonObject, JsonValue, base64Decode, decodeBytes, parseJson, stringifyJson } from "@weft/sdk/assembly/index";

const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"];

/** A token split and decoded, or the reason it could not be. */
export class Token {
  error: string = "";
  alg: string = "";
  kid: string = "";
  payload: JsonObject = new JsonObject();
  payloadSegment: string = "";
  signingInput: string = "";
  signature: string = "";
}

function decodeSegment(seg: string): JsonObject | null {
  const bytes = base64Decode(seg);
  if (bytes === null) return null;
  const parsed = parseJson(decodeBytes(bytes!));
  if (!parsed.ok) return null;
  return parsed.value!.asObject();
}

export function parseToken(jwt: string): Token {
  const t = new Token();
  const a = jwt.indexOf(".");
  const b = a < 0 ? -1 : jwt.indexOf(".", a + 1);
  if (a <= 0 || b < 0 || jwt.indexOf(".", b + 1) >= 0 || b == a + 1 || b == jwt.length - 1) {
    t.error = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
    return t;
  }
  const header = decodeSegment(jwt.substring(0, a));
  if (header === null) { t.error = "Jwt header is an invalid JSON"; return t; }
  const payload = decodeSegment(jwt.substring(a + 1, b));
  if (payload === null) { t.error = "Jwt payload is an invalid JSON"; return t; }
  const alg = header!.getString("alg");
  if (alg === null || !ALGORITHMS.includes(alg!)) { t.error = "Jwt algorithm is not supported"; return t; }
  if (base64Decode(jwt.substring(b + 1)) === null) { t.error = "Jwt signature is not base64url"; return t; }
  const kid = header!.getString("kid");
  t.alg = alg!;
  t.kid = kid === null ? "" : kid!;
  t.payload = payload!;
  t.payloadSegment = jwt.substring(a + 1, b);
  t.signingInput = jwt.substring(0, b);
  t.signature = jwt.substring(b + 1);
  return t;
}

export function queryParam(path: string, name: string): string | null {
  const q = path.indexOf("?");
  if (q < 0) return null;
  const parts = path.substring(q + 1).split("&");
  for (let i = 0; i < parts.length; i++) {
    const eq = parts[i].indexOf("=");
    if (eq > 0 && parts[i].substring(0, eq) == name) return parts[i].substring(eq + 1);
  }
  return null;
}

/** A claim as header text: strings as they are, anything else as JSON. */
export function claimText(v: JsonValue): string {
  const s = v.asString();
  if (s !== null) return s!;
  return stringifyJson(v);
}

/** Reads a dotted claim path (`realm.role`). */
export function claimAt(payload: JsonObject, path: string): JsonValue | null {
  const parts = path.split(".");
  let cur: JsonObject | null = payload;
  for (let i = 0; i < parts.length - 1; i++) {
    cur = cur!.getObject(parts[i]);
    if (cur === null) return null;
  }
  return cur!.get(parts[parts.length - 1]);
}
