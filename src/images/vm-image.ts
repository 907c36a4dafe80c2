// The VM form of an image version, for QEMU pools: beside the version's rootfs,
//
//   IMAGE_DIR/<name>/<hex>/vm-<key>/{disk.qcow2, vmlinuz, initrd.img, vm.json}
//
// disk.qcow2: the rootfs as an ext4 filesystem (mkfs.ext4 -d, converted by qemu-img), given to every VM
// read-only (the base is never written: a test's changes live in an in-guest overlay). vmlinuz and the
// modules: Debian's kernel (linux-image-amd64's versioned package, fetched once per machine with
// `apt-get download` and unpacked with `dpkg-deb -x` into IMAGE_DIR/.vm-kernels/<package>/). initrd.img:
// busybox (static) with the guest's /init and agent (guest-agent.ts), the modules, as a gzipped cpio.
// <key> depends only on the guest's code (GUEST_FORMAT, scripts, modules), so the driver finds a
// version's VM files from its rootfs path alone. Built whole in a temp dir and renamed into place.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AGENT_SCRIPT, GUEST_FORMAT, INIT_SCRIPT, MODULES } from '../environments/qemu/guest-agent';

const run = promisify(execFile);
const TOOL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const KERNELS_DIR = '.vm-kernels';
export const VM_FILES = { disk: 'disk.qcow2', kernel: 'vmlinuz', initrd: 'initrd.img', manifest: 'vm.json' } as const;
const BUSYBOX = '/bin/busybox';

export interface VmImage {
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  /** The guest kernel's release (`uname -r` inside). */
  kernelRelease: string;
}

interface VmManifest {
  key: string;
  kernelPackage: string;
  kernelRelease: string;
  diskBytes: number;
  builtAt: string;
  buildSeconds: number;
}

export interface VmLogger {
  info(obj: object, msg: string): void;
}

/** The VM files' key: what the guest is made of (not the kernel: fetched once, whatever is current then). */
export function vmKey(): string {
  return createHash('sha256').update(JSON.stringify([GUEST_FORMAT, INIT_SCRIPT, AGENT_SCRIPT, MODULES])).digest('hex').slice(0, 16);
}

/** Where a version's VM files are (or go), from its rootfs path (IMAGE_DIR/<name>/<hex>/rootfs). */
export function vmDirOf(rootfs: string): string {
  return path.join(path.dirname(rootfs), `vm-${vmKey()}`);
}

/** The VM files of the version at `rootfs` when they are complete; null when not built. */
export async function readVmImage(rootfs: string): Promise<VmImage | null> {
  const dir = vmDirOf(rootfs);
  const text = await fs.readFile(path.join(dir, VM_FILES.manifest), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
    throw err;
  });
  if (text === null) return null;
  const m = JSON.parse(text) as VmManifest;
  return { dir, disk: path.join(dir, VM_FILES.disk), kernel: path.join(dir, VM_FILES.kernel), initrd: path.join(dir, VM_FILES.initrd), kernelRelease: m.kernelRelease };
}

async function tool(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  try {
    const r = await run(cmd, args, { cwd: opts.cwd, env: { PATH: TOOL_PATH, LANG: 'C' }, maxBuffer: 16 << 20 });
    return r.stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string | number };
    if (e.code === 'ENOENT') throw new Error(`${cmd} is not installed (Debian packages: qemu-utils, e2fsprogs, cpio, busybox-static)`);
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')}…: ${(e.stderr ?? e.message).trim().slice(-500)}`);
  }
}

