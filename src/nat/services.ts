/**
 * The service table that the NAT stages (dnat, ctlb) share: virtual addresses (a Kubernetes
 * ClusterIP and port) and the backends behind each, read from a profile's `services:` file or its
 * `service:` lines, one service per line:
 *
 *   tcp 10.96.0.10:80 -> 10.88.2.2:8080 10.88.2.3:8080
 *   udp [fd00:96::53]:53 -> [fd00:88:2::2]:5353 affinity 3h
 *   tcp 10.96.0.20:443 ->                       (no endpoints: its packets are rejected)
 *
 * `affinity T` is Kubernetes' sessionAffinity: ClientIP with timeoutSeconds T (kube-proxy's
 * `-m recent --rcheck --seconds T`): a new connection from a client that connected to the service
 * less than T ago goes to the same backend.
 *
 * A backend is chosen per connection by a seeded hash of its tuple, so a replay is deterministic
 * and one connection always meets one backend, while connections spread evenly (kube-proxy picks
 * at random with `-m statistic --mode random`; Calico's BPF and Cilium hash or use Maglev).
 *
 * The table also steers worker sharding (shardHash): after DNAT a reply carries backend -> client
 * and no longer hashes like client -> VIP, so every packet to or from a service endpoint is sharded
 * by the client's address alone, which both directions share. Affinity state is per client address,
 * so that keeps it in one worker too.
 */
import { parseIPv4, parseIPv6 } from '../packet/cidr.js';
import { ipToString } from '../packet/format.js';
import { fmix, symHash } from '../packet/hash.js';
import type { Batch } from '../packet/batch.js';
import { Frag } from '../packet/batch.js';
import { readListFile } from '../pipeline/listfile.js';
import { parseDuration, ProfileError, profileErrors, type Section } from '../pipeline/profile.js';

export interface Endpoint {
  family: 4 | 6;
  /** The address as four host-order words (IPv4 in word 0, the rest 0), as the batch holds it. */
  words: Uint32Array;
  port: number;
}

export interface Service {
  proto: number;
  vip: Endpoint;
  backends: Endpoint[];
  /** Client-IP affinity timeout in seconds; 0: none. */
  affinity: number;
  /** Where it was written, for reports. */
  where: string;
}

const PROTOS: Record<string, number> = { tcp: 6, udp: 17 };

/** "10.96.0.10:80" or "[fd00::10]:80". */
function parseEndpoint(text: string): Endpoint | string {
  let addr: string;
  let port: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return `"${text}" is not [IPv6]:port`;
    addr = text.slice(1, close);
    port = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `"${text}" has no port (write ADDRESS:PORT, IPv6 as [ADDRESS]:PORT)`;
    addr = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (addr.includes(':')) return `"${text}": write an IPv6 endpoint as [ADDRESS]:PORT`;
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return `"${port}" in "${text}" is not a port (1-65535)`;
  const v4 = parseIPv4(addr);
  if (v4 !== null) return { family: 4, words: Uint32Array.of(v4, 0, 0, 0), port: Number(port) };
  const v6 = parseIPv6(addr);
  if (v6 !== null) return { family: 6, words: Uint32Array.from(v6), port: Number(port) };
  return `"${addr}" is not an IPv4 or IPv6 address`;
}

/** One service line; a string is what is wrong with it. */
export function parseService(text: string): Omit<Service, 'where'> | string {
  const arrow = text.indexOf('->');
  if (arrow < 0) return 'expected "PROTO VIP:PORT -> BACKEND:PORT ..." (e.g. tcp 10.96.0.10:80 -> 10.88.2.2:8080)';
  const left = text.slice(0, arrow).trim().split(/\s+/);
  const right = text.slice(arrow + 2).trim().split(/\s+/).filter((w) => w !== '');
  if (left.length !== 2) return `expected "PROTO VIP:PORT" before "->", found "${text.slice(0, arrow).trim()}"`;
  const proto = PROTOS[left[0]!.toLowerCase()];
  if (proto === undefined) return `"${left[0]}" is not a service protocol (tcp or udp)`;
  const vip = parseEndpoint(left[1]!);
  if (typeof vip === 'string') return vip;
  let affinity = 0;
  const at = right.indexOf('affinity');
  if (at >= 0) {
    if (at !== right.length - 2) return 'write "affinity TIMEOUT" (e.g. affinity 3h) after the backends';
    const t = parseDuration(right[at + 1]!);
    if (t === null || t <= 0) return `"${right[at + 1]}" is not a duration (e.g. 10800s, 3h)`;
    affinity = t;
    right.splice(at, 2);
  }
  const backends: Endpoint[] = [];
  for (const w of right) {
    const b = parseEndpoint(w);
    if (typeof b === 'string') return b;
    if (b.family !== vip.family) return `backend ${w} is IPv${b.family} but the service address is IPv${vip.family} (no NAT64 here)`;
    backends.push(b);
  }
  if (backends.length > 65535) return 'more than 65535 backends';
  return { proto, vip, backends, affinity };
}

