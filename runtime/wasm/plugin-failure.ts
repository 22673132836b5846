/** Why a plugin VM stopped being usable, classified from what its call threw; one error type the chain turns into failStrategy. */
import { WeftError } from '../errors.js';

export const FAILURE_REASONS = ['trap', 'cpu_budget', 'memory_limit', 'proc_exit', 'abort', 'start_failed', 'configure_failed', 'unavailable', 'host_error'] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export class PluginFailure extends WeftError {
  readonly plugin: string;
  readonly reason: FailureReason;

  constructor(plugin: string, reason: FailureReason, detail: string, cause?: unknown) {
    super('WEFT_ERR_PLUGIN_FAILED', `plugin "${plugin}" failed (${reason}): ${detail}`, { cause });
    this.plugin = plugin;
    this.reason = reason;
    this.name = 'PluginFailure';
  }
}

/** Thrown from inside a hostcall or the fuel import; unwinds the guest stack to the host's call site. */
export class GuestAbort extends Error {
  readonly reason: FailureReason;

  constructor(reason: FailureReason, message: string) {
    super(message);
    this.reason = reason;
    this.name = 'GuestAbort';
  }
}

/** Maps what a guest call threw to a failure; `atMemoryCap` says whether memory had reached its maximum. */
export function classifyFailure(plugin: string, err: unknown, atMemoryCap: boolean): PluginFailure {
  if (err instanceof PluginFailure) return err;
  if (err instanceof GuestAbort) return new PluginFailure(plugin, err.reason, err.message, err);
  if (err instanceof WebAssembly.RuntimeError) {
    return new PluginFailure(plugin, atMemoryCap ? 'memory_limit' : 'trap', atMemoryCap ? `${err.message} (memory at its limit)` : err.message, err);
  }
  if (err instanceof RangeError) return new PluginFailure(plugin, atMemoryCap ? 'memory_limit' : 'trap', err.message, err);
  const message = err instanceof Error ? err.message : String(err);
  return new PluginFailure(plugin, 'host_error', message, err);
}
