/**
 * `--write` and `--write-dropped` write what the stages produced, byte for byte the same inline at
 * --batch 1, 7 and 256 and with 2 and 3 workers (issue 14): workers write the packets they own to
 * part files and the main thread merges them in packet-number order through the inline writer.
 *
 * The stages are test-only (test/fixtures/rewrite-stage.mjs): one rewrites (TTL - 1, destination
 * address and port changed, with wire.ts's setters), one grows untagged Ethernet packets by a
 * VLAN tag (insertBytes: the packet moves to the batch's output area). It registers itself in dist's registry, so
 * the inline runs here use dist's runCapture and profile loader too, and every worker imports the
 * module first (runParallel's `modules` test hook): the same profile builds the same stages in
 * both. Then tshark, with checksum validation on, reads the written packets with the checksum
 * status each had in the input, and sees the rewrite (IPv4 destinations in 198.18.0.0/15).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { CAPTURES, ROOT, tsharkFields } from './helpers.js';
import { dist } from './dist.js';

const FIXTURE = join(ROOT, 'test/fixtures/rewrite-stage.mjs');
// dist's modules, typed as their sources: the fixture registers its stage in dist's registry.
await import(FIXTURE);

const dir = mkdtempSync(join(tmpdir(), 'dplab-parity-'));
const PROFILE = join(dir, 'rewrite.profile');
const GEN = join(dir, 'gen.pcap');
const pool = workerPool(3);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});

beforeAll(() => {
  // Rewritten before policy, so policy drops rewritten packets too: both outputs hold rewrites.
  // test-push makes untagged Ethernet packets 4 bytes longer (they move to the batch's output area).
  writeFileSync(PROFILE, `pipeline: conntrack -> test-push -> test-rewrite -> policy\n[policy]\nrules: ${join(ROOT, 'profiles/rules/policy.rules')}\n`);
  const g = spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), 'gen', GEN, '--packets', '30000', '--seed', '14'], { encoding: 'utf8' });
  expect(g.status, g.stderr).toBe(0);
});

const STATUS = ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmpv6.checksum.status'];

const FWD = join(dir, 'fwd');
const DROP = join(dir, 'drop');
const both = (): Buffer[] => [readFileSync(FWD), readFileSync(DROP)];
const same = (a: Buffer[], b: Buffer[]): boolean => a[0]!.equals(b[0]!) && a[1]!.equals(b[1]!);

const files = [
  GEN, // IPv4, IPv6, VLAN, policy drops
  join(CAPTURES, 'large/ppp_many-protocols.pcap'),
  join(CAPTURES, 'ipv6/zeek_ipv6-fragmented-dns.pcap'),
  join(CAPTURES, 'ipv4_frag/ppp_ip4_fragments.pcap'),
  join(CAPTURES, 'vlan/zeek_http-vlan-0.pcap'),
  join(CAPTURES, 'pcapng/ppp_pcapng-example.pcapng'), // two interfaces, two link types
  join(CAPTURES, 'pcapng/ppp_many_interfaces-1.pcapng'), // eleven interfaces
  join(CAPTURES, 'pcapng/gopacket_le_test202.pcapng'), // three sections
  join(ROOT, 'test/fixtures/simple-packet-blocks.pcapng'), // packets without a timestamp
];

describe('--write with workers writes what the stages produced, as inline does', () => {
  for (const file of files) {
    it(file.replace(`${ROOT}/`, '').replace(`${dir}/`, 'generated '), async () => {
      const stages = () => dist.registry.buildStages(dist.profile.loadProfile(PROFILE));
      const base = dist.run.runCapture({ file, profile: PROFILE, stages: stages(), write: FWD, writeDropped: DROP, timing: false });
      const rewritten = base.report.stageReports['test-rewrite']?.rewritten as number;
      expect(rewritten).toBeGreaterThan(0);
      const pushed = base.report.stageReports['test-push']?.pushed as number;
      if (file === GEN) expect(pushed).toBeGreaterThan(10_000);
      const expected = both();
      for (const batchSize of [1, 7]) {
        dist.run.runCapture({ file, profile: PROFILE, stages: stages(), batchSize, write: FWD, writeDropped: DROP, timing: false });
        expect(same(both(), expected), `--batch ${batchSize}`).toBe(true);
      }
      let forwarded: Uint8Array | null = null;
      for (const workers of [2, 3]) {
        for (const batchSize of [7, 256]) {
          const r = await runParallel({ file, profile: PROFILE, workers, batchSize, pool, write: FWD, writeDropped: DROP, timing: false, modules: [FIXTURE], verdictBits: true });
          expect(r.report.stageReports['test-rewrite']?.rewritten, `--workers ${workers}: the stage ran`).toBe(rewritten);
          expect(r.report.stageReports['test-push']?.pushed, `--workers ${workers}: packets grew`).toBe(pushed);
          expect(same(both(), expected), `--workers ${workers} --batch ${batchSize}: the same bytes as inline`).toBe(true);
          forwarded = r.forwarded;
        }
      }
      expect(readdirSync(dir).filter((n) => n.includes('part'))).toEqual([]);

      // tshark: each written packet has the checksum status it had in the input.
      const input = tsharkFields(file, STATUS);
      const isFwd = (k: number): boolean => ((forwarded![k >>> 3]! >> (k & 7)) & 1) === 1;
      expect(tsharkFields(FWD, STATUS)).toEqual(input.filter((_, k) => isFwd(k)));
      expect(tsharkFields(DROP, STATUS)).toEqual(input.filter((_, k) => !isFwd(k)));
      // And the rewrite is in the file: every forwarded IPv4 packet goes to 198.18.0.0/15.
      const dsts = tsharkFields(FWD, ['ip.dst']).map((row) => row[0]?.split(',')[0] ?? '').filter((d) => d !== '');
      for (const d of dsts) expect(d).toMatch(/^198\.1[89]\./);
    });
  }
});
