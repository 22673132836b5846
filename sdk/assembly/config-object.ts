// A plugin configuration's top-level JSON object, read the way every first-party plugin reads it: JSON ("" reads as
// {}), an object, and no field outside the ones the plugin knows.
import { JsonObject, parseJson, unknownKey } from "./json";

/** The configuration object, or the reason it is refused: `object` is null exactly when `error` is not empty. */
export class ConfigObject {
  constructor(public readonly object: JsonObject | null, public readonly error: string) {}
}

/** Parses a plugin configuration and refuses a document that is not JSON, not an object, or has a field outside `allowed`. */
export function parseConfigObject(text: string, allowed: Array<string>): ConfigObject {
  const parsed = parseJson(text.length == 0 ? "{}" : text);
  if (!parsed.ok) return new ConfigObject(null, "configuration is not JSON: " + parsed.error);
  const o = parsed.value!.asObject();
  if (o === null) return new ConfigObject(null, "configuration must be a JSON object");
  const unknown = unknownKey(o, allowed);
  if (unknown !== null) return new ConfigObject(null, "unknown field \"" + unknown! + "\"");
  return new ConfigObject(o, "");
}
