/**
 * The maps of the model programs, filled from a profile's stage config: the lines the helper reads
 * (`max MAP N`, `set MAP KEYHEX VALUEHEX`; see bpf/runner.c). Keys and values are laid out as the
 * structs in bpf/*.bpf.c, in the host's byte order (BPF runs in it) except where the kernel wants
 * network order (LPM keys' address bytes).
 */
import { endianness } from 'node:os';
import { Action, RuleTable, type Rule } from '../policy/rules.js';
import type { ConntrackConfig } from '../conntrack/tracker.js';
import type { XdpConfig } from '../stages/xdp.js';
import type { ServiceTable } from '../nat/services.js';
import { fmix } from '../packet/hash.js';
import type { RouteTable } from '../route/table.js';

const LE = endianness() === 'LE';

class Bytes {
  private readonly b: Uint8Array;
  private readonly v: DataView;
  constructor(n: number) {
    this.b = new Uint8Array(n);
    this.v = new DataView(this.b.buffer);
  }
  u8(at: number, x: number): this { this.v.setUint8(at, x); return this; }
  u16(at: number, x: number): this { this.v.setUint16(at, x, LE); return this; }
  i16(at: number, x: number): this { this.v.setInt16(at, x, LE); return this; }
  u32(at: number, x: number): this { this.v.setUint32(at, x >>> 0, LE); return this; }
  u64(at: number, x: bigint): this { this.v.setBigUint64(at, x, LE); return this; }
  /** A u32 in network order (an address word). */
  be32(at: number, x: number): this { this.v.setUint32(at, x >>> 0, false); return this; }
  hex(): string { return Buffer.from(this.b).toString('hex'); }
}

/** xdp.bpf.c: prefixes4 / prefixes6 (LPM: u32 length, address bytes -> BLOCK 1 / ALLOW 2), rate, buckets. */
export function xdpMaps(cfg: XdpConfig): string {
  const lines: string[] = [];
  const v4 = cfg.prefixes.filter((p) => p.prefix.family === 4);
  const v6 = cfg.prefixes.filter((p) => p.prefix.family === 6);
  if (v4.length > 65536) lines.push(`max prefixes4 ${v4.length}`);
  if (v6.length > 65536) lines.push(`max prefixes6 ${v6.length}`);
  for (const p of cfg.prefixes) {
    const six = p.prefix.family === 6;
    const k = new Bytes(six ? 20 : 8).u32(0, p.prefix.len);
    for (let w = 0; w < (six ? 4 : 1); w++) k.be32(4 + 4 * w, p.prefix.words[w]!);
    lines.push(`set prefixes${six ? 6 : 4} ${k.hex()} ${new Bytes(1).u8(0, p.kind).hex()}`);
  }
  if (cfg.rateLimit) {
    const { rate, burst } = cfg.rateLimit;
    lines.push(`max buckets ${rateTableSize(cfg.rateTable)}`);
    const v = new Bytes(24).u64(0, BigInt(rate)).u64(8, BigInt(burst) * 1000000000n).u32(16, 1);
    lines.push(`set rate ${new Bytes(4).hex()} ${v.hex()}`);
  }
  return lines.join('\n') + '\n';
}

/** SourceRateLimiter's capacity for a rate-table setting: a power of two, at least 8. */
export function rateTableSize(entries: number): number {
  let n = 8;
  while (n < entries) n *= 2;
  return n;
}

export const MAX_RANGES = 16;
const RULE_BYTES = 200;

/**
 * policy.bpf.c: `rules` (dplab's RuleTable entries in order) and `config` (count, default action).
 * Throws when a rule has more port ranges than the program holds (MAX_RANGES per condition).
 */
export function policyMaps(rules: Rule[], defaultAction: number): string {
  const t = new RuleTable(rules);
  const lines: string[] = [];
  if (t.count > 4096) lines.push(`max rules ${t.count}`);
  for (let k = 0; k < t.count; k++) {
    const r = new Bytes(RULE_BYTES);
    for (let j = 0; j < 4; j++) {
      r.u32(4 * j, t.src[4 * k + j]!).u32(16 + 4 * j, t.srcMask[4 * k + j]!);
      r.u32(32 + 4 * j, t.dst[4 * k + j]!).u32(48 + 4 * j, t.dstMask[4 * k + j]!);
    }
    r.i16(64, t.proto[k]!).u8(66, t.family[k]!).u8(67, t.action[k]!);
    const sn = t.sportN[k]!;
    const dn = t.dportN[k]!;
    if (sn > MAX_RANGES || dn > MAX_RANGES) {
      throw new Error(`rule ${rules[t.rule[k]!]!.number} has ${Math.max(sn, dn)} port ranges; the kernel model holds ${MAX_RANGES} per condition`);
    }
    r.u8(68, sn).u8(69, dn);
    for (let j = 0; j < sn; j++) r.u16(72 + 2 * j, t.portLo[t.sportAt[k]! + j]!).u16(104 + 2 * j, t.portHi[t.sportAt[k]! + j]!);
    for (let j = 0; j < dn; j++) r.u16(136 + 2 * j, t.portLo[t.dportAt[k]! + j]!).u16(168 + 2 * j, t.portHi[t.dportAt[k]! + j]!);
    lines.push(`set rules ${new Bytes(4).u32(0, k).hex()} ${r.hex()}`);
  }
  const c = new Bytes(8).u32(0, t.count).u32(4, defaultAction === Action.DROP ? Action.DROP : Action.ACCEPT);
  lines.push(`set config ${new Bytes(4).hex()} ${c.hex()}`);
  return lines.join('\n') + '\n';
}

