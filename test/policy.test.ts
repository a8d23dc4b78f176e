import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Batch, Frag } from '../src/packet/batch.js';
import { parsePrefix, prefixContains, prefixToString } from '../src/packet/cidr.js';
import { Proto } from '../src/packet/decode.js';
import { createEvaluator, EVALUATORS, type Evaluator } from '../src/policy/evaluator.js';
import { Lpm } from '../src/policy/lpm.js';
import { parseRule, parseRules, RuleTable, type Rule } from '../src/policy/rules.js';

/** A packet as a test writes it; addresses in text. */
interface Pkt {
  family?: 0 | 4 | 6;
  proto?: number;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  frag?: number;
}

function setAddr(arr: Uint32Array, i: number, text: string): void {
  const p = parsePrefix(text);
  for (let k = 0; k < 4; k++) arr[4 * i + k] = p.words[k]!;
}

/** A real Batch holding the packets' decoded fields (as the decoder would set them). */
function batchOf(pkts: Pkt[]): Batch {
  const b = new Batch(Math.max(1, pkts.length));
  b.count = pkts.length;
  pkts.forEach((p, i) => {
    const family = p.family ?? (p.src?.includes(':') || p.dst?.includes(':') ? 6 : 4);
    b.family[i] = family;
    b.proto[i] = p.proto ?? Proto.TCP;
    if (family !== 0) {
      setAddr(b.src, i, p.src ?? (family === 4 ? '192.0.2.1' : '2001:db8::1'));
      setAddr(b.dst, i, p.dst ?? (family === 4 ? '198.51.100.1' : '2001:db8::2'));
    }
    b.sport[i] = p.sport ?? 40000;
    b.dport[i] = p.dport ?? 80;
    b.frag[i] = p.frag ?? Frag.NONE;
  });
  return b;
}

/** Which rule (number, from 1) each evaluator picks for a packet; 0 when none matches. */
function verdicts(rules: string[], pkt: Pkt): Record<string, number> {
  const t = new RuleTable(parseRules(rules));
  const b = batchOf([pkt]);
  const out: Record<string, number> = {};
  for (const kind of EVALUATORS) {
    const k = createEvaluator(kind, t).match(b, 0);
    out[kind] = k < 0 ? 0 : t.rules[t.rule[k]!]!.number;
  }
  return out;
}

/** The rule number all three evaluators agree on (the test fails if they do not). */
function firstMatch(rules: string[], pkt: Pkt): number {
  const v = verdicts(rules, pkt);
  expect(v.set, 'set agrees with chain').toBe(v.chain);
  expect(v.trie, 'trie agrees with chain').toBe(v.chain);
  return v.chain!;
}

