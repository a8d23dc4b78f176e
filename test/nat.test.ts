/**
 * The NAT stages (issue 8) on generated service traffic: the service table's errors name file and
 * line; dnat and ctlb give the same verdicts, the same written bytes, the same flow log and the same
 * reports for --batch 1, 7, 256 and --workers 2 (both directions of a translated flow must meet in
 * one worker: the sharder is steered by the client address); every written packet keeps the checksum
 * status it had (tshark, validation on); each flow keeps one backend, flows spread over the
 * backends, and client-IP affinity sends a client's connections to one backend.
 * The kernel as the oracle for the bytes is test/nat-kernel.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import type { StageReport } from '../src/pipeline/stage.js';
import { dplab, ROOT, tsharkFields } from './helpers.js';
import { dist } from './dist.js';
import { REC, REP, R_FAMPROTO, R_DST, R_SRC, R_STATE, Status } from '../src/conntrack/layout.js';


const dir = mkdtempSync(join(tmpdir(), 'dplab-nat-'));
const GEN = join(dir, 'svc.pcap');
const SERVICES = join(dir, 'services.txt');
const pool = workerPool(2);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});


beforeAll(() => {
  const g = dplab('gen', GEN, '--packets', '40000', '--seed', '8', '--clients', '40', '--scan', '2%', '--services', SERVICES);
  expect(g.status, g.stderr).toBe(0);
  // One service with affinity and one without endpoints on top of gen's table.
  const lines = readFileSync(SERVICES, 'utf8').split('\n').map((l) => {
    if (l.startsWith('tcp 172.16.0.2:80 ')) return `${l} affinity 3h`;
    if (l.startsWith('udp 172.16.0.3:40000 ')) return 'udp 172.16.0.3:40000 ->';
    return l;
  });
  writeFileSync(SERVICES, lines.join('\n'));
});

const PROFILES = {
  dnat: `pipeline: conntrack -> dnat -> policy\n[dnat]\nservices: ${SERVICES}\n[policy]\nrule: drop tcp to 10.88.5.0/24\n`,
  ctlb: `pipeline: ctlb -> conntrack -> policy\n[ctlb]\nservices: ${SERVICES}\n[policy]\nrule: drop tcp to 10.88.5.0/24\n`,
  // The article's mixed case: connect-time balancing with kube-proxy's rules still in place.
  mixed: `pipeline: ctlb -> conntrack -> dnat -> policy\n[ctlb]\nservices: ${SERVICES}\n[dnat]\nservices: ${SERVICES}\n[policy]\nrule: drop tcp to 10.88.5.0/24\n`,
  // hns: VFP's unified flows (the LB and ACL layers compiled into conntrack columns).
  hns: `pipeline: conntrack -> vfp\n[vfp]\nservices: ${SERVICES}\nrule: drop tcp to 10.88.5.0/24\n`,
};

function profileFile(name: keyof typeof PROFILES): string {
  const p = join(dir, `${name}.profile`);
  writeFileSync(p, PROFILES[name]);
  return p;
}

const FWD = join(dir, 'fwd.pcap');
const DROP = join(dir, 'drop.pcap');
const FLOWS = join(dir, 'flows.tsv');

interface Outcome { fwd: Buffer; drop: Buffer; flows: string; reports: Record<string, StageReport>; drops: Record<string, number> }

function outcome(r: { stageReports: Record<string, StageReport>; verdicts: { dropsByReason: Record<string, number> } }): Outcome {
  // peakEntries is sampled, and the same for any batch size and workers too; the rest are counts.
  return { fwd: readFileSync(FWD), drop: readFileSync(DROP), flows: readFileSync(FLOWS, 'utf8'), reports: r.stageReports, drops: r.verdicts.dropsByReason };
}

describe('dnat, ctlb and vfp: the same verdicts, bytes, flows and reports for any batch size and worker count', () => {
  for (const name of ['dnat', 'ctlb', 'mixed', 'hns'] as const) {
    it(name, async () => {
      const profile = profileFile(name);
      const stages = () => dist.registry.buildStages(dist.profile.loadProfile(profile));
      const run = (batchSize: number) => dist.run.runCapture({ file: GEN, profile, stages: stages(), batchSize, write: FWD, writeDropped: DROP, flowLog: FLOWS, timing: false }).report;
      const base = outcome(run(256));
      // The stage did something worth comparing.
      if (name === 'hns') expect(base.reports.vfp!.packetsRewritten as number).toBeGreaterThan(15_000);
      else {
        const nat = (name === 'dnat' ? base.reports.dnat!.packetsTranslated : base.reports.ctlb!.packetsReaddressed) as StageReport;
        expect(nat.original as number).toBeGreaterThan(10_000);
        expect(nat.reply as number).toBeGreaterThan(5_000);
      }
      if (name === 'mixed') {
        // Behind connect-time balancing the wire carries backend addresses: kube-proxy's rules,
        // left in place, translate nothing (and still cost a lookup per flow).
        expect(base.reports.dnat!.packetsTranslated).toEqual({ original: 0, reply: 0 });
        expect(base.reports.dnat!.bindingsCreated).toBe(0);
      }
      expect(base.drops[name === 'hns' ? 'vfp/acl' : 'policy/rule'] ?? 0, 'the rules see backend addresses').toBeGreaterThan(100);
      expect(Object.keys(base.drops).some((k) => k.endsWith('/no-endpoints')), 'the service without endpoints rejects').toBe(true);
      for (const batchSize of [1, 7]) {
        const o = outcome(run(batchSize));
        expect(o.fwd.equals(base.fwd), `--batch ${batchSize}: forwarded bytes`).toBe(true);
        expect(o.drop.equals(base.drop), `--batch ${batchSize}: dropped bytes`).toBe(true);
        expect(o.flows, `--batch ${batchSize}: flow log`).toBe(base.flows);
        expect(o.reports, `--batch ${batchSize}: reports`).toEqual(base.reports);
        expect(o.drops).toEqual(base.drops);
      }
      for (const [workers, batchSize] of [[1, 256], [2, 7], [2, 256]] as const) {
        const r = await runParallel({ file: GEN, profile, workers, batchSize, pool, write: FWD, writeDropped: DROP, flowLog: FLOWS, timing: false });
        const o = outcome(r.report);
        expect(o.fwd.equals(base.fwd), `--workers ${workers} --batch ${batchSize}: forwarded bytes`).toBe(true);
        expect(o.drop.equals(base.drop), `--workers ${workers} --batch ${batchSize}: dropped bytes`).toBe(true);
        // Workers' flow logs merge in their own order: the same lines.
        expect(o.flows.split('\n').sort(), `--workers ${workers} --batch ${batchSize}: flow log`).toEqual(base.flows.split('\n').sort());
        expect(o.reports, `--workers ${workers} --batch ${batchSize}: reports`).toEqual(base.reports);
        expect(o.drops).toEqual(base.drops);
      }
    });
  }
});

// FlowTable.match compares only word 0 of an IPv4 address: words 1-3 must be zero in every IPv4
// entry, both its original tuple and the reply tuple a NAT stage gives it (decode-paths holds the
// decoder to it). Each entry is checked as it ends, for every NAT design.
describe('IPv4 entries keep address words 1-3 zero through NAT', () => {
  for (const name of ['dnat', 'ctlb', 'mixed', 'hns'] as const) {
    it(name, () => {
      const profile = profileFile(name);
      const stages = dist.registry.buildStages(dist.profile.loadProfile(profile));
      const ct = stages.find((s) => s.name === 'conntrack') as unknown as { ct: { table: import('../src/conntrack/table.js').FlowTable } };
      const table = ct.ct.table;
      let v4 = 0;
      let replies = 0;
      const upper = (a: Uint32Array, at: number) => [a[at + 1], a[at + 2], a[at + 3]];
      table.onEnd((t, e) => {
        const w = e * REC;
        if ((t.rec[w + R_FAMPROTO]! & 0xff) !== 4) return;
        v4++;
        expect([...upper(t.rec, w + R_SRC), ...upper(t.rec, w + R_DST)], `entry ${e}`).toEqual([0, 0, 0, 0, 0, 0]);
        if ((t.rec[w + R_STATE]! & (Status.REPLY_TUPLE << 8)) !== 0) {
          replies++;
          // The reply tuple: rep words 2..5 src, 6..9 dst (layout.ts), a private array of the table.
          const rep = (t as unknown as { rep: Uint32Array }).rep;
          const r = e * REP;
          expect([...upper(rep, r + 2), ...upper(rep, r + 6)], `entry ${e} reply`).toEqual([0, 0, 0, 0, 0, 0]);
        }
      });
      dist.run.runCapture({ file: GEN, profile, stages, timing: false });
      expect(v4).toBeGreaterThan(1_000);
      // (mixed: behind connect-time balancing dnat translates nothing, so no reply tuples.)
      if (name === 'dnat' || name === 'hns') expect(replies, 'translated flows have reply tuples').toBeGreaterThan(100);
    });
  }
});

describe('what dnat writes', () => {
  it('every packet keeps its checksum status; one backend per flow, spread over the backends; affinity holds', () => {
    const profile = profileFile('dnat');
    dist.run.runCapture({ file: GEN, profile, stages: dist.registry.buildStages(dist.profile.loadProfile(profile)), write: FWD, writeDropped: DROP, flowLog: FLOWS, timing: false });
    const status = ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmpv6.checksum.status'];
    const fwd = tsharkFields(FWD, status);
    expect(fwd.length).toBeGreaterThan(30_000);
    // gen writes only correct checksums: after translation tshark finds every one good (status 1;
    // 0 is bad, 2 not verified), the IPv4 header's, TCP's, UDP's and ICMPv6's.
    const seen = new Set<string>();
    fwd.forEach((row, k) => row.forEach((c, j) => { if (c !== '') { expect(c, `packet ${k + 1} ${status[j]}`).toBe('1'); seen.add(status[j]!); } }));
    expect([...seen].sort()).toEqual(['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status']);
    // The flow log names each translated flow's backend; per service the flows spread.
    const rows = readFileSync(FLOWS, 'utf8').trim().split('\n');
    const head = rows[0]!.split('\t');
    const col = (n: string) => head.indexOf(n);
    expect(col('nat_to')).toBeGreaterThan(0);
    const perService = new Map<string, Map<string, number>>();
    const perClient = new Map<string, Set<string>>();
    for (const l of rows.slice(1)) {
      const c = l.split('\t');
      const to = c[col('nat_to')]!;
      if (to === '-') continue;
      const svc = `${c[col('proto')]} ${c[col('dst')]}:${c[col('dport')]}`;
      const m = perService.get(svc) ?? new Map<string, number>();
      m.set(to, (m.get(to) ?? 0) + 1);
      perService.set(svc, m);
      if (svc === 'tcp 172.16.0.2:80') {
        const s = perClient.get(c[col('src')]!) ?? new Set<string>();
        s.add(to);
        perClient.set(c[col('src')]!, s);
      }
    }
    const busy = [...perService].filter(([, m]) => [...m.values()].reduce((a, x) => a + x, 0) >= 60);
    expect(busy.length).toBeGreaterThan(10);
    for (const [svc, m] of busy) {
      if (svc === 'tcp 172.16.0.2:80') continue;
      // Three backends each: none gets less than a sixth of the flows.
      const total = [...m.values()].reduce((a, x) => a + x, 0);
      expect(m.size, svc).toBe(3);
      for (const n of m.values()) expect(n, svc).toBeGreaterThan(total / 6);
    }
    // Affinity (3 h, the whole capture): every client meets one backend, and the clients spread.
    expect(perClient.size).toBeGreaterThan(10);
    for (const [client, s] of perClient) expect(s.size, client).toBe(1);
    expect(new Set([...perClient.values()].map((s) => [...s][0])).size).toBe(3);
    // Both directions of each translated packet: the replies leave from the service address.
    const tuples = tsharkFields(FWD, ['ip.src', 'ip.dst']).filter((r) => r[0] !== '');
    const fromVip = tuples.filter((r) => r[0]!.startsWith('172.16.0.')).length;
    const toBackend = tuples.filter((r) => r[1]!.startsWith('10.88.')).length;
    expect(fromVip).toBeGreaterThan(5_000);
    expect(toBackend).toBeGreaterThan(10_000);
    // No forwarded packet still goes to a service address and port (scan probes to other ports of
    // the same addresses are not service traffic and pass as they are).
    const toVip = tsharkFields(FWD, ['ip.dst', 'tcp.dstport', 'udp.dstport'])
      .filter((r) => r[0]!.startsWith('172.16.0.') && ['80', '8080', '8000', '7777', '40000'].includes(r[1] || r[2] || ''));
    expect(toVip).toEqual([]);
  });
});

describe('fragments', () => {
  it('every fragment of a datagram to a service is readdressed; tshark reassembles it and finds its UDP checksum good', () => {
    // NFS over UDP in 6 fragments a datagram (captures/ipv4_frag): the port and UDP checksum are in
    // the first fragment only, the address in every one.
    const file = join(ROOT, 'captures/ipv4_frag/ppp_ip4_fragments.pcap');
    const profile = join(dir, 'frag.profile');
    writeFileSync(profile, 'pipeline: conntrack -> dnat\n[dnat]\nservice: udp 10.118.213.211:2049 -> 10.88.9.9:20490\n');
    const r = dist.run.runCapture({ file, profile, stages: dist.registry.buildStages(dist.profile.loadProfile(profile)), write: FWD, timing: false });
    expect(r.report.stageReports.dnat!.laterFragmentsTranslated).toBe(41);
    const fields = ['ip.dst', 'udp.dstport', 'udp.checksum.status', 'ip.checksum.status'];
    const before = tsharkFields(file, fields);
    const after = tsharkFields(FWD, fields);
    expect(after.length).toBe(before.length);
    after.forEach((row, k) => {
      const was = before[k]!;
      expect(row[0], `packet ${k + 1}`).toBe(was[0] === '10.118.213.211' ? '10.88.9.9' : was[0]);
      expect(row[1], `packet ${k + 1}`).toBe(was[1] === '2049' ? '20490' : was[1]);
      expect(row.slice(2), `packet ${k + 1}: checksum status`).toEqual(was.slice(2));
    });
    // The reassembled datagrams (6 of them) carry a UDP checksum tshark verified good after the rewrite.
    expect(after.filter((row) => row[1] === '20490' && row[2] === '1')).toHaveLength(6);
  });
});

describe('the service table', () => {
  const check = (services: string): string => {
    const file = join(dir, 'bad-services.txt');
    writeFileSync(file, services);
    const profile = join(dir, 'bad.profile');
    writeFileSync(profile, `pipeline: conntrack -> dnat\n[dnat]\nservices: ${file}\n`);
    try {
      dist.registry.buildStages(dist.profile.loadProfile(profile));
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };

  it('names the file and line of every bad service, with what is wrong', () => {
    const msg = check('# ok\ntcp 10.96.0.1:80 -> 10.88.0.1:8080\nsctp 10.96.0.2:80 -> 10.88.0.1:80\ntcp 10.96.0.3 -> 10.88.0.1:80\n'
      + 'tcp 10.96.0.4:80 -> [fd00::1]:80\ntcp 10.96.0.1:80 -> 10.88.0.2:80\nudp [fd00::1:80 -> [fd00::2]:80\ntcp 10.96.0.5:99999 -> 10.88.0.1:80\n');
    const lines = msg.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/bad-services\.txt:3: .*"sctp" is not a service protocol/);
    expect(lines[1]).toMatch(/bad-services\.txt:4: .*has no port/);
    expect(lines[2]).toMatch(/bad-services\.txt:5: .*IPv6 but the service address is IPv4/);
    expect(lines[3]).toMatch(/bad-services\.txt:6: .*10\.96\.0\.1:80 is already defined at .*bad-services\.txt:2/);
    expect(lines[4]).toMatch(/bad-services\.txt:7: .*not \[IPv6\]:port/);
    expect(lines[5]).toMatch(/bad-services\.txt:8: .*"99999" .* is not a port/);
  });

  it('dnat without conntrack in front says what to do', () => {
    const profile = join(dir, 'noct.profile');
    writeFileSync(profile, 'pipeline: dnat\n[dnat]\nservice: tcp 10.96.0.1:80 -> 10.88.0.1:80\n');
    expect(() => dist.registry.buildStages(dist.profile.loadProfile(profile))).toThrow(/dnat needs a conntrack stage before it/);
  });
});
