/**
 * The hns profile's vfp stage (issue 10): its NAT output equals the dnat stage's on the same
 * packets, and its ACL decides as the policy stage does behind dnat (same rules, on the translated
 * packet), for every packet: the forwarded and dropped captures are byte-identical to iptables'
 * (conntrack -> dnat -> policy). tshark reads the output with every checksum good.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dplab, tsharkFields } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-hns-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hns (vfp) against iptables (conntrack -> dnat -> policy)', () => {
  it('writes the same bytes and drops the same packets, with every checksum good', () => {
    const gen = join(dir, 'svc.pcap');
    const services = join(dir, 'svc.txt');
    const g = dplab('gen', gen, '--packets', '30000', '--attack', '5%', '--seed', '21', '--services', services);
    expect(g.status, g.stderr).toBe(0);
    const rules = 'evaluator: chain\nrule: drop from 192.0.2.0/24\nrule: drop to 10.88.3.0/24\nrule: drop udp port 17777\n';
    writeFileSync(join(dir, 'ipt.profile'), `pipeline: conntrack -> dnat -> policy\n[dnat]\nservices: ${services}\n[policy]\n${rules}`);
    writeFileSync(join(dir, 'hns.profile'), `pipeline: conntrack -> vfp\n[vfp]\nservices: ${services}\n${rules}`);
    const out: Record<string, { fwd: Buffer; drop: Buffer; report: { verdicts: { dropped: number; dropsByReason: Record<string, number> }; stageReports: Record<string, Record<string, unknown>> } }> = {};
    for (const p of ['ipt', 'hns']) {
      const r = dplab('replay', gen, '--profile', join(dir, `${p}.profile`), '--write', join(dir, `${p}.fwd.pcap`), '--write-dropped', join(dir, `${p}.drop.pcap`), '--json', join(dir, `${p}.json`));
      expect(r.status, r.stderr).toBe(0);
      out[p] = { fwd: readFileSync(join(dir, `${p}.fwd.pcap`)), drop: readFileSync(join(dir, `${p}.drop.pcap`)), report: JSON.parse(readFileSync(join(dir, `${p}.json`), 'utf8')) };
    }
    const ipt = out.ipt!;
    const hns = out.hns!;
    expect(hns.fwd.equals(ipt.fwd), 'forwarded bytes').toBe(true);
    expect(hns.drop.equals(ipt.drop), 'dropped bytes').toBe(true);
    expect(ipt.report.verdicts.dropped).toBeGreaterThan(1000);
    expect(hns.report.verdicts.dropped).toBe(ipt.report.verdicts.dropped);
    expect(hns.report.verdicts.dropsByReason['vfp/acl']).toBe(ipt.report.verdicts.dropsByReason['policy/rule']);
    const vfp = hns.report.stageReports.vfp!;
    expect(vfp.packetsRewritten).toBeGreaterThan(20_000);
    expect(vfp.flowsCompiled as number).toBeLessThan(vfp.fastPathPackets as number);
    const status = tsharkFields(join(dir, 'hns.fwd.pcap'), ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status']);
    for (const row of status) for (const c of row) if (c !== '') expect(c).toBe('1');
  });
});
