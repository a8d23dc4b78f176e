/**
 * HTTP/1.x rules for the l7 stage. First match wins, as policy's rules.
 *
 *   ACTION [method M[,M...]] [path P | prefix P] [host H[,H...]] [to CIDR[,CIDR...]] [port PORTS]
 *
 *   deny method DELETE,PUT prefix /admin
 *   allow host example.com,*.example.com
 *   deny to 10.96.0.10 port 80 path /debug
 *
 * ACTION is allow or deny. `method` compares the request method exactly (case matters, as in
 * HTTP). `path` compares the request target's path exactly, `prefix` its start; the path is the
 * target up to `?` (an absolute-form target, http://host/p, is taken from its first `/` after the
 * authority). `host` compares the Host header, case-insensitively, without its `:port`; `*.x`
 * matches any name ending in `.x`. A request without a Host header matches no `host` clause.
 * `to` and `port` are the packet's destination address and port (a service: `to VIP port P`).
 * Clauses come in any order; a rule without clauses matches every request.
 */
import { parseExactPrefix, prefixContains, type Prefix } from '../packet/cidr.js';

export const L7Action = { ALLOW: 1, DENY: 2 } as const;
export type L7ActionCode = (typeof L7Action)[keyof typeof L7Action];
export const L7_ACTION_NAMES: readonly string[] = ['none', 'allow', 'deny'];

export interface L7Rule {
  /** 1-based, in profile order (rule: lines and rules files interleaved). */
  number: number;
  text: string;
  action: L7ActionCode;
  methods: Uint8Array[];
  /** Exact path, or null. */
  path: Uint8Array | null;
  /** Path prefix, or null. */
  prefix: Uint8Array | null;
  /** Host names, lower case; a leading "*." kept as a suffix match on ".x". */
  hosts: { bytes: Uint8Array; suffix: boolean }[];
  to: Prefix[];
  ports: { lo: number; hi: number }[];
}

const enc = new TextEncoder();

export function parsePorts(text: string): { lo: number; hi: number }[] {
  return text.split(',').map((p) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(p.trim());
    if (!m) throw new Error(`"${p}" is not a port or port range`);
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (lo > 65535 || hi > 65535 || hi < lo) throw new Error(`"${p}" is not a port range within 0-65535`);
    return { lo, hi };
  });
}

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function parseL7Rule(text: string, number = 1): L7Rule {
  const words = text.trim().split(/\s+/);
  const act = words.shift();
  if (act !== 'allow' && act !== 'deny') throw new Error(`a rule starts with allow or deny, not "${act ?? ''}"`);
  const rule: L7Rule = { number, text: text.trim(), action: act === 'allow' ? L7Action.ALLOW : L7Action.DENY, methods: [], path: null, prefix: null, hosts: [], to: [], ports: [] };
  const seen = new Set<string>();
  while (words.length > 0) {
    const key = words.shift()!;
    const value = words.shift();
    if (!['method', 'path', 'prefix', 'host', 'to', 'port'].includes(key)) {
      throw new Error(`unknown clause "${key}" (clauses: method, path, prefix, host, to, port)`);
    }
    if (value === undefined) throw new Error(`"${key}" needs a value`);
    if (seen.has(key)) throw new Error(`"${key}" is given twice`);
    seen.add(key);
    switch (key) {
      case 'method':
        for (const m of value.split(',')) {
          if (!TCHAR.test(m)) throw new Error(`"${m}" is not an HTTP method (a token)`);
          rule.methods.push(enc.encode(m));
        }
        break;
      case 'path':
      case 'prefix':
        if (!value.startsWith('/') && value !== '*') throw new Error(`a ${key} starts with "/" ("${value}")`);
        if (key === 'path') rule.path = enc.encode(value); else rule.prefix = enc.encode(value);
        break;
      case 'host':
        for (const h of value.split(',')) {
          if (h === '' || /[\s/]/.test(h)) throw new Error(`"${h}" is not a host name`);
          const suffix = h.startsWith('*.');
          rule.hosts.push({ bytes: enc.encode((suffix ? h.slice(1) : h).toLowerCase()), suffix });
        }
        break;
      case 'to':
        for (const c of value.split(',')) rule.to.push(parseExactPrefix(c));
        break;
      case 'port':
        rule.ports = parsePorts(value);
        break;
    }
  }
  if (rule.path !== null && rule.prefix !== null) throw new Error('a rule takes path or prefix, not both');
  return rule;
}

