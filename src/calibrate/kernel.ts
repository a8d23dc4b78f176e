/**
 * The kernel side of `dplab calibrate`: find the tools, build the model programs in bpf/ and the
 * helper that runs them (once, into a cache folder keyed by the sources), and run packets through
 * one program with BPF_PROG_TEST_RUN.
 *
 * Nothing here is needed by the rest of dplab, and nothing is attached to an interface: the
 * programs only see the packets the helper gives them. bpffs is not needed (nothing is pinned).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The model programs' sources (bpf/ at the top of the repository). */
export const BPF_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bpf');

/** Something the calibration needs is missing: one line saying what and how to fix it. */
export class CalibrateSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CalibrateSetupError';
  }
}

const APT = 'apt-get install -y clang libbpf-dev (Debian/Ubuntu)';

/** The executable `name` on PATH, or null. */
export function onPath(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const f = join(dir, name);
    try {
      if (statSync(f).isFile()) return f;
    } catch { /* not there */ }
  }
  return null;
}

const INCLUDE_DIRS = ['/usr/include', '/usr/local/include'];

export interface Toolchain {
  clang: string;
  cc: string;
  /** -I for asm/types.h on multiarch systems (Debian: /usr/include/x86_64-linux-gnu). */
  archInclude: string | null;
  clangVersion: string;
}

/**
 * Check what the calibration needs before anything is read: root, clang, a C compiler, libbpf's
 * headers. Throws CalibrateSetupError naming the first thing missing.
 */
export function checkSetup(): Toolchain {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CalibrateSetupError('needs root: loading BPF programs and BPF_PROG_TEST_RUN want CAP_BPF and CAP_NET_ADMIN (run it with sudo)');
  }
  const clang = onPath('clang');
  if (!clang) throw new CalibrateSetupError(`no clang on PATH: it compiles the model programs in bpf/ (${APT})`);
  const cc = onPath('cc') ?? onPath('gcc') ?? clang;
  if (!INCLUDE_DIRS.some((d) => existsSync(join(d, 'bpf', 'libbpf.h')))) {
    throw new CalibrateSetupError(`no libbpf headers (bpf/libbpf.h): the helper that loads the programs is built against libbpf (${APT})`);
  }
  // Debian keeps asm/types.h under /usr/include/<multiarch>: gcc names it; clang says x86_64-pc-linux-gnu.
  const machine = spawnSync(cc, ['-dumpmachine'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const cpu = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
  const arch = [machine, `${cpu}-linux-gnu`].filter((m) => m).map((m) => join('/usr/include', m)).find((d) => existsSync(join(d, 'asm'))) ?? null;
  const version = spawnSync(clang, ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0]?.trim() ?? 'clang';
  return { clang, cc, archInclude: arch, clangVersion: version };
}

export interface Built {
  dir: string;
  helper: string;
  object(name: string): string;
}

/** Where builds are cached: $DPLAB_CACHE_DIR, else $XDG_CACHE_HOME/dplab, else ~/.cache/dplab. */
export function cacheRoot(): string {
  if (process.env.DPLAB_CACHE_DIR) return process.env.DPLAB_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'dplab');
}

/**
 * Compile bpf/*.bpf.c (clang -O2 -g -target bpf) and bpf/runner.c (cc, -lbpf) into a cache folder
 * named by a hash of the sources and the compiler, unless it is there already.
 */
export function build(tc: Toolchain): Built {
  const files = readdirSync(BPF_DIR).filter((f) => /\.(c|h)$/.test(f)).sort();
  const h = createHash('sha256');
  h.update(tc.clangVersion);
  for (const f of files) { h.update(f); h.update(readFileSync(join(BPF_DIR, f))); }
  const dir = join(cacheRoot(), `bpf-${h.digest('hex').slice(0, 16)}`);
  const built: Built = { dir, helper: join(dir, 'dplab-bpf-run'), object: (name) => join(dir, `${name}.bpf.o`) };
  if (existsSync(built.helper)) return built;
  mkdirSync(cacheRoot(), { recursive: true });
  const tmp = mkdtempSync(join(cacheRoot(), '.build-'));
  try {
    const include = tc.archInclude ? ['-I', tc.archInclude] : [];
    for (const f of files.filter((x) => x.endsWith('.bpf.c'))) {
      const out = join(tmp, f.replace(/\.c$/, '.o'));
      compile(tc.clang, ['-O2', '-g', '-target', 'bpf', ...include, '-Wall', '-Wno-pass-failed', '-c', join(BPF_DIR, f), '-o', out], f);
    }
    compile(tc.cc, ['-O2', '-Wall', '-o', join(tmp, 'dplab-bpf-run'), join(BPF_DIR, 'runner.c'), '-lbpf'], 'runner.c');
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another calibrate built the same sources at the same time: theirs is as good.
      if (!existsSync(built.helper)) throw e;
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return built;
}

function compile(tool: string, args: string[], what: string): void {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    const first = (r.stderr || r.error?.message || '').split('\n').find((l) => /error/i.test(l)) ?? (r.stderr || '').split('\n')[0];
    throw new CalibrateSetupError(`cannot build bpf/${what} with ${tool}: ${first?.trim()}${/bpf\/(bpf|libbpf)\.h|bpf_helpers/.test(first ?? '') ? ` (${APT})` : ''}`);
  }
}

export interface RunSpec {
  built: Built;
  object: string;
  program: string;
  /** Packet records (see bpf/runner.c). */
  packets: string;
  results: string;
  repeat: number;
  passes: number;
  maps?: string;
  dump?: string;
  /** Write the packets as the program left them here (first pass; bpf/runner.c OUT). */
  out?: string;
}

export interface KernelRun {
  /** Per pass, per packet: return value and the kernel's duration in ns. */
  retval: Uint32Array;
  duration: Uint32Array;
  count: number;
  passes: number;
  /** With `dump`: the map's entries as [key hex, value hex]. */
  dumped: [string, string][];
}

/** Run the helper; a refusal by the kernel (exit 2) is a CalibrateSetupError with its reason. */
export function runProgram(s: RunSpec): KernelRun {
  const args = [s.built.object(s.object), s.program, s.packets, s.results, String(s.repeat), String(s.passes), s.maps ?? '', ...(s.dump || s.out ? [s.dump ?? ''] : []), ...(s.out ? [s.out] : [])];
  const r = spawnSync(s.built.helper, args, { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) {
    const line = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').pop()!;
    if (r.status === 2) throw new CalibrateSetupError(`the kernel refused the ${s.object} model: ${line.replace(/^dplab-bpf-run: /, '')}`);
    throw new Error(line);
  }
  const raw = readFileSync(s.results);
  const words = new Uint32Array(new Uint8Array(raw).buffer, 0, raw.byteLength >>> 2);
  const n = words.length >>> 1;
  const retval = new Uint32Array(n);
  const duration = new Uint32Array(n);
  for (let i = 0; i < n; i++) { retval[i] = words[2 * i]!; duration[i] = words[2 * i + 1]!; }
  const dumped = (r.stdout || '').split('\n').filter((l) => l).map((l) => l.split(' ') as [string, string]);
  return { retval, duration, count: s.passes > 0 ? n / s.passes : 0, passes: s.passes, dumped };
}