describe('prefixes', () => {
  it('parses IPv4 and IPv6 prefixes, hosts and any', () => {
    expect(parsePrefix('10.0.0.0/8')).toMatchObject({ family: 4, len: 8, words: [0x0a000000, 0, 0, 0] });
    expect(parsePrefix('192.0.2.1')).toMatchObject({ family: 4, len: 32, words: [0xc0000201, 0, 0, 0] });
    expect(parsePrefix('2001:db8::/32')).toMatchObject({ family: 6, len: 32, words: [0x20010db8, 0, 0, 0] });
    expect(parsePrefix('::1')).toMatchObject({ family: 6, len: 128, words: [0, 0, 0, 1] });
    expect(parsePrefix('::ffff:192.0.2.1')).toMatchObject({ family: 6, len: 128, words: [0, 0, 0xffff, 0xc0000201] });
    expect(parsePrefix('any')).toMatchObject({ family: 0, len: 0 });
    expect(parsePrefix('0.0.0.0/0')).toMatchObject({ family: 4, len: 0 });
    expect(parsePrefix('::/0')).toMatchObject({ family: 6, len: 0 });
  });

  it('clears host bits and says so, as iptables does with -s 10.1.2.3/8', () => {
    const p = parsePrefix('10.1.2.3/8');
    expect(prefixToString(p)).toBe('10.0.0.0/8');
    expect(p.normalised).toBe(true);
    expect(parsePrefix('10.0.0.0/8').normalised).toBe(false);
    expect(prefixToString(parsePrefix('2001:db8:1:2::5/33'))).toBe('2001:db8::/33');
  });

  it('prints canonical text', () => {
    for (const t of ['10.0.0.0/8', '192.0.2.1', '2001:db8::/32', '2001:db8::1', '::/0', '0.0.0.0/0', 'any', '1:2:3:4:5:6:7:8']) {
      expect(prefixToString(parsePrefix(t))).toBe(t);
    }
  });

  it.each([
    ['10.0.0.300/8', 'is not an IPv4 or IPv6 prefix'],
    ['10.0.0/8', 'is not an IPv4 or IPv6 prefix'],
    ['010.0.0.1', 'is not an IPv4 or IPv6 prefix'],
    ['2001:db8:::1', 'is not an IPv4 or IPv6 prefix'],
    ['1:2:3:4:5:6:7:8:9', 'is not an IPv4 or IPv6 prefix'],
    ['example.com', 'is not an IPv4 or IPv6 prefix'],
    ['10.0.0.0/33', 'prefix length 33 is longer than an IPv4 address (32 bits)'],
    ['2001:db8::/129', 'prefix length 129 is longer than an IPv6 address (128 bits)'],
    ['10.0.0.0/x', 'the prefix length "x" is not a number of bits'],
  ])('rejects "%s": %s', (text, message) => {
    expect(() => parsePrefix(text)).toThrow(`"${text}"`);
    expect(() => parsePrefix(text)).toThrow(message);
  });

  it('matches addresses of its own family only; "any" matches both', () => {
    const b = batchOf([{ src: '10.9.8.7' }, { src: '2001:db8::7' }]);
    expect(prefixContains(parsePrefix('10.0.0.0/8'), 4, b.src, 0)).toBe(true);
    expect(prefixContains(parsePrefix('10.0.0.0/8'), 6, b.src, 4)).toBe(false);
    expect(prefixContains(parsePrefix('0.0.0.0/0'), 6, b.src, 4)).toBe(false);
    expect(prefixContains(parsePrefix('any'), 6, b.src, 4)).toBe(true);
    expect(prefixContains(parsePrefix('2001:db8::/32'), 6, b.src, 4)).toBe(true);
  });
});

describe('the LPM table', () => {
  it('returns the value of the longest prefix holding an address', () => {
    const lpm = new Lpm(2);
    lpm.set(parsePrefix('10.0.0.0/8'), 1);
    lpm.set(parsePrefix('10.1.0.0/16'), 2);
    lpm.set(parsePrefix('10.1.2.3'), 3);
    lpm.set(parsePrefix('::/0'), 4);
    lpm.set(parsePrefix('2001:db8::/32'), 5);
    const b = batchOf([{ dst: '10.1.2.3' }, { dst: '10.1.9.9' }, { dst: '10.200.0.1' }, { dst: '11.0.0.1' }, { dst: '2001:db8::1' }, { dst: 'fe80::1' }]);
    const got = [0, 1, 2, 3, 4, 5].map((i) => lpm.lookup(b.family[i]!, b.dst, 4 * i));
    expect(got).toEqual([3, 2, 1, -1, 5, 4]);
    expect(lpm.size).toBe(5);
    expect(lpm.get(parsePrefix('10.1.0.0/16'))).toBe(2);
    expect(lpm.get(parsePrefix('10.1.0.0/17'))).toBe(-1);
    const out = new Int32Array(129);
    expect([...out.subarray(0, lpm.matches(4, b.dst, 0, out))]).toEqual([1, 2, 3]);
    expect(lpm.lookup(0, b.dst, 0)).toBe(-1);
  });

  it('replaces the value of a prefix set twice', () => {
    const lpm = new Lpm();
    expect(lpm.set(parsePrefix('10.0.0.0/8'), 1)).toBe(-1);
    expect(lpm.set(parsePrefix('10.0.0.0/8'), 7)).toBe(1);
    expect(lpm.size).toBe(1);
  });
});

