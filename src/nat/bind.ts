/**
 * What the stages that translate inside conntrack's entries (dnat, vfp) share: binding a new flow
 * to a backend as conntrack creates its entry (service lookup, affinity, the hashed choice, the
 * reply tuple linked), the backends as typed arrays for the per-packet rewrite, and the ICMP error
 * translation.
 */
import type { FlowTable } from '../conntrack/table.js';
import type { Batch } from '../packet/batch.js';
import { symHash } from '../packet/hash.js';
import { End, setIpv4Address, setIpv6Address, setQuotedEndpoint } from '../packet/wire.js';
import { Affinity } from './affinity.js';
import type { ServiceTable } from './services.js';

/** bind()'s answers besides a backend number (>= 0). */
export const Bound = { NOT_SERVICE: -1, NO_ENDPOINTS: -2, CLASH: -3 } as const;

export class Binder {
  readonly affinity: Affinity;
  /** Per backend k: its address (4 words at 4k) and port, and its service's: the rewrite reads these. */
  readonly beWords: Uint32Array;
  readonly bePort: Uint16Array;
  readonly vipWords: Uint32Array;
  readonly vipPort: Uint16Array;
  affinityHits = 0;

  /** `ct`: the conntrack table whose entries bind() gives reply tuples (null for ctlb, which has its own sockets). */
  constructor(readonly services: ServiceTable, private readonly ct: FlowTable | null) {
    this.affinity = new Affinity(services);
    const nb = services.backends.length;
    this.beWords = new Uint32Array(nb * 4);
    this.bePort = new Uint16Array(nb);
    this.vipWords = new Uint32Array(nb * 4);
    this.vipPort = new Uint16Array(nb);
    services.backends.forEach((be, k) => {
      const vip = services.services[services.backendService[k]!]!.vip;
      this.beWords.set(be.words, k * 4);
      this.bePort[k] = be.port;
      this.vipWords.set(vip.words, k * 4);
      this.vipPort[k] = vip.port;
    });
  }

  /**
   * Packet i just created entry e: if it goes to a service, choose a backend (affinity first,
   * then the hash) and link the reply tuple the backend will answer with (backend:port ->
   * client:sport). Returns the backend, or a Bound code. The flow table's clock is the time.
   */
  bind(b: Batch, i: number, e: number): number {
    const now = this.ct!.clock[0]!;
    const w = i << 2;
    const svc = this.services.vip(b.family[i]!, b.proto[i]!, b.dst, w, b.dport[i]!);
    if (svc < 0) return Bound.NOT_SERVICE;
    const s = this.services.services[svc]!;
    if (s.backends.length === 0) return Bound.NO_ENDPOINTS;
    const k = this.choose(svc, b.src, w, b.hash[i]! | 0, now);
    const be = this.services.backends[k]!;
    const proto = b.proto[i]!;
    const h = symHash(proto, be.words, 0, b.src, w, be.port, b.sport[i]!);
    // Another flow already owns that tuple (client -> backend directly, on the same ports): the
    // kernel finds no unique tuple for a one-address, one-port DNAT range and drops.
    if (!this.ct!.setReply(e, h, be.words, 0, b.src, w, be.port, b.sport[i]!)) return Bound.CLASH;
    return k;
  }

  /**
   * A backend of service svc (which has some) for a connection from client A[ao..] whose tuple
   * hashes to h: the client's last one if affinity holds it, else the hashed choice; affinity
   * remembers it.
   */
  choose(svc: number, A: Uint32Array, ao: number, h: number, now: number): number {
    const s = this.services.services[svc]!;
    let k = s.affinity > 0 ? this.affinity.find(svc, A, ao, now) : -1;
    if (k >= 0) this.affinityHits++;
    else k = this.services.pick(svc, h);
    if (s.affinity > 0) this.affinity.set(svc, A, ao, k, now);
    return k;
  }

  /**
   * An ICMP error about a flow bound to backend k, travelling in direction d of the flow
   * (nf_nat_icmp_reply_translation): the quoted packet is put back as its sender saw it, and the
   * outer header as the reply to it. Rare: kept out of the per-packet loops.
   */
  icmpError(b: Batch, i: number, k: number, d: number): void {
    const be = this.services.backends[k]!;
    const vip = this.services.services[this.services.backendService[k]!]!.vip;
    if (d === 1) {
      setQuotedEndpoint(b, i, End.DST, vip.words, 0, vip.port);
      setAddress(b, i, End.SRC, vip.words);
    } else {
      setQuotedEndpoint(b, i, End.SRC, be.words, 0, be.port);
      setAddress(b, i, End.DST, be.words);
    }
  }
}

/** The address of one end, whichever the family. */
export function setAddress(b: Batch, i: number, end: number, words: Uint32Array): void {
  if (b.family[i] === 4) setIpv4Address(b, i, end, words[0]!);
  else setIpv6Address(b, i, end, words, 0);
}