/** The kernel, fetched and unpacked once per machine: its dir and release. */
export async function ensureKernel(imageDir: string, log: VmLogger): Promise<{ dir: string; pkg: string; release: string }> {
  const deps = await tool('apt-cache', ['depends', 'linux-image-amd64']);
  const pkg = /Depends:\s*(linux-image-[0-9][^\s]*)/.exec(deps)?.[1];
  if (!pkg) throw new Error(`cannot tell which kernel package linux-image-amd64 names (apt-cache depends: ${deps.trim().slice(0, 200)})`);
  const dir = path.join(imageDir, KERNELS_DIR, pkg);
  const release = pkg.replace(/^linux-image-/, '');
  if (existsSync(path.join(dir, 'boot', `vmlinuz-${release}`))) return { dir, pkg, release };
  log.info({ pkg }, `fetching the VM kernel ${pkg} (apt-get download)`);
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.mkdir(tmp, { recursive: true, mode: 0o755 });
  try {
    await tool('apt-get', ['download', '-q', pkg], { cwd: tmp });
    const deb = (await fs.readdir(tmp)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
    await tool('dpkg-deb', ['-x', path.join(tmp, deb), tmp]);
    await fs.rm(path.join(tmp, deb));
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(tmp, dir);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { dir, pkg, release };
}

/** Builds the VM files of the version at `rootfs` unless they are there; returns them. */
export async function ensureVmImage(imageDir: string, rootfs: string, log: VmLogger): Promise<VmImage & { built: boolean }> {
  const ready = await readVmImage(rootfs);
  if (ready) return { ...ready, built: false };
  const started = Date.now();
  const kernel = await ensureKernel(imageDir, log);
  const dir = vmDirOf(rootfs);
  const tmp = `${dir}.build-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.mkdir(tmp, { mode: 0o755 });
  try {
    log.info({ rootfs }, `building the VM disk of ${rootfs}`);
    await fs.copyFile(path.join(kernel.dir, 'boot', `vmlinuz-${kernel.release}`), path.join(tmp, VM_FILES.kernel));
    await buildInitramfs(kernel.dir, kernel.release, path.join(tmp, VM_FILES.initrd), tmp);
    const diskBytes = await buildDisk(rootfs, path.join(tmp, VM_FILES.disk), tmp);
    const manifest: VmManifest = {
      key: vmKey(), kernelPackage: kernel.pkg, kernelRelease: kernel.release, diskBytes,
      builtAt: new Date().toISOString(), buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    };
    await fs.writeFile(path.join(tmp, VM_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    for (const f of Object.values(VM_FILES)) await fs.chmod(path.join(tmp, f), 0o644);
    try {
      await fs.rename(tmp, dir);
    } catch (err) {
      if (!(await readVmImage(rootfs))) throw err; // another builder was first: its files are as good
      await fs.rm(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw new Error(`cannot build the VM image of ${rootfs}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ dir }, `VM image built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${dir}`);
  return { ...(await readVmImage(rootfs))!, built: true };
}

async function buildInitramfs(kernelDir: string, release: string, out: string, scratch: string): Promise<void> {
  const root = path.join(scratch, 'initramfs');
  for (const d of ['bin', 'etc', 'lib/modules']) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.copyFile(BUSYBOX, path.join(root, 'bin/busybox'));
  await fs.chmod(path.join(root, 'bin/busybox'), 0o755);
  await fs.symlink('busybox', path.join(root, 'bin/sh'));
  await fs.writeFile(path.join(root, 'init'), INIT_SCRIPT, { mode: 0o755 });
  await fs.writeFile(path.join(root, 'agent.sh'), AGENT_SCRIPT, { mode: 0o644 });
  await fs.writeFile(path.join(root, 'etc/orch-modules'), `${MODULES.join('\n')}\n`);
  const modRoot = path.join(kernelDir, 'lib/modules', release, 'kernel');
  const found = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(d, e.name));
      else if (e.name.endsWith('.ko')) found.set(e.name.slice(0, -3), path.join(d, e.name));
    }
  };
  await walk(modRoot);
  for (const m of MODULES) {
    const src = found.get(m);
    if (!src) throw new Error(`kernel module ${m} not found in ${modRoot} (compressed modules are not supported)`);
    await fs.copyFile(src, path.join(root, 'lib/modules', `${m}.ko`));
  }
  const list = (await tool('find', ['.', '-mindepth', '1'], { cwd: root })).trim().split('\n').sort().join('\n');
  await fs.writeFile(path.join(scratch, 'initramfs.list'), `${list}\n`);
  await tool('sh', ['-c', `cpio --quiet -o -H newc -R 0:0 < ../initramfs.list | gzip -1 > ${JSON.stringify(out)}`], { cwd: root });
  await fs.rm(root, { recursive: true });
}

/** An ext4 filesystem holding `rootfs` (room for its files and some), as qcow2; returns its size. */
async function buildDisk(rootfsPath: string, out: string, scratch: string): Promise<number> {
  const rootfs = await fs.realpath(rootfsPath);
  const used = Number((await tool('du', ['-sxb', rootfs])).split(/\s/)[0]);
  const inodes = Number((await tool('sh', ['-c', `find ${JSON.stringify(rootfs)} -xdev | wc -l`])).trim());
  const sizeMb = Math.ceil((used * 1.2) / (1 << 20)) + 64;
  const raw = path.join(scratch, 'disk.raw');
  await tool('truncate', ['-s', `${sizeMb}M`, raw]);
  await tool('mkfs.ext4', ['-q', '-F', '-L', 'orch-root', '-N', String(inodes + 4096), '-m', '0', '-O', '^has_journal', '-d', rootfs, raw]);
  await tool('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, out]);
  await fs.rm(raw);
  return (await fs.stat(out)).size;
}