describe('the LPM table against a brute-force longest match', () => {
  const bits = fc.integer({ min: 0, max: 0xffffffff });
  const v4prefix = fc.tuple(bits, fc.integer({ min: 0, max: 32 }))
    .map(([w, len]) => parsePrefix(`${prefixToString({ family: 4, words: [w >>> 0, 0, 0, 0], len: 32, normalised: false })}/${len}`));
  const v6prefix = fc.tuple(fc.constantFrom(0x20010db8, 0xfe800000, 0), bits, fc.integer({ min: 0, max: 128 }))
    .map(([w0, w1, len]) => parsePrefix(`${prefixToString({ family: 6, words: [w0, w1 >>> 0, 0, 1], len: 128, normalised: false })}/${len}`));

  it('finds the longest prefix, and every prefix on the path, whatever the insertion order', () => {
    fc.assert(fc.property(fc.array(fc.oneof(v4prefix, v6prefix), { maxLength: 60 }), fc.array(fc.oneof(v4prefix, v6prefix), { minLength: 1, maxLength: 40 }), (prefixes, probes) => {
      const lpm = new Lpm(2);
      const stored: { p: ReturnType<typeof parsePrefix>; v: number }[] = [];
      prefixes.forEach((p, v) => {
        const old = stored.findIndex((s) => prefixToString(s.p) === prefixToString(p));
        expect(lpm.set(p, v)).toBe(old < 0 ? -1 : stored[old]!.v);
        if (old >= 0) stored.splice(old, 1);
        stored.push({ p, v });
      });
      expect(lpm.size).toBe(stored.length);
      // Probe with the prefixes' own addresses (with random host bits) so lookups hit often.
      const b = batchOf(probes.map((p) => ({ dst: prefixToString({ ...p, len: p.family === 4 ? 32 : 128 }) })));
      const out = new Int32Array(129);
      for (let i = 0; i < b.count; i++) {
        const fam = b.family[i]!;
        const holding = stored.filter((s) => prefixContains(s.p, fam, b.dst, 4 * i)).sort((x, y) => x.p.len - y.p.len);
        expect(lpm.lookup(fam, b.dst, 4 * i)).toBe(holding.length ? holding[holding.length - 1]!.v : -1);
        expect([...out.subarray(0, lpm.matches(fam, b.dst, 4 * i, out))]).toEqual(holding.map((s) => s.v));
      }
      for (const s of stored) expect(lpm.get(s.p)).toBe(s.v);
    }), { numRuns: 500 });
  });

  // lookup() answers from a direct table on the first 16 bits where no longer prefix lies, made at
  // the first walk after a change: prefixes of 12-20 bits inside a few /8s put many of them on
  // either side of that line, and a lookup after every set() checks tables made and out of date.
  it('gives the same answers from its direct tables, looked up between changes', () => {
    const near = (hi: number, lenMax: number) => fc.tuple(fc.constantFrom(hi, hi + 1), fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 0, max: lenMax }));
    const v4prefix = near(0x0a, 32).map(([a, b, len]) => parsePrefix(`${prefixToString({ family: 4, words: [((a << 24) | b) >>> 0, 0, 0, 0], len: 32, normalised: false })}/${Math.min(32, 8 + (len % 17))}`));
    const v6prefix = near(0xfd, 128).map(([a, b, len]) => parsePrefix(`${prefixToString({ family: 6, words: [((a << 24) | b) >>> 0, 0, 0, 1], len: 128, normalised: false })}/${[0, 15, 16, 17, 24, 48, 128][len % 7]}`));
    fc.assert(fc.property(fc.array(fc.oneof(v4prefix, v6prefix), { minLength: 1, maxLength: 40 }), fc.array(fc.oneof(v4prefix, v6prefix), { minLength: 1, maxLength: 30 }), (prefixes, probes) => {
      const lpm = new Lpm(2);
      const stored = new Map<string, { p: ReturnType<typeof parsePrefix>; v: number }>();
      const b = batchOf(probes.map((p) => ({ dst: prefixToString({ ...p, len: p.family === 4 ? 32 : 128 }) })));
      const check = (i: number): void => {
        const fam = b.family[i]!;
        let best = -1;
        let bestLen = -1;
        for (const s of stored.values()) if (s.p.len > bestLen && prefixContains(s.p, fam, b.dst, 4 * i)) { best = s.v; bestLen = s.p.len; }
        expect(lpm.lookup(fam, b.dst, 4 * i)).toBe(best);
        expect(lpm.walk(fam, b.dst, 4 * i)).toBe(best);
      };
      prefixes.forEach((p, v) => {
        lpm.set(p, v);
        stored.set(prefixToString(p), { p, v });
        check(v % b.count);
      });
      for (let i = 0; i < b.count; i++) check(i);
    }), { numRuns: 500 });
  });
});

