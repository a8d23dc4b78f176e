/**
 * encrypt (issue 13): WireGuard's data path per packet. node:crypto's ChaCha20-Poly1305 gives RFC
 * 8439's AEAD test vector (section 2.8.2); every packet dplab sealed, opened again here with the
 * pair's key (src/crypto/wireguard.ts derives it), gives back the original packet byte for byte
 * (link header, inner IP packet, trailer), its counter is the packet's number and the receiver index
 * names its node pair; packets not sealed are untouched; tshark reads the output as WireGuard
 * transport data with good outer IPv4 and UDP checksums; the written bytes, verdicts and reports
 * are the same for --batch 1, 7, 256 and --workers 2; the node table's errors name file and line.
 */
import { createCipheriv } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { openMessage, pairKey, receiverIndex, Sealer, HEADER_BYTES, TAG_BYTES } from '../src/crypto/wireguard.js';
import { CAPTURES, dplab, readAll, tsharkFields } from './helpers.js';
import { dist } from './dist.js';


const dir = mkdtempSync(join(tmpdir(), 'dplab-encrypt-'));
const GEN = join(dir, 'gen.pcap');
const pool = workerPool(2);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});

beforeAll(() => {
  const g = dplab('gen', GEN, '--packets', '20000', '--seed', '13', '--clients', '30');
  expect(g.status, g.stderr).toBe(0);
});

const SECRET = 'test-secret';
const NODES = [
  { name: 'node-a', addr: '192.168.0.1', prefixes: '10.0.0.0/8, fd00:10::/64' },
  { name: 'node-b', addr: '192.168.0.2', prefixes: '172.16.0.0/24, fd00:172:16::/64' },
  // Two of gen's servers on a third node (longest prefix wins): two pairs each way.
  { name: 'node-c', addr: '192.168.0.3', prefixes: '172.16.0.3/32, 172.16.0.16/32' },
];
const PROFILE = join(dir, 'enc.profile');
writeFileSync(PROFILE, `pipeline: conntrack -> policy -> encrypt\n[policy]\nrule: drop tcp to 172.16.0.0/24 port 23\n[encrypt]\nsecret: ${SECRET}\n`
  + NODES.map((n) => `node: ${n.name} ${n.addr} ${n.prefixes}\n`).join(''));

describe('the AEAD', () => {
  it('node:crypto ChaCha20-Poly1305 gives RFC 8439 section 2.8.2', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, k) => 0x80 + k));
    const nonce = Buffer.from('070000004041424344454647', 'hex');
    const aad = Buffer.from('50515253c0c1c2c3c4c5c6c7', 'hex');
    const plain = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: plain.length });
    const ct = Buffer.concat([c.update(plain), c.final()]);
    expect(ct.toString('hex')).toBe('d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b'
      + '1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116');
    expect(c.getAuthTag().toString('hex')).toBe('1ae10b594f09e26a7e902ecbd0600691');
  });

  it('the sealer writes a message that opens to the padded plaintext; a flipped bit does not open', () => {
    const key = pairKey('s', 'a', 'b');
    const plain = Uint8Array.from({ length: 37 }, (_, k) => k * 7);
    const out = new Uint8Array(200);
    const total = new Sealer().seal(key, 0x01020304, 2 ** 40 + 5, 0xc0a80001, 0xc0a80002, 64, plain, 0, 37, out, 10);
    expect(total).toBe(HEADER_BYTES + 48 + TAG_BYTES);
    const msg = out.subarray(10 + 28, 10 + total);
    const o = openMessage(key, msg)!;
    expect(o.index).toBe(0x01020304);
    expect(o.counter).toBe(2n ** 40n + 5n);
    expect([...o.plain]).toEqual([...plain, ...new Array(11).fill(0)]);
    msg[20]! ^= 1;
    expect(openMessage(key, msg)).toBeNull();
  });
});

interface Pkt { bytes: Buffer; l3: number; linkType: number }
function packets(file: string): Pkt[] {
  const out: Pkt[] = [];
  readAll(file, (b) => {
    for (let i = 0; i < b.count; i++) {
      const o = b.off[i]!;
      out.push({ bytes: Buffer.from(b.bytes.subarray(o, o + b.capLen[i]!)), l3: b.l3[i]! - o, linkType: b.linkType[i]! });
    }
  });
  return out;
}

