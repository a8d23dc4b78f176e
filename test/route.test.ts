/**
 * route (issue 13): the FIB against Linux's, and the two paths into a pod.
 *   - The same route table loaded into a network namespace the test creates and deletes: for every
 *     destination asked (one inside every route, and random ones), dplab's longest-prefix match gives
 *     the next hop and device `ip route get` gives (IPv4 and IPv6): the shipped table and a random one
 *     of 4,000 nested routes. Needs root and iproute2; fails saying why otherwise.
 *   - mode full and mode bypass give the same verdicts (stage and reason included), the same written
 *     bytes and the same egress per device on generated traffic, with a pod-side policy that drops;
 *     bypass runs the pod side for the first packet of each flow and direction only; the same for
 *     --batch 1, 7, 256 and --workers 2.
 *   - the route file's errors name file and line.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIPv4, parseIPv6, prefixToString } from '../src/packet/cidr.js';
import { ipToString } from '../src/packet/format.js';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { RouteTable } from '../src/route/table.js';
import { netnsUnavailable, sh } from './netns.js';
import { dplab, ROOT } from './helpers.js';
import { dist } from './dist.js';


const dir = mkdtempSync(join(tmpdir(), 'dplab-route-'));
const pool = workerPool(2);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});
const ROUTES = join(ROOT, 'profiles/rules/routes.txt');

/** A seeded generator (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

function masked(words: number[], len: number): number[] {
  return words.map((w, k) => {
    const bits = Math.min(32, Math.max(0, len - 32 * k));
    return bits === 0 ? 0 : (w & ((0xffffffff << (32 - bits)) >>> 0)) >>> 0;
  });
}

/** 4,000 nested routes over a few devices, both families, half through gateways. */
function randomTable(): string {
  const r = rng(13);
  const lines = ['default via 192.168.0.254 dev dpr0', 'default via fe80::1 dev dpr0'];
  const seen = new Set<string>();
  const devs = ['dpr0', 'dpr1', 'dpr2', 'dpr3', 'dpr4', 'dpr5'];
  while (lines.length < 4000) {
    const v6 = r() % 4 === 0;
    const len = v6 ? 16 + (r() % 113) : 8 + (r() % 25);
    const words = v6 ? [0xfd000000 | (r() % 4) << 16 | (r() & 0xffff), r(), r(), r()] : [((r() % 2 === 0 ? 10 : 172) << 24 | (r() % 4) << 16 | (r() & 0xffff)) >>> 0, 0, 0, 0];
    const p = { family: (v6 ? 6 : 4) as 4 | 6, words: masked(words, len), len, normalised: false };
    const text = prefixToString(p as never);
    if (seen.has(text)) continue;
    seen.add(text);
    const dev = devs[r() % devs.length]!;
    const via = r() % 2 === 0 ? '' : v6 ? ` via fe80::${((r() % 200) + 2).toString(16)}` : ` via 192.168.${4 + (r() % 8)}.${(r() % 250) + 2}`;
    lines.push(`${text}${via} dev ${dev}`);
  }
  return `${lines.join('\n')}\n`;
}

function tableOf(text: string, name: string): RouteTable {
  const t = new RouteTable();
  text.split('\n').forEach((l, n) => t.add(l, name, n + 1));
  return t;
}

/** Destinations to ask about: one inside every route (host bits random), and random ones around them. */
function destinations(t: RouteTable): { family: 4 | 6; words: number[] }[] {
  const r = rng(7);
  const out: { family: 4 | 6; words: number[] }[] = [];
  for (const route of t.routes) {
    const p = route.prefix;
    for (let k = 0; k < 2; k++) {
      const rand = p.family === 4 ? [r(), 0, 0, 0] : [r(), r(), r(), r()];
      const words = p.words.map((w, j) => {
        const bits = Math.min(32, Math.max(0, p.len - 32 * j));
        const m = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
        return ((w & m) | (rand[j]! & ~m)) >>> 0;
      });
      if (p.family === 4) words[1] = words[2] = words[3] = 0;
      out.push({ family: p.family as 4 | 6, words });
    }
  }
  // Not local, broadcast, multicast, loopback or link-local: those the kernel answers from other tables.
  return out.filter((d) => d.family === 4
    ? !(d.words[0]! >>> 28 >= 14 || d.words[0]! >>> 24 === 127 || d.words[0]! >>> 24 === 0 || d.words[0]! >>> 16 === 0xc0a8)
    : !(d.words[0]! >>> 24 === 0xff || d.words[0]! >>> 22 === 0x3fa || d.words[0]! >>> 16 === 0xfd00 && d.words[1] === 0x01680000));
}

const why = netnsUnavailable([]);