describe('parsing rules', () => {
  it('reads the parts of a rule', () => {
    const r = parseRule('drop tcp from 198.51.100.0/24 to any port 23', 4);
    expect(r).toMatchObject({ number: 4, action: 2, proto: 6, dport: [{ lo: 23, hi: 23 }], sport: null });
    expect(r.src.map(prefixToString)).toEqual(['198.51.100.0/24']);
    expect(r.dst.map(prefixToString)).toEqual(['any']);
    expect(parseRule('accept udp to 10.1.0.0/16 port 53').proto).toBe(17);
    expect(parseRule('accept icmp')).toMatchObject({ action: 1, proto: 1, sport: null, dport: null });
    expect(parseRule('accept 47').proto).toBe(47);
    expect(parseRule('accept tcp sport 1024-65535 port 80, 443').dport).toEqual([{ lo: 80, hi: 80 }, { lo: 443, hi: 443 }]);
    expect(parseRule('accept from 10.0.0.0/8,2001:db8::/32').src).toHaveLength(2);
    expect(parseRule('ACCEPT TCP PORT 80').proto).toBe(6);
  });

  it.each([
    ['', 'empty rule'],
    ['allow tcp', '"allow" is not an action: a rule starts with accept or drop'],
    ['drop tpc port 80', '"tpc" is not a protocol'],
    ['drop 256', '"256" is not a protocol'],
    ['drop tcp form 10.0.0.0/8', 'unexpected "form" (expected one of: from, to, sport, port)'],
    ['drop from 10.0.0.0/8 tcp', 'unexpected "tcp": the protocol comes right after the action'],
    ['drop tcp from', '"from" needs an address, a prefix or any'],
    ['drop tcp from port 80', '"from" needs an address, a prefix or any'],
    ['drop tcp port', '"port" needs a port, a list or a range'],
    ['drop tcp from 10.0.0.300/8', '"10.0.0.300/8" is not an IPv4 or IPv6 prefix'],
    ['drop tcp to 10.0.0.0/40', 'prefix length 40 is longer than an IPv4 address'],
    ['drop tcp port 70000', '"70000" is not a port: ports are 0..65535'],
    ['drop tcp port 80x', '"80x" is not a port or port range'],
    ['drop tcp port 443-80', '"443-80" is an empty range'],
    ['drop tcp port 80 port 443', '"port" is given twice'],
    ['drop icmp port 80', 'icmp has no ports'],
    ['drop 47 sport 80', 'protocol 47 has no ports'],
    ['drop from 10.0.0.0/8 to 2001:db8::/32', 'from 10.0.0.0/8 is IPv4 but to 2001:db8::/32 is IPv6: the rule can never match'],
    ['drop from 10.0.0.0/8,,10.1.0.0/16', 'has an empty item'],
  ])('rejects %j: %s', (text, message) => {
    expect(() => parseRule(text)).toThrow(message);
  });

  it('names the rule number in a rule set', () => {
    expect(() => parseRules(['accept tcp', 'drop tcp port 99999'])).toThrow(/^rule 2: "99999" is not a port/);
  });

  it('expands from/to lists into entries that keep the rule number, dropping mixed-family pairs', () => {
    const t = new RuleTable(parseRules(['accept tcp', 'drop from 10.0.0.0/8,2001:db8::/32 to 192.0.2.0/24,any']));
    // 10/8 -> 192.0.2/24, 10/8 -> any, 2001:db8::/32 -> any (2001:db8::/32 -> 192.0.2.0/24 cannot match).
    expect(t.count).toBe(4);
    expect([...t.rule]).toEqual([0, 1, 1, 1]);
    expect([...t.family]).toEqual([0, 4, 4, 6]);
  });
});

