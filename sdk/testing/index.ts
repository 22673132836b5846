/** @weft/sdk/testing: run a plugin's .wasm under weft's own host without a proxy. */
export { PluginEmulator, EmulatorLoadError, PluginLogLevel, type EmulatorOptions, type PluginLogRecord } from './plugin-emulator.js';
export { EmulatedStream, type HeaderInit, type StepResult } from './emulated-stream.js';
export { HttpCallQueue, PendingHttpCall, type ResponseInit } from './http-call-queue.js';
export { ensurePluginBuilt } from './ensure-plugin-built.js';
export { buildWithStubRuntime, bytesKeptPerRequest, memoryGrowth, withWarmedEmulator } from './steady-state-allocations.js';
