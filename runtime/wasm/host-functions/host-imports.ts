/** Assembles the `env` import object of a VM from the hostcall groups, and lists every hostcall with its wasm signature for load-time validation. */
import type { PluginVm } from '../plugin-vm.js';
import { bufferImports } from './buffers.js';
import { calloutImports } from './callouts.js';
import { grpcImports } from './grpc.js';
import { headerImports } from './headers.js';
import { loggingImports } from './logging.js';
import { metricImports } from './metrics.js';
import { propertyImports } from './properties.js';
import { sharedStateImports } from './shared-state.js';
import { streamControlImports } from './stream-control.js';

/**
 * Parameter types of each `env.proxy_*` hostcall ('i' i32, 'I' i64); all return i32. ABI-specific ones (0.1.0's
 * proxy_get_configuration/continue_request/continue_response/clear_route_cache) are offered to every version: a JS
 * host can, and modules built by mixed-version SDKs import them.
 */
export const HOSTCALL_SIGNATURES: Readonly<Record<string, string>> = {
  proxy_log: 'iii',
  proxy_get_log_level: 'i',
  proxy_get_current_time_nanoseconds: 'i',
  proxy_set_tick_period_milliseconds: 'i',
  proxy_done: '',
  proxy_set_effective_context: 'i',
  proxy_get_buffer_bytes: 'iiiii',
  proxy_set_buffer_bytes: 'iiiii',
  proxy_get_buffer_status: 'iii',
  proxy_get_header_map_size: 'ii',
  proxy_get_header_map_pairs: 'iii',
  proxy_set_header_map_pairs: 'iii',
  proxy_get_header_map_value: 'iiiii',
  proxy_add_header_map_value: 'iiiii',
  proxy_replace_header_map_value: 'iiiii',
  proxy_remove_header_map_value: 'iii',
  proxy_continue_stream: 'i',
  proxy_close_stream: 'i',
  proxy_get_status: 'iii',
  proxy_send_local_response: 'iiiiiiii',
  proxy_http_call: 'iiiiiiiiii',
  proxy_grpc_call: 'iiiiiiiiiiii',
  proxy_grpc_stream: 'iiiiiiiii',
  proxy_grpc_send: 'iiii',
  proxy_grpc_cancel: 'i',
  proxy_grpc_close: 'i',
  proxy_set_shared_data: 'iiiii',
  proxy_get_shared_data: 'iiiii',
  proxy_register_shared_queue: 'iii',
  proxy_resolve_shared_queue: 'iiiii',
  proxy_enqueue_shared_queue: 'iii',
  proxy_dequeue_shared_queue: 'iii',
  proxy_define_metric: 'iiii',
  proxy_record_metric: 'iI',
  proxy_increment_metric: 'iI',
  proxy_get_metric: 'ii',
  proxy_get_property: 'iiii',
  proxy_set_property: 'iiii',
  proxy_call_foreign_function: 'iiiiii',
  proxy_get_configuration: 'ii',
  proxy_continue_request: '',
  proxy_continue_response: '',
  proxy_clear_route_cache: '',
};

/** Non-proxy `env` imports real toolchains emit (AssemblyScript runtime, emscripten); their signatures vary by version. */
export const TOOLCHAIN_ENV_IMPORTS: ReadonlySet<string> = new Set(['abort', 'trace', 'seed', 'emscripten_notify_memory_growth', 'pthread_equal']);

export function createHostImports(vm: PluginVm): Record<string, unknown> {
  return {
    ...loggingImports(vm),
    ...headerImports(vm),
    ...bufferImports(vm),
    ...propertyImports(vm),
    ...streamControlImports(vm),
    ...sharedStateImports(vm),
    ...metricImports(vm),
    ...calloutImports(vm),
    ...grpcImports(vm),
  };
}