describe('first match wins, as in iptables', () => {
  const rules = [
    'accept tcp from 10.0.0.0/8 port 22',
    'drop tcp port 22',
    'drop from 198.51.100.0/24',
    'accept udp to 10.1.0.0/16 port 53',
    'drop udp port 53',
    'accept icmp',
    'drop to 10.0.0.0/8',
    'accept to 10.1.2.0/24',
  ];

  it('a broad rule written first beats a narrower one written later', () => {
    // Rule 7 (to 10.0.0.0/8) precedes rule 8 (to 10.1.2.0/24): the longer prefix does not win.
    expect(firstMatch(rules, { proto: Proto.TCP, src: '192.0.2.9', dst: '10.1.2.3', dport: 443 })).toBe(7);
  });

  it('an exception written before the general rule takes effect', () => {
    expect(firstMatch(rules, { src: '10.9.9.9', dst: '192.0.2.1', dport: 22 })).toBe(1);
    expect(firstMatch(rules, { src: '192.0.2.7', dst: '192.0.2.1', dport: 22 })).toBe(2);
    expect(firstMatch(rules, { proto: Proto.UDP, src: '192.0.2.7', dst: '10.1.200.1', dport: 53 })).toBe(4);
    expect(firstMatch(rules, { proto: Proto.UDP, src: '192.0.2.7', dst: '10.2.0.1', dport: 53 })).toBe(5);
  });

  it('a protocol-only rule matches every packet of that protocol', () => {
    expect(firstMatch(rules, { proto: Proto.ICMP, src: '192.0.2.7', dst: '10.1.2.3' })).toBe(6);
    expect(firstMatch(rules, { proto: Proto.ICMP, src: '198.51.100.7', dst: '10.1.2.3' })).toBe(3);
  });

  it('nothing matches: the default decides (-1)', () => {
    expect(firstMatch(rules, { proto: Proto.TCP, src: '192.0.2.7', dst: '203.0.113.1', dport: 443 })).toBe(0);
  });

  it('a prefix of one family never matches the other family; "any" and no CIDR match both', () => {
    expect(firstMatch(['drop to 10.0.0.0/8', 'accept to ::/0'], { dst: '2001:db8::1' })).toBe(2);
    expect(firstMatch(['drop to 0.0.0.0/0'], { dst: '2001:db8::1' })).toBe(0);
    expect(firstMatch(['drop to any'], { dst: '2001:db8::1' })).toBe(1);
    expect(firstMatch(['drop tcp'], { dst: '2001:db8::1' })).toBe(1);
    expect(firstMatch(['drop from 10.0.0.0/8 to any'], { src: '2001:db8::1', dst: '2001:db8::2' })).toBe(0);
  });

  it('a port condition never matches later fragments or protocols without ports', () => {
    const r = ['drop port 80', 'drop tcp', 'accept'];
    expect(firstMatch(r, { proto: Proto.TCP, dport: 80 })).toBe(1);
    expect(firstMatch(r, { proto: Proto.TCP, dport: 80, frag: Frag.FIRST })).toBe(1);
    expect(firstMatch(r, { proto: Proto.TCP, dport: 80, frag: Frag.LATER })).toBe(2);
    expect(firstMatch(r, { proto: Proto.UDP, dport: 80 })).toBe(1);
    expect(firstMatch(r, { proto: Proto.SCTP, dport: 80 })).toBe(1);
    expect(firstMatch(r, { proto: Proto.GRE, dport: 80 })).toBe(3);
    expect(firstMatch(['drop sport 0-65535'], { proto: Proto.ICMP })).toBe(0);
  });

  it('port lists and ranges include their ends', () => {
    const r = ['drop tcp port 80,443,8000-8080'];
    expect([79, 80, 443, 444, 7999, 8000, 8080, 8081].map((p) => firstMatch(r, { dport: p }))).toEqual([0, 1, 1, 0, 0, 1, 1, 0]);
    expect(firstMatch(['drop udp sport 53 port 1024-65535'], { proto: Proto.UDP, sport: 53, dport: 1024 })).toBe(1);
    expect(firstMatch(['drop udp sport 53 port 1024-65535'], { proto: Proto.UDP, sport: 54, dport: 1024 })).toBe(0);
  });

  it('/32 and /128 hosts, /0 and a numeric protocol', () => {
    expect(firstMatch(['drop to 192.0.2.1'], { dst: '192.0.2.1' })).toBe(1);
    expect(firstMatch(['drop to 192.0.2.1'], { dst: '192.0.2.2' })).toBe(0);
    expect(firstMatch(['drop to 2001:db8::1/128'], { dst: '2001:db8::1' })).toBe(1);
    expect(firstMatch(['drop to 2001:db8::1/128'], { dst: '2001:db8::1:1' })).toBe(0);
    expect(firstMatch(['drop 47 to 0.0.0.0/0'], { proto: 47, dst: '192.0.2.1' })).toBe(1);
  });

  it('packets that are not IP never match', () => {
    expect(firstMatch(['drop'], { family: 0 })).toBe(0);
  });
});

