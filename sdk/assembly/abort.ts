// The AssemblyScript `abort` replacement (asconfig.base.json: `use: abort=...weftAbort`): logs the message at CRITICAL
// through proxy_log and traps. Without it AssemblyScript imports `env.abort`, which Envoy and other proxy-wasm hosts
// do not provide. A trap fails only this VM; the host applies the plugin's failStrategy.
import { proxy_log } from "./imports";

export function weftAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "abort: " + (message === null ? "(no message)" : message);
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  const bytes = String.UTF8.encode(text);
  proxy_log(5, changetype<usize>(bytes), <usize>bytes.byteLength);
  unreachable();
}
