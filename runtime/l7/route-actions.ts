/** What a matched route does to a request or response before it moves on: header set/add/remove and Istio's URI rewrites. */
import type { HeaderOpsConfig } from '../config/l7-config-schema.js';
import type { HeaderList } from './header-list.js';
import type { CompiledRoute } from './route-table.js';

/** Istio order: remove, then set, then add. */
export function applyHeaderOps(headers: HeaderList, ops: HeaderOpsConfig): void {
  if (ops.remove !== undefined) for (const n of ops.remove) headers.remove(n.toLowerCase());
  if (ops.set !== undefined) for (const [n, v] of Object.entries(ops.set)) headers.set(n, v);
  if (ops.add !== undefined) for (const [n, v] of Object.entries(ops.add)) headers.add(n, v);
}

/** Istio rewrite: `uri` replaces the matched prefix (or the whole path for other matches); `uriRegex` substitutes. The query string is kept. */
export function rewritePath(route: CompiledRoute, path: string, target: string): string {
  const query = target.length > path.length ? target.slice(path.length) : '';
  if (route.rewriteRegex !== undefined) return path.replace(route.rewriteRegex.re, route.rewriteRegex.replacement) + query;
  const uri = route.rewriteUri ?? path;
  for (const m of route.matches) {
    const prefix = m.prefixValue;
    if (prefix !== undefined && path.startsWith(prefix)) return uri + path.slice(prefix.length) + query;
  }
  return uri + query;
}
