/**
 * l7: HTTP/1.x allow/deny rules (method, path, Host, destination), in one of two modes, the seed
 * article's point:
 *
 *   inline  what an L7 check in the eBPF/XDP path does: every TCP segment of the request direction
 *           is inspected as it passes, in order; the flow keeps a small state (parser phase, the
 *           request's method, target and Host, a line split across segments). A segment beyond the
 *           next expected byte is dropped (`out-of-order`: an inline inspector cannot hold it; the
 *           sender retransmits); bytes already inspected (retransmissions) are not looked at again,
 *           so the first copy wins. Cost: per packet.
 *   proxy   what Envoy does outside the dataplane: the request direction's byte stream is
 *           reassembled (out-of-order segments queued, bounded by `buffer-bytes` per flow), and each
 *           request parsed once, bodies skipped by count. Overlaps: bytes already delivered in
 *           order are never replaced (first wins, as Linux's receive path); among queued segments
 *           the one starting earlier wins. Cost: per request.
 *
 * A request is decided when its head ends; the packet that completes it carries the verdict. A
 * denied request: inline drops that packet; proxy answers 403 (Envoy's RBAC filter; counted as
 * `responses403`, not written into the capture). Either way every later packet of the flow, both
 * directions, is dropped (`denied-flow`). Earlier segments of the request passed (inline) or were
 * held by the proxy; in a replay both show them forwarded.
 *
 * Config ([l7] section):
 *   mode: inline | proxy
 *   ports: 80,8000,8080         TCP destination ports whose flows are HTTP (others pass untouched)
 *   default: allow | deny
 *   rule: deny method DELETE prefix /admin    (repeatable; see src/l7/rules.ts)
 *   rules: FILE                 one rule per line, # comments, relative to the profile
 *   header-bytes: 8192          the most a request head (or one chunk line) may take
 *   buffer-bytes: 65536         proxy: out-of-order bytes queued per flow
 *   max-requests: 1000          requests per flow (keep-alive / pipelining)
 */
