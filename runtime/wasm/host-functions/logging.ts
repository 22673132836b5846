/** Logging hostcalls (proxy_log, proxy_get_log_level) and the toolchain helpers real builds import from `env` (AssemblyScript abort/trace/seed, emscripten). */
import { LogLevel, Status } from '../abi-constants.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number | void;

/** The plugin-facing level derived from weft's level for the `wasm` log component. */
export function pluginLogLevel(vm: PluginVm): number {
  const log = vm.services.logger;
  if (log.enabled('trace')) return LogLevel.Trace;
  if (log.enabled('debug')) return LogLevel.Debug;
  if (log.enabled('info')) return LogLevel.Info;
  if (log.enabled('warn')) return LogLevel.Warn;
  if (log.enabled('error')) return LogLevel.Error;
  return LogLevel.Critical;
}

export function writePluginLog(vm: PluginVm, level: number, message: string): void {
  vm.services.pluginLog?.(vm.plugin, level, message);
  const log = vm.services.logger;
  const fields = { plugin: vm.plugin, plugin_level: level, plugin_message: message };
  if (level <= LogLevel.Trace) log.trace(fields, 'plugin log');
  else if (level === LogLevel.Debug) log.debug(fields, 'plugin log');
  else if (level === LogLevel.Info) log.info(fields, 'plugin log');
  else if (level === LogLevel.Warn) log.warn(fields, 'plugin log');
  else log.error(fields, 'plugin log');
}

/** AssemblyScript strings: UTF-16LE with the byte length in the object header 4 bytes before the pointer. */
function asString(vm: PluginVm, ptr: number): string {
  const p = ptr >>> 0;
  if (p < 4 || !vm.mem.inBounds(p - 4, 4)) return '';
  const len = vm.mem.view.getUint32(p - 4, true);
  if (!vm.mem.inBounds(p, len)) return '';
  return vm.mem.buf.toString('utf16le', p, p + len);
}

export function loggingImports(vm: PluginVm): Record<string, HostFn> {
  return {
    proxy_log: (level, ptr, len) => {
      const p = ptr >>> 0;
      const n = len >>> 0;
      if (level < 0 || level > LogLevel.Critical) return Status.BadArgument;
      if (!vm.mem.inBounds(p, n)) return Status.InvalidMemoryAccess;
      if (level >= pluginLogLevel(vm) || vm.services.pluginLog !== undefined) writePluginLog(vm, level, vm.mem.utf8(p, n));
      return Status.Ok;
    },
    proxy_get_log_level: (ret) => vm.mem.writeU32(ret >>> 0, pluginLogLevel(vm)),
    abort: (msg, file, line, col) => {
      vm.abort('abort', `abort: ${asString(vm, msg)} at ${asString(vm, file)}:${line >>> 0}:${col >>> 0}`);
    },
    trace: (msg, n, ...values) => {
      writePluginLog(vm, LogLevel.Debug, `trace: ${asString(vm, msg)} ${values.slice(0, n >>> 0).join(', ')}`.trim());
    },
    seed: () => Date.now() * Math.random(),
    emscripten_notify_memory_growth: () => {
      // Views refresh themselves on the next access; nothing to do.
    },
    pthread_equal: (a, b) => (a === b ? 1 : 0),
  };
}