function kernelCheck(text: string, name: string): number {
  if (why) throw new Error(`cannot check routes against Linux: ${why}`);
  const t = tableOf(text, name);
  const ns = `dplab-route-${process.pid}`;
  try { sh('ip', ['netns', 'del', ns]); } catch { /* not there */ }
  sh('ip', ['netns', 'add', ns]);
  try {
    const setup: string[] = ['link set lo up'];
    t.devices.forEach((d, k) => {
      setup.push(`link add ${d} type veth peer name dprp${k}`, `link set ${d} up`, `link set dprp${k} up`);
    });
    // A source address (as /32 and /128: no subnet routes of their own) so `route get` answers.
    setup.push(`addr add 192.168.0.1/32 dev ${t.devices[0]}`, `addr add fd00:168::1/128 dev ${t.devices[0]} nodad`);
    for (const r of t.routes) {
      const p = r.prefix.len === 0 ? 'default' : prefixToString(r.prefix);
      setup.push(`${r.prefix.family === 6 ? '-6 ' : ''}route add ${p}${r.via ? ` via ${r.via.text} onlink` : ''} dev ${t.devices[r.dev]}`
        .replace(/^-6 /, ''));
      if (r.prefix.family === 6 && r.prefix.len === 0) setup[setup.length - 1] = `route add ::/0${r.via ? ` via ${r.via.text} onlink` : ''} dev ${t.devices[r.dev]}`;
    }
    const s = spawnSync('ip', ['-n', ns, '-batch', '-'], { input: `${setup.join('\n')}\n`, encoding: 'utf8' });
    expect(s.status, `loading ${name} into ${ns}: ${s.stderr}`).toBe(0);
    const dests = destinations(t);
    const q = dests.map((d) => `route get ${ipToString(d.family, Uint32Array.from(d.words), 0)}`);
    const g = spawnSync('ip', ['-force', '-n', ns, '-batch', '-'], { input: `${q.join('\n')}\n`, encoding: 'utf8', maxBuffer: 1 << 28 });
    expect(g.stderr, 'every destination has a route in the kernel').toBe('');
    const answers = g.stdout.split('\n').filter((l) => /^\S/.test(l));
    expect(answers.length).toBe(dests.length);
    answers.forEach((line, k) => {
      const m = /^(\S+) (?:from \S+ )?(?:via (?:inet6 )?(\S+) )?dev (\S+)/.exec(line);
      expect(m, line).not.toBeNull();
      const d = dests[k]!;
      const r = t.lookup(d.family, Uint32Array.from(d.words), 0);
      expect(r, line).toBeGreaterThanOrEqual(0);
      const route = t.routes[r]!;
      const mine = { dev: t.devices[route.dev], via: route.via ? route.via.words.join('.') : '-' };
      const kvia = m![2] ? (d.family === 4 ? [parseIPv4(m![2])! >>> 0, 0, 0, 0] : parseIPv6(m![2])!.map((x) => x >>> 0)).join('.') : '-';
      expect({ dev: m![3], via: kvia }, `${line} (dplab: ${t.describe(r)})`).toEqual(mine);
    });
    return dests.length;
  } finally {
    try { sh('ip', ['netns', 'del', ns]); } catch { /* gone */ }
  }
}

describe('the FIB against Linux (ip route get in a network namespace)', () => {
  it('the shipped table (profiles/rules/routes.txt)', () => {
    expect(kernelCheck(readFileSync(ROUTES, 'utf8'), 'routes.txt')).toBeGreaterThan(4000);
  }, 120_000);
  it('a random table of 4,000 nested IPv4 and IPv6 routes', () => {
    expect(kernelCheck(randomTable(), 'random')).toBeGreaterThan(7000);
  }, 120_000);
});

const GEN = join(dir, 'gen.pcap');
const SERVICES = join(dir, 'services.txt');
beforeAll(() => {
  const g = dplab('gen', GEN, '--packets', '30000', '--seed', '21', '--clients', '40', '--scan', '2%', '--services', SERVICES);
  expect(g.status, g.stderr).toBe(0);
});

function profile(mode: 'full' | 'bypass'): string {
  const p = join(dir, `${mode}.profile`);
  // The pod side drops some flows (a NetworkPolicy), so kept drops are exercised; no route for 100.64.0.0/10 (scanners' replies).
  writeFileSync(p, `pipeline: conntrack -> dnat -> policy -> route -> pod-ct :: conntrack -> pod-policy :: policy\n[dnat]\nservices: ${SERVICES}\n`
    + '[policy]\nrule: drop tcp port 23\n'
    + `[route]\nroutes: ${ROUTES}\nroute: 100.64.0.0/10 dev eth9\nmode: ${mode}\n`
    + '[pod-ct]\ninvalid: accept\n[pod-policy]\nrule: drop tcp to 10.88.2.3\nrule: drop udp to 172.16.0.3\nrule: drop from 100.64.0.0/10\n');
  return p;
}

const FWD = join(dir, 'fwd.pcap');
const DROP = join(dir, 'drop.pcap');

