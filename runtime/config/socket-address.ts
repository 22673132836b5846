/** Parses "ip:port" / "[v6]:port" listener addresses; kept apart from the schema so the data path never loads the validation library. */
import { isIP } from 'node:net';

export function parseSocketAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (isIP(host) === 0 || port > 65535) return undefined;
  return { host, port };
}
