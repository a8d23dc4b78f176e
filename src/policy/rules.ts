/**
 * Policy rules, iptables-style:
 *
 *   ACTION [PROTO] [from CIDR[,CIDR...]] [to CIDR[,CIDR...]] [sport PORTS] [port PORTS]
 *
 *   drop tcp from 198.51.100.0/24 to any port 23
 *   accept udp to 10.1.0.0/16 port 53
 *   accept tcp port 80,443,8000-8080
 *   accept icmp
 *
 * ACTION is accept or drop; PROTO is tcp, udp, udplite, icmp, icmpv6, sctp, any or a number 0..255 (default
 * any); CIDR is a prefix, a host or "any" (see packet/cidr.ts: 0.0.0.0/0 means every IPv4 address,
 * "any" every address of either family); PORTS is a list of ports and ranges; `port` is the
 * destination port, `sport` the source port. The clauses after the protocol may come in any order.
 *
 * Semantics, as iptables:
 *   - the first rule that matches decides; when none does, the rule set's default action does;
 *   - a rule holds one family when a CIDR names one (from 10.0.0.0/8 matches IPv4 packets only);
 *   - a port condition never matches a packet without ports: protocols other than TCP, UDP and
 *     SCTP, and IP fragments after the first (they carry no L4 header). A rule with ports and no
 *     protocol matches TCP, UDP, UDP-Lite and SCTP alike (iptables would want `-p`; here it is spelled out);
 *   - `from a,b` expands into one entry per address, as `iptables -s a,b` adds one rule per
 *     address: the entries keep the rule's number and sit together in order.
 *
 * `RuleTable` is the flattened form the evaluators share: one entry per (from, to) pair, fields in
 * typed arrays. Each evaluator finds the entries whose destination holds the packet its own way,
 * then checks the rest with the one predicate they share, `restMatches`.
 */
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { parseExactPrefix, prefixToString, wordMask, ANY, type Prefix } from '../packet/cidr.js';
import { Proto } from '../packet/decode.js';
import * as decodeModule from '../packet/decode.js';
// The per-packet code reads imports as this module's own consts: V8 reads an imported binding
// through its module cell at every use (src/conntrack/layout.ts).
const { Frag } = batchModule;
const { hasPorts } = decodeModule;

/** What a rule does (never 0: the policy stage's per-flow Decision uses 0 for "none yet"). */
export const Action = { ACCEPT: 1, DROP: 2 } as const;
export type ActionCode = (typeof Action)[keyof typeof Action];
export const ACTION_NAMES: readonly string[] = ['none', 'accept', 'drop'];

const PROTO_WORDS: Record<string, number> = {
  tcp: Proto.TCP, udp: Proto.UDP, udplite: Proto.UDPLITE, icmp: Proto.ICMP, icmpv6: Proto.ICMPV6, sctp: Proto.SCTP, any: -1,
};
const CLAUSES = ['from', 'to', 'sport', 'port'] as const;
type Clause = (typeof CLAUSES)[number];

export interface PortRange {
  lo: number;
  hi: number;
}

export interface Rule {
  /** Position in the rule set as written, from 1. */
  number: number;
  /** The rule's text, as written (spaces collapsed). */
  text: string;
  action: ActionCode;
  /** IP protocol number, -1 for any. */
  proto: number;
  /** Source and destination prefixes (a list means any of them); [ANY] when not given. */
  src: Prefix[];
  dst: Prefix[];
  /** Port conditions (any range matches), null when not given. */
  sport: PortRange[] | null;
  dport: PortRange[] | null;
}

function protoName(p: number): string {
  for (const [name, v] of Object.entries(PROTO_WORDS)) if (v === p) return name;
  return `protocol ${p}`;
}

/**
 * Parse one rule. Throws an Error whose message says what is wrong (and quotes the offending word);
 * callers add the file and line.
 */
