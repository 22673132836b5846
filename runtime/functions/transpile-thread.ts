/**
 * Runs jco's transpile in a short-lived worker thread: jco's bindgen is itself a Wasm component that runs
 * synchronously for seconds on a SpiderMonkey-sized component, which must not stall the data plane's event loop.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const WORKER_FLAG = 'weftTranspile';

export interface Transpiled {
  files: [string, Uint8Array][];
  imports: string[];
  exports: [string, string][];
}

/**
 * jco's transpile entry alone (@bytecodealliance/jco-transpile, a runtime dependency, unlike jco and componentize-js
 * which only authoring needs): it resolves binaryen only for its optimize and asm.js modes, which weft does not use,
 * so the image leaves binaryen out (deploy/image/image-stage.ts).
 */
async function transpileHere(bytes: Uint8Array): Promise<Transpiled> {
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
  const out = await transpileBytes(bytes, { name: 'component', instantiation: 'sync', wasiShim: false, emitTypescriptDeclarations: false, base64Cutoff: 0 });
  return { files: Object.entries(out.files), imports: out.imports, exports: out.exports };
}

if (!isMainThread && parentPort !== null && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] instanceof Uint8Array) {
  const port = parentPort;
  try {
    port.postMessage({ ok: true, value: await transpileHere((workerData as Record<string, Uint8Array>)[WORKER_FLAG] as Uint8Array) });
  } catch (err) {
    port.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
  }
}

/** jco transpile (instantiation mode, no WASI shim) of a component, off the main thread. */
export function transpileOffThread(bytes: Uint8Array): Promise<Transpiled> {
  const source = import.meta.url.endsWith('.ts')
    ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true, workerData: { [WORKER_FLAG]: bytes } })
    : new Worker(new URL(import.meta.url), { workerData: { [WORKER_FLAG]: bytes } });
  return new Promise((resolve, reject) => {
    source.once('message', (r: { ok: true; value: Transpiled } | { ok: false; message: string }) => {
      if (r.ok) resolve(r.value);
      else reject(new Error(r.message));
      void source.terminate();
    });
    source.once('error', reject);
    source.once('exit', (code) => reject(new Error(`transpile thread exited with code ${code}`)));
  });
}
