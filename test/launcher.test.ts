/**
 * bin/dplab.js run as a program (as `dplab` and `npx dplab` run it): its first lines are a shell
 * launcher that asks glibc's malloc for transparent huge pages and big heap steps, and then runs
 * node from dplab's start-up snapshot (dist/dplab.blob, when the build made one and it is newer
 * than node) or on the same file. Checked against a stand-in `node` first on PATH that prints what
 * it was given, then for real: the snapshot's output is the same as `node bin/dplab.js`'s, which
 * skips the launcher and loads dist/'s modules.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURES, dplab, ROOT } from './helpers.js';

const BIN = join(ROOT, 'bin/dplab.js');
const BLOB = join(ROOT, 'dist/dplab.blob');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dplab-launcher-'));
  // Prints its environment's GLIBC_TUNABLES and NODE_EXTRA_CA_CERTS, and each argument on a line of its own.
  writeFileSync(join(dir, 'node'), '#!/bin/sh\nprintf "tunables=%s\\n" "${GLIBC_TUNABLES-<unset>}"\nprintf "ca=%s\\n" "${NODE_EXTRA_CA_CERTS-<unset>}"\nfor a in "$@"; do printf "arg=%s\\n" "$a"; done\n');
  chmodSync(join(dir, 'node'), 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run bin/dplab.js as a program with the stand-in node first on PATH. */
function launch(args: string[], env: Record<string, string | undefined>) {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, PATH: `${dir}:${process.env.PATH}`, ...env })) if (v !== undefined) e[k] = v;
  const r = spawnSync(BIN, args, { encoding: 'utf8', env: e });
  expect(r.error, 'bin/dplab.js must be executable and start with a shell line').toBeUndefined();
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

