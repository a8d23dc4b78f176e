/**
 * Address prefixes as rules and block lists write them: "10.0.0.0/8", "2001:db8::/32", a host
 * ("192.0.2.1" is 192.0.2.1/32, "2001:db8::1" is /128), or "any".
 *
 * A prefix is kept in the batch's own address form: four u32 words in network order, IPv4 in
 * word 0 with words 1..3 zero, so matching a packet is a masked compare of the batch's words.
 *
 * Host bits set below the prefix length ("10.1.2.3/8") are accepted and cleared, as iptables does
 * (`iptables -s 10.1.2.3/8` lists as 10.0.0.0/8); `normalised` says it happened so a caller may
 * mention it. Text parses strictly: no leading zeros in dotted quads (inet_pton refuses "010.0.0.1"
 * because some tools read it as octal), no zone ids.
 *
 * IPv4-mapped IPv6 text ("::ffff:192.0.2.1") parses as what it is, an IPv6 address: a packet on the
 * wire carries one family or the other, and ::ffff:0:0/96 only matches IPv6 packets.
 */

import { ipToString } from './format.js';

export interface Prefix {
  /** 4 or 6; 0 for "any", which matches both families. */
  readonly family: 0 | 4 | 6;
  /** Address in four u32 words (network order), host bits cleared; IPv4 uses word 0. */
  readonly words: readonly [number, number, number, number];
  /** Prefix length: 0..32 for IPv4, 0..128 for IPv6, 0 for "any". */
  readonly len: number;
  /** True when the text had host bits set that were cleared. */
  readonly normalised: boolean;
}

export const ANY: Prefix = { family: 0, words: [0, 0, 0, 0], len: 0, normalised: false };

/** The mask of word `k` (0..3) of a prefix of length `len`, as an unsigned 32-bit number. */
export function wordMask(len: number, k: number): number {
  const bits = Math.min(32, Math.max(0, len - 32 * k));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** A dotted quad as an unsigned 32-bit number, or null. */
export function parseIPv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v;
}

/** An IPv6 address (RFC 4291 text, with "::" and an optional dotted-quad tail) as four words, or null. */
export function parseIPv6(text: string): [number, number, number, number] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let k = 0; k < parts.length; k++) {
      const p = parts[k]!;
      if (p.includes('.')) {
        if (k !== parts.length - 1) return null;
        const v4 = parseIPv4(p);
        if (v4 === null) return null;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted tail belongs at the end of the address only.
  if (halves.length === 2 && halves[0]!.includes('.')) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const g = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return [
    ((g[0]! << 16) | g[1]!) >>> 0, ((g[2]! << 16) | g[3]!) >>> 0,
    ((g[4]! << 16) | g[5]!) >>> 0, ((g[6]! << 16) | g[7]!) >>> 0,
  ];
}

/**
 * Parse a prefix, a host address or "any". Throws an Error whose message quotes the text and says
 * what is wrong with it; callers add the file and line.
 */
export function parsePrefix(text: string): Prefix {
  const t = text.trim();
  if (t === 'any') return ANY;
  const slash = t.indexOf('/');
  const addr = slash < 0 ? t : t.slice(0, slash);
  let family: 4 | 6;
  let words: [number, number, number, number];
  const v4 = parseIPv4(addr);
  if (v4 !== null) {
    family = 4;
    words = [v4, 0, 0, 0];
  } else {
    const v6 = parseIPv6(addr);
    if (v6 === null) throw new Error(`"${t}" is not an IPv4 or IPv6 prefix (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.1 or any)`);
    family = 6;
    words = v6;
  }
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const l = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(l)) throw new Error(`"${t}": the prefix length "${l}" is not a number of bits (0..${max})`);
    len = Number(l);
    if (len > max) throw new Error(`"${t}": prefix length ${len} is longer than an IPv${family} address (${max} bits)`);
  }
  let normalised = false;
  for (let k = 0; k < 4; k++) {
    const m = words[k]! & wordMask(len, k);
    if ((m >>> 0) !== words[k]) normalised = true;
    words[k] = m >>> 0;
  }
  return { family, words, len, normalised };
}

/**
 * A prefix as a rule or list must write it: host bits set (192.0.2.5/24) are an error naming the
 * prefix meant, since silently widening a typo for one host to a whole network would be worse.
 */
export function parseExactPrefix(text: string): Prefix {
  const p = parsePrefix(text);
  if (p.normalised) {
    throw new Error(`"${text.trim()}" has host bits set (bits past the first ${p.len} are not 0); did you mean ${prefixToString(p)}?`);
  }
  return p;
}

/** Whether the address at `a[o..o+3]` of a packet of `family` lies in the prefix. */
export function prefixContains(p: Prefix, family: number, a: ArrayLike<number>, o: number): boolean {
  if (p.family === 0) return family === 4 || family === 6;
  if (p.family !== family) return false;
  for (let k = 0; k < 4; k++) {
    if (((a[o + k]! & wordMask(p.len, k)) >>> 0) !== p.words[k]) return false;
  }
  return true;
}

/** Canonical text: "10.0.0.0/8", "2001:db8::/32", "192.0.2.1" for a host, "any". */
export function prefixToString(p: Prefix): string {
  if (p.family === 0) return 'any';
  const addr = ipToString(p.family, p.words, 0);
  return p.len === (p.family === 4 ? 32 : 128) ? addr : `${addr}/${p.len}`;
}