export function parseRule(text: string, number = 1): Rule {
  const norm = text.trim().replace(/\s*,\s*/g, ',').replace(/\s+/g, ' ');
  if (norm === '') throw new Error('empty rule (a rule reads like "drop tcp from 198.51.100.0/24 to any port 23")');
  const tok = norm.split(' ');
  let at = 0;
  const word = tok[at++]!;
  const actionWord = word.toLowerCase();
  if (actionWord !== 'accept' && actionWord !== 'drop') {
    throw new Error(`"${word}" is not an action: a rule starts with accept or drop`);
  }
  const rule: Rule = {
    number, text: norm, action: actionWord === 'accept' ? Action.ACCEPT : Action.DROP,
    proto: -1, src: [ANY], dst: [ANY], sport: null, dport: null,
  };
  if (at < tok.length && !isClause(tok[at]!)) rule.proto = parseProto(tok[at++]!);
  const seen = new Set<Clause>();
  while (at < tok.length) {
    const kw = tok[at++]!;
    const clause = kw.toLowerCase();
    if (!isClause(clause)) {
      if (parseProtoOrNull(kw) !== null) {
        throw new Error(`unexpected "${kw}": the protocol comes right after the action ("${actionWord} ${kw} from ...")`);
      }
      throw new Error(`unexpected "${kw}" (expected one of: ${CLAUSES.join(', ')})`);
    }
    if (seen.has(clause)) throw new Error(`"${clause}" is given twice (list several values with commas: ${clause} a,b)`);
    seen.add(clause);
    const value = tok[at++];
    if (value === undefined || isClause(value.toLowerCase())) {
      throw new Error(clause === 'from' || clause === 'to'
        ? `"${clause}" needs an address, a prefix or any (e.g. ${clause} 10.0.0.0/8)`
        : `"${clause}" needs a port, a list or a range (e.g. ${clause} 80,443 or ${clause} 1024-65535)`);
    }
    if (clause === 'from') rule.src = parsePrefixList(value);
    else if (clause === 'to') rule.dst = parsePrefixList(value);
    else if (clause === 'sport') rule.sport = parsePorts(value);
    else rule.dport = parsePorts(value);
  }
  if ((rule.sport || rule.dport) && rule.proto >= 0 && !hasPorts(rule.proto)) {
    throw new Error(`${protoName(rule.proto)} has no ports: "${rule.dport ? 'port' : 'sport'}" needs tcp, udp, udplite, sctp or no protocol`);
  }
  if (!rule.src.some((s) => rule.dst.some((d) => compatible(s, d)))) {
    const s = rule.src.find((p) => p.family !== 0)!;
    const d = rule.dst.find((p) => p.family !== 0)!;
    throw new Error(`from ${prefixToString(s)} is IPv${s.family} but to ${prefixToString(d)} is IPv${d.family}: the rule can never match`);
  }
  return rule;
}

function isClause(w: string): w is Clause {
  return (CLAUSES as readonly string[]).includes(w);
}

function parseProtoOrNull(w: string): number | null {
  const named = PROTO_WORDS[w.toLowerCase()];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(w) && Number(w) <= 255) return Number(w);
  return null;
}

function parseProto(w: string): number {
  const p = parseProtoOrNull(w);
  if (p === null) throw new Error(`"${w}" is not a protocol (tcp, udp, icmp, icmpv6, sctp, any or a number 0..255)`);
  return p;
}

function parsePrefixList(v: string): Prefix[] {
  const items = v.split(',');
  if (items.some((x) => x === '')) throw new Error(`"${v}" has an empty item in its list`);
  return items.map((x) => parseExactPrefix(x));
}

function parsePorts(v: string): PortRange[] {
  const items = v.split(',');
  return items.map((x) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(x);
    if (!m) throw new Error(`"${x}" is not a port or port range (e.g. 80, 80,443 or 1024-65535)`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > 65535 || hi > 65535) throw new Error(`"${x}" is not a port: ports are 0..65535`);
    if (lo > hi) throw new Error(`"${x}" is an empty range (write the low port first: ${hi}-${lo})`);
    return { lo, hi };
  });
}

function compatible(a: Prefix, b: Prefix): boolean {
  return a.family === 0 || b.family === 0 || a.family === b.family;
}

/**
 * The rules flattened for evaluation. Entry k is one (from, to) pair of rule `rule[k]`; entries are
 * in rule order, so the lowest matching entry is the first matching rule. Addresses and masks are
 * int32 words (what `word & mask` yields), four per entry.
 */
export class RuleTable {
  /** Entries (one per (from, to) pair of every rule). */
  readonly count: number;
  /** Index in `rules` of the rule each entry came from. */
  readonly rule: Int32Array;
  readonly action: Uint8Array;
  /** 4 or 6, or 0 when the entry matches both families. */
  readonly family: Uint8Array;
  /** IP protocol, -1 for any. */
  readonly proto: Int16Array;
  readonly src: Int32Array;
  readonly srcMask: Int32Array;
  readonly dst: Int32Array;
  readonly dstMask: Int32Array;
  /** The entry's prefixes, for the set and trie evaluators to index by. */
  readonly srcPrefix: readonly Prefix[];
  readonly dstPrefix: readonly Prefix[];
  /** Port conditions: ranges [at, at + n) of portLo/portHi; n = 0 means no condition. */
  readonly sportAt: Int32Array;
  readonly sportN: Int32Array;
  readonly dportAt: Int32Array;
  readonly dportN: Int32Array;
  readonly portLo: Int32Array;
  readonly portHi: Int32Array;

