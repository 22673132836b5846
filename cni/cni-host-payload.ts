/** What `weft-cni install` puts into the host's CNI bin dir: a launcher script and, in weft-cni.d/, the Node binary running the installer, the C libraries it links and the bundled plugin, so the plugin runs on any Linux node whatever its own libc. */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { WeftError } from '../runtime/errors.js';
import { PLUGIN_TYPE, type PayloadFile } from './cni-install.js';

const PAYLOAD_DIR = `${PLUGIN_TYPE}.d`;

/** The launcher: the container runtime execs `<bin dir>/weft-cni`; it runs our Node through our own loader and libraries. */
export function launcherScript(loader: string | undefined): string {
  const exec = loader === undefined ? '"$d/node"' : `"$d/lib/${loader}" --library-path "$d/lib" "$d/node"`;
  return `#!/bin/sh
# weft-cni, written by the weft DaemonSet's CNI installer (weft-cni install): Node.js, the C libraries it was built
# with and the bundled plugin live in ${PAYLOAD_DIR}/ beside this script; the node needs no Node.js of its own.
case $0 in */*) here=\${0%/*} ;; *) here=$(dirname "$(command -v "$0")") ;; esac
d=$here/${PAYLOAD_DIR}
exec ${exec} "$d/weft-cni.mjs" "$@"
`;
}

/** The payload for `bundle` (the plugin as one ES module) run by `node` (by default the Node running this installer). */
export function hostPayload(bundle: string, node = process.execPath): PayloadFile[] {
  const loader = elfInterpreter(node);
  const libs = loader === undefined ? [] : linkedLibraries(loader, node);
  const files: PayloadFile[] = libs.map((lib) => ({ path: `${PAYLOAD_DIR}/lib/${path.basename(lib)}`, source: realpathSync(lib), mode: 0o755 }));
  if (loader !== undefined) files.push({ path: `${PAYLOAD_DIR}/lib/${path.basename(loader)}`, source: realpathSync(loader), mode: 0o755 });
  files.push({ path: `${PAYLOAD_DIR}/node`, source: node, mode: 0o755 });
  files.push({ path: `${PAYLOAD_DIR}/weft-cni.mjs`, source: bundle, mode: 0o644 });
  files.push({ path: PLUGIN_TYPE, content: launcherScript(loader === undefined ? undefined : path.basename(loader)), mode: 0o755 });
  return files;
}

/** The ELF program interpreter (PT_INTERP) of a 64-bit little-endian executable: what the kernel runs it with. */
export function elfInterpreter(file: string): string | undefined {
  const fd = openSync(file, 'r');
  try {
    const header = Buffer.alloc(64);
    readSync(fd, header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) {
      throw new WeftError('WEFT_ERR_CNI', `${file} is not a 64-bit little-endian ELF executable`);
    }
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const phdrs = Buffer.alloc(phentsize * phnum);
    readSync(fd, phdrs, 0, phdrs.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (phdrs.readUInt32LE(at) !== 3) continue; // PT_INTERP
      const offset = Number(phdrs.readBigUInt64LE(at + 8));
      const size = Number(phdrs.readBigUInt64LE(at + 32));
      const name = Buffer.alloc(size);
      readSync(fd, name, 0, size, offset);
      return name.toString('latin1').replace(/\0+$/, '');
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The shared libraries the loader maps for `file` (`ld.so --list`, what ldd runs), by their resolved paths. */
function linkedLibraries(loader: string, file: string): string[] {
  const listed = execFileSync(loader, ['--list', file], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of listed.split('\n')) {
    const m = /=>\s+(\/\S+)\s+\(/.exec(line);
    if (m === null) {
      if (line.includes('not found')) throw new WeftError('WEFT_ERR_CNI', `${file} needs a library this image lacks: ${line.trim()}`);
      continue;
    }
    libs.push(m[1]!);
  }
  return libs;
}
