/** HTTP/2 SETTINGS both HBONE ends send, from the ztunnel-equivalent HboneConfig knobs. */
import type http2 from 'node:http2';
import { HBONE_DEFAULTS } from '../config/defaults.js';

export interface H2Knobs {
  streamWindowBytes: number;
  maxFrameBytes: number;
}

export function h2Settings(knobs: H2Knobs = HBONE_DEFAULTS): http2.Settings {
  return {
    initialWindowSize: knobs.streamWindowBytes,
    maxFrameSize: knobs.maxFrameBytes,
    maxHeaderListSize: 16 * 1024,
    enablePush: false,
  };
}