// ---- the property: chain, set and trie pick the same rule for every packet ----

const V4_BASES = ['10.0.0.0', '10.1.2.3', '10.1.255.255', '192.0.2.1', '198.51.100.77', '0.0.0.0', '255.255.255.255', '128.0.0.1'];
const V6_BASES = ['2001:db8::', '2001:db8::1', '2001:db8:1::42', 'fe80::1', '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '8000::1'];
const PORTS = [0, 22, 53, 80, 443, 1024, 8080, 65535];

/** An address near one of the bases (so prefixes and packets overlap often). */
const v4Addr = fc.tuple(fc.constantFrom(...V4_BASES), fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 255 }))
  .map(([base, bit, r]) => {
    const w = parsePrefix(base).words[0];
    const flip = r < 128 ? 0 : (1 << bit) >>> 0; // half the time the base itself, else one bit off
    return prefixToString({ family: 4, words: [(w ^ flip) >>> 0, 0, 0, 0], len: 32, normalised: false });
  });
const v6Addr = fc.tuple(fc.constantFrom(...V6_BASES), fc.integer({ min: 0, max: 127 }), fc.boolean())
  .map(([base, bit, keep]) => {
    const w = [...parsePrefix(base).words] as [number, number, number, number];
    if (!keep) w[bit >>> 5] = (w[bit >>> 5]! ^ (1 << (31 - (bit & 31)))) >>> 0;
    return prefixToString({ family: 6, words: w, len: 128, normalised: false });
  });
