/**
 * What each live capture path keeps up with: `node dist/live/bench.js [--reps N] [--packets N]`
 * (root; tcpreplay, tcprewrite, iptables, ethtool). It makes a veth pair with one end in a network
 * namespace (deleted at the end, even on failure), writes synthetic IPv4 traffic with dplab gen,
 * rewrites it to the namespace's own address (so the raw path, which sees only what the host
 * receives, sees all of it; the namespace's answers are dropped in its raw table before they reach
 * the veth), and for each capture path and sending rate runs dplab live in the namespace while
 * tcpreplay sends from outside. It prints, per path and rate: packets sent, read by dplab, dropped
 * by the kernel (and any other loss), as medians over the repetitions; then dplab replay's rate on
 * the same file for comparison; then how fast each path drains a queue (see below), and what an
 * overflowing ring reports. --drain-only skips the sending rates.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commas } from '../packet/format.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DPLAB = join(ROOT, 'bin', 'dplab.js');
const arg = (name: string, d: number): number => {
  const k = process.argv.indexOf(name);
  return k >= 0 ? Number(process.argv[k + 1]) : d;
};
const REPS = arg('--reps', 3);
const PACKETS = arg('--packets', 300000);
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1]! : NaN; };

const ns = `dplab-bench-${process.pid}`;
const out = `dpbo${process.pid % 100000}`;
const inn = `dpbi${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), 'dplab-live-bench-'));

function setup(): void {
  sh('ip', ['netns', 'add', ns]);
  sh('ip', ['link', 'add', out, 'type', 'veth', 'peer', 'name', inn]);
  sh('ip', ['link', 'set', inn, 'netns', ns]);
  sh('sysctl', ['-qw', `net.ipv6.conf.${out}.disable_ipv6=1`]);
  const x = (...a: string[]): string => sh('ip', ['netns', 'exec', ns, ...a]);
  x('sysctl', '-qw', `net.ipv6.conf.${inn}.disable_ipv6=1`);
  for (const k of ['all', 'default', inn]) x('sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`);
  sh('ip', ['link', 'set', out, 'up']);
  x('ip', 'link', 'set', inn, 'up');
  x('ip', 'addr', 'add', '10.202.0.2/24', 'dev', inn);
  x('ip', 'route', 'add', 'default', 'dev', inn);
  x('iptables', '-t', 'raw', '-A', 'OUTPUT', '-j', 'DROP');
  sh('ethtool', ['-K', out, 'tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off']);
  x('ethtool', '-K', inn, 'tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off');
}

function teardown(): void {
  try { sh('ip', ['netns', 'del', ns]); } catch { /* gone */ }
  try { sh('ip', ['link', 'del', out]); } catch { /* went with the namespace */ }
  rmSync(dir, { recursive: true, force: true });
}

interface Point { sent: number; read: number; kernelDrops: number; sendPps: number }

/**
 * dplab live in the namespace (JSON report on stdout), once it says it is capturing. `report`
 * parses what it printed (after it has exited).
 */