/** Open a sealed packet and rebuild the packet it was: link header (Ethertype by the inner version), inner IP, trailer. */
function unseal(p: Pkt, keys: Map<number, { key: Buffer; pair: string }>): { original: Buffer; counter: bigint; pair: string } {
  const x = p.bytes;
  const l3 = p.l3;
  const total = x.readUInt16BE(l3 + 2);
  const msg = x.subarray(l3 + 28, l3 + total);
  const k = keys.get(msg.readUInt32LE(4));
  if (!k) throw new Error('unknown receiver index');
  const o = openMessage(k.key, msg);
  if (!o) throw new Error('tag does not verify');
  const v = o.plain[0]! >> 4;
  const len = v === 4 ? o.plain.readUInt16BE(2) : 40 + o.plain.readUInt16BE(4);
  const link = Buffer.from(x.subarray(0, l3));
  if (link.length >= 2) link.writeUInt16BE(v === 4 ? 0x0800 : 0x86dd, link.length - 2);
  return { original: Buffer.concat([link, o.plain.subarray(0, len), x.subarray(l3 + total)]), counter: o.counter, pair: k.pair };
}

function keyMap(): Map<number, { key: Buffer; pair: string }> {
  const m = new Map<number, { key: Buffer; pair: string }>();
  for (const a of NODES) for (const c of NODES) {
    if (a !== c) m.set(receiverIndex(SECRET, a.name, c.name), { key: pairKey(SECRET, a.name, c.name), pair: `${a.name}->${c.name}` });
  }
  return m;
}