const v4Len = fc.oneof(fc.constantFrom(0, 8, 16, 24, 32), fc.integer({ min: 0, max: 32 }));
const v6Len = fc.oneof(fc.constantFrom(0, 32, 48, 64, 128), fc.integer({ min: 0, max: 128 }));
const cidr = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(v4Addr, v4Len).map(([a, l]) => `${a}/${l}`) },
  { weight: 3, arbitrary: fc.tuple(v6Addr, v6Len).map(([a, l]) => `${a}/${l}`) },
  { weight: 1, arbitrary: fc.constant('any') },
  { weight: 1, arbitrary: v4Addr },
);
const cidrList = fc.array(cidr, { minLength: 1, maxLength: 3 }).map((l) => l.join(','));
const portSpec = fc.array(
  fc.oneof(fc.constantFrom(...PORTS).map(String), fc.tuple(fc.constantFrom(...PORTS), fc.constantFrom(...PORTS))
    .map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`)),
  { minLength: 1, maxLength: 3 },
).map((l) => l.join(','));
const ruleText = fc.record({
  action: fc.constantFrom('accept', 'drop'),
  proto: fc.constantFrom('', 'tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'any', '6', '17', '47'),
  from: fc.option(cidrList, { nil: undefined }),
  to: fc.option(cidrList, { nil: undefined }),
  sport: fc.option(portSpec, { freq: 4, nil: undefined }),
  port: fc.option(portSpec, { freq: 2, nil: undefined }),
}).map((r) => {
  const ports = r.proto === '' || ['tcp', 'udp', 'sctp', 'any', '6', '17'].includes(r.proto);
  return [r.action, r.proto,
    r.from !== undefined ? `from ${r.from}` : '', r.to !== undefined ? `to ${r.to}` : '',
    ports && r.sport !== undefined ? `sport ${r.sport}` : '', ports && r.port !== undefined ? `port ${r.port}` : '',
  ].filter((x) => x !== '').join(' ');
}).filter((text) => {
  try { parseRule(text); return true; } catch { return false; }
});
const packet: fc.Arbitrary<Pkt> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom<0 | 4 | 6>(4, 6) },
  { weight: 1, arbitrary: fc.constant<0 | 4 | 6>(0) },
).chain((family) => fc.record({
  family: fc.constant(family),
  proto: fc.constantFrom(Proto.TCP, Proto.UDP, Proto.ICMP, Proto.ICMPV6, Proto.SCTP, Proto.GRE),
  src: family === 6 ? v6Addr : v4Addr,
  dst: family === 6 ? v6Addr : v4Addr,
  sport: fc.oneof(fc.constantFrom(...PORTS), fc.integer({ min: 0, max: 65535 })),
  dport: fc.oneof(fc.constantFrom(...PORTS), fc.integer({ min: 0, max: 65535 })),
  frag: fc.constantFrom(Frag.NONE, Frag.NONE, Frag.FIRST, Frag.LATER),
}));

/**
 * The semantics written out once more over the parsed rules (not the flattened table): the first
 * rule with a (from, to) pair holding the packet, the protocol and ports. Returns its index or -1.
 */
function spec(rules: Rule[], b: Batch, i: number): number {
  const fam = b.family[i]!;
  if (fam !== 4 && fam !== 6) return -1;
  const proto = b.proto[i]!;
  const hasPorts = [Proto.TCP, Proto.UDP, Proto.SCTP].includes(proto as 6) && b.frag[i] !== Frag.LATER;
  const inPorts = (ranges: { lo: number; hi: number }[] | null, p: number): boolean =>
    ranges === null || (hasPorts && ranges.some((r) => p >= r.lo && p <= r.hi));
  return rules.findIndex((r) =>
    (r.proto === -1 || r.proto === proto)
    && r.src.some((s) => prefixContains(s, fam, b.src, 4 * i))
    && r.dst.some((d) => prefixContains(d, fam, b.dst, 4 * i))
    && inPorts(r.sport, b.sport[i]!) && inPorts(r.dport, b.dport[i]!));
}

describe('chain, set and trie agree', () => {
  it('on random rule sets and packets (and with the spec written over the parsed rules)', () => {
    fc.assert(fc.property(fc.array(ruleText, { minLength: 0, maxLength: 40 }), fc.array(packet, { minLength: 1, maxLength: 64 }), (texts, pkts) => {
      const rules = parseRules(texts);
      const t = new RuleTable(rules);
      const evs: Evaluator[] = EVALUATORS.map((k) => createEvaluator(k, t));
      const b = batchOf(pkts);
      for (let i = 0; i < b.count; i++) {
        const chain = evs[0]!.match(b, i);
        expect(evs[1]!.match(b, i), `set, packet ${JSON.stringify(pkts[i])}`).toBe(chain);
        expect(evs[2]!.match(b, i), `trie, packet ${JSON.stringify(pkts[i])}`).toBe(chain);
        expect(chain < 0 ? -1 : t.rule[chain], `spec, packet ${JSON.stringify(pkts[i])}`).toBe(spec(rules, b, i));
      }
    }), { numRuns: 600 });
  });

  it('on many rules sharing few prefixes (long candidate lists)', () => {
    const many = fc.array(ruleText, { minLength: 200, maxLength: 400 });
    fc.assert(fc.property(many, fc.array(packet, { minLength: 50, maxLength: 100 }), (texts, pkts) => {
      const t = new RuleTable(parseRules(texts));
      const [chain, set, trie] = EVALUATORS.map((k) => createEvaluator(k, t));
      const b = batchOf(pkts);
      for (let i = 0; i < b.count; i++) {
        const want = chain!.match(b, i);
        expect(set!.match(b, i)).toBe(want);
        expect(trie!.match(b, i)).toBe(want);
      }
    }), { numRuns: 40 });
  });
});