import { CtInfo } from '../conntrack/info.js';
import type { FlowTable } from '../conntrack/table.js';
import { Verdict, type Batch } from '../packet/batch.js';
import { HttpEngine, L7_REASONS, L7Reason, OK } from '../l7/http.js';
import { describeL7Rule, L7_ACTION_NAMES, L7Action, L7Rules, parseL7Rule, parsePorts, type L7Rule } from '../l7/rules.js';
import { readListFile } from '../pipeline/listfile.js';
import { ProfileError, type Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
import type { MergeRules } from '../pipeline/merge.js';

/** What the flow is to l7 (per-flow column). */
const Flow = { UNSEEN: 0, REQ_DIR0: 1, REQ_DIR1: 2, IGNORED: 3, DEAD: 4 } as const;

/** What l7 did with a packet of the last batch, for trace. */
const How = {
  NOT_SEEN: 0, NOT_TCP: 1, IGNORED: 2, RESPONSE: 3, NO_PAYLOAD: 4, PARTIAL: 5, DECIDED: 6, DROPPED: 7,
  RETRANSMIT: 8, QUEUED: 9, DEAD: 10,
} as const;

export interface L7Config {
  mode: 'inline' | 'proxy';
  ports: { lo: number; hi: number }[];
  defaultAction: number;
  rules: L7Rule[];
  headerBytes: number;
  bufferBytes: number;
  maxRequests: number;
}

interface Segment { rel: number; data: Uint8Array }

export class L7Stage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = L7_REASONS;
  readonly merge: MergeRules = { bufferedPeakBytes: 'max' };
  readonly engine: HttpEngine;
  private readonly proxy: boolean;
  private readonly rules: L7Rules;
  private readonly portOk: Uint8Array;
  private st!: Uint8Array;
  private next!: Uint32Array;
  private known!: Uint8Array;
  private queued!: Int32Array;
  private readonly ooo: (Segment[] | undefined)[] = [];

  private packetsInspected = 0;
  private responsePackets = 0;
  private ignoredPackets = 0;
  private retransmitted = 0;
  private outOfOrder = 0;
  private bytesReassembled = 0;
  private bufferLimitHits = 0;
  private deniedFlowPackets = 0;
  private responses403 = 0;
  private how = new Uint8Array(0);
  private which = new Int32Array(0);
  private done = new Int32Array(0);

  constructor(private readonly cfg: L7Config, ct: FlowTable, name: string) {
    this.name = name;
    this.proxy = cfg.mode === 'proxy';
    this.rules = new L7Rules(cfg.rules);
    this.portOk = new Uint8Array(65536);
    for (const p of cfg.ports) for (let x = p.lo; x <= p.hi; x++) this.portOk[x] = 1;
    this.engine = new HttpEngine(ct, this.rules, cfg.defaultAction, { headerBytes: cfg.headerBytes, maxRequests: cfg.maxRequests });
    ct.column(Uint8Array, 1, (a) => { this.st = a; });
    ct.column(Uint32Array, 1, (a) => { this.next = a; });
    ct.column(Uint8Array, 1, (a) => { this.known = a; });
    ct.column(Int32Array, 1, (a) => { this.queued = a; });
    ct.onEnd((_t, e) => {
      this.engine.free(e);
      const q = this.ooo[e];
      if (q !== undefined) { this.engine.held -= this.queued[e]!; this.ooo[e] = undefined; }
    });
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) {
      this.how = new Uint8Array(b.capacity);
      this.which = new Int32Array(b.capacity);
      this.done = new Int32Array(b.capacity);
    }
    const how = this.how;
    const n = b.count;
    const { verdict, proto, flow, ctInfo, dir, tcpFlags, seq, pay, l3End, off, capLen, sport, dport, bytes } = b;
    const st = this.st;
    const eng = this.engine;
    for (let i = 0; i < n; i++) {
      how[i] = How.NOT_SEEN;
      if (verdict[i] !== Verdict.PASS) continue;
      const e = flow[i]!;
      if (proto[i] !== 6 || e < 0 || ctInfo[i] === CtInfo.INVALID || ctInfo[i] === CtInfo.UNTRACKED || ctInfo[i] === CtInfo.RELATED) {
        how[i] = How.NOT_TCP;
        continue;
      }
      const d = dir[i]!;
      let s = st[e]!;
      // The flow's original destination port: what feed passes to `port` clauses.
      const origDport = d === 0 ? dport[i]! : sport[i]!;
      if (s === Flow.UNSEEN) {
        // The flow's server side: the end whose port is an HTTP port.
        const origSport = d === 0 ? sport[i]! : dport[i]!;
        s = this.portOk[origDport] === 1 ? Flow.REQ_DIR0 : this.portOk[origSport] === 1 ? Flow.REQ_DIR1 : Flow.IGNORED;
        st[e] = s;
      }
      if (s === Flow.IGNORED) { how[i] = How.IGNORED; this.ignoredPackets++; continue; }
      if (s === Flow.DEAD) {
        verdict[i] = Verdict.DROP; b.stage[i] = self; b.reason[i] = L7Reason.DENIED_FLOW;
        this.deniedFlowPackets++;
        how[i] = How.DEAD;
        continue;
      }
      if (d !== s - 1) { how[i] = How.RESPONSE; this.responsePackets++; continue; }
      this.packetsInspected++;
      if ((tcpFlags[i]! & 0x02) !== 0) {
        this.next[e] = (seq[i]! + 1) >>> 0;
        this.known[e] = 1;
        how[i] = How.NO_PAYLOAD;
        continue;
      }
      const end0 = off[i]! + capLen[i]!;
      const pEnd = l3End[i]! < end0 ? l3End[i]! : end0;
      const p0 = pay[i]!;
      const len = pEnd - p0;
      if (len <= 0) { how[i] = How.NO_PAYLOAD; continue; }
      if (this.known[e] === 0) { this.next[e] = seq[i]!; this.known[e] = 1; }
      const rel = (seq[i]! - this.next[e]!) | 0;
      let code = OK;
      let h: number = How.PARTIAL;
      let completed = 0;
      if (rel > 0) {
        this.outOfOrder++;
        if (!this.proxy) code = L7Reason.OUT_OF_ORDER;
        else {
          code = this.enqueue(e, rel, bytes, p0, pEnd);
          h = How.QUEUED;
        }
      } else if (rel + len <= 0) {
        this.retransmitted++;
        h = How.RETRANSMIT;
      } else {
        const from = p0 - rel;
        code = eng.feed(e, bytes, from, pEnd, b, i, origDport);
        completed = eng.completed;
        this.next[e] = (this.next[e]! + (pEnd - from)) >>> 0;
        if (this.proxy) {
          this.bytesReassembled += pEnd - from;
          this.drained = 0;
          if (code === OK && this.ooo[e] !== undefined) code = this.drain(e, b, i, origDport);
          completed += this.drained;
        }
      }
      this.done[i] = completed;
      if (completed > 0) { h = How.DECIDED; this.which[i] = eng.decidedRule; }
      if (code !== OK) {
        verdict[i] = Verdict.DROP; b.stage[i] = self; b.reason[i] = code;
        if (code === L7Reason.BUFFER_LIMIT) this.bufferLimitHits++;
        // An inline out-of-order segment is dropped alone; anything else ends the flow.
        if (code !== L7Reason.OUT_OF_ORDER) {
          st[e] = Flow.DEAD;
          if (this.proxy && (code === L7Reason.RULE || code === L7Reason.DEFAULT)) this.responses403++;
        }
        h = How.DROPPED;
        this.which[i] = code === L7Reason.RULE || code === L7Reason.DEFAULT ? eng.decidedRule : -2;
      }
      how[i] = h;
    }
  }

  private drained = 0;

  /** Proxy: queue an out-of-order segment (copied), bounded per flow. */
  private enqueue(e: number, rel: number, src: Uint8Array, a: number, end: number): number {
    const len = end - a;
    if (this.queued[e]! + len > this.cfg.bufferBytes) return L7Reason.BUFFER_LIMIT;
    let q = this.ooo[e];
    if (q === undefined) { q = []; this.ooo[e] = q; }
    // An exact duplicate of a queued segment is not queued again (first wins); drain takes them in order.
    const at = (this.next[e]! + rel) >>> 0;
    for (let k = 0; k < q.length; k++) if (q[k]!.rel === at && q[k]!.data.length >= len) { this.retransmitted++; return OK; }
    q.push({ rel: at, data: src.slice(a, end) });
    this.queued[e] += len;
    this.engine.noteHeld(len);
    return OK;
  }

  /** Proxy: feed queued segments that are now in order. */
  private drain(e: number, b: Batch, i: number, dport: number): number {
    this.drained = 0;
    const q = this.ooo[e]!;
    const eng = this.engine;
    while (q.length > 0) {
      // Queue order by offset from the current next byte.
      let best = 0;
      let bestRel = (q[0]!.rel - this.next[e]!) | 0;
      for (let k = 1; k < q.length; k++) {
        const r = (q[k]!.rel - this.next[e]!) | 0;
        if (r < bestRel) { best = k; bestRel = r; }
      }
      if (bestRel > 0) break;
      const seg = q.splice(best, 1)[0]!;
      this.queued[e] -= seg.data.length;
      eng.held -= seg.data.length;
      const len = seg.data.length;
      if (bestRel + len <= 0) continue;
      const from = -bestRel;
      const code = eng.feed(e, seg.data, from, len, b, i, dport);
      this.drained += eng.completed;
      this.next[e] = (this.next[e]! + (len - from)) >>> 0;
      this.bytesReassembled += len - from;
      if (code !== OK) return code;
    }
    if (q.length === 0) this.ooo[e] = undefined;
    return OK;
  }

  report(): StageReport {
    const eng = this.engine;
    const hits: StageReport = {};
    const rules = this.rules.rules;
    for (let r = 0; r < rules.length; r++) if (eng.hits[r + 1]! > 0) hits[`rule ${rules[r]!.number}`] = eng.hits[r + 1]!;
    if (eng.hits[0]! > 0) hits.default = eng.hits[0]!;
    return {
      requestsInspected: eng.requests,
      requestsByMethod: eng.methodReport(),
      allowed: eng.allowed,
      denied: eng.denied,
      hits,
      packetsInspected: this.packetsInspected,
      responsePackets: this.responsePackets,
      otherTcpPackets: this.ignoredPackets,
      bytesInspected: eng.bytesInspected,
      bodyBytesSkipped: eng.bodyBytesSkipped,
      ...(this.proxy ? { bytesReassembled: this.bytesReassembled, responses403: this.responses403 } : {}),
      retransmittedSegments: this.retransmitted,
      outOfOrderSegments: this.outOfOrder,
      deniedFlowPackets: this.deniedFlowPackets,
      bufferedPeakBytes: eng.heldPeak,
      limitsHit: { headerBytes: eng.headerLimitHits, bufferBytes: this.bufferLimitHits, requests: eng.requestLimitHits },
      notHttp: eng.notHttp,
      badFraming: eng.badFraming,
    };
  }

  describe(): StageReport {
    return { proxyMode: this.proxy ? 1 : 0, rules: this.rules.rules.length, headerBytes: this.cfg.headerBytes, bufferBytes: this.cfg.bufferBytes, maxRequests: this.cfg.maxRequests };
  }

  explain(b: Batch, i: number): string {
    const h = i < this.how.length ? this.how[i]! : How.NOT_SEEN;
    const mode = this.proxy ? 'proxy' : 'inline';
    const ruleText = (k: number) => {
      if (k >= 0) { const r = this.rules.rules[k]!; return `${describeL7Rule(r)}: ${L7_ACTION_NAMES[r.action]}`; }
      return `no rule matched: default ${L7_ACTION_NAMES[this.cfg.defaultAction]}`;
    };
    switch (h) {
      case How.NOT_SEEN: return '-';
      case How.NOT_TCP: return 'not a tracked TCP packet: not inspected';
      case How.IGNORED: return 'not an HTTP port: not inspected';
      case How.RESPONSE: return 'response direction: passed';
      case How.NO_PAYLOAD: return 'no payload';
      case How.PARTIAL: return `${mode}: request bytes inspected, no request completed`;
      case How.RETRANSMIT: return `${mode}: retransmission of bytes already inspected (first copy wins)`;
      case How.QUEUED: return 'proxy: out-of-order segment queued for reassembly';
      case How.DEAD: return 'flow closed after a denied request or a limit: dropped';
      case How.DECIDED: return `${mode}: completed ${this.done[i]} request(s); last "${this.engine.lastRequest(b.flow[i]!)}": ${ruleText(this.which[i]!)}`;
      case How.DROPPED: {
        const r = b.reason[i]!;
        if (r === L7Reason.RULE || r === L7Reason.DEFAULT) return `${mode}: request "${this.engine.lastRequest(b.flow[i]!)}" denied, ${ruleText(this.which[i]!)}${this.proxy ? '; proxy answers 403 and closes' : ''}`;
        return `${mode}: ${L7_REASONS[r]}`;
      }
      default: return '-';
    }
  }
}