export function endpointToString(p: Endpoint): string {
  const a = ipToString(p.family, p.words, 0);
  return p.family === 6 ? `[${a}]:${p.port}` : `${a}:${p.port}`;
}

// Map rows: famproto, port, addr x4, value. Value: VIP -> service index + 1; backend only -> 0.
const ROW = 7;
const KIND_VIP = 1;
const KIND_BACKEND = 2;

/**
 * Service filters by what they let through ("port/fold" of every endpoint): read-only once built,
 * so tables over the same endpoints (every pipeline of a compare) share one. A few at most.
 */
const FILTERS = new Map<string, { ports: Uint8Array; addrs: Uint8Array }>();

export class ServiceTable {
  readonly services: Service[];
  /** Every service's backends in one array: a binding names backend k of the table. */
  readonly backends: Endpoint[] = [];
  /** Per backend k: its service. Per service: the index of its first backend. */
  readonly backendService: Int32Array;
  readonly firstBackend: Int32Array;
  private readonly rows: Uint32Array;
  private readonly kind: Uint8Array;
  private readonly mask: number;
  private readonly seed: number;
  /**
   * A filter in front of the table: ports[port] and addrs[fold(address)] are 1 when some endpoint
   * has that port / an address that folds to that value. Most packets are to or from no service,
   * and two byte loads turn them away where the hashed probe cost ~20 ns (it ran twice per packet
   * for every packet in every worker: 12% of a worker's time, bench/workers.js profile).
   * Tables over the same ports and folded addresses share one filter (FILTERS): 128 KB of first
   * writes per table, a page fault per 4 KB, was ~0.3 ms for each of the dozens compare builds.
   */
  private readonly ports: Uint8Array;
  private readonly addrs: Uint8Array;

  constructor(services: Service[], seed = 0) {
    this.services = services;
    this.seed = fmix(seed ^ 0x5bd1e995);
    for (const s of services) this.backends.push(...s.backends);
    const endpoints = [...services.map((s) => s.vip), ...this.backends];
    const key = [...new Set(endpoints.map((p) => `${p.port}/${ServiceTable.fold(p.words, 0)}`))].sort().join(',');
    let filter = FILTERS.get(key);
    if (!filter) {
      filter = { ports: new Uint8Array(65536), addrs: new Uint8Array(65536) };
      for (const p of endpoints) { filter.ports[p.port] = 1; filter.addrs[ServiceTable.fold(p.words, 0)] = 1; }
      if (FILTERS.size >= 16) FILTERS.clear();
      FILTERS.set(key, filter);
    }
    this.ports = filter.ports;
    this.addrs = filter.addrs;
    this.backendService = new Int32Array(this.backends.length);
    this.firstBackend = new Int32Array(services.length);
    let k = 0;
    services.forEach((s, n) => {
      this.firstBackend[n] = k;
      for (let j = 0; j < s.backends.length; j++) this.backendService[k++] = n;
    });
    let slots = 16;
    while (slots < (services.length + this.backends.length) * 2) slots <<= 1;
    this.rows = new Uint32Array(slots * ROW);
    this.kind = new Uint8Array(slots);
    this.mask = slots - 1;
    services.forEach((s, n) => {
      this.add(s.proto, s.vip, KIND_VIP, n + 1);
      for (const b of s.backends) this.add(s.proto, b, KIND_BACKEND, 0);
    });
  }

  private static slotHash(famproto: number, A: Uint32Array, ao: number, port: number): number {
    return fmix(Math.imul(famproto + 1, 0x9e3779b1) ^ A[ao]! ^ fmix(A[ao + 1]! ^ A[ao + 2]! ^ A[ao + 3]!) ^ Math.imul(port + 1, 0x85ebca77));
  }

  private static fold(A: Uint32Array, ao: number): number {
    const x = A[ao]! ^ A[ao + 1]! ^ A[ao + 2]! ^ A[ao + 3]!;
    return (x ^ (x >>> 16)) & 0xffff;
  }

  private add(proto: number, p: Endpoint, kind: number, value: number): void {
    const fp = p.family | (proto << 8);
    const mask = this.mask;
    for (let s = ServiceTable.slotHash(fp, p.words, 0, p.port) & mask; ; s = (s + 1) & mask) {
      const r = s * ROW;
      if (this.kind[s] === 0) {
        this.rows[r] = fp; this.rows[r + 1] = p.port;
        this.rows.set(p.words, r + 2);
        this.rows[r + 6] = value;
        this.kind[s] = kind;
        return;
      }
      if (this.rows[r] === fp && this.rows[r + 1] === p.port && this.rows[r + 2] === p.words[0] && this.rows[r + 3] === p.words[1]
        && this.rows[r + 4] === p.words[2] && this.rows[r + 5] === p.words[3]) {
        // A VIP listed twice is caught by the parser; an address that is a VIP and a backend is both.
        this.kind[s] |= kind;
        if (kind === KIND_VIP) this.rows[r + 6] = value;
        return;
      }
    }
  }

