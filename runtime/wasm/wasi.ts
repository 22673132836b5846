/**
 * The WASI preview1 subset real proxy-wasm SDK builds import: clocks, random, args/environ (the plugin's own vmConfig.env,
 * never the host's), stdout/stderr to the plugin log, proc_exit as a VM failure. No files, no sockets: those answer
 * ENOTCAPABLE / EBADF, like cpp-host with capabilities restricted.
 */
import { randomFillSync } from 'node:crypto';
import { Errno, LogLevel } from './abi-constants.js';
import { epochNanos } from './epoch-nanos.js';
import { writePluginLog } from './host-functions/logging.js';
import type { PluginVm } from './plugin-vm.js';

/** proc_exit unwinds the guest with this; code 0 during module start is a normal end of `_start`. */
export class ProcExit extends Error {
  readonly code: number;

  constructor(code: number) {
    super(`proc_exit(${code})`);
    this.code = code;
    this.name = 'ProcExit';
  }
}

export const WASI_PREVIEW1_FUNCTIONS = [
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get', 'fd_advise', 'fd_allocate',
  'fd_close', 'fd_datasync', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_filestat_set_size',
  'fd_filestat_set_times', 'fd_pread', 'fd_prestat_get', 'fd_prestat_dir_name', 'fd_pwrite', 'fd_read', 'fd_readdir', 'fd_renumber',
  'fd_seek', 'fd_sync', 'fd_tell', 'fd_write', 'path_create_directory', 'path_filestat_get', 'path_filestat_set_times', 'path_link',
  'path_open', 'path_readlink', 'path_remove_directory', 'path_rename', 'path_symlink', 'path_unlink_file', 'poll_oneoff', 'proc_exit',
  'proc_raise', 'sched_yield', 'random_get', 'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown',
] as const;

const MAX_RANDOM_BYTES = 64 * 1024;
const FILETYPE_CHARACTER_DEVICE = 2;
const encoder = new TextEncoder();

