/**
 * Standard input and output, and outputs that cannot be written (issue 7). `-` reads a capture from
 * a pipe (as tcpdump/tshark -r -) and writes any one output to standard output; an output that
 * cannot be written is one line naming it, before any packet is read. CLI tests: they run dist/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURES, ROOT, tsharkCount } from './helpers.js';

const DPLAB = join(ROOT, 'bin/dplab.js');
const dir = mkdtempSync(join(tmpdir(), 'dplab-stdio-'));
const GEN = join(dir, 'gen.pcap');
const PCAPNG = join(CAPTURES, 'icmp/ppp_IcmpPackets.pcapng');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const dplab = `${q(process.execPath)} ${q(DPLAB)}`;

/** A shell pipeline (sh -c), with dplab as $D. */
function sh(cmd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', cmd.replaceAll('$D', dplab)], { encoding: 'utf8', cwd: dir, maxBuffer: 1 << 28, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  const r = sh(`$D gen ${q(GEN)} --packets 20000 --seed 7`);
  expect(r.status, r.stderr).toBe(0);
});

describe('a capture on standard input', () => {
  it('dplab gen - | dplab replay - reads every packet and names the input "standard input"', () => {
    const r = sh('$D gen - --packets 20000 --seed 7 | $D replay - --json -');
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.file).toBe('standard input');
    expect(j.complete).toBe(true);
    expect(j.verdicts.packets).toBe(20000);
    const file = JSON.parse(sh(`$D replay ${q(GEN)} --json -`).stdout);
    expect(j.verdicts).toEqual(file.verdicts);
    expect(r.stderr).toMatch(/^standard input: pcap/m); // the text report, on stderr
  });

  it('cat x.pcap | dplab replay - gives the same verdicts and flows as the file (pcap and pcapng)', () => {
    for (const f of [GEN, PCAPNG]) {
      const piped = sh(`cat ${q(f)} | $D replay - --json - --flows p.tsv`);
      expect(piped.status, piped.stderr).toBe(0);
      const pipedFlows = readFileSync(join(dir, 'p.tsv'), 'utf8');
      const direct = sh(`$D replay ${q(f)} --json - --flows d.tsv`);
      expect(JSON.parse(piped.stdout).verdicts).toEqual(JSON.parse(direct.stdout).verdicts);
      expect(pipedFlows).toBe(readFileSync(join(dir, 'd.tsv'), 'utf8'));
    }
  });

  it('decode - and trace - read standard input, and so does /dev/stdin on a pipe', () => {
    const direct = sh(`$D decode ${q(GEN)}`);
    expect(sh(`cat ${q(GEN)} | $D decode -`).stdout).toBe(direct.stdout);
    expect(sh(`cat ${q(GEN)} | $D decode /dev/stdin`).stdout).toBe(direct.stdout);
    const trace = sh(`cat ${q(PCAPNG)} | $D trace - --packet 2`);
    expect(trace.status, trace.stderr).toBe(0);
    expect(trace.stdout).toBe(sh(`$D trace ${q(PCAPNG)} --packet 2`).stdout.replace(PCAPNG, '-'));
  });

  it('replay - --workers 2 runs inline with a one-line note; --repeat is refused', () => {
    const r = sh(`cat ${q(GEN)} | $D replay - --workers 2 --json -`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/standard input is read once, so it runs inline/);
    expect(JSON.parse(r.stdout).workers).toBeUndefined();
    const rep = sh(`cat ${q(GEN)} | $D replay - --repeat 2`);
    expect(rep.status).toBe(1);
    expect(rep.stderr.trim().split('\n')).toHaveLength(1);
    expect(rep.stderr).toMatch(/--repeat needs a file/);
  });

  it('an empty or cut pipe is a clear message, never ESPIPE', () => {
    const empty = sh('$D replay - < /dev/null');
    expect(empty.stderr).not.toMatch(/ESPIPE|at .*\.js/);
    const cut = sh(`head -c 30000 ${q(GEN)} | $D replay -`);
    expect(cut.status).toBe(2);
    expect(cut.stderr).toMatch(/standard input at byte \d+: record \d+ is cut short/);
    expect(cut.stderr).not.toMatch(/ESPIPE|internal error/);
  });
});

describe('- is standard output', () => {
  it('--json - prints only the JSON on stdout (jq-able); the text report goes to stderr', () => {
    const r = sh(`$D replay ${q(GEN)} --json -`);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).verdicts.packets).toBe(20000);
    expect(r.stderr).toMatch(/Verdicts: 20,000 in/);
  });

  it('--write -, --write-dropped - and --flows - write the capture or log to stdout', () => {
    const j = JSON.parse(sh(`$D replay ${q(GEN)} --json -`).stdout);
    const w = sh(`$D replay ${q(GEN)} --write - > fwd.pcap`);
    expect(w.status, w.stderr).toBe(0);
    expect(tsharkCount(join(dir, 'fwd.pcap'))).toBe(j.verdicts.forwarded);
    const d = sh(`$D replay ${q(GEN)} --write-dropped - --workers 2 > drop.pcap`);
    expect(d.status, d.stderr).toBe(0);
    expect(tsharkCount(join(dir, 'drop.pcap'))).toBe(j.verdicts.dropped + j.verdicts.malformed);
    const flows = JSON.parse(sh(`$D replay ${q(GEN)} --flows /dev/null --json -`).stdout).flowsLogged;
    expect(flows).toBeGreaterThan(100);
    for (const workers of ['1', '2']) {
      const f = sh(`$D replay ${q(GEN)} --flows - --workers ${workers}`);
      expect(f.status, f.stderr).toBe(0);
      expect(f.stdout.trim().split('\n')).toHaveLength(flows + 1);
    }
    expect(readdirSync(dir).filter((n) => n.includes('part'))).toEqual([]);
  });

  it('two outputs on - is a usage error', () => {
    const r = sh(`$D replay ${q(GEN)} --json - --write -`);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--write and --json cannot both go to standard output/);
  });
});

describe('an output that cannot be written fails in one line, before any packet is read', () => {
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  mkdirSync(join(dir, 'a-folder'));
  const bad: [string, RegExp][] = [
    [join(dir, 'missing/out'), /no such folder .*missing\//],
    [join(dir, 'a-folder'), /it is a folder/],
    ['/proc/version', /input\/output error/],
    [join(file, 'out'), /a-file is a file, not a folder/],
  ];
  for (const option of ['--write', '--write-dropped', '--flows', '--json']) {
    for (const workers of ['1', '2']) {
      it(`${option} (workers ${workers})`, () => {
        for (const [path, why] of bad) {
          const r = sh(`$D replay ${q(GEN)} --workers ${workers} ${option} ${q(path)}`);
          expect(r.status, `${option} ${path}: ${r.stderr}`).toBe(1);
          expect(r.stdout).toBe(''); // no report: nothing was processed
          const lines = r.stderr.trim().split('\n');
          expect(lines).toHaveLength(1);
          expect(lines[0]).toContain(`dplab replay: cannot write ${option} ${path}: `);
          expect(lines[0]).toMatch(why);
        }
      });
    }
  }

  it('on standard input, no packet is read first', () => {
    // The pipe's writer sees its reader go away (a broken pipe) long before it has written it all.
    const r = sh(`$D gen - --packets 2000000 | $D replay - --json ${q(join(dir, 'missing/r.json'))}; echo "replay exit $?"`);
    expect(r.stderr).toMatch(/^dplab replay: cannot write --json .*missing\/r\.json: no such folder/m);
    expect(r.stdout).toBe('replay exit 1\n');
  });
});
