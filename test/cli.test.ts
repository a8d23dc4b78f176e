/**
 * The command line as a new user meets it: messages in dplab's words with a suggestion, --help and
 * --version on every command, one line for a file that is not a capture, trace's exit codes and
 * flows, the files replay wrote, the flow table filling, and the worker rows of the cost table.
 *
 * Needs the build (npm test builds first): the CLI runs from dist/.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURES, ROOT } from './helpers.js';

interface Run { code: number | null; stdout: string; stderr: string }

function dplab(...args: string[]): Run {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'dplab.js'), ...args], { encoding: 'utf8', cwd: ROOT, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l !== '');

const HTTP = join(CAPTURES, 'tcp_http', 'ppp_one_http_stream_fin.pcap');
const ECHO = join(CAPTURES, 'large', 'zeek_echo-connections.pcap');
const COMMANDS = ['replay', 'trace', 'decode', 'profiles', 'gen'];

let dir = '';
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dplab-cli-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

describe('options', () => {
  it('an unknown option: dplab\'s own one line, with the option meant', () => {
    const r = dplab('replay', HTTP, '--profle', 'iptables');
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual(['dplab replay: unknown option --profle; did you mean --profile? See dplab replay --help']);
    expect(lines(dplab('gen', join(dir, 'x.pcap'), '--flwos', '3').stderr)).toEqual(['dplab gen: unknown option --flwos; did you mean --flows? See dplab gen --help']);
    expect(lines(dplab('trace', HTTP, '--zzz').stderr)).toEqual(['dplab trace: unknown option --zzz. See dplab trace --help']);
    expect(lines(dplab('replay', HTTP, '--profile').stderr)).toEqual(['dplab replay: --profile needs a value. See dplab replay --help']);
  });

  it('--version, -V, --help and -h on every command', () => {
    for (const cmd of COMMANDS) {
      for (const v of ['--version', '-V']) expect(dplab(cmd, v), `${cmd} ${v}`).toEqual({ code: 0, stdout: 'dplab 0.1.0\n', stderr: '' });
      for (const h of ['--help', '-h']) {
        const r = dplab(cmd, h);
        expect(r.code, `${cmd} ${h}`).toBe(0);
        expect(r.stdout, `${cmd} ${h}`).toMatch(new RegExp(`^dplab ${cmd}\\b`));
      }
    }
    expect(dplab('-V').stdout).toBe('dplab 0.1.0\n');
  });

  it('--help says what each exit status means, 3 included', () => {
    expect(dplab('--help').stdout).toMatch(/Exit status: .*\b3 a stage or worker failed/s);
    expect(dplab('replay', '--help').stdout).toMatch(/Exit status: .*; 3 when a stage or worker thread\s+failed/s);
  });

  it('decode --help\'s examples run as written', () => {
    const examples = dplab('decode', '--help').stdout.split('Examples:\n')[1]!.replace(/\\\n/g, '').trim().split('\n');
    expect(examples).toHaveLength(2);
    const sh = `dplab() { node ${join(ROOT, 'bin', 'dplab.js')} "$@"; }\nset -o pipefail\n`;
    for (const ex of examples) {
      const r = spawnSync('bash', ['-c', sh + ex.trim()], { cwd: ROOT, encoding: 'utf8' });
      expect(r.status, ex).toBe(0);
    }
    // The second compares dplab with tshark: diff prints nothing.
    expect(spawnSync('bash', ['-c', sh + examples[1]!.trim()], { cwd: ROOT, encoding: 'utf8' }).stdout).toBe('');
  });
});

describe('a file that is not a capture: one line, exit 2, no report', () => {
  it.each(['replay', 'trace', 'decode'])('%s', (cmd) => {
    const path = join(dir, 'passwd');
    writeFileSync(path, 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n');
    const r = dplab(cmd, path, ...(cmd === 'trace' ? ['--packet', '1'] : []), ...(cmd === 'replay' ? ['--json', '-'] : []));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toEqual([expect.stringMatching(new RegExp(`^dplab: ${path} at byte 0: not a pcap or pcapng file \\(it starts with 0x726f6f74\\)\\. .*editcap$`))]);
  });
});

describe('dplab trace', () => {
  it('on a damaged capture says what replay says and exits 2', () => {
    const cut = join(dir, 'cut.pcap');
    writeFileSync(cut, readFileSync(ECHO).subarray(0, 3000));
    const r = dplab('trace', cut, '--packet', '100');
    const replayed = dplab('replay', cut);
    expect(r.code).toBe(2);
    expect(replayed.code).toBe(2);
    const damage = lines(replayed.stderr);
    expect(damage).toHaveLength(1);
    expect(lines(r.stderr)).toEqual([...damage, `dplab trace: there is no packet 100: ${cut} has 34 packets before the damage`]);
  });

  it('a packet past the end: exit 1 and one clear line', () => {
    const r = dplab('trace', HTTP, '--packet', '500');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toEqual([`dplab trace: there is no packet 500: ${HTTP} has 15 packets`]);
  });

  it('--flow starts at the flow\'s first packet when N is a later one, and says when --limit cut it short', () => {
    const all = dplab('trace', HTTP, '--packet', '5', '--flow');
    expect(all.code).toBe(0);
    const heads = lines(all.stdout).filter((l) => l.startsWith('Packet ')).map((l) => Number(l.split(/\s+/)[1]));
    expect(heads[0]).toBe(1);
    expect(heads).toContain(5);
    expect(all.stdout).not.toContain('--limit');
    const cut = dplab('trace', HTTP, '--packet', '5', '--flow', '--limit', '3');
    expect(lines(cut.stdout).filter((l) => l.startsWith('Packet ')).map((l) => Number(l.split(/\s+/)[1]))).toEqual(heads.slice(0, 3));
    expect(cut.stdout).toContain('Stopped at --limit 3: the flow has more packets (raise --limit to see them).');
    const exact = dplab('trace', HTTP, '--packet', '5', '--flow', '--limit', String(heads.length));
    expect(exact.stdout).not.toContain('Stopped at --limit');
  });

  it('conntrack\'s line counts the flow\'s packets in words', () => {
    const out = dplab('trace', HTTP, '--packet', '2').stdout;
    expect(out).toMatch(/conntrack .*; so far 1 packet in the original direction and 1 in reply/);
  });
});

describe('dplab replay', () => {
  it('says which files it wrote, with their packet counts', () => {
    const fwd = join(dir, 'fwd.pcap');
    const dropped = join(dir, 'dropped.pcap');
    const flows = join(dir, 'flows.txt');
    const json = join(dir, 'report.json');
    const r = dplab('replay', HTTP, '--write', fwd, '--write-dropped', dropped, '--flows', flows, '--json', json, '--no-progress');
    expect(r.code).toBe(0);
    expect(lines(r.stderr)).toEqual([
      `dplab replay: wrote ${fwd}: 15 forwarded packets`,
      `dplab replay: wrote ${dropped}: 0 dropped and malformed packets`,
      `dplab replay: wrote ${flows}: 1 flows`,
      `dplab replay: wrote ${json}: the report as JSON`,
    ]);
  });

  it('camelCase figures read as words', () => {
    const out = dplab('replay', HTTP).stdout;
    expect(out).toContain('trie nodes');
    expect(out).not.toMatch(/^\s*[\w ]*[a-z][A-Z]\w*:/m);
    expect(out).not.toMatch(/, [a-z]+[A-Z]\w* \d/);
  });

  it('warns when the flow table filled, with the setting to raise, in text and JSON', () => {
    const synth = join(dir, 'many-flows.pcap');
    expect(dplab('gen', synth, '--flows', '2000', '--concurrency', '500').code).toBe(0);
    const profile = join(dir, 'small.profile');
    writeFileSync(profile, '# small: a tiny flow table\npipeline: conntrack\n[conntrack]\ncapacity: 100\n');
    const json = join(dir, 'full.json');
    const r = dplab('replay', synth, '--profile', profile, '--json', json);
    expect(r.code).toBe(0);
    const warning = lines(r.stdout).filter((l) => l.startsWith('WARNING'));
    expect(warning).toEqual([expect.stringMatching(/^WARNING: the flow table filled: [\d,]+ flows were evicted to make room and [\d,]+ packets were dropped for lack of room, .*Raise "\[conntrack\] capacity:" in the profile \(now 100\)\.$/)]);
    const report = JSON.parse(readFileSync(json, 'utf8')) as { stageReports: { conntrack: { tableFull: { flowsEvicted: number; packetsDropped: number } } } };
    expect(report.stageReports.conntrack.tableFull.flowsEvicted).toBeGreaterThan(0);
    // A conntrack named in the pipeline is warned about by its name.
    writeFileSync(profile, '# small: a tiny flow table\npipeline: host :: conntrack\n[host]\ncapacity: 100\n');
    expect(lines(dplab('replay', synth, '--profile', profile).stdout).filter((l) => l.startsWith('WARNING')))
      .toEqual([expect.stringMatching(/Raise "\[host\] capacity:" in the profile \(now 100\)\.$/)]);
    // Room enough: no warning.
    expect(dplab('replay', HTTP).stdout).not.toContain('WARNING');
  });

  it('with workers, the decode row counts every packet once per worker, and says so', () => {
    const r = dplab('replay', ECHO, '--workers', '2', '--repeat', '2', '--no-progress');
    expect(r.code).toBe(0);
    const row = lines(r.stdout).find((l) => l.startsWith('decode'))!;
    expect(row).toMatch(/^decode \*\s+[\d,]+\s+165,164\s/);
    expect(r.stdout).toContain('* run by each of the 2 workers on every packet: packets counts each packet once per worker');
    expect(r.stdout).toContain('(run 2 of 2; the earlier runs warmed up the JIT)');
  });
});

describe('README', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const setup = [...readme.split('\n## ')[0]!.matchAll(/```sh\n([^`]*)```/g)].map((m) => m[1]!.trim());

  it('opens with exactly two set-up commands, the second the one CI runs', () => {
    expect(setup).toHaveLength(2);
    expect(setup[1]).toMatch(/npm ci && npm test$/);
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8').trim().split('\n').at(-1);
    expect(ci).toBe(setup[1]);
  });

  it('the first runs the main job, compare on the shipped demo capture, as written (npx dplab, after npm ci)', () => {
    const [install, run] = setup[0]!.split(' && ');
    expect(install).toBe('npm ci');
    expect(run).toBe('npx dplab compare captures/demo/node-ingress.pcap');
    const r = spawnSync('bash', ['-c', run!], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_config_yes: 'false' } });
    expect(r.status, r.stderr).toBe(0);
    // The default profiles side by side, the first the baseline, then the reading of the figures.
    const rows = r.stdout.split('\n').filter((l) => /^(iptables|ebpf|hns|mixed)\s+[\d.]+\s+[\d.]+x\s/.test(l)).map((l) => l.split(/\s+/)[0]);
    expect(rows).toEqual(['iptables', 'ebpf', 'hns', 'mixed']);
    expect(r.stdout).toMatch(/^iptables\s+[\d.]+\s+1\.00x\s/m);
    expect(r.stdout).toMatch(/^Reading:\n {2}- /m);
  });

  it('shows the output of the main command as a run printed it (same capture, profiles, verdicts)', () => {
    const shown = /```text\n\$ (npx dplab compare \S+)\n([^`]*)```/.exec(readme);
    expect(shown, 'a ```text block starting with $ npx dplab compare').not.toBeNull();
    expect(shown![1]).toBe(setup[0]!.split(' && ')[1]);
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'dplab.js'), 'compare', 'captures/demo/node-ingress.pcap', '--repeat', '1'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    // Timings differ from run to run; what each profile decides does not.
    const decided = (text: string) => text.split('\n').filter((l) => /^(iptables|ebpf|hns|mixed)\s+[\d.]+\s+[\d.]+x\s/.test(l))
      .map((l) => { const c = l.split(/\s+/); return [c[0], ...c.slice(3, 8)].join(' '); });
    expect(decided(shown![2]!)).toEqual(decided(r.stdout));
    const drops = (text: string) => text.split('Drops by stage and reason:\n')[1]!.split('\n\n')[0];
    expect(drops(shown![2]!)).toBe(drops(r.stdout));
  });

  it('every command it shows runs as npx dplab', () => {
    const shown = [...readme.matchAll(/`((?:npx )?dplab [a-z-]+)/g)].map((m) => m[1]!);
    expect(shown.length).toBeGreaterThan(5);
    expect(shown.filter((c) => !c.startsWith('npx '))).toEqual([]);
  });
});
