/**
 * dnat and ctlb against Linux netfilter itself. captures/nat/record.sh recorded real traffic
 * (curl, Python UDP clients, a port with no listener) through a router namespace doing DNAT as
 * kube-proxy writes it (KUBE-SERVICES / KUBE-SVC-* / KUBE-SEP-*, statistic --mode random), on the
 * router's client side and its backend side, offloads off. What enters the router (client -> VIP
 * on the client side, backend -> client on the backend side) is dnat's input; what leaves it
 * (client -> backend, VIP -> client) is the kernel's answer, which dnat must reproduce byte for
 * byte: addresses, ports, checksums, payload, ICMP errors with their quoted packets; only what a
 * router changes besides NAT is set aside (the TTL / hop limit, and so the IPv4 header checksum,
 * whose validity tshark checks instead). ctlb takes the client side as the application's view and
 * must give the backend side, both directions.
 *
 * The kernel picked backends at random; dplab hashes. So each flow is run on its own with the
 * service narrowed to the backend the kernel picked (the comparison is then exact), and a run with
 * the real service table checks that dplab's own choice is stable per flow and spread.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, tsharkFields } from './helpers.js';
import { dist } from './dist.js';


const NAT = join(ROOT, 'captures/nat');
const dir = mkdtempSync(join(tmpdir(), 'dplab-nat-kernel-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Frame { ts: bigint; data: Buffer }

/** A little-endian pcap (micro- or nanosecond), as record.sh writes it with tcpdump. */
function readPcap(file: string): { header: Buffer; frames: Frame[] } {
  const buf = readFileSync(file);
  const magic = buf.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian pcap`);
  const scale = magic === 0xa1b23c4d ? 1n : 1000n;
  const frames: Frame[] = [];
  for (let at = 24; at + 16 <= buf.length;) {
    const len = buf.readUInt32LE(at + 8);
    const ts = BigInt(buf.readUInt32LE(at)) * 1_000_000_000n + BigInt(buf.readUInt32LE(at + 4)) * scale;
    frames.push({ ts, data: buf.subarray(at + 16, at + 16 + len) });
    at += 16 + len;
  }
  return { header: buf.subarray(0, 24), frames };
}

function writePcap(file: string, header: Buffer, frames: Frame[]): void {
  const parts: Buffer[] = [header];
  for (const f of frames) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(Number(f.ts / 1_000_000_000n), 0);
    h.writeUInt32LE(Number(f.ts % 1_000_000_000n), 4);
    h.writeUInt32LE(f.data.length, 8);
    h.writeUInt32LE(f.data.length, 12);
    parts.push(h, f.data);
  }
  writeFileSync(file, Buffer.concat(parts));
}

function addr(b: Buffer, at: number, v6: boolean): string {
  if (!v6) return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  const g: string[] = [];
  for (let k = 0; k < 16; k += 2) g.push(b.readUInt16BE(at + k).toString(16));
  return `[${g.join(':')}]`;
}

interface Pkt {
  frame: Frame;
  /** The IP packet. */
  ip: Buffer;
  v6: boolean;
  proto: number;
  src: string; dst: string; sport: number; dport: number;
  /** For an ICMP error, the quoted packet's tuple; else the packet's own. */
  t: { proto: number; src: string; dst: string; sport: number; dport: number };
}

function parse(frame: Frame): Pkt {
  const d = frame.data;
  const type = d.readUInt16BE(12);
  const ip = d.subarray(14);
  const v6 = type === 0x86dd;
  if (!v6 && type !== 0x0800) throw new Error(`unexpected ethertype ${type.toString(16)}`);
  const l3 = (q: Buffer) => {
    const six = q[0]! >> 4 === 6;
    const proto = six ? q[6]! : q[9]!;
    const l4 = six ? 40 : (q[0]! & 15) * 4;
    const ports = proto === 6 || proto === 17;
    return {
      proto, l4, six,
      src: addr(q, six ? 8 : 12, six), dst: addr(q, six ? 24 : 16, six),
      sport: ports && q.length >= l4 + 4 ? q.readUInt16BE(l4) : 0, dport: ports && q.length >= l4 + 4 ? q.readUInt16BE(l4 + 2) : 0,
    };
  };
  const o = l3(ip);
  let t = { proto: o.proto, src: o.src, dst: o.dst, sport: o.sport, dport: o.dport };
  const icmpError = (o.proto === 1 && [3, 4, 5, 11, 12].includes(ip[o.l4]!)) || (o.proto === 58 && ip[o.l4]! < 128);
  if (icmpError) {
    const q = l3(ip.subarray(o.l4 + 8));
    t = { proto: q.proto, src: q.src, dst: q.dst, sport: q.sport, dport: q.dport };
  }
  return { frame, ip, v6, proto: o.proto, src: o.src, dst: o.dst, sport: o.sport, dport: o.dport, t };
}

const isClient = (a: string) => a.startsWith('10.77.1.') || a.startsWith('[fd00:77:1:');
const isBackend = (a: string) => a.startsWith('10.88.2.') || a.startsWith('[fd00:88:2:');

/** The flow a packet belongs to: protocol and client endpoint (an ICMP error: of the packet it quotes). */
function flowOf(p: Pkt): string {
  const c = isClient(p.t.src) ? `${p.t.src}:${p.t.sport}` : `${p.t.dst}:${p.t.dport}`;
  return `${p.t.proto === 6 ? 'tcp' : 'udp'} ${c}`;
}

/** The service end of a packet's flow tuple (VIP on the client side, backend on the other). */
function serviceEnd(p: Pkt): string {
  return isClient(p.t.src) ? `${p.t.dst}:${p.t.dport}` : `${p.t.src}:${p.t.sport}`;
}

/** The IP packet as hex with what a router changes besides NAT set aside (TTL / hop limit, IPv4 header checksum). */
function norm(ip: Buffer): string {
  const c = Buffer.from(ip);
  if (c[0]! >> 4 === 4) { c[8] = 0; c[10] = 0; c[11] = 0; } else c[7] = 0;
  return c.toString('hex');
}

const client = readPcap(join(NAT, 'kube-proxy-client.pcap'));
const backend = readPcap(join(NAT, 'kube-proxy-backend.pcap'));
const cPkts = client.frames.map(parse);
const bPkts = backend.frames.map(parse);
const flows = [...new Set(cPkts.map(flowOf))];

function runOne(profileText: string, frames: Frame[], name: string): Buffer[] {
  const input = join(dir, `${name}.in.pcap`);
  const out = join(dir, `${name}.out.pcap`);
  const profile = join(dir, `${name}.profile`);
  writePcap(input, client.header, frames);
  writeFileSync(profile, profileText);
  const r = dist.run.runCapture({ file: input, profile, stages: dist.registry.buildStages(dist.profile.loadProfile(profile)), write: out, timing: false });
  expect(r.report.verdicts.dropped, `${name}: nothing dropped`).toBe(0);
  return readPcap(out).frames.map((f) => parse(f).ip);
}

const byTime = (a: Frame, b: Frame) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0);
const sorted = (xs: string[]) => [...xs].sort();

describe('the recordings', () => {
  it('hold what the test relies on', () => {
    expect(cPkts.length).toBeGreaterThan(150);
    expect(bPkts.length).toBe(cPkts.length);
    expect(flows.length).toBeGreaterThan(20);
    expect(cPkts.some((p) => p.v6)).toBe(true);
    // ICMP and ICMPv6 port unreachable about the closed port, on both sides.
    for (const side of [cPkts, bPkts]) {
      expect(side.some((p) => p.proto === 1 && p.t.dport === 9999)).toBe(true);
      expect(side.some((p) => p.proto === 58 && p.t.dport === 9999)).toBe(true);
    }
  });
});

describe('dnat reproduces the kernel\'s DNAT packet for packet', () => {
  for (const flow of flows) {
    it(flow, () => {
      const mine = (p: Pkt) => flowOf(p) === flow;
      const cf = cPkts.filter(mine);
      const bf = bPkts.filter(mine);
      const vip = serviceEnd(cf[0]!);
      const picked = serviceEnd(bf[0]!);
      expect(new Set(bf.map(serviceEnd)), 'the kernel kept one backend for the flow').toEqual(new Set([picked]));
      // In: client -> VIP (client side) and backend -> client (backend side); out: the other two.
      const input = [...cf.filter((p) => isClient(p.src)), ...bf.filter((p) => isBackend(p.src))].map((p) => p.frame).sort(byTime);
      const expected = [...bf.filter((p) => !isBackend(p.src)), ...cf.filter((p) => !isClient(p.src))].map((p) => norm(p.ip));
      const services = join(dir, 'one-service.txt');
      writeFileSync(services, `${flow.split(' ')[0]} ${vip} -> ${picked}\n`);
      const out = runOne(`pipeline: conntrack -> dnat\n[dnat]\nservices: ${services}\n`, input, 'dnat');
      expect(out.length).toBe(expected.length);
      expect(sorted(out.map(norm))).toEqual(sorted(expected));
    });
  }
});

describe('ctlb turns the application\'s view into what the backend side carried', () => {
  for (const flow of flows) {
    it(flow, () => {
      const mine = (p: Pkt) => flowOf(p) === flow;
      const cf = cPkts.filter(mine);
      const bf = bPkts.filter(mine);
      const services = join(dir, 'one-service.txt');
      writeFileSync(services, `${flow.split(' ')[0]} ${serviceEnd(cf[0]!)} -> ${serviceEnd(bf[0]!)}\n`);
      const out = runOne(`pipeline: ctlb\n[ctlb]\nservices: ${services}\n`, cf.map((p) => p.frame), 'ctlb');
      expect(out.length).toBe(bf.length);
      expect(sorted(out.map(norm))).toEqual(sorted(bf.map((p) => norm(p.ip))));
    });
  }
});

describe('dnat with the real service table', () => {
  it('keeps one backend per flow, spreads flows over the backends, and writes valid checksums (tshark)', () => {
    // dplab's choice is not the kernel's, so the recorded replies (from the kernel's backend) are
    // not this run's: the client's packets alone. Without their replies conntrack finds a TCP
    // client's ACKs invalid; accepted, they pass untranslated (no conntrack entry, no NAT).
    const input = cPkts.filter((p) => isClient(p.src)).map((p) => p.frame);
    const out = runOne(`pipeline: conntrack -> dnat\n[conntrack]\ninvalid: accept\n[dnat]\nservices: ${join(NAT, 'services.txt')}\n`, input, 'all');
    expect(out.length).toBe(input.length);
    const pkts = readPcap(join(dir, 'all.out.pcap')).frames.map(parse);
    const per = new Map<string, Set<string>>();
    for (const p of pkts) {
      if (!isBackend(p.dst)) continue;
      const s = per.get(flowOf(p)) ?? new Set<string>();
      s.add(serviceEnd(p));
      per.set(flowOf(p), s);
    }
    // Every flow was translated (its first packet at least), each to one backend.
    expect(per.size).toBe(flows.length);
    for (const [flow, s] of per) expect(s.size, flow).toBe(1);
    const http = [...per].filter(([f]) => f.startsWith('tcp ')).map(([, s]) => [...s][0]!);
    expect(new Set(http).size).toBeGreaterThan(2);
    // Every checksum tshark can check is good (1): IPv4 headers, TCP, UDP.
    const fields = ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status'];
    const rows = tsharkFields(join(dir, 'all.out.pcap'), fields);
    expect(rows.length).toBe(out.length);
    const checked = new Set<string>();
    rows.forEach((row, k) => row.forEach((c, j) => {
      for (const v of c.split(',')) if (v !== '') { expect(v, `packet ${k + 1} ${fields[j]}`).toBe('1'); checked.add(fields[j]!); }
    }));
    expect(checked.size).toBe(fields.length);
  });

  it('writes ICMP errors tshark finds valid, quote included', () => {
    // The kernel's own backend choice (per-flow services) for every flow at once: its replies and
    // errors then belong to this run. Checked by tshark, not against the kernel's bytes.
    const lines = flows.map((flow) => {
      const cf = cPkts.filter((p) => flowOf(p) === flow);
      const bf = bPkts.filter((p) => flowOf(p) === flow);
      return { flow, vip: serviceEnd(cf[0]!), be: serviceEnd(bf[0]!) };
    });
    // One service per flow cannot express "this client port to that backend"; so run each flow
    // as in the per-flow test and check the errors of all of them with tshark.
    const fields = ['ip.checksum.status', 'udp.checksum.status', 'icmp.checksum.status', 'icmpv6.checksum.status'];
    let errors = 0;
    for (const { flow, vip, be } of lines.filter((l) => l.vip.endsWith(':9999'))) {
      const services = join(dir, 'one-service.txt');
      writeFileSync(services, `udp ${vip} -> ${be}\n`);
      const mine = (p: Pkt) => flowOf(p) === flow;
      const input = [...cPkts.filter(mine).filter((p) => isClient(p.src)), ...bPkts.filter(mine).filter((p) => isBackend(p.src))].map((p) => p.frame).sort(byTime);
      runOne(`pipeline: conntrack -> dnat\n[dnat]\nservices: ${services}\n`, input, 'icmp');
      const rows = tsharkFields(join(dir, 'icmp.out.pcap'), fields);
      rows.forEach((row, k) => row.forEach((c, j) => {
        for (const v of c.split(',')) if (v !== '') expect(v, `${flow} packet ${k + 1} ${fields[j]}`).toBe('1');
      }));
      errors += rows.filter((r) => r[2] !== '' || r[3] !== '').length;
    }
    expect(errors).toBeGreaterThanOrEqual(6);
  });
});
