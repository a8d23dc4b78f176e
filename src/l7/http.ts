/**
 * An incremental HTTP/1.x request parser over a flow's bytes, fed in stream order, shared by the
 * l7 stage's two modes (inline feeds each segment as it passes; proxy feeds the reassembled
 * stream). Its state lives in per-flow columns of conntrack's table; the only heap state is a
 * per-flow buffer (the request's method, target and Host, and a line split across segments),
 * allocated when a flow first needs it and freed when the flow ends.
 *
 * Per byte it does one thing: look for the end of a line in the request head. Bodies
 * (Content-Length, chunk data) are skipped by count, without looking at their bytes; a chunked
 * body costs one short line per chunk. A request is decided when its head ends (the empty line):
 * the rules see method, target and Host. Limits: head bytes (a line or a head larger than
 * `headerBytes`), requests per flow; a method that is not a token within 32 bytes is not HTTP.
 */
import type { FlowTable } from '../conntrack/table.js';
import type { Batch } from '../packet/batch.js';
import { L7Action, type L7Rules } from './rules.js';

/** Drop reasons, in the stage's `reasons` order. */
export const L7Reason = {
  RULE: 0, DEFAULT: 1, DENIED_FLOW: 2, HEADER_TOO_LARGE: 3, NOT_HTTP: 4, TOO_MANY_REQUESTS: 5,
  BUFFER_LIMIT: 6, OUT_OF_ORDER: 7, BAD_FRAMING: 8,
} as const;
export const L7_REASONS = ['rule', 'default', 'denied-flow', 'header-too-large', 'not-http', 'too-many-requests',
  'buffer-limit', 'out-of-order', 'bad-framing'] as const;
/** feed()'s result when every request completed was allowed (or none completed). */
export const OK = -1;

const Phase = { LINE0: 0, HEADERS: 1, BODY: 2, CHUNK_SIZE: 3, CHUNK_DATA: 4, CHUNK_END: 5, TRAILERS: 6 } as const;

const METHOD_MAX = 32;
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) { TCHAR[c] = 1; TCHAR[c + 32] = 1; }

const HOST = new Uint8Array([104, 111, 115, 116]);
const CONTENT_LENGTH = new TextEncoder().encode('content-length');
const TRANSFER_ENCODING = new TextEncoder().encode('transfer-encoding');
const CHUNKED = new TextEncoder().encode('chunked');