export function describeL7Rule(r: L7Rule): string {
  return `rule ${r.number} (${r.text})`;
}

/** The path part of a request target at buf[o, o+len): [start, end). */
function pathBounds(buf: Uint8Array, o: number, len: number, out: Int32Array): void {
  let s = o;
  const end = o + len;
  // absolute-form: scheme://authority/path
  if (len > 7 && buf[o] !== 47) {
    for (let k = o; k + 2 < end; k++) {
      if (buf[k] === 58 && buf[k + 1] === 47 && buf[k + 2] === 47) {
        let j = k + 3;
        while (j < end && buf[j] !== 47) j++;
        s = j;
        break;
      }
      if (buf[k] === 47) break;
    }
  }
  let e = s;
  while (e < end && buf[e] !== 63) e++;
  out[0] = s;
  out[1] = e;
}

function eqAt(buf: Uint8Array, o: number, len: number, p: Uint8Array): boolean {
  if (len !== p.length) return false;
  for (let k = 0; k < len; k++) if (buf[o + k] !== p[k]) return false;
  return true;
}

/** buf[o, o+len) starts with p. */
function startsAt(buf: Uint8Array, o: number, len: number, p: Uint8Array): boolean {
  return len >= p.length && eqAt(buf, o, p.length, p);
}

function hostMatches(buf: Uint8Array, o: number, len: number, h: { bytes: Uint8Array; suffix: boolean }): boolean {
  // Drop ":port" (not inside an IPv6 literal's brackets).
  let n = len;
  for (let k = len - 1; k >= 0; k--) {
    const c = buf[o + k]!;
    if (c === 58) { n = k; break; }
    if (c === 93 || c < 48 || c > 57) break;
  }
  const p = h.bytes;
  if (h.suffix ? n < p.length : n !== p.length) return false;
  const at = o + n - p.length;
  for (let k = 0; k < p.length; k++) {
    let c = buf[at + k]!;
    if (c >= 65 && c <= 90) c |= 32;
    if (c !== p[k]) return false;
  }
  return true;
}

/** The compiled rule list: match a request against it (the index of the first matching rule, or -1). */
export class L7Rules {
  private readonly bounds = new Int32Array(2);
  constructor(readonly rules: L7Rule[]) {}

  match(buf: Uint8Array, mLen: number, uLen: number, hLen: number, family: number, dst: Uint32Array, w: number, dport: number): number {
    const rules = this.rules;
    let boundsDone = false;
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!;
      if (rule.ports.length > 0) {
        let ok = false;
        for (const p of rule.ports) if (dport >= p.lo && dport <= p.hi) { ok = true; break; }
        if (!ok) continue;
      }
      if (rule.to.length > 0) {
        let ok = false;
        for (const p of rule.to) if (prefixContains(p, family, dst, w)) { ok = true; break; }
        if (!ok) continue;
      }
      if (rule.methods.length > 0) {
        let ok = false;
        for (const m of rule.methods) if (eqAt(buf, 0, mLen, m)) { ok = true; break; }
        if (!ok) continue;
      }
      if (rule.path !== null || rule.prefix !== null) {
        if (!boundsDone) { pathBounds(buf, mLen, uLen, this.bounds); boundsDone = true; }
        const s = this.bounds[0]!;
        const n = this.bounds[1]! - s;
        if (rule.path !== null ? !eqAt(buf, s, n, rule.path) : !startsAt(buf, s, n, rule.prefix!)) continue;
      }
      if (rule.hosts.length > 0) {
        if (hLen < 0) continue;
        let ok = false;
        for (const h of rule.hosts) if (hostMatches(buf, mLen + uLen, hLen, h)) { ok = true; break; }
        if (!ok) continue;
      }
      return r;
    }
    return -1;
  }
}