  /** The slot of an endpoint, or -1. */
  private slot(family: number, proto: number, A: Uint32Array, ao: number, port: number): number {
    if (this.ports[port] === 0 || this.addrs[ServiceTable.fold(A, ao)] === 0) return -1;
    const fp = family | (proto << 8);
    const mask = this.mask;
    const rows = this.rows;
    for (let s = ServiceTable.slotHash(fp, A, ao, port) & mask; ; s = (s + 1) & mask) {
      if (this.kind[s] === 0) return -1;
      const r = s * ROW;
      if (rows[r] === fp && rows[r + 1] === port && rows[r + 2] === A[ao] && rows[r + 3] === A[ao + 1]
        && rows[r + 4] === A[ao + 2] && rows[r + 5] === A[ao + 3]) return s;
    }
  }

  /** The service whose virtual address is (A[ao..], port), or -1. */
  vip(family: number, proto: number, A: Uint32Array, ao: number, port: number): number {
    const s = this.slot(family, proto, A, ao, port);
    return s >= 0 && (this.kind[s]! & KIND_VIP) !== 0 ? this.rows[s * ROW + 6]! - 1 : -1;
  }

  /** True when (A[ao..], port) is a service's address or one of its backends. */
  isEndpoint(family: number, proto: number, A: Uint32Array, ao: number, port: number): boolean {
    return this.slot(family, proto, A, ao, port) >= 0;
  }

  /** A backend (index into `backends`) for a connection of service `svc` whose tuple hashes to h. */
  pick(svc: number, h: number): number {
    const s = this.services[svc]!;
    const first = this.firstBackend[svc]!;
    // Multiply-shift of a remixed hash: uniform over the backends, unrelated to the bits the
    // flow table and the sharder take from the same hash.
    const x = fmix(h ^ this.seed) >>> 0;
    return first + Math.floor((x / 4294967296) * s.backends.length);
  }

  /**
   * The hash a sharder should use for packet i (flow hash h): packets to or from a service
   * endpoint are steered by the other end's address alone, so both directions of a translated flow
   * (client -> VIP, backend -> client) and all of a client's connections (its affinity) meet in one
   * worker. An ICMP error goes by the packet it quotes. Others keep h. As int32 (h comes as one).
   */
  shardHash(b: Batch, i: number, sport: number, dport: number, h: number): number {
    if (this.services.length === 0) return h;
    const w = i << 2;
    const family = b.family[i]!;
    let proto = b.proto[i]!;
    let S = b.src; let D = b.dst;
    if (b.inProto[i] !== 0 && (proto === 1 || proto === 58)) {
      proto = b.inProto[i]!; S = b.inSrc; D = b.inDst; sport = b.inSport[i]!; dport = b.inDport[i]!;
    } else if (b.frag[i] === Frag.LATER && sport === 0 && dport === 0) {
      return h;
    }
    if (proto !== 6 && proto !== 17) return h;
    const ds = this.slot(family, proto, D, w, dport);
    const ss = this.slot(family, proto, S, w, sport);
    if (ds < 0 && ss < 0) return h;
    // The client is the end that is not a service endpoint; when both are, the one that is not a VIP.
    const clientIsSrc = ss < 0 || (ds >= 0 && (this.kind[ds]! & KIND_VIP) !== 0);
    const A = clientIsSrc ? S : D;
    return symHash(proto, A, w, A, w, 0, 0) | 0;
  }
}

/**
 * The services of a stage's section: `services: FILE` (repeatable) and `service: LINE`
 * (repeatable), errors naming the file and line. A VIP given twice is an error.
 */
export function readServices(section: Section): ServiceTable {
  const out: Service[] = [];
  const errors: ProfileError[] = [];
  const seen = new Map<string, string>();
  const take = (text: string, file: string, line: number, shown: string): void => {
    const r = parseService(text);
    if (typeof r === 'string') { errors.push(new ProfileError(file, line, `[${section.name}] service: ${r}`)); return; }
    const key = `${r.proto}/${endpointToString(r.vip)}`;
    const where = `${shown}:${line}`;
    const before = seen.get(key);
    if (before) { errors.push(new ProfileError(file, line, `[${section.name}] service ${endpointToString(r.vip)} is already defined at ${before}`)); return; }
    seen.set(key, where);
    out.push({ ...r, where });
  };
  for (const e of section.all('services')) {
    const list = readListFile(section, e);
    for (const l of list.lines) take(l.text, list.shown, l.line, list.shown);
  }
  for (const e of section.all('service')) take(e.value, e.file, e.line, e.file);
  if (errors.length > 0) throw profileErrors(errors, section.file);
  const seed = section.integer('seed', 0, 0, 0xffffffff);
  return new ServiceTable(out, seed);
}

/** Flows per backend for a report (summed across workers; the text report shortens long records). */
export function perBackendReport(table: ServiceTable, counts: Float64Array): { [k: string]: number } {
  const out: { [k: string]: number } = {};
  table.backends.forEach((be, k) => { if (counts[k]! > 0) out[endpointToString(be)] = counts[k]!; });
  return out;
}
