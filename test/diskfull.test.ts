/**
 * A write that fails mid-run (disk full, on a small tmpfs mounted here): one line naming the file
 * and the cause, the report of what was processed, exit 4, and the file holds whole records only,
 * as many as the message says (tshark reads it). The tmpfs is 1.5 MiB so that the capture writer's
 * first 1 MiB block fits and the second does not: the file then holds packets, not only a header.
 * Needs root to mount, as CI runs: without it this test fails and says why, never passes silently.
 *
 * With workers, the packets first go to the workers' part files next to the output, and the main
 * thread then merges them into it. On the 1.5 MiB disk the parts fill it: the capture holds no
 * packet (its header alone) and the message says 0. A 6 MiB disk holds the parts and one block of
 * the merged capture, not two: the disk fills during the merge, and the capture holds packets.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tsharkCount } from './helpers.js';

const DPLAB = join(ROOT, 'bin/dplab.js');
const dir = mkdtempSync(join(tmpdir(), 'dplab-diskfull-'));
const GEN = join(dir, 'gen.pcap');
const FULL = join(dir, 'full');
const ROOMY = join(dir, 'roomy');
let mounted = false;
let mountProblem = '';

beforeAll(() => {
  const g = spawnSync(process.execPath, [DPLAB, 'gen', GEN, '--packets', '40000', '--seed', '5'], { encoding: 'utf8' });
  expect(g.status, g.stderr).toBe(0);
  spawnSync('mkdir', [FULL]);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1536k', 'tmpfs', FULL], { encoding: 'utf8' });
  if (m.status === 0) mounted = spawnSync('mkdir', [ROOMY]).status === 0
    && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', ROOMY]).status === 0;
  if (!mounted) mountProblem = `cannot mount a 1.5 MiB tmpfs on ${FULL} to fill a disk (run as root, as CI does): ${(m.stderr || m.error?.message || '').trim()}`;
});

afterAll(() => {
  spawnSync('umount', [FULL]);
  spawnSync('umount', [ROOMY]);
  rmSync(dir, { recursive: true, force: true });
});

function replay(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [DPLAB, 'replay', GEN, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function clean(): void {
  for (const f of ['out.pcap', 'drop.pcap', 'flows.tsv', 'r.json', 'filler']) rmSync(join(FULL, f), { force: true });
}

/** Fill the tmpfs, leaving about `leave` bytes free. */
function fill(leave: number): void {
  const st = statfsSync(FULL);
  const free = st.bavail * st.bsize;
  writeFileSync(join(FULL, 'filler'), Buffer.alloc(Math.max(0, free - leave)));
}

describe('a disk that fills during the run', () => {
  for (const workers of ['1', '2']) {
    it(`--write (workers ${workers}): one line, the report, exit 4, a readable file with the packets it says`, () => {
      if (!mounted) throw new Error(mountProblem);
      clean();
      const out = join(FULL, 'out.pcap');
      const r = replay('--workers', workers, '--write', out, '--json', join(dir, `r${workers}.json`));
      expect(r.status, r.stderr).toBe(4);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      const m = new RegExp(`^dplab replay: cannot write --write ${out}: no space left on device \\(it holds the first ([\\d,]+) forwarded packets\\)`).exec(lines[0]!);
      expect(m, lines[0]).not.toBeNull();
      expect(r.stdout).toMatch(/Verdicts: [\d,]+ in = /); // the report of what was processed
      const held = Number(m![1]!.replace(/,/g, ''));
      // With workers the parts filled the disk before any packet reached the capture (see above).
      if (workers === '1') expect(held).toBeGreaterThan(0);
      else expect(held).toBe(0);
      expect(tsharkCount(out)).toBe(held);
      expect(readdirSync(FULL).filter((n) => n.includes('part'))).toEqual([]);
      // The JSON report (elsewhere) is the same partial report, and claims no file was written in full.
      const j = JSON.parse(readFileSync(join(dir, `r${workers}.json`), 'utf8'));
      expect(j.verdicts.packets).toBeGreaterThan(0);
      expect(r.stderr).not.toMatch(/wrote /);
    });
  }

  it('--write (workers 2), the disk filling while the parts are merged: the capture holds the packets it says', () => {
    if (!mounted) throw new Error(mountProblem);
    const out = join(ROOMY, 'out.pcap');
    const r = replay('--workers', '2', '--write', out);
    expect(r.status, r.stderr).toBe(4);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    const m = new RegExp(`^dplab replay: cannot write --write ${out}: no space left on device \\(it holds the first ([\\d,]+) forwarded packets\\)`).exec(lines[0]!);
    expect(m, lines[0]).not.toBeNull();
    const held = Number(m![1]!.replace(/,/g, ''));
    expect(held).toBeGreaterThan(0);
    expect(tsharkCount(out)).toBe(held);
    expect(readdirSync(ROOMY)).toEqual(['out.pcap']); // the parts are gone
    rmSync(out);
  });

  it('--flows: the log holds whole lines, as many as the message says', () => {
    if (!mounted) throw new Error(mountProblem);
    clean();
    fill(150_000); // room for two of the flow log's 64 KiB blocks, not for all of it
    const out = join(FULL, 'flows.tsv');
    const r = replay('--flows', out);
    expect(r.status, r.stderr).toBe(4);
    const m = /cannot write --flows .*flows\.tsv: no space left on device \(it holds the first ([\d,]+) flows\)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const text = readFileSync(out, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const held = Number(m![1]!.replace(/,/g, ''));
    expect(held).toBeGreaterThan(0);
    expect(text.split('\n').length - 2).toBe(held);
  });

  it('--json on a full disk: one line, exit 4', () => {
    if (!mounted) throw new Error(mountProblem);
    clean();
    fill(0);
    const r = replay('--json', join(FULL, 'r.json'));
    expect(r.status, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/^dplab replay: cannot write --json .*r\.json: no space left on device/m);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  });
});
