/**
 * ctlb: connect-time load balancing, as Calico's CTLB and Cilium's socket LB do it. A program on
 * the connect() (and sendmsg() for unconnected UDP) hooks picks the backend once, when the socket
 * connects, and rewrites the socket's destination; from then on the application talks to the
 * backend and the dataplane translates nothing: the wire carries backend addresses both ways.
 *
 * A capture holds the application's view (the service address), so this stage re-addresses each
 * packet as the connected socket would have put it on the wire: client -> VIP becomes
 * client -> backend, VIP -> client becomes backend -> client, and an ICMP error about the socket's
 * packets is put as the backend side would see it. That re-addressing is emulation, not dataplane
 * work: reports show this stage apart, outside the dataplane total (`emulation`); what it stands
 * for in a real kernel is one backend choice per connect, counted as `connects`.
 *
 * Sockets are kept in a table of their own (the socket's state, not the dataplane's): a TCP SYN
 * without ACK from the client is a new connect() (the backend is chosen again: a client reusing
 * its port connects anew), and a socket idle for longer than its timeout is gone (a UDP client's
 * next datagram connects again). Put it first in the pipeline: everything after it sees the wire.
 *
 * Config ([ctlb] section):
 *   services: rules/services.txt     service table (see src/nat/services.ts); repeatable
 *   service: tcp 10.96.0.10:80 -> 10.88.2.2:8080     inline, repeatable
 *   seed: 0                          the backend hash's seed
 *   sockets: 256Ki                   sockets the table holds (split over workers)
 *   socket-timeout-tcp: 2h           idle time after which a TCP socket is gone
 *   socket-timeout-udp: 30s          the same for UDP
 */
