// What a context's onHttpCallResponse receives: the callout's status, headers, body and trailers, read from the host
// before the callback runs so the plugin can keep them.
import { HeaderPair } from "./headers";
import { decodeBytes } from "./result";

export class HttpCallResponse {
  constructor(
    /** True when the call failed or timed out (the host reported no headers); everything else is empty then. */
    public readonly failed: bool,
    /** The `:status` code, 0 when failed. */
    public readonly status: u32,
    public readonly headers: Array<HeaderPair>,
    public readonly body: ArrayBuffer,
    public readonly trailers: Array<HeaderPair>,
  ) {}

  /** The first value of header `name` (lower-case), or null. */
  header(name: string): string | null {
    for (let i = 0; i < this.headers.length; i++) if (this.headers[i].name == name) return this.headers[i].value;
    return null;
  }

  /** The body as UTF-8 text. */
  bodyText(): string {
    return decodeBytes(this.body);
  }
}
