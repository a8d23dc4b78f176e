/** Text forms of addresses and protocols, for output (never on the per-packet hot path of a replay). */
import { L3, type Batch } from './batch.js';

export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** RFC 5952 text form, with an embedded IPv4 address for ::a.b.c.d and ::ffff:a.b.c.d, as inet_ntop. */
export function ipv6ToString(w: ArrayLike<number>, o: number): string {
  const g: number[] = [];
  for (let k = 0; k < 4; k++) {
    const v = w[o + k]! >>> 0;
    g.push(v >>> 16, v & 0xffff);
  }
  let best = -1; let bestLen = 0;
  for (let k = 0; k < 8;) {
    if (g[k] !== 0) { k++; continue; }
    let j = k;
    while (j < 8 && g[j] === 0) j++;
    if (j - k > bestLen) { best = k; bestLen = j - k; }
    k = j;
  }
  if (bestLen < 2) best = -1;
  if (best === 0 && (bestLen === 6 || (bestLen === 5 && g[5] === 0xffff))) {
    const v4 = ipv4ToString(w[o + 3]! >>> 0);
    return bestLen === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  let s = '';
  for (let k = 0; k < 8; k++) {
    if (k === best) { s += '::'; k += bestLen - 1; continue; }
    if (s !== '' && !s.endsWith(':')) s += ':';
    s += g[k]!.toString(16);
  }
  return s;
}

export function ipToString(family: number, w: ArrayLike<number>, o: number): string {
  return family === 6 ? ipv6ToString(w, o) : ipv4ToString(w[o]! >>> 0);
}

const PROTO_NAMES: Record<number, string> = {
  1: 'icmp', 2: 'igmp', 4: 'ipip', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah',
  58: 'icmpv6', 59: 'ipv6-nonxt', 88: 'eigrp', 89: 'ospf', 103: 'pim', 112: 'vrrp', 132: 'sctp', 136: 'udplite',
};

export function protoName(p: number): string {
  return PROTO_NAMES[p] ?? `ip-proto-${p}`;
}

const L3_NAMES: Record<number, string> = {
  [L3.IPV4]: 'ipv4', [L3.IPV6]: 'ipv6', [L3.ARP]: 'arp', 0x8035: 'rarp', 0x88cc: 'lldp', 0x8847: 'mpls',
  0x8864: 'pppoe', 0x8863: 'pppoe-discovery', 0x888e: 'eapol', 0x88f7: 'ptp', 0x8809: 'slow', 0x9000: 'loopback',
};

export function l3Name(et: number): string {
  if (et === 0) return 'non-ip';
  return L3_NAMES[et] ?? `ethertype-0x${et.toString(16).padStart(4, '0')}`;
}

/** "seconds.nanoseconds" with nine digits, as tshark's frame.time_epoch. */
export function timestampToString(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

/** Packet i's time as timestampToString writes it, or '' for a record without one (tshark prints none). */
export function packetTime(b: Batch, i: number): string {
  return b.noTime[i] === 1 ? '' : timestampToString(b.tsSec[i]!, b.tsNsec[i]!);
}

/**
 * A number as en-US writes it (1,234,567.891: groups of three, at most three decimals, rounded
 * half away from zero), as `n.toLocaleString('en-US')` does, without Intl: the first toLocaleString
 * of a process loads ICU's number formatting, 17-28 ms of every command's start here (measured).
 * test/format.test.ts checks it against toLocaleString.
 */
export function commas(n: number): string {
  if (!Number.isFinite(n) || Math.abs(n) >= 1e21) return n.toLocaleString('en-US');
  const sign = n < 0 || Object.is(n, -0) ? '-' : '';
  const abs = Math.abs(n);
  // Rounded as ICU rounds: the shortest decimal that reads back as n (what String gives), not
  // the double's exact binary value (toFixed): 1.0005 is 1.001, though the double is 1.000499...
  const text = abs < 1e-6 ? '0' : String(abs);
  const dot = text.indexOf('.');
  let int = dot < 0 ? text : text.slice(0, dot);
  let frac = dot < 0 ? '' : text.slice(dot + 1);
  if (frac.length > 3) {
    const up = frac.charCodeAt(3) >= 53; // '5'
    frac = frac.slice(0, 3);
    if (up) {
      // Add one at the third decimal, carrying into the integer part.
      const digits = (int + frac).split('');
      let k = digits.length - 1;
      while (k >= 0 && digits[k] === '9') digits[k--] = '0';
      if (k >= 0) digits[k] = String(Number(digits[k]) + 1);
      else digits.unshift('1');
      int = digits.slice(0, digits.length - 3).join('');
      frac = digits.slice(digits.length - 3).join('');
    }
  }
  while (frac.endsWith('0')) frac = frac.slice(0, -1);
  for (let k = int.length - 3; k > 0; k -= 3) int = `${int.slice(0, k)},${int.slice(k)}`;
  return `${sign}${int}${frac ? `.${frac}` : ''}`;
}