  constructor(readonly rules: readonly Rule[]) {
    const pairs: { r: number; s: Prefix; d: Prefix }[] = [];
    rules.forEach((rule, r) => {
      for (const s of rule.src) for (const d of rule.dst) if (compatible(s, d)) pairs.push({ r, s, d });
    });
    const n = pairs.length;
    this.count = n;
    this.rule = new Int32Array(n);
    this.action = new Uint8Array(n);
    this.family = new Uint8Array(n);
    this.proto = new Int16Array(n);
    this.src = new Int32Array(4 * n);
    this.srcMask = new Int32Array(4 * n);
    this.dst = new Int32Array(4 * n);
    this.dstMask = new Int32Array(4 * n);
    this.sportAt = new Int32Array(n);
    this.sportN = new Int32Array(n);
    this.dportAt = new Int32Array(n);
    this.dportN = new Int32Array(n);
    const lo: number[] = [];
    const hi: number[] = [];
    // Rules share their port lists across their entries.
    const portsOf = new Map<PortRange[], number>();
    const place = (ranges: PortRange[]): number => {
      let at = portsOf.get(ranges);
      if (at === undefined) {
        at = lo.length;
        for (const x of ranges) { lo.push(x.lo); hi.push(x.hi); }
        portsOf.set(ranges, at);
      }
      return at;
    };
    pairs.forEach(({ r, s, d }, k) => {
      const rule = rules[r]!;
      this.rule[k] = r;
      this.action[k] = rule.action;
      this.family[k] = s.family || d.family;
      this.proto[k] = rule.proto;
      for (let j = 0; j < 4; j++) {
        this.src[4 * k + j] = s.words[j]! | 0;
        this.srcMask[4 * k + j] = wordMask(s.len, j) | 0;
        this.dst[4 * k + j] = d.words[j]! | 0;
        this.dstMask[4 * k + j] = wordMask(d.len, j) | 0;
      }
      if (rule.sport) { this.sportAt[k] = place(rule.sport); this.sportN[k] = rule.sport.length; }
      if (rule.dport) { this.dportAt[k] = place(rule.dport); this.dportN[k] = rule.dport.length; }
    });
    this.srcPrefix = pairs.map((p) => p.s);
    this.dstPrefix = pairs.map((p) => p.d);
    this.portLo = Int32Array.from(lo);
    this.portHi = Int32Array.from(hi);
  }
}

/**
 * Whether packet i matches entry k on everything except the destination address: family,
 * protocol, source prefix, ports. The packet is IP (family 4 or 6).
 */
export function restMatches(t: RuleTable, k: number, b: Batch, i: number): boolean {
  const fam = t.family[k]!;
  if (fam !== 0 && fam !== b.family[i]) return false;
  const proto = b.proto[i]!;
  const want = t.proto[k]!;
  if (want >= 0 && want !== proto) return false;
  const a = b.src;
  const w = i << 2;
  const r = k << 2;
  const m = t.srcMask;
  const p = t.src;
  if ((a[w]! & m[r]!) !== p[r]! || (a[w + 1]! & m[r + 1]!) !== p[r + 1]!
    || (a[w + 2]! & m[r + 2]!) !== p[r + 2]! || (a[w + 3]! & m[r + 3]!) !== p[r + 3]!) return false;
  const sn = t.sportN[k]!;
  const dn = t.dportN[k]!;
  if (sn === 0 && dn === 0) return true;
  if (!hasPorts(proto) || b.frag[i] === Frag.LATER) return false;
  return (sn === 0 || inRanges(t, t.sportAt[k]!, sn, b.sport[i]!))
    && (dn === 0 || inRanges(t, t.dportAt[k]!, dn, b.dport[i]!));
}

function inRanges(t: RuleTable, at: number, n: number, port: number): boolean {
  const lo = t.portLo;
  const hi = t.portHi;
  for (let j = at; j < at + n; j++) if (port >= lo[j]! && port <= hi[j]!) return true;
  return false;
}

/** Parse a rule set (one rule per string); the error of a bad rule names its number. */
export function parseRules(texts: readonly string[]): Rule[] {
  return texts.map((t, k) => {
    try {
      return parseRule(t, k + 1);
    } catch (e) {
      throw new Error(`rule ${k + 1}: ${(e as Error).message}`);
    }
  });
}

/** Short text of a rule for reports and traces: "rule 3 (drop tcp from ... port 23)". */
export function describeRule(rule: Rule): string {
  return `rule ${rule.number} (${rule.text})`;
}