const ns = (seconds: number): bigint => BigInt(Math.round(seconds * 1e9));

/** conntrack.bpf.c: `flows` sized to the table's capacity, `ct_config` (timeouts in ns, loose, invalid). */
export function conntrackMaps(cfg: ConntrackConfig, dropInvalid: boolean): string {
  const t = cfg.timeouts;
  const c = new Bytes(120);
  for (let s = 0; s < 10; s++) c.u64(8 * s, ns(t.tcp[s]!));
  c.u64(80, ns(t.udp)).u64(88, ns(t.udpStream)).u64(96, ns(t.icmp)).u64(104, ns(t.generic));
  c.u32(112, cfg.loose ? 1 : 0).u32(116, dropInvalid ? 1 : 0);
  return `max flows ${cfg.capacity}\nset ct_config ${new Bytes(4).hex()} ${c.hex()}\n`;
}

/** dnat.bpf.c: its reply-tuple map as big as the flow table. */
export function aliasMaps(cfg: ConntrackConfig): string {
  return `max aliases ${cfg.capacity}\n`;
}

/**
 * dnat.bpf.c: `services` (VIP address words, port, family, proto -> first backend, count),
 * `backends` (k -> backend and VIP endpoints), `nat_config` (the seed as ServiceTable mixes it).
 * Throws for what the model leaves out (client-IP affinity).
 */
export function dnatMaps(t: ServiceTable, seed: number): string {
  const lines: string[] = [];
  if (t.services.length > 4096) lines.push(`max services ${t.services.length}`);
  if (t.backends.length > 4096) lines.push(`max backends ${t.backends.length}`);
  t.services.forEach((s, n) => {
    if (s.affinity > 0) throw new Error(`service ${s.where} has client-IP affinity, which the kernel model does not hold`);
    const k = new Bytes(20);
    for (let w = 0; w < 4; w++) k.u32(4 * w, s.vip.words[w]!);
    k.u16(16, s.vip.port).u8(18, s.vip.family).u8(19, s.proto);
    lines.push(`set services ${k.hex()} ${new Bytes(8).u32(0, t.firstBackend[n]!).u32(4, s.backends.length).hex()}`);
  });
  t.backends.forEach((be, k) => {
    const vip = t.services[t.backendService[k]!]!.vip;
    const v = new Bytes(40);
    for (let w = 0; w < 4; w++) v.u32(4 * w, be.words[w]!).u32(16 + 4 * w, vip.words[w]!);
    v.u16(32, be.port).u16(34, vip.port);
    lines.push(`set backends ${new Bytes(4).u32(0, k).hex()} ${v.hex()}`);
  });
  lines.push(`set nat_config ${new Bytes(4).hex()} ${new Bytes(8).u32(0, fmix(seed ^ 0x5bd1e995)).hex()}`);
  return lines.join('\n') + '\n';
}

/**
 * route.bpf.c: `routes4` / `routes6` (LPM: u32 length, address bytes -> the route's number) and
 * `nexthop` (route -> destination and source MAC: made up, 02:00:00:00:NN:NN and 02:00:00:01:00:DD
 * for the route and its device; dplab's table has no neighbours).
 */
export function routeMaps(t: RouteTable): string {
  const lines: string[] = [];
  const v4 = t.routes.filter((r) => r.prefix.family === 4).length;
  if (v4 > 65536) lines.push(`max routes4 ${v4}`);
  if (t.size - v4 > 65536) lines.push(`max routes6 ${t.size - v4}`);
  if (t.size > 65536) lines.push(`max nexthop ${t.size}`);
  t.routes.forEach((r, n) => {
    const six = r.prefix.family === 6;
    const k = new Bytes(six ? 20 : 8).u32(0, r.prefix.len);
    for (let w = 0; w < (six ? 4 : 1); w++) k.be32(4 + 4 * w, r.prefix.words[w]!);
    lines.push(`set routes${six ? 6 : 4} ${k.hex()} ${new Bytes(4).u32(0, n).hex()}`);
    const h = new Bytes(16).u8(0, 2).u8(4, n >> 8).u8(5, n & 0xff).u8(6, 2).u8(9, 1).u8(11, r.dev & 0xff);
    lines.push(`set nexthop ${new Bytes(4).u32(0, n).hex()} ${h.hex()}`);
  });
  return lines.join('\n') + '\n';
}
