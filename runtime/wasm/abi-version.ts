/** Detects the proxy-wasm ABI a module was built for from its `proxy_abi_version_*` marker export, as proxy-wasm-cpp-host does. */
import type { AbiVersion } from './abi-constants.js';

const MARKERS: Record<string, AbiVersion> = {
  proxy_abi_version_0_2_1: '0.2.1',
  proxy_abi_version_0_2_0: '0.2.0',
  proxy_abi_version_0_1_0: '0.1.0',
};

/** The newest marker present, or undefined (the module is not a proxy-wasm plugin this host can run). */
export function detectAbiVersion(exportNames: Iterable<string>): AbiVersion | undefined {
  let found: AbiVersion | undefined;
  for (const name of exportNames) {
    const v = MARKERS[name];
    if (v !== undefined && (found === undefined || v > found)) found = v;
  }
  return found;
}

/** vNEXT (`proxy_abi_version_0_x_x`) is currently a copy of 0.2.1 under a new marker; named in errors so users know why. */
export const UNSUPPORTED_MARKERS = ['proxy_abi_version_0_x_x', 'proxy_abi_mosn_version_0_2_0'];