async function startLive(capture: string, extra: string[]): Promise<{ live: ChildProcess; exited: Promise<void>; report: () => any }> {
  const live = spawn('ip', ['netns', 'exec', ns, process.execPath, DPLAB, 'live', inn, '--capture', capture, '--no-status', '--json', '-', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  live.stdout!.on('data', (d: Buffer) => { stdout += d; });
  live.stderr!.on('data', (d: Buffer) => { stderr += d; });
  const exited = new Promise<void>((r) => live.on('exit', () => r()));
  for (let t = 0; !/capturing on/.test(stderr); t++) {
    if (t > 400 || live.exitCode !== null) throw new Error(`dplab live did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { live, exited, report: () => JSON.parse(stdout) };
}

async function once(capture: string, pps: number | null, file: string, extra: string[]): Promise<Point> {
  const { live, exited, report } = await startLive(capture, extra);
  const r = spawnSync('tcpreplay', ['-i', out, ...(pps === null ? ['--topspeed'] : ['--pps', String(pps)]), file], { encoding: 'utf8' });
  const sent = Number(/Actual: (\d+) packets/.exec(r.stdout)?.[1] ?? NaN);
  const sendPps = Number(/Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps/.exec(r.stdout)?.[1] ?? NaN);
  await new Promise((res) => setTimeout(res, 1500)); // let dplab drain what is queued
  live.kill('SIGINT');
  await exited;
  const rep = report();
  return { sent, read: rep.capture.packets, kernelDrops: rep.live.kernel.drops, sendPps };
}

interface Drain { sent: number; read: number; kernelDrops: number; seconds: number; lost: number }

/**
 * Queue `file` while dplab is stopped, continue it, and time until it has read everything. With
 * `warm`, other traffic (other flows) is sent and read first, so the JIT has compiled the hot path.
 */
async function drain(capture: string, file: string, n: number, extra: string[], counted = true, warm?: { file: string; n: number }): Promise<Drain> {
  const { live, exited, report } = await startLive(capture, [...(counted ? ['--count', String(n + (warm?.n ?? 0))] : []), ...extra]);
  // ip netns exec becomes node (it execs, no fork): its pid is node's.
  const pid = live.pid!;
  if (warm) {
    sh('tcpreplay', ['-i', out, '--pps', '50000', warm.file]);
    await new Promise((res) => setTimeout(res, 1000));
  }
  process.kill(pid, 'SIGSTOP');
  const r = spawnSync('tcpreplay', ['-i', out, '--topspeed', file], { encoding: 'utf8' });
  const sent = Number(/Actual: (\d+) packets/.exec(r.stdout)?.[1] ?? NaN);
  await new Promise((res) => setTimeout(res, 300));
  const t0 = performance.now();
  process.kill(pid, 'SIGCONT');
  if (!counted) { await new Promise((res) => setTimeout(res, 1500)); live.kill('SIGINT'); }
  // A queue that overflowed never reaches --count: stop it after a while (its drops say why).
  const guard = setTimeout(() => live.kill('SIGINT'), 20000);
  await exited;
  clearTimeout(guard);
  const seconds = (performance.now() - t0) / 1000;
  const rep = report();
  const read = rep.capture.packets - (warm?.n ?? 0);
  return { sent, read, kernelDrops: rep.live.kernel.drops, seconds, lost: sent - read - rep.live.kernel.drops };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the live bench needs root (network namespaces, packet sockets)');
  setup();
  try {
    const insideMac = sh('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${inn}/address`]).trim();
    const gen = join(dir, 'gen.pcap');
    const file = join(dir, 'local.pcap');
    sh(process.execPath, [DPLAB, 'gen', gen, '--packets', String(PACKETS), '--ipv6', '0', '--vlan', '0']);
    sh('tcprewrite', [`--enet-dmac=${insideMac}`, '--dstipmap=0.0.0.0/0:10.202.0.2/32', '--fixcsum', '-i', gen, '-o', file]);
    console.log(`${commas(PACKETS)} packets of dplab gen (IPv4, ${REPS} runs per point, medians), tcpreplay from outside, dplab live --profile ebpf inside`);
    console.log('path             rate asked  sent pps   sent      read      kernel drops  other loss');
    const rates: (number | null)[] = process.argv.includes('--drain-only') ? [] : [100000, 200000, null];
    for (const [capture, extra, label] of [['packet', [], 'packet'], ['packet', ['--workers', '2'], 'packet x2'], ['raw', [], 'raw']] as const) {
      for (const pps of rates) {
        const pts: Point[] = [];
        for (let k = 0; k < REPS; k++) pts.push(await once(capture, pps, file, [...extra]));
        const m = (f: (p: Point) => number): number => median(pts.map(f));
        console.log(`${label.padEnd(16)} ${(pps === null ? 'topspeed' : String(pps)).padStart(10)}  ${m((p) => p.sendPps).toFixed(0).padStart(8)}  ${m((p) => p.sent).toString().padStart(8)}  ${m((p) => p.read).toString().padStart(8)}  ${m((p) => p.kernelDrops).toString().padStart(12)}  ${m((p) => p.sent - p.read - p.kernelDrops).toString().padStart(10)}`);
      }
    }
    const replay: number[] = [];
    for (let k = 0; k < REPS; k++) {
      const rep = JSON.parse(sh(process.execPath, [DPLAB, 'replay', file, '--repeat', '3', '--json', '-', '--no-progress']));
      replay.push(rep.packetsPerSecond);
    }
    const replayPps = median(replay);
    console.log(`dplab replay --profile ebpf on the same file (warm, 3rd run): ${commas(Math.round(replayPps))} packets/s`);
    // How fast each path drains what the kernel has queued: dplab is stopped (SIGSTOP) while the
    // packets are sent, so they wait in the ring (or the sockets' buffers), then continued; the
    // time from SIGCONT to its exit (--count: all read) is the drain time plus a fixed cost
    // (report, exit), which the difference between a small and a large queue cancels.
    console.log('drain: packets queued while a warmed-up dplab was stopped, then read; rate = extra packets / extra time between a small and a large queue');
    const rings = (process.argv.includes('--rings') ? process.argv[process.argv.indexOf('--rings') + 1]! : '512').split(',');
    const paths: [string, number, number, string[]][] = [...rings.map((mb): [string, number, number, string[]] => ['packet', Math.floor(PACKETS / 10), PACKETS, ['--ring-mb', mb]]), ['raw', 10000, 60000, []]];
    for (const [capture, small, large, extra] of paths) {
      const files = [small, large].map((n) => {
        const f = join(dir, `first${n}.pcap`);
        sh('editcap', ['-r', file, f, `1-${n}`]);
        return f;
      });
      // Warm-up traffic: other flows (another seed), as many as the small queue, sent slowly first.
      const warmFile = join(dir, `warm${small}.pcap`);
      const warmGen = join(dir, `warmgen${small}.pcap`);
      sh(process.execPath, [DPLAB, 'gen', warmGen, '--packets', String(small), '--ipv6', '0', '--vlan', '0', '--seed', '2']);
      sh('tcprewrite', [`--enet-dmac=${insideMac}`, '--dstipmap=0.0.0.0/0:10.202.0.2/32', '--fixcsum', '-i', warmGen, '-o', warmFile]);
      // Each round: replay's rate, then a small and a large queue; the ratio is taken within the
      // round (this machine's speed drifts between rounds), and the medians are printed.
      const times: number[][] = [[], []];
      const rates: number[] = [];
      const ratios: number[] = [];
      let lost = 0;
      for (let k = 0; k < REPS; k++) {
        const replayNow = JSON.parse(sh(process.execPath, [DPLAB, 'replay', file, '--repeat', '3', '--json', '-', '--no-progress'])).packetsPerSecond as number;
        const t: number[] = [];
        for (const j of [0, 1]) {
          const d = await drain(capture, files[j]!, j === 0 ? small : large, [...extra], true, { file: warmFile, n: small });
          times[j]!.push(d.seconds);
          t.push(d.seconds);
          lost += d.lost + d.kernelDrops;
        }
        const rate = (large - small) / (t[1]! - t[0]!);
        rates.push(rate);
        ratios.push(rate / replayNow);
      }
      console.log(`  ${capture.padEnd(7)} ${extra.join(' ').padEnd(14)} ${commas(small)} / ${commas(large)} packets in ${median(times[0]!).toFixed(3)} / ${median(times[1]!).toFixed(3)} s: `
        + `${commas(Math.round(median(rates)))} packets/s (range ${commas(Math.round(Math.min(...rates)))}-${commas(Math.round(Math.max(...rates)))}); `
        + `${median(ratios).toFixed(2)}x replay of the same packets in the same round (range ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})${lost ? `, ${lost} lost or dropped` : ''}`);
    }
    // Overflow: a 1 MiB ring while dplab is stopped must lose packets, and say so: read + kernel drops = sent.
    const o = await drain('packet', file, PACKETS, ['--ring-mb', '1'], false);
    console.log(`overflow, 1 MiB ring, dplab stopped: sent ${o.sent}, read ${o.read}, kernel dropped ${o.kernelDrops}, unaccounted ${o.sent - o.read - o.kernelDrops}`);
  } finally {
    teardown();
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
