/** The image's base without a registry: a Debian bookworm minbase rootfs from debootstrap with the tools weft calls, slimmed and cached as a tarball keyed by its recipe. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export const DEBIAN_SUITE = 'bookworm';

/**
 * What weft and weft-cni run inside the image (cni/README.md): ip, iptables(-restore), ipset, nft, sysctl, and
 * flock/nsenter/unshare (util-linux, essential in every Debian). The registry Dockerfile installs the same list.
 */
export const DEBIAN_TOOLS = ['iproute2', 'iptables', 'ipset', 'nftables', 'procps', 'util-linux'] as const;

/**
 * Removed after the user is created: the package manager's network side, Perl and the login tools. None of them is
 * called at run time; dpkg and its status file stay, so image scanners still see every package that remains.
 */
const PURGED = [
  'apt', 'libapt-pkg6.0', 'gpgv', 'debian-archive-keyring', 'e2fsprogs', 'libext2fs2', 'libss2', 'logsave', 'tzdata',
  'adduser', 'passwd', 'login', 'debconf', 'perl-base', 'libgnutls30', 'libp11-kit0', 'libtasn1-6', 'libunistring2',
  'libidn2-0', 'libnettle8', 'libhogweed6', 'libffi8', 'libsemanage2', 'libsemanage-common', 'libsepol2',
] as const;

/** Files no program here reads: documentation, translations, and glibc's iconv modules (Node converts text itself). */
const SLIMMED = [
  'usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian', 'usr/share/bash-completion',
  'usr/lib/x86_64-linux-gnu/gconv', 'var/cache/apt', 'var/lib/apt', 'var/cache/debconf', 'var/log',
] as const;

/** Every program the image must run: each must resolve all of its libraries after the purge. */
export const REQUIRED_PROGRAMS = [
  '/bin/sh', '/usr/bin/cat', '/usr/bin/ip', '/usr/sbin/iptables', '/usr/sbin/ip6tables', '/usr/sbin/iptables-restore',
  '/usr/sbin/ipset', '/usr/sbin/nft', '/usr/sbin/sysctl', '/usr/bin/flock', '/usr/bin/nsenter', '/usr/bin/unshare',
] as const;

/** The non-root user of the image (Istio's proxy uid, so mesh rules that exempt 1337 exempt weft too). */
export const WEFT_UID = 1337;

export interface DebianBaseOptions {
  cacheDir?: string;
  mirror?: string;
  log?: (line: string) => void;
}

/** Bumped with any change above that is not in the lists themselves, so an old tarball is never reused by mistake. */
const RECIPE_VERSION = 1;

export function debianBaseKey(): string {
  const recipe = JSON.stringify({ RECIPE_VERSION, DEBIAN_SUITE, DEBIAN_TOOLS, PURGED, SLIMMED, WEFT_UID });
  return createHash('sha256').update(recipe).digest('hex').slice(0, 16);
}

export function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'weft-image');
}

/** Returns the path of the base rootfs tarball, running debootstrap (as root) only when no tarball of this recipe exists. */
export function ensureDebianBase(options: DebianBaseOptions = {}): string {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const tarball = path.join(cacheDir, `debian-${DEBIAN_SUITE}-minbase-${debianBaseKey()}.tar`);
  if (existsSync(tarball)) return tarball;
  const log = options.log ?? (() => undefined);
  if (process.getuid?.() !== 0) throw new Error(`building the Debian base needs root (debootstrap, chroot); run as root once to fill ${cacheDir}`);
  const rootfs = path.join(cacheDir, `rootfs-${process.pid}`);
  mkdirSync(cacheDir, { recursive: true });
  rmSync(rootfs, { recursive: true, force: true });
  try {
    const mirror = options.mirror ?? 'http://deb.debian.org/debian';
    log(`debootstrap --variant=minbase ${DEBIAN_SUITE} (${DEBIAN_TOOLS.join(', ')})`);
    // The downloaded .debs stay in the cache too: a change of the lists above rebuilds without fetching them again.
    const debs = path.resolve(cacheDir, 'debs');
    mkdirSync(debs, { recursive: true });
    run('debootstrap', ['--variant=minbase', `--cache-dir=${debs}`, `--include=${DEBIAN_TOOLS.join(',')}`, DEBIAN_SUITE, rootfs, mirror]);
    run('chroot', [rootfs, 'groupadd', '--gid', String(WEFT_UID), 'weft']);
    run('chroot', [rootfs, 'useradd', '--uid', String(WEFT_UID), '--gid', String(WEFT_UID), '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', 'weft']);
    run('chroot', [rootfs, 'dpkg', '--purge', '--force-remove-essential', '--force-depends', ...PURGED]);
    for (const dir of SLIMMED) rmSync(path.join(rootfs, dir), { recursive: true, force: true });
    checkPrograms(rootfs);
    const partial = `${tarball}.${process.pid}.partial`;
    run('tar', ['--numeric-owner', '-C', rootfs, '-cf', partial, '.']);
    renameSync(partial, tarball);
    return tarball;
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
  }
}

/** The purge used --force-depends, so prove the programs weft needs still link: the loader lists every library. */
function checkPrograms(rootfs: string): void {
  for (const program of REQUIRED_PROGRAMS) {
    const listed = execFileSync('chroot', [rootfs, '/lib64/ld-linux-x86-64.so.2', '--list', program], { encoding: 'utf8' });
    if (listed.includes('not found')) throw new Error(`the slimmed base broke ${program}:\n${listed}`);
  }
}

function run(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}
