/**
 * bin/dplab.js run as a program (as `dplab` and `npx dplab` run it): its first lines are a shell
 * launcher that asks glibc's malloc for transparent huge pages and big heap steps, and then runs the same file with
 * node. Checked against a stand-in `node` first on PATH that prints what it was given, then for
 * real: the same output as `node bin/dplab.js`, which skips the launcher.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dplab, ROOT } from './helpers.js';

const BIN = join(ROOT, 'bin/dplab.js');
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
    expect(launch(['replay', 'a file.pcap', '--profile', '', '*'], { GLIBC_TUNABLES: undefined })).toEqual([
      'tunables=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432', 'ca=<unset>', `arg=${BIN}`, 'arg=replay', 'arg=a file.pcap', 'arg=--profile', 'arg=', 'arg=*',
    ]);
  });

  it("keeps the user's own tunables after its own, so theirs win (hugetlb=0 turns it off)", () => {
    expect(launch(['-V'], { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2' })[0])
      .toBe('tunables=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432:glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2');
  });

  it('does not hand node NODE_EXTRA_CA_CERTS (node would parse the bundle at start; dplab makes no TLS connection)', () => {
    expect(launch(['-V'], { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' })[1]).toBe('ca=<unset>');
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