/** Read and validate the [l7] section; rule errors name the file and line. */
export function l7Config(section: Section): L7Config {
  const mode = section.choice('mode', ['inline', 'proxy'] as const, 'inline');
  const defaultAction = section.choice('default', ['allow', 'deny'] as const, 'allow') === 'deny' ? L7Action.DENY : L7Action.ALLOW;
  const pe = section.get('ports');
  let ports = [{ lo: 80, hi: 80 }, { lo: 8000, hi: 8000 }, { lo: 8080, hi: 8080 }];
  if (pe) {
    try { ports = parsePorts(pe.value); } catch (err) { throw section.error(pe, (err as Error).message); }
  }
  const headerBytes = section.integer('header-bytes', 8192, 64, 1 << 20);
  const bufferBytes = section.integer('buffer-bytes', 65536, 0, 1 << 26);
  const maxRequests = section.integer('max-requests', 1000, 1, 1 << 30);
  section.all('rule');
  section.all('rules');
  const rules: L7Rule[] = [];
  for (const e of section.entries) {
    if (e.key === 'rule') {
      try { rules.push(parseL7Rule(e.value, rules.length + 1)); } catch (err) { throw section.error(e, (err as Error).message); }
    } else if (e.key === 'rules') {
      const file = readListFile(section, e);
      for (const { text, line } of file.lines) {
        try {
          rules.push(parseL7Rule(text, rules.length + 1));
        } catch (err) {
          throw new ProfileError(file.shown, line, `[${section.name}] rule: ${(err as Error).message} (in the rules file of ${e.file}:${e.line})`);
        }
      }
    }
  }
  return { mode, ports, defaultAction, rules, headerBytes, bufferBytes, maxRequests };
}

registerStage('l7', 'HTTP/1.x method/path/Host rules: inline per segment (eBPF-style) or proxy per request (Envoy-style); behind conntrack',
  (section: Section, ctx: StageContext) => {
    if (ctx.conntrack === null) {
      throw section.error(null, 'l7 needs a conntrack stage before it: its per-flow parser state lives in the flow\'s conntrack entry '
        + '(e.g. "pipeline: conntrack -> l7")');
    }
    return new L7Stage(l7Config(section), ctx.conntrack, section.name);
  });