describe('full path and bypass: the same verdicts, bytes and egress', () => {
  it('for every packet, any batch size, 2 workers', async () => {
    const outcome = (r: { stageReports: Record<string, unknown>; verdicts: { dropsByReason: Record<string, number> } }) => ({
      fwd: readFileSync(FWD), drop: readFileSync(DROP), drops: r.verdicts.dropsByReason,
      egress: (r.stageReports.route as Record<string, unknown>).egressByDevice,
      route: r.stageReports.route as Record<string, number>,
    });
    const run = (mode: 'full' | 'bypass', batchSize: number) => {
      const p = profile(mode);
      return outcome(dist.run.runCapture({ file: GEN, profile: p, stages: dist.registry.buildStages(dist.profile.loadProfile(p)), batchSize, write: FWD, writeDropped: DROP, timing: false }).report);
    };
    const full = run('full', 256);
    expect(Object.keys(full.drops).sort()).toEqual(['pod-policy/rule', 'policy/rule']);
    expect(full.drops['pod-policy/rule']!).toBeGreaterThan(500);
    expect(full.route.fibLookups).toBe(full.route.fullPath);
    expect(full.route.bypassed).toBe(0);
    const bypassBase = run('bypass', 256);
    expect(bypassBase.route.bypassed).toBeGreaterThan(full.route.fullPath / 2);
    for (const [mode, batchSize] of [['bypass', 256], ['bypass', 1], ['bypass', 7], ['full', 7]] as const) {
      const o = mode === 'bypass' && batchSize === 256 ? bypassBase : run(mode, batchSize);
      const what = `${mode} --batch ${batchSize}`;
      expect(o.fwd.equals(full.fwd), `${what}: forwarded bytes`).toBe(true);
      expect(o.drop.equals(full.drop), `${what}: dropped bytes`).toBe(true);
      expect(o.drops, `${what}: drops by stage and reason`).toEqual(full.drops);
      expect(o.egress, `${what}: egress per device`).toEqual(full.egress);
      if (mode === 'bypass') expect(o.route, `${what}: which packets took which path`).toEqual(bypassBase.route);
    }
    for (const mode of ['full', 'bypass'] as const) {
      const r = (await runParallel({ file: GEN, profile: profile(mode), workers: 2, batchSize: 64, pool, write: FWD, writeDropped: DROP, timing: false })).report;
      const o = outcome(r);
      expect(o.fwd.equals(full.fwd), `${mode} --workers 2: forwarded bytes`).toBe(true);
      expect(o.drop.equals(full.drop), `${mode} --workers 2: dropped bytes`).toBe(true);
      expect(o.drops).toEqual(full.drops);
      expect(o.egress).toEqual(full.egress);
      if (mode === 'bypass') expect(o.route).toEqual(bypassBase.route);
    }
  });

  it('trace shows the hops', () => {
    for (const mode of ['full', 'bypass'] as const) {
      const t = dplab('trace', GEN, '--profile', profile(mode), '--packet', '1', '--flow', '--limit', '10');
      expect(t.status, t.stderr).toBe(0);
      expect(t.stdout).toMatch(/route +FIB: .* dev \S+ -> veth hop -> the pod namespace's own pass/);
      if (mode === 'bypass') expect(t.stdout).toMatch(/route +bypass \(redirect_peer\): straight to .* dev /);
      else expect(t.stdout).not.toMatch(/bypass/);
    }
  });
});

describe('the route file', () => {
  it('names file and line of every bad route', () => {
    const f = join(dir, 'bad-routes.txt');
    writeFileSync(f, '# ok\n10.0.0.0/8 via 192.168.0.1 dev eth0\n10.1.0.0/16 via fd00::1 dev eth0\n10.2.0.0/16\n10.0.0.0/8 dev eth1\n10.3.0.5/16 dev eth0\ndefault dev eth0\n10.4.0.0/16 dev eth0 metric 5\n');
    const p = join(dir, 'bad.profile');
    writeFileSync(p, `pipeline: route\n[route]\nroutes: ${f}\n`);
    let msg = 'no error';
    try { dist.registry.buildStages(dist.profile.loadProfile(p)); } catch (e) { msg = (e as Error).message; }
    const lines = msg.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/bad-routes\.txt:3: .*gateway fd00::1 is IPv6 but 10\.1\.0\.0\/16 is IPv4/);
    expect(lines[1]).toMatch(/bad-routes\.txt:4: .*no "dev DEVICE"/);
    expect(lines[2]).toMatch(/bad-routes\.txt:5: .*10\.0\.0\.0\/8 is already routed at .*bad-routes\.txt:2/);
    expect(lines[3]).toMatch(/bad-routes\.txt:6: .*host bits set/);
    expect(lines[4]).toMatch(/bad-routes\.txt:7: .*"default" needs "via GATEWAY"/);
    expect(lines[5]).toMatch(/bad-routes\.txt:8: .*unknown word "metric"/);
    writeFileSync(p, 'pipeline: route\n[route]\nroute: 10.0.0.0/8 dev eth0\nmode: bypass\n');
    expect(() => dist.registry.buildStages(dist.profile.loadProfile(p))).toThrow(/bad\.profile:4: .*put a conntrack stage before route/);
  });
});
