/* releaseMemory(): gives back what start-up left behind, once the runtime serves. A memory-reducing full GC of the
 * calling thread's V8 isolate (Isolate::LowMemoryNotification: the young generation shrinks back from the size the
 * module loading grew it to, old space is compacted, start-up-only bytecode is flushed), then malloc_trim(0) for the
 * malloc arenas. An idle node has no allocation to trigger any GC, so without this the start-up's garbage and grown
 * spaces stay resident for the process's life: about 3 MB on one event loop, 7 MB on each worker thread.
 *
 * The only V8 (not N-API) call of the addon: it is built against the headers of the Node that runs it. 70-170 ms of
 * CPU per isolate. weft calls it only on the multi-worker primary, which serves no traffic: on a thread that serves,
 * an interleaved A/B showed 10-40% more CPU per L7 request after it (test/bench/README.md). */
#include <malloc.h>
#include <node_api.h>
#include <v8.h>

static napi_value release_memory(napi_env env, napi_callback_info info) {
  (void)info;
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->LowMemoryNotification();
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) == 1, &out);
  return out;
}

/* trimMemory(): malloc_trim(0) alone, handing pages freed by start-up (module loading, parse buffers) back to the kernel;
 * no GC, so safe on a thread that serves. */
static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) == 1, &out);
  return out;
}

extern "C" void weft_memory_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"releaseMemory", nullptr, release_memory, nullptr, nullptr, nullptr, napi_default, nullptr},
    {"trimMemory", nullptr, trim_memory, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