describe('what encrypt writes', () => {
  it('opens back into the original packets byte for byte; tshark finds WireGuard data with good checksums', () => {
    const FWD = join(dir, 'fwd.pcap');
    const r = dist.run.runCapture({ file: GEN, profile: PROFILE, stages: dist.registry.buildStages(dist.profile.loadProfile(PROFILE)), write: FWD, timing: false }).report;
    const rep = r.stageReports.encrypt as Record<string, number | Record<string, number>>;
    expect(rep.packetsSealed as number).toBeGreaterThan(15_000);
    const pairs = rep.sealedByPair as Record<string, number>;
    expect(Object.keys(pairs).sort()).toEqual(['node-a->node-b', 'node-a->node-c', 'node-b->node-a', 'node-c->node-a']);
    // Forwarded packets in order: the input without the dropped ones.
    const input = packets(GEN);
    const dropped = new Set<number>();
    for (const [k, v] of Object.entries(r.verdicts.dropsByReason)) expect(k, `${v} dropped`).toMatch(/^policy\//);
    const output = packets(FWD);
    const keys = keyMap();
    // Match output to input by walking both: a dropped input packet has no output.
    let j = 0;
    let sealed = 0;
    let clear = 0;
    const lastCounter = new Map<string, bigint>();
    for (let k = 0; k < input.length && j < output.length; k++) {
      const inp = input[k]!;
      const out = output[j]!;
      const isWg = out.bytes.length > out.l3 + 36 && out.bytes[out.l3 + 9] === 17 && out.bytes.readUInt16BE(out.l3 + 22) === 51820 && out.bytes[out.l3 + 28] === 4;
      if (isWg) {
        let u;
        try { u = unseal(out, keys); } catch { u = null; }
        if (!u || !u.original.equals(inp.bytes)) { dropped.add(k + 1); continue; }
        expect(u.counter, `packet ${k + 1}: its counter is its number`).toBe(BigInt(k + 1));
        expect(u.counter > (lastCounter.get(u.pair) ?? 0n)).toBe(true);
        lastCounter.set(u.pair, u.counter);
        sealed++;
      } else {
        if (!out.bytes.equals(inp.bytes)) { dropped.add(k + 1); continue; }
        clear++;
      }
      j++;
    }
    expect(j, 'every written packet is an input packet, sealed or as it was').toBe(output.length);
    expect(sealed).toBe(rep.packetsSealed);
    expect(dropped.size).toBe(r.verdicts.dropped);
    expect(clear).toBeGreaterThan(500);
    // tshark: WireGuard transport data on UDP 51820, outer checksums good.
    const rows = tsharkFields(FWD, ['wg.type', 'wg.counter', 'ip.checksum.status', 'udp.checksum.status']);
    const wg = rows.filter((x) => x[0] === '4');
    expect(wg.length).toBe(sealed);
    for (const x of wg) {
      expect(x[2]!.split(',')[0], 'outer IPv4 checksum').toBe('1');
      expect(x[3]!.split(',')[0], 'outer UDP checksum').toBe('1');
    }
  });

  // QinQ tags, IPv6, SLL, raw IPv6, fragments; SLL2 has no Ethertype before IP: left in the clear.
  for (const f of ['vlan/zeek_http-qinq-0.pcap', 'vlan/zeek_http-vlan-0.pcap', 'ipv6/zeek_ftp_ipv6.pcap', 'linktype/ppp_sll.pcap',
    'linktype/tcpdump_LINKTYPE_RAW_ipv6.pcap', 'ipv4_frag/ppp_ip4_fragments.pcap', 'linktype/ppp_sll2.pcap']) {
    it(`${f} round-trips too`, () => {
      const src = join(CAPTURES, f);
      // The first IP packet's destination is alone on node-b; everything else is node-a.
      const first = tsharkFields(src, ['ip.dst', 'ipv6.dst']).find((x) => x[0] || x[1])!;
      const host = first[0] ? `${first[0].split(',')[0]}/32` : `${first[1]!.split(',')[0]}/128`;
      const prof = join(dir, 'any.profile');
      writeFileSync(prof, `pipeline: encrypt\n[encrypt]\nsecret: ${SECRET}\nnode: node-a 192.168.0.1 0.0.0.0/0, ::/0\nnode: node-b 192.168.0.2 ${host}\n`);
      const FWD = join(dir, 'any-out.pcap');
      const r = dist.run.runCapture({ file: src, profile: prof, stages: dist.registry.buildStages(dist.profile.loadProfile(prof)), write: FWD, timing: false }).report;
      const rep = r.stageReports.encrypt as Record<string, number>;
      const input = packets(src);
      const output = packets(FWD);
      expect(output.length).toBe(input.length);
      const keys = new Map([['node-a', 'node-b'], ['node-b', 'node-a']].map(([a, c]) => [receiverIndex(SECRET, a!, c!), { key: pairKey(SECRET, a!, c!), pair: `${a}->${c}` }]));
      let sealed = 0;
      output.forEach((o, k) => {
        if (o.l3 > 0 || o.linkType === 101) {
          if (o.bytes.length > o.l3 + 28 && o.bytes[o.l3] === 0x45 && o.bytes[o.l3 + 9] === 17 && o.bytes.readUInt16BE(o.l3 + 22) === 51820) {
            expect(unseal(o, keys).original.equals(input[k]!.bytes), `packet ${k + 1}`).toBe(true);
            sealed++;
            return;
          }
        }
        expect(o.bytes.equals(input[k]!.bytes), `packet ${k + 1}`).toBe(true);
      });
      expect(sealed).toBe(rep.packetsSealed);
      if (f.includes('sll2')) expect(sealed).toBe(0);
      else expect(sealed).toBeGreaterThan(0);
      const rows = tsharkFields(FWD, ['wg.type', 'ip.checksum.status', 'udp.checksum.status']).filter((x) => x[0] === '4');
      expect(rows.length).toBe(sealed);
      for (const x of rows) expect([x[1]!.split(',')[0], x[2]!.split(',')[0]]).toEqual(['1', '1']);
    });
  }
});

describe('encrypt: the same bytes, verdicts and reports for any batch size and worker count', () => {
  it('--batch 1, 7, 256 and --workers 1, 2', async () => {
    const FWD = join(dir, 'det.pcap');
    const DROP = join(dir, 'det-drop.pcap');
    const run = (batchSize: number) => dist.run.runCapture({ file: GEN, profile: PROFILE, stages: dist.registry.buildStages(dist.profile.loadProfile(PROFILE)), batchSize, write: FWD, writeDropped: DROP, timing: false }).report;
    const base = run(256);
    const fwd = readFileSync(FWD);
    const drop = readFileSync(DROP);
    expect((base.stageReports.encrypt as Record<string, number>).packetsSealed).toBeGreaterThan(15_000);
    for (const batchSize of [1, 7]) {
      const r = run(batchSize);
      expect(readFileSync(FWD).equals(fwd), `--batch ${batchSize}: forwarded bytes`).toBe(true);
      expect(readFileSync(DROP).equals(drop), `--batch ${batchSize}: dropped bytes`).toBe(true);
      expect(r.stageReports).toEqual(base.stageReports);
      expect(r.verdicts.dropsByReason).toEqual(base.verdicts.dropsByReason);
      expect(r.capture).toEqual(base.capture);
    }
    for (const [workers, batchSize] of [[1, 256], [2, 7], [2, 256]] as const) {
      const r = (await runParallel({ file: GEN, profile: PROFILE, workers, batchSize, pool, write: FWD, writeDropped: DROP, timing: false })).report;
      expect(readFileSync(FWD).equals(fwd), `--workers ${workers} --batch ${batchSize}: forwarded bytes`).toBe(true);
      expect(readFileSync(DROP).equals(drop), `--workers ${workers} --batch ${batchSize}: dropped bytes`).toBe(true);
      expect(r.stageReports).toEqual(base.stageReports);
      expect(r.verdicts.dropsByReason).toEqual(base.verdicts.dropsByReason);
      expect(r.capture).toEqual(base.capture);
    }
  });
});

describe('the capture summary describes the capture, not what encrypt made of it', () => {
  it('IPv4 and IPv6, TCP and UDP as read, with every packet between nodes sealed into IPv4/UDP', async () => {
    const plain = join(dir, 'plain.profile');
    writeFileSync(plain, 'pipeline: xdp\n');
    const run = (profile: string) => dist.run.runCapture({ file: GEN, profile, stages: dist.registry.buildStages(dist.profile.loadProfile(profile)), timing: false }).report;
    const read = run(plain).capture;
    const sealed = run(PROFILE);
    expect((sealed.stageReports.encrypt as Record<string, number>).packetsSealed).toBeGreaterThan(15_000);
    // Counted after the stages, the sealed packets would all be ipv4/udp.
    expect(read.l4['ipv6/tcp']).toBeGreaterThan(1_000);
    expect(sealed.capture).toEqual(read);
    const two = (await runParallel({ file: GEN, profile: PROFILE, workers: 2, pool, timing: false })).report;
    expect(two.capture).toEqual(read);
  });
});

describe('the node table', () => {
  it('names file and line of each bad entry', () => {
    const p = join(dir, 'bad.profile');
    writeFileSync(p, 'pipeline: encrypt\n[encrypt]\nsecret: x\nnode: a 192.168.0.1 10.0.0.0/8\nnode: b fd00::1 172.16.0.0/16\nnode: c 192.168.0.3 10.0.0.0/8\nnode: a 192.168.0.4 10.1.0.0/16\nnode: d\n');
    let msg = 'no error';
    try { dist.registry.buildStages(dist.profile.loadProfile(p)); } catch (e) { msg = (e as Error).message; }
    expect(msg).toMatch(/bad\.profile:5: .*"fd00::1" is not an IPv4 address/);
    expect(msg).toMatch(/bad\.profile:6: .*10\.0\.0\.0\/8 is already on node "a"/);
    expect(msg).toMatch(/bad\.profile:7: .*node "a" is defined twice/);
    expect(msg).toMatch(/bad\.profile:8: .*is not NAME ADDRESS PREFIX/);
    writeFileSync(p, 'pipeline: encrypt\n[encrypt]\nnode: a 192.168.0.1 10.0.0.0/8\nnode: b 192.168.0.2 172.16.0.0/16\n');
    expect(() => dist.registry.buildStages(dist.profile.loadProfile(p))).toThrow(/needs "secret:"/);
  });
});