import { FlowTable } from '../conntrack/table.js';
import * as tableModule from '../conntrack/table.js';
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { FragmentKeys } from '../packet/fragments.js';
import { End, setEndpoint, setQuotedEndpoint } from '../packet/wire.js';
import { endpointToString, perBackendReport, readServices, type ServiceTable } from '../nat/services.js';
import type { Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
import { Binder, setAddress } from '../nat/bind.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Destroy, RF_EXPIRES, RF_LAST, RF_SHIFT } = tableModule;
const { Frag, Verdict } = batchModule;

const How = { NOT_SEEN: 0, NOT_SERVICE: 1, CONNECT: 2, SOCKET: 3, ICMP: 4, FRAGMENT: 5 } as const;
const TCP_SYN = 0x02;
const FRAG_SLOTS = 1 << 12;
const TCP_ACK = 0x10;

export class CtlbStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['no-endpoints'];
  readonly rewrites = true;
  readonly emulation = true;
  readonly services: ServiceTable;
  readonly steering: ServiceTable;
  private readonly sockets: FlowTable;
  /** Per socket: backend k + 1. */
  private backend!: Int32Array;
  /** The backend choice (affinity, hash) and the backends as typed arrays, shared with dnat and vfp. */
  private readonly binder: Binder;
  private readonly timeoutTcp: number;
  private readonly timeoutUdp: number;
  private readonly capacity: number;

  private connectsTcp = 0;
  private connectsUdp = 0;
  private readonly perBackend: Float64Array;
  /** First fragments of datagrams to or from a service: their later fragments follow (no ports). */
  private readonly frags = new FragmentKeys(FRAG_SLOTS);
  /**
   * Per slot of `frags`: the first fragment's backend + 1 (0: none) and direction. Allocated with
   * the first fragment, as the keys are (and as conntrack's are): most captures have none, and
   * 320 KB zeroed for nothing in every ctlb (compare builds many) was memory first written for
   * nothing, a page fault a 4 KB.
   */
  private fragBackend = new Int32Array(0);
  private fragDir = new Uint8Array(0);
  private readdressedOriginal = 0;
  private readdressedReply = 0;
  private icmp = 0;
  private fragments = 0;
  private noEndpoints = 0;
  private socketsEvicted = 0;
  private how = new Uint8Array(0);
  private which = new Int32Array(0);

  constructor(section: Section, ctx: StageContext) {
    this.name = section.name;
    this.services = readServices(section);
    this.steering = this.services;
    this.capacity = section.integer('sockets', 256 * 1024, 1, 1 << 24);
    this.timeoutTcp = section.seconds('socket-timeout-tcp', 7200);
    this.timeoutUdp = section.seconds('socket-timeout-udp', 30);
    this.sockets = new FlowTable(Math.ceil(this.capacity / ctx.shards));
    this.sockets.column(Int32Array, 1, (a) => { this.backend = a; });
    this.perBackend = new Float64Array(this.services.backends.length);
    this.binder = new Binder(this.services, null);
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) { this.how = new Uint8Array(b.capacity); this.which = new Int32Array(b.capacity); }
    const how = this.how;
    const which = this.which;
    const n = b.count;
    const svcs = this.services;
    const { beWords, bePort } = this.binder;
    for (let i = 0; i < n; i++) {
      // NOT_SEEN only where it stays: every path below gives a packet it sees its own answer.
      if (b.verdict[i] !== Verdict.PASS) { how[i] = How.NOT_SEEN; continue; }
      const fam = b.family[i]!;
      if (fam === 0) { how[i] = How.NOT_SEEN; continue; }
      const p = b.proto[i]!;
      const w = i << 2;
      how[i] = How.NOT_SERVICE;
      if (p === 1 || p === 58) {
        if (b.inProto[i] === 6 || b.inProto[i] === 17) this.icmpError(b, i);
        continue;
      }
      if (p !== 6 && p !== 17) continue;
      if (b.frag[i] === Frag.LATER) { this.laterFragment(b, i); continue; }
      const sp = b.sport[i]!;
      const dp = b.dport[i]!;
      // The socket's own packet (client -> VIP) or the service's answer (VIP -> client).
      let dir: number;
      let svc = svcs.vip(fam, p, b.dst, w, dp);
      if (svc >= 0) dir = 0;
      else {
        svc = svcs.vip(fam, p, b.src, w, sp);
        if (svc < 0) continue;
        dir = 1;
      }
      const k = this.socket(b, i, svc, dir, self);
      if (k < 0) continue;
      if (b.frag[i] === Frag.FIRST) {
        // Keyed by the addresses as they arrive, which is how its later fragments will look.
        const f = this.frags.remember(b, i);
        if (this.fragBackend.length === 0) { this.fragBackend = new Int32Array(FRAG_SLOTS); this.fragDir = new Uint8Array(FRAG_SLOTS); }
        this.fragBackend[f] = k + 1;
        this.fragDir[f] = dir;
      }
      if (dir === 0) {
        setEndpoint(b, i, End.DST, beWords, k << 2, bePort[k]!);
        this.readdressedOriginal++;
      } else {
        setEndpoint(b, i, End.SRC, beWords, k << 2, bePort[k]!);
        this.readdressedReply++;
      }
      which[i] = k;
    }
  }

  /**
   * The backend of the socket packet i belongs to (it connects if there is none, or a TCP client
   * sends a SYN), or -1 when the packet was dropped.
   */
  private socket(b: Batch, i: number, svc: number, dir: number, self: number): number {
    // The packet's time read here, not handed in: a double passed to a call V8 does not inline is
    // boxed (a heap number per packet).
    const now = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
    const t = this.sockets;
    const w = i << 2;
    const fam = b.family[i]!;
    const p = b.proto[i]!;
    const h = b.hash[i]! | 0; // int32: a uint32 >= 2^31 is boxed when handed on
    const r = t.find(h, fam, p, b.src, w, b.dst, w, b.sport[i]!, b.dport[i]!);
    let e = r >> 1;
    const reconnect = p === 6 && dir === 0 && (b.tcpFlags[i]! & (TCP_SYN | TCP_ACK)) === TCP_SYN;
    if (r >= 0 && (t.expires(e) < now || reconnect)) { t.remove(e, reconnect ? Destroy.REOPENED : Destroy.TIMEOUT); e = -1; }
    if (r >= 0 && e >= 0) {
      this.how[i] = How.SOCKET;
      this.touch(e, p, now);
      return this.backend[e]! - 1;
    }
    const s = this.services.services[svc]!;
    if (s.backends.length === 0) {
      b.verdict[i] = Verdict.DROP; b.stage[i] = self; b.reason[i] = 0;
      this.noEndpoints++;
      return -1;
    }
    // connect(): the client is the end that is not the service.
    const k = this.binder.choose(svc, dir === 0 ? b.src : b.dst, w, h, now);
    t.clock[0] = now; // for victim and insert
    if (t.full) {
      const v = t.victim(h, 8);
      if (v >= 0) { t.remove(v, Destroy.EVICTED); if (t.expires(v) >= now) this.socketsEvicted++; }
    }
    if (!t.full) {
      e = dir === 0
        ? t.insert(h, fam, p, b.src, w, b.dst, w, b.sport[i]!, b.dport[i]!)
        : t.insert(h, fam, p, b.dst, w, b.src, w, b.dport[i]!, b.sport[i]!);
      this.backend[e] = k + 1;
      this.touch(e, p, now);
    }
    if (p === 6) this.connectsTcp++; else this.connectsUdp++;
    this.perBackend[k]!++;
    this.how[i] = How.CONNECT;
    return k;
  }

  private touch(e: number, p: number, now: number): void {
    const f = e << RF_SHIFT;
    this.sockets.recF[f + RF_LAST] = now;
    this.sockets.recF[f + RF_EXPIRES] = now + (p === 6 ? this.timeoutTcp : this.timeoutUdp);
  }

  /** An ICMP error about a socket's packet: the quote and the outer header as on the backend's side. */
  private icmpError(b: Batch, i: number): void {
    const now = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
    const w = i << 2;
    const t = this.sockets;
    const r = t.find(b.hash[i]! | 0, b.family[i]!, b.inProto[i]!, b.inSrc, w, b.inDst, w, b.inSport[i]!, b.inDport[i]!);
    if (r < 0 || t.expires(r >> 1) < now) return;
    const k = this.backend[r >> 1]! - 1;
    const be = this.services.backends[k]!;
    const vip = this.services.services[this.services.backendService[k]!]!.vip;
    if ((r & 1) === 0) {
      // It quotes the client's packet (client -> VIP): sent back by the service side.
      setQuotedEndpoint(b, i, End.DST, be.words, 0, be.port);
      if (sameAddress(b.src, w, vip.words)) setAddress(b, i, End.SRC, be.words);
    } else {
      // It quotes the service's answer (VIP -> client): the client's error, sent to the service.
      setQuotedEndpoint(b, i, End.SRC, be.words, 0, be.port);
      if (sameAddress(b.dst, w, vip.words)) setAddress(b, i, End.DST, be.words);
    }
    this.icmp++;
    this.how[i] = How.ICMP;
    this.which[i] = k;
  }

  private laterFragment(b: Batch, i: number): void {
    // Looked up before its address changes, by the addresses its first fragment had on arrival.
    const s = this.frags.find(b, i);
    if (s < 0 || this.fragBackend[s] === 0) return;
    const k = this.fragBackend[s]! - 1;
    const be = this.services.backends[k]!;
    setAddress(b, i, this.fragDir[s] === 0 ? End.DST : End.SRC, be.words);
    this.fragments++;
    this.how[i] = How.FRAGMENT;
    this.which[i] = k;
  }

  endBatch(): void {
    this.sockets.release();
  }

  describe(): StageReport {
    return { services: this.services.services.length, backends: this.services.backends.length, socketTable: this.capacity };
  }

  report(): StageReport {
    const byBackend = perBackendReport(this.services, this.perBackend);
    return {
      connects: { tcp: this.connectsTcp, udp: this.connectsUdp },
      connectsByBackend: byBackend,
      ...(this.binder.affinityHits > 0 ? { affinityHits: this.binder.affinityHits } : {}),
      packetsReaddressed: { original: this.readdressedOriginal, reply: this.readdressedReply },
      icmpErrorsReaddressed: this.icmp,
      laterFragmentsReaddressed: this.fragments,
      rejectedNoEndpoints: this.noEndpoints,
      ...(this.socketsEvicted > 0 ? { socketsEvicted: this.socketsEvicted } : {}),
    };
  }

  explain(_b: Batch, i: number): string {
    const h = this.how[i]!;
    if (h === How.NOT_SEEN) return '-';
    if (h === How.NOT_SERVICE) return 'not a service packet';
    const k = this.which[i]!;
    const be = this.services.backends[k]!;
    const vip = this.services.services[this.services.backendService[k]!]!.vip;
    const map = `${endpointToString(vip)} -> ${endpointToString(be)}`;
    if (h === How.ICMP) return `ICMP error re-addressed as the backend side sees it (${map}); emulation`;
    if (h === How.FRAGMENT) return `later fragment re-addressed (${map}); emulation`;
    return `${h === How.CONNECT ? 'connect(): backend chosen' : 'connected socket'}, ${map}; re-addressed as on the wire (emulation, not dataplane cost)`;
  }
}

function sameAddress(A: Uint32Array, ao: number, words: Uint32Array): boolean {
  return A[ao] === words[0] && A[ao + 1] === words[1] && A[ao + 2] === words[2] && A[ao + 3] === words[3];
}

registerStage('ctlb', 'connect-time load balancing (Calico CTLB, Cilium socket LB): backend chosen once per connect; re-addressing shown as emulation',
  (section: Section, ctx: StageContext) => new CtlbStage(section, ctx));