describe('bin/dplab.js as a program', () => {
  it('asks for huge pages and hands node the file and every argument unchanged', () => {
    expect(launch(['replay', 'a file.pcap', '--profile', '', '*'], { GLIBC_TUNABLES: undefined, DPLAB_NO_SNAPSHOT: '1' })).toEqual([
      'tunables=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432', 'ca=<unset>', `arg=${BIN}`, 'arg=replay', 'arg=a file.pcap', 'arg=--profile', 'arg=', 'arg=*',
    ]);
  });

  it("keeps the user's own tunables after its own, so theirs win (hugetlb=0 turns it off)", () => {
    expect(launch(['-V'], { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2', DPLAB_NO_SNAPSHOT: '1' })[0])
      .toBe('tunables=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432:glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2');
  });

  it('does not hand node NODE_EXTRA_CA_CERTS (node would parse the bundle at start; dplab makes no TLS connection)', () => {
    expect(launch(['-V'], { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', DPLAB_NO_SNAPSHOT: '1' })[1]).toBe('ca=<unset>');
  });

  it('starts node from the snapshot when the build made one newer than node, else from the file', () => {
    expect(existsSync(BLOB), 'npm run build (scripts/snapshot.js) makes dist/dplab.blob; its line in the build output says why it did not').toBe(true);
    const args = ['replay', 'a file.pcap', '--help', '--', ''];
    const stand = join(dir, 'node');
    // A node installed after the blob was built may be another version: its file, not the blob.
    utimesSync(stand, new Date(), new Date(Date.now() + 3600e3));
    expect(launch(args, {}).slice(2)).toEqual([`arg=${BIN}`, ...args.map((a) => `arg=${a}`)]);
    utimesSync(stand, new Date(), new Date('2001-01-01'));
    // "--" ends node's options: "dplab --version" is dplab's, not node's.
    expect(launch(args, {}).slice(2)).toEqual(['arg=--snapshot-blob', `arg=${ROOT}/bin/../dist/dplab.blob`, 'arg=--', ...args.map((a) => `arg=${a}`)]);
    expect(launch(args, { DPLAB_NO_SNAPSHOT: '1' }).slice(2)[0]).toBe(`arg=${BIN}`);
    // dist/ compiled again after the blob was built (tsc alone): the blob holds older code.
    const main = join(ROOT, 'dist/cli/main.js');
    const was = statSync(main);
    try {
      utimesSync(main, was.atime, new Date(statSync(BLOB).mtimeMs + 1000));
      expect(launch(args, {}).slice(2)[0]).toBe(`arg=${BIN}`);
    } finally {
      utimesSync(main, was.atime, was.mtime);
    }
    // DPLAB_DIST names another build: its blob, or its files when it has none.
    expect(launch(['-V'], { DPLAB_DIST: join(ROOT, 'dist') }).slice(2, 4)).toEqual(['arg=--snapshot-blob', `arg=${BLOB}`]);
    expect(launch(['-V'], { DPLAB_DIST: dir }).slice(2)).toEqual([`arg=${BIN}`, 'arg=-V']);
  });

  it('runs dplab for real, as node bin/dplab.js does', () => {
    const capture = join(ROOT, 'captures/demo/node-ingress.pcap');
    const args = ['replay', capture, '--no-progress', '--json', '-'];
    const viaShell = spawnSync(BIN, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
    const direct = dplab(...args);
    expect(viaShell.status, viaShell.stderr).toBe(0);
    expect(direct.status, direct.stderr).toBe(0);
    const verdicts = (out: string) => (JSON.parse(out) as { verdicts: unknown }).verdicts;
    expect(verdicts(viaShell.stdout)).toEqual(verdicts(direct.stdout));
    expect((verdicts(viaShell.stdout) as { packets: number }).packets).toBe(595);
  });
});

describe('the start-up snapshot', () => {
  /** What bin/dplab.js's shell line runs when it uses the snapshot. */
  const snap = (...args: string[]) => spawnSync(process.execPath, ['--snapshot-blob', BLOB, '--', ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const DEMO = join(CAPTURES, 'demo/node-ingress.pcap');
  const ECHO = join(CAPTURES, 'large/zeek_echo-connections.pcap');
  /** A report without what differs from run to run: the fields that are times (two runs of the same build differ in these alone). */
  const TIMED = /^(ns|nsPerPacket|dataplaneNsPerPacket|emulationNsPerPacket|sharingNsPerPacket|wallSeconds|packetsPerSecond|coresAtCaptureRate|latencyUs)$/;
  const steady = (json: string): unknown => JSON.parse(json, (k, v) => (TIMED.test(k) ? 0 : v));

  it('prints what dist/\'s modules print, for every command that does not time itself', () => {
    expect(existsSync(BLOB), 'npm run build makes dist/dplab.blob').toBe(true);
    // Every command's --help loads its module: a module the snapshot did not give lazyModule would
    // fail here (a snapshot cannot import() it), not in front of a user.
    const helps = ['replay', 'compare', 'sweep', 'trace', 'decode', 'profiles', 'gen', 'calibrate', 'live'].map((c) => [c, '--help']);
    for (const args of [['--version'], ['--help'], ...helps, ['profiles'], ['decode', DEMO], ['trace', DEMO, '--packet', '7'],
      ['trace', DEMO, '--packet', '3', '--flow'], ['decode', join(CAPTURES, 'malformed', 'dpkt_truncated_dns.pcap')], ['replay', join(CAPTURES, 'malformed', 'libpcap_pcap-invalid-version-1.pcap')], ['replay', '/no/such.pcap'], ['bogus']]) {
      const a = snap(...args);
      const b = dplab(...args);
      expect([a.status, a.stdout, a.stderr], args.join(' ')).toEqual([b.status, b.stdout, b.stderr]);
    }
  });

  it('gives the same verdicts, flows and counters as dist/\'s modules, on one thread and on two', () => {
    for (const [file, profile, workers] of [[DEMO, 'ebpf', '1'], [DEMO, 'iptables', '1'], [ECHO, 'mixed', '2']] as const) {
      const a = snap('replay', file, '--profile', profile, '--workers', workers, '--json', '-', '--no-progress');
      const b = dplab('replay', file, '--profile', profile, '--workers', workers, '--json', '-', '--no-progress');
      expect(a.status, a.stderr).toBe(0);
      expect(steady(a.stdout), `${file} ${profile} --workers ${workers}`).toEqual(steady(b.stdout));
    }
    const a = snap('compare', DEMO, '--repeat', '1', '--json', '-');
    const b = dplab('compare', DEMO, '--repeat', '1', '--json', '-');
    expect(steady(a.stdout)).toEqual(steady(b.stdout));
  });

  it('writes an HTML page (uPlot is read from node_modules when the page is written)', () => {
    const page = join(dir, 'page.html');
    const r = snap('compare', DEMO, '--repeat', '1', '--html', page);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(page, 'utf8')).toContain('uPlot');
  });

  it('run from a checkout it was not built in, says so and what to do', () => {
    const moved = join(dir, 'moved');
    mkdirSync(join(moved, 'dist'), { recursive: true });
    copyFileSync(BLOB, join(moved, 'dist', 'dplab.blob'));
    const r = spawnSync(process.execPath, ['--snapshot-blob', join(moved, 'dist', 'dplab.blob'), '--', '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^dplab: the start-up snapshot .*moved\/dist\/dplab.blob was built in .*dist: run "npm run build" in .*moved, or set DPLAB_NO_SNAPSHOT=1\n$/);
  });
});