export function createWasi(vm: PluginVm): Record<string, (...args: never[]) => number> {
  const isStdio = (fd: number): boolean => fd >= 0 && fd <= 2;
  const envEntries = Object.entries(vm.settings.env).map(([k, v]) => encoder.encode(`${k}=${v}\0`));
  const envBytes = envEntries.reduce((n, e) => n + e.length, 0);
  const impl: Record<string, (...args: number[]) => number> = {
    args_sizes_get: (argc, size) => writeWords(vm, argc, 0, size, 0),
    args_get: () => Errno.Success,
    environ_sizes_get: (count, size) => writeWords(vm, count, envEntries.length, size, envBytes),
    environ_get: (environ, buf) => {
      const ptrs = environ >>> 0;
      let at = buf >>> 0;
      if (!vm.mem.inBounds(ptrs, envEntries.length * 4) || !vm.mem.inBounds(at, envBytes)) return Errno.Fault;
      envEntries.forEach((entry, i) => {
        vm.mem.setU32(ptrs + i * 4, at);
        vm.mem.u8.set(entry, at);
        at += entry.length;
      });
      return Errno.Success;
    },
    clock_res_get: (id, ret) => (id > 3 ? Errno.Inval : vm.mem.writeU64(ret >>> 0, 1000n) === 0 ? Errno.Success : Errno.Fault),
    clock_time_get: (id, _precision, ret) => {
      let status: number;
      if (id === 0) status = vm.mem.writeU64Number(ret >>> 0, epochNanos());
      else if (id >= 1 && id <= 3) status = vm.mem.writeU64(ret >>> 0, process.hrtime.bigint());
      else return Errno.Inval;
      return status === 0 ? Errno.Success : Errno.Fault;
    },
    fd_write: (fd, iovs, iovsLen, nwritten) => {
      if (fd !== 1 && fd !== 2) return Errno.Badf;
      const base = iovs >>> 0;
      const n = iovsLen >>> 0;
      if (!vm.mem.inBounds(base, n * 8) || !vm.mem.inBounds(nwritten >>> 0, 4)) return Errno.Fault;
      let text = '';
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = vm.mem.view.getUint32(base + i * 8, true);
        const len = vm.mem.view.getUint32(base + i * 8 + 4, true);
        if (!vm.mem.inBounds(ptr, len)) return Errno.Fault;
        text += vm.mem.utf8(ptr, len);
        total += len;
      }
      if (text.endsWith('\n')) text = text.slice(0, -1);
      if (text !== '') writePluginLog(vm, fd === 1 ? LogLevel.Info : LogLevel.Error, text);
      vm.mem.setU32(nwritten >>> 0, total);
      return Errno.Success;
    },
    fd_read: (fd, _iovs, _len, nread) => (fd === 0 ? (vm.mem.writeU32(nread >>> 0, 0) === 0 ? Errno.Success : Errno.Fault) : Errno.Badf),
    fd_close: (fd) => (isStdio(fd) ? Errno.Success : Errno.Badf),
    fd_fdstat_get: (fd, ret) => {
      if (!isStdio(fd)) return Errno.Badf;
      const p = ret >>> 0;
      if (!vm.mem.inBounds(p, 24)) return Errno.Fault;
      vm.mem.u8.fill(0, p, p + 24);
      vm.mem.u8[p] = FILETYPE_CHARACTER_DEVICE;
      vm.mem.view.setBigUint64(p + 8, fd === 0 ? 0x2n : 0x40n, true); // fd_read or fd_write right
      return Errno.Success;
    },
    fd_fdstat_set_flags: (fd) => (isStdio(fd) ? Errno.Success : Errno.Badf),
    fd_filestat_get: (fd, ret) => {
      if (!isStdio(fd)) return Errno.Badf;
      const p = ret >>> 0;
      if (!vm.mem.inBounds(p, 64)) return Errno.Fault;
      vm.mem.u8.fill(0, p, p + 64);
      vm.mem.u8[p + 16] = FILETYPE_CHARACTER_DEVICE;
      return Errno.Success;
    },
    fd_prestat_get: () => Errno.Badf,
    fd_prestat_dir_name: () => Errno.Badf,
    fd_seek: (fd) => (isStdio(fd) ? Errno.Spipe : Errno.Badf),
    fd_tell: (fd) => (isStdio(fd) ? Errno.Spipe : Errno.Badf),
    poll_oneoff: (input, output, nsubs, nevents) => {
      // Never sleeps (that would stall every request on this event loop): each subscription is reported ready at once.
      const inp = input >>> 0;
      const out = output >>> 0;
      const n = nsubs >>> 0;
      if (!vm.mem.inBounds(inp, n * 48) || !vm.mem.inBounds(out, n * 32) || !vm.mem.inBounds(nevents >>> 0, 4)) return Errno.Fault;
      for (let i = 0; i < n; i++) {
        const sub = inp + i * 48;
        const ev = out + i * 32;
        vm.mem.u8.fill(0, ev, ev + 32);
        vm.mem.view.setBigUint64(ev, vm.mem.view.getBigUint64(sub, true), true);
        vm.mem.u8[ev + 10] = vm.mem.u8[sub + 8]!;
      }
      vm.mem.setU32(nevents >>> 0, n);
      return Errno.Success;
    },
    proc_exit: (code) => vm.procExit(code >>> 0),
    proc_raise: (sig) => vm.abort('abort', `the plugin raised signal ${sig}`),
    sched_yield: () => Errno.Success,
    random_get: (buf, len) => {
      const p = buf >>> 0;
      const n = len >>> 0;
      if (n > MAX_RANDOM_BYTES) return Errno.Inval;
      if (!vm.mem.inBounds(p, n)) return Errno.Fault;
      randomFillSync(vm.mem.u8, p, n);
      return Errno.Success;
    },
  };
  const out: Record<string, (...args: never[]) => number> = {};
  for (const name of WASI_PREVIEW1_FUNCTIONS) out[name] = (impl[name] ?? (() => Errno.Notcapable));
  return out;
}

function writeWords(vm: PluginVm, p1: number, v1: number, p2: number, v2: number): number {
  if (!vm.mem.inBounds(p1 >>> 0, 4) || !vm.mem.inBounds(p2 >>> 0, 4)) return Errno.Fault;
  vm.mem.setU32(p1 >>> 0, v1);
  vm.mem.setU32(p2 >>> 0, v2);
  return Errno.Success;
}
