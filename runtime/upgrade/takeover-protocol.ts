/** The hot-upgrade control channel's address and messages: JSON lines over a unix stream socket, the listening sockets riding along as SCM_RIGHTS. */
import os from 'node:os';
import path from 'node:path';
import { ENV, envValue } from '../config/defaults.js';
import type { SocketRecord } from './socket-handover.js';
import { sha256Hex } from './sha256-hex.js';

/**
 * The predecessor sends `sockets` (one message per batch of descriptors, the last with more=false); the successor,
 * once started with them, sends `ready`; the predecessor stops accepting and answers `released`, then drains.
 */
export type TakeoverMessage =
  | { type: 'sockets'; pid: number; sockets: SocketRecord[]; more: boolean }
  | { type: 'ready'; pid: number }
  | { type: 'released'; pid: number };

/** The kernel's SCM_MAX_FD is 253 descriptors per message; batches stay under it. */
export const FDS_PER_MESSAGE = 200;

/**
 * `WEFT_TAKEOVER_SOCKET`, else one path per configuration file in the temp dir: the config's own folder may be
 * read-only (a ConfigMap mount), and a unix socket path must stay under 108 bytes.
 */
export function takeoverSocketPath(configFile: string): string {
  const configured = envValue(ENV.takeoverSocket);
  if (configured !== undefined) return configured;
  const digest = sha256Hex(path.resolve(configFile)).slice(0, 16);
  return path.join(os.tmpdir(), `weft-takeover-${digest}.sock`);
}

export function encodeMessage(message: TakeoverMessage): Buffer {
  return Buffer.from(JSON.stringify(message) + '\n');
}

/** Splits received bytes into messages; a partial last line is returned as the rest. */
export function decodeMessages(text: string): { messages: TakeoverMessage[]; rest: string } {
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  const messages: TakeoverMessage[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    const parsed = JSON.parse(line) as TakeoverMessage;
    if (typeof parsed !== 'object' || parsed === null || typeof parsed.type !== 'string') throw new Error(`not a takeover message: ${line.slice(0, 80)}`);
    messages.push(parsed);
  }
  return { messages, rest };
}
