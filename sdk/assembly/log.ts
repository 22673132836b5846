// Plugin logging through proxy_log. Messages below the host's level are dropped before any UTF-8 encoding.
import { LogLevel, WasmResult } from "./abi-enums";
import { proxy_get_log_level, proxy_log } from "./imports";
import { outWord, scratchLen, scratchUtf8 } from "./memory";

let cachedLevel: i32 = -1;

/** The host's current log level (asked once; call refreshLogLevel after a reconfigure to ask again). */
export function logLevel(): LogLevel {
  if (cachedLevel < 0) {
    cachedLevel = proxy_get_log_level(outWord()) == WasmResult.Ok ? <i32>load<u32>(outWord()) : <i32>LogLevel.Info;
  }
  return <LogLevel>cachedLevel;
}

export function refreshLogLevel(): void {
  cachedLevel = -1;
}

/**
 * Logs `message` at `level`; answers the host's status (BadArgument for an unknown level).
 * @example
 *   log(LogLevel.Warn, "upstream " + name + " is slow");
 */
export function log(level: LogLevel, message: string): WasmResult {
  if (<i32>level < <i32>logLevel()) return WasmResult.Ok;
  const m = scratchUtf8(message, 1);
  return <WasmResult>proxy_log(level, m, scratchLen(1));
}

export function logTrace(message: string): void { log(LogLevel.Trace, message); }
export function logDebug(message: string): void { log(LogLevel.Debug, message); }
export function logInfo(message: string): void { log(LogLevel.Info, message); }
export function logWarn(message: string): void { log(LogLevel.Warn, message); }
export function logError(message: string): void { log(LogLevel.Error, message); }
export function logCritical(message: string): void { log(LogLevel.Critical, message); }