const METHODS = ['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
const METHOD_BYTES = METHODS.map((m) => new TextEncoder().encode(m));

/** dst[at...] = src[s, e): a loop, not set(subarray()), which makes a view object per call. */
function copy(dst: Uint8Array, at: number, src: Uint8Array, s: number, e: number): void {
  for (let k = s; k < e; k++) dst[at++] = src[k]!;
}

function nameIs(buf: Uint8Array, s: number, n: number, lower: Uint8Array): boolean {
  if (n !== lower.length) return false;
  // ASCII case folding of letters only (a bare `| 32` would also fold CR (13) into '-' (45)).
  for (let k = 0; k < n; k++) {
    const x = buf[s + k]!;
    if ((x >= 65 && x <= 90 ? x | 32 : x) !== lower[k]) return false;
  }
  return true;
}

/** Bytes allowed in a header field name: tchar (RFC 9110 5.6.2). */
const TOKEN = new Uint8Array(256);
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN[ch.charCodeAt(0)] = 1;

export interface RequestLogEntry { method: string; uri: string; host: string | null; rule: number; action: number; packet: number }

export interface HttpLimits { headerBytes: number; maxRequests: number }

export class HttpEngine {
  phase!: Uint8Array;
  rem!: Float64Array;
  headLen!: Int32Array;
  lineLen!: Int32Array;
  mLen!: Int32Array;
  uLen!: Int32Array;
  /** Host length + 1 (0: no Host header yet). */
  hLen1!: Int32Array;
  /** Content-Length + 1 (0: none). */
  cl1!: Float64Array;
  chunked!: Uint8Array;
  reqs!: Int32Array;
  /** The rule that decided the flow's last request (-1 default), for trace. */
  lastRule!: Int32Array;
  /** Per entry: the request's method, target, Host (saved) and a line carried over (carry). */
  private readonly saved: (Uint8Array | undefined)[] = [];
  private readonly carry: (Uint8Array | undefined)[] = [];

  readonly hits: Float64Array;
  readonly byMethod: Float64Array;
  requests = 0;
  allowed = 0;
  denied = 0;
  bytesInspected = 0;
  bodyBytesSkipped = 0;
  headerLimitHits = 0;
  requestLimitHits = 0;
  notHttp = 0;
  badFraming = 0;
  /** Bytes held in per-flow buffers now, and the most at once (the stage adds reassembly queues). */
  held = 0;
  heldPeak = 0;
  /** Requests completed by the last feed, and the last one's rule. */
  completed = 0;
  decidedRule = -2;
  /** When set (tests, trace), every request completed, as strings. Never set on the hot path. */
  log: ((r: RequestLogEntry) => void) | null = null;

  // The packet being fed (its destination is the request's, for `to`/`port` clauses).
  private b: Batch | null = null;
  private i = 0;
  private dstPortOf = 0;

  constructor(ct: FlowTable, private readonly rules: L7Rules, private readonly defaultAction: number, readonly limits: HttpLimits) {
    ct.column(Uint8Array, 1, (a) => { this.phase = a; });
    ct.column(Float64Array, 1, (a) => { this.rem = a; });
    ct.column(Int32Array, 1, (a) => { this.headLen = a; });
    ct.column(Int32Array, 1, (a) => { this.lineLen = a; });
    ct.column(Int32Array, 1, (a) => { this.mLen = a; });
    ct.column(Int32Array, 1, (a) => { this.uLen = a; });
    ct.column(Int32Array, 1, (a) => { this.hLen1 = a; });
    ct.column(Float64Array, 1, (a) => { this.cl1 = a; });
    ct.column(Uint8Array, 1, (a) => { this.chunked = a; });
    ct.column(Int32Array, 1, (a) => { this.reqs = a; });
    ct.column(Int32Array, 1, (a) => { this.lastRule = a; });
    this.hits = new Float64Array(rules.rules.length + 1);
    this.byMethod = new Float64Array(METHODS.length + 1);
  }

  /** Free the flow's buffers (FlowTable.onEnd). */
  free(e: number): void {
    const s = this.saved[e];
    if (s !== undefined) { this.held -= s.length; this.saved[e] = undefined; this.recycle(s); }
    const c = this.carry[e];
    if (c !== undefined) { this.held -= c.length; this.carry[e] = undefined; this.recycle(c); }
  }

  /** Ended flows' 256-byte buffers, handed to new flows (contents never read before written). */
  private readonly spare: Uint8Array[] = [];
  private recycle(x: Uint8Array): void {
    if (x.length === 256 && this.spare.length < 4096) this.spare.push(x);
  }

  noteHeld(delta: number): void {
    this.held += delta;
    if (this.held > this.heldPeak) this.heldPeak = this.held;
  }

  /** A buffer of at least `need` bytes for entry e in `arr`, keeping its first `keep` bytes. */
  private room(arr: (Uint8Array | undefined)[], e: number, need: number, keep: number): Uint8Array {
    const old = arr[e];
    if (old !== undefined && old.length >= need) return old;
    let size = old !== undefined ? old.length : 256;
    while (size < need) size <<= 1;
    const nb = size === 256 && this.spare.length > 0 ? this.spare.pop()! : new Uint8Array(size);
    if (old !== undefined) { nb.set(old.subarray(0, keep)); this.held -= old.length; }
    arr[e] = nb;
    this.noteHeld(size);
    return nb;
  }

  /**
   * Feed bytes src[a, end) of entry e's request stream, in order, from packet i of b. Returns OK,
   * or the drop reason of the first request denied or the limit hit (the rest is not read).
   */
  feed(e: number, src: Uint8Array, a: number, end: number, b: Batch, i: number, dport: number): number {
    this.b = b;
    this.i = i;
    this.dstPortOf = dport;
    this.completed = 0;
    this.bytesInspected += end - a;
    const phase = this.phase;
    const limit = this.limits.headerBytes;
    let p = a;
    while (p < end) {
      const ph = phase[e]!;
      if (ph === Phase.BODY || ph === Phase.CHUNK_DATA) {
        const r = this.rem[e]!;
        const take = r < end - p ? r : end - p;
        p += take;
        this.bodyBytesSkipped += take;
        this.rem[e] = r - take;
        if (r - take === 0) phase[e] = ph === Phase.BODY ? Phase.LINE0 : Phase.CHUNK_END;
        continue;
      }
      let q = p;
      while (q < end && src[q] !== 10) q++;
      const ll = this.lineLen[e]!;
      const n = q - p;
      if (this.headLen[e]! + ll + n > limit) { this.headerLimitHits++; return L7Reason.HEADER_TOO_LARGE; }
      if (q === end) {
        // No end of line in this segment: carry the partial line over (bounded by the head limit).
        const c = this.room(this.carry, e, ll + n, ll);
        copy(c, ll, src, p, end);
        this.lineLen[e] = ll + n;
        if (ph === Phase.LINE0 && !this.methodSoFarOk(c, ll + n)) { this.notHttp++; return L7Reason.NOT_HTTP; }
        return OK;
      }
      let code: number;
      if (ll === 0) {
        const le = q > p && src[q - 1] === 13 ? q - 1 : q;
        code = this.line(e, src, p, le, n + 1);
      } else {
        const c = this.room(this.carry, e, ll + n, ll);
        copy(c, ll, src, p, q);
        const total = ll + n;
        this.lineLen[e] = 0;
        code = this.line(e, c, 0, total > 0 && c[total - 1] === 13 ? total - 1 : total, total + 1);
      }
      if (code !== OK) return code;
      p = q + 1;
    }
    return OK;
  }

  /** A request line still arriving: its method so far is a short token. */
  private methodSoFarOk(c: Uint8Array, n: number): boolean {
    let k = 0;
    // Empty lines (CRLF) between requests are allowed.
    while (k < n && (c[k] === 13)) k++;
    const s = k;
    for (; k < n; k++) {
      const x = c[k]!;
      if (x === 32) return k > s;
      if (TCHAR[x] === 0) return false;
      if (k - s >= METHOD_MAX) return false;
    }
    return true;
  }

  private line(e: number, buf: Uint8Array, s: number, le: number, size: number): number {
    const ph = this.phase[e]!;
    switch (ph) {
      case Phase.LINE0: {
        if (le === s) return OK; // empty lines before a request are ignored (RFC 9112 2.2)
        if (this.reqs[e]! >= this.limits.maxRequests) { this.requestLimitHits++; return L7Reason.TOO_MANY_REQUESTS; }
        let k = s;
        while (k < le && buf[k] !== 32) {
          if (TCHAR[buf[k]!] === 0 || k - s >= METHOD_MAX) { this.notHttp++; return L7Reason.NOT_HTTP; }
          k++;
        }
        if (k === s || k === le) { this.notHttp++; return L7Reason.NOT_HTTP; }
        const m = k - s;
        const u0 = k + 1;
        let u1 = u0;
        while (u1 < le && buf[u1] !== 32) u1++;
        const ul = u1 - u0;
        const sv = this.room(this.saved, e, m + ul, 0);
        copy(sv, 0, buf, s, k);
        copy(sv, m, buf, u0, u1);
        this.mLen[e] = m;
        this.uLen[e] = ul;
        this.hLen1[e] = 0;
        this.cl1[e] = 0;
        this.chunked[e] = 0;
        this.headLen[e] = size;
        this.phase[e] = Phase.HEADERS;
        return OK;
      }
      case Phase.HEADERS: {
        this.headLen[e] += size;
        if (le === s) return this.complete(e);
        let c = s;
        while (c < le && buf[c] !== 58) c++;
        if (c === le) return OK; // not a header field; tolerated, as most parsers do for obs-fold
        // A field name is a token (RFC 9110 5.1): llhttp, Node's parser, rejects anything else
        // (HPE_INVALID_HEADER_TOKEN). Accepting "Content\rLength" as Content-Length would skip a
        // smuggled request as a body.
        for (let k = s; k < c; k++) if (TOKEN[buf[k]!] === 0) { this.badFraming++; return L7Reason.BAD_FRAMING; }
        const nl = c - s;
        let v0 = c + 1;
        while (v0 < le && (buf[v0] === 32 || buf[v0] === 9)) v0++;
        let v1 = le;
        while (v1 > v0 && (buf[v1 - 1] === 32 || buf[v1 - 1] === 9)) v1--;
        if (nl === 4 && nameIs(buf, s, 4, HOST)) {
          if (this.hLen1[e] === 0) {
            const at = this.mLen[e]! + this.uLen[e]!;
            const sv = this.room(this.saved, e, at + v1 - v0, at);
            copy(sv, at, buf, v0, v1);
            this.hLen1[e] = v1 - v0 + 1;
          }
        } else if (nl === 14 && nameIs(buf, s, 14, CONTENT_LENGTH)) {
          let v = 0;
          if (v1 === v0 || v1 - v0 > 15) { this.badFraming++; return L7Reason.BAD_FRAMING; }
          for (let k = v0; k < v1; k++) {
            const d = buf[k]! - 48;
            if (d < 0 || d > 9) { this.badFraming++; return L7Reason.BAD_FRAMING; }
            v = v * 10 + d;
          }
          this.cl1[e] = v + 1;
        } else if (nl === 17 && nameIs(buf, s, 17, TRANSFER_ENCODING)) {
          for (let k = v0; k + 7 <= v1; k++) if (nameIs(buf, k, 7, CHUNKED)) { this.chunked[e] = 1; break; }
        }
        return OK;
      }
      case Phase.CHUNK_SIZE: {
        let v = 0;
        let k = s;
        for (; k < le; k++) {
          const x = buf[k]!;
          const d = x >= 48 && x <= 57 ? x - 48 : (x | 32) >= 97 && (x | 32) <= 102 ? (x | 32) - 87 : -1;
          if (d < 0) break;
          if (k - s >= 12) { this.badFraming++; return L7Reason.BAD_FRAMING; }
          v = v * 16 + d;
        }
        if (k === s) { this.badFraming++; return L7Reason.BAD_FRAMING; }
        this.headLen[e] = 0;
        if (v === 0) { this.phase[e] = Phase.TRAILERS; return OK; }
        this.rem[e] = v;
        this.phase[e] = Phase.CHUNK_DATA;
        return OK;
      }
      case Phase.CHUNK_END:
        if (le !== s) { this.badFraming++; return L7Reason.BAD_FRAMING; }
        this.phase[e] = Phase.CHUNK_SIZE;
        return OK;
      default: // TRAILERS
        this.headLen[e] += size;
        if (le === s) { this.phase[e] = Phase.LINE0; this.headLen[e] = 0; }
        return OK;
    }
  }

  /** The head of a request ended: decide it, then skip its body. */
  private complete(e: number): number {
    const sv = this.saved[e]!;
    const m = this.mLen[e]!;
    const u = this.uLen[e]!;
    const h = this.hLen1[e]! - 1;
    const b = this.b!;
    const i = this.i;
    const k = this.rules.match(sv, m, u, h, b.family[i]!, b.dst, i << 2, this.dstPortOf);
    const action = k < 0 ? this.defaultAction : this.rules.rules[k]!.action;
    this.hits[k + 1]++;
    this.requests++;
    this.completed++;
    this.decidedRule = k;
    this.lastRule[e] = k;
    this.reqs[e]++;
    let mi = METHODS.length;
    for (let x = 0; x < METHOD_BYTES.length; x++) {
      const mb = METHOD_BYTES[x]!;
      if (mb.length !== m) continue;
      let same = true;
      for (let y = 0; y < m; y++) if (sv[y] !== mb[y]) { same = false; break; }
      if (same) { mi = x; break; }
    }
    this.byMethod[mi]++;
    if (this.log !== null) {
      const dec = new TextDecoder('latin1');
      this.log({
        method: dec.decode(sv.subarray(0, m)), uri: dec.decode(sv.subarray(m, m + u)),
        host: h >= 0 ? dec.decode(sv.subarray(m + u, m + u + h)) : null, rule: k, action, packet: b.num[i]!,
      });
    }
    this.headLen[e] = 0;
    if (action === L7Action.DENY) {
      this.denied++;
      return k < 0 ? L7Reason.DEFAULT : L7Reason.RULE;
    }
    this.allowed++;
    if (this.chunked[e] !== 0) this.phase[e] = Phase.CHUNK_SIZE;
    else if (this.cl1[e]! > 1) { this.rem[e] = this.cl1[e]! - 1; this.phase[e] = Phase.BODY; }
    else this.phase[e] = Phase.LINE0;
    return OK;
  }

  /** The flow's last request head as text (trace only): method, target and Host. */
  lastRequest(e: number): string {
    const sv = this.saved[e];
    if (sv === undefined) return '?';
    const dec = new TextDecoder('latin1');
    const m = this.mLen[e]!;
    const u = this.uLen[e]!;
    const h = this.hLen1[e]! - 1;
    const uri = dec.decode(sv.subarray(m, m + u));
    return `${dec.decode(sv.subarray(0, m))} ${uri.length > 80 ? `${uri.slice(0, 77)}...` : uri}${h >= 0 ? ` Host: ${dec.decode(sv.subarray(m + u, m + u + h))}` : ' (no Host)'}`;
  }

  methodReport(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let x = 0; x <= METHODS.length; x++) if (this.byMethod[x]! > 0) out[x < METHODS.length ? METHODS[x]! : 'other'] = this.byMethod[x]!;
    return out;
  }
}
