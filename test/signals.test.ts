/**
 * SIGINT and SIGTERM during replay (issue 7): the run stops, the report of what was processed is
 * printed marked INTERRUPTED (and "interrupted" in JSON), every output is a valid capture or log
 * holding exactly the packets processed (tshark reads them), no .part file is left, and the exit
 * status is 130 or 143. The run is slowed by a test-only hook (DPLAB_TEST_SLOW_MS) so the signal
 * lands part-way through whatever the machine's speed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tsharkCount } from './helpers.js';

const DPLAB = join(ROOT, 'bin/dplab.js');
const dir = mkdtempSync(join(tmpdir(), 'dplab-signals-'));
const GEN = join(dir, 'gen.pcap');
const PACKETS = 100_000;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  const r = spawnSync(process.execPath, [DPLAB, 'gen', GEN, '--packets', String(PACKETS), '--seed', '3'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
});

/** Start a replay, send `signal` once its first batch is done (plus a little), collect what it printed. */
function interrupt(args: string[], signal: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [DPLAB, 'replay', GEN, ...args], {
      env: { ...process.env, DPLAB_TEST_SLOW_MS: '10' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = ''; let stderr = ''; let sent = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && stderr.includes('first batch done')) { sent = true; setTimeout(() => child.kill(signal), 400); }
    });
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

describe('a signal stops replay with the report of what was processed and valid outputs', () => {
  for (const workers of ['1', '2']) {
    for (const [signal, exit] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      it(`${signal}, --workers ${workers}`, async () => {
        const out = join(dir, `${signal}-${workers}`);
        mkdirSync(out);
        const f = (n: string): string => join(out, n);
        const r = await interrupt(['--workers', workers, '--write', f('fwd.pcap'), '--write-dropped', f('drop.pcap'),
          '--flows', f('flows.tsv'), '--json', f('r.json')], signal);
        expect(r.code, r.stderr).toBe(exit);
        expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
        expect(r.stdout).toMatch(new RegExp(`INTERRUPTED: ${signal} stopped the run after [\\d,]+ packets`));
        const j = JSON.parse(readFileSync(f('r.json'), 'utf8'));
        expect(j.interrupted).toBe(signal);
        const v = j.verdicts;
        expect(v.packets).toBeGreaterThan(0);
        expect(v.packets).toBeLessThan(PACKETS);
        expect(v.forwarded + v.dropped + v.malformed).toBe(v.packets);
        expect(j.capture.packets).toBe(v.packets);
        expect(tsharkCount(f('fwd.pcap'))).toBe(v.forwarded);
        expect(tsharkCount(f('drop.pcap'))).toBe(v.dropped + v.malformed);
        expect(readFileSync(f('flows.tsv'), 'utf8').trim().split('\n')).toHaveLength(j.flowsLogged + 1);
        expect(readdirSync(out).sort()).toEqual(['drop.pcap', 'flows.tsv', 'fwd.pcap', 'r.json']);
      }, 60_000);
    }
  }
});
