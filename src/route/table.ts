/**
 * A route table as `ip route` writes one, read from a file: one route a line,
 *
 *   PREFIX [via GATEWAY] dev DEVICE [onlink]     e.g. 10.2.3.0/24 via 192.168.1.1 dev eth1
 *   default via GATEWAY dev DEVICE               (0.0.0.0/0 or ::/0, by the gateway's family)
 *
 * IPv4 and IPv6 in one file; `#` comments. Lookups are the kernel FIB's longest-prefix match over
 * one table (main), kept in an LPM trie (src/policy/lpm.ts, the kernel's lpm_trie layout). Not
 * modelled: metrics (a prefix may appear once), policy routing (ip rule), multipath, route types
 * other than unicast, source selection. Errors name file and line.
 */
import { parseExactPrefix, parseIPv4, parseIPv6, prefixToString, type Prefix } from '../packet/cidr.js';
import { Lpm } from '../policy/lpm.js';

export interface Route {
  prefix: Prefix;
  /** Gateway: family 4 or 6 and its words, or null for a directly connected route. */
  via: { family: 4 | 6; words: number[]; text: string } | null;
  dev: number;
  file: string;
  line: number;
}

export class RouteError extends Error {
  /** `reason` is the message without its file:line, for callers that name the place themselves. */
  constructor(readonly file: string, readonly line: number, readonly reason: string) {
    super(`${file}:${line}: ${reason}`);
  }
}

export class RouteTable {
  readonly routes: Route[] = [];
  readonly devices: string[] = [];
  private readonly lpm = new Lpm(1024);

  /** Add one route line; throws RouteError naming file:line. */
  add(text: string, file: string, line: number): void {
    const t = text.replace(/#.*/, '').trim();
    if (t === '') return;
    const words = t.split(/\s+/);
    const err = (m: string): RouteError => new RouteError(file, line, m);
    let k = 0;
    const dest = words[k++]!;
    let via: Route['via'] = null;
    let dev = '';
    while (k < words.length) {
      const w = words[k++]!;
      if (w === 'via' || w === 'dev') {
        const v = words[k++];
        if (v === undefined) throw err(`"${w}" needs a value`);
        if (w === 'dev') {
          if (dev) throw err('"dev" is given twice');
          if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(v)) throw err(`"${v}" is not a device name (1-15 letters, digits, _ . @ -)`);
          dev = v;
        } else {
          if (via) throw err('"via" is given twice');
          const v4 = parseIPv4(v);
          const v6 = v4 === null ? parseIPv6(v) : null;
          if (v4 === null && v6 === null) throw err(`gateway "${v}" is not an IPv4 or IPv6 address`);
          via = v4 !== null ? { family: 4, words: [v4 >>> 0, 0, 0, 0], text: v } : { family: 6, words: v6!.map((x) => x >>> 0), text: v };
        }
      } else if (w === 'onlink') {
        // The kernel's flag to accept a gateway not on a connected subnet; no effect on the lookup.
      } else throw err(`unknown word "${w}" (a route is PREFIX [via GATEWAY] dev DEVICE [onlink])`);
    }
    if (!dev) throw err('no "dev DEVICE"');
    let prefix: Prefix;
    if (dest === 'default') {
      if (!via) throw err('"default" needs "via GATEWAY" (its family); for a device route write 0.0.0.0/0 or ::/0');
      prefix = { family: via.family, words: [0, 0, 0, 0], len: 0, normalised: false };
    } else {
      try { prefix = parseExactPrefix(dest); } catch (e) { throw err((e as Error).message); }
      if (prefix.family === 0) throw err(`"${dest}" is not a prefix`);
    }
    if (via && via.family !== prefix.family) throw err(`gateway ${via.text} is IPv${via.family} but ${dest} is IPv${prefix.family}`);
    const had = this.lpm.get(prefix);
    if (had >= 0) {
      const o = this.routes[had]!;
      throw err(`${prefixToString(prefix)} is already routed at ${o.file}:${o.line} (one route per prefix: metrics are not modelled)`);
    }
    let d = this.devices.indexOf(dev);
    if (d < 0) { d = this.devices.length; this.devices.push(dev); }
    this.lpm.set(prefix, this.routes.length);
    this.routes.push({ prefix, via, dev: d, file, line });
  }

  /** The route for an address (four words at addr[off..], IPv4 in word 0), or -1 (no route: ENETUNREACH). */
  lookup(family: number, addr: Uint32Array, off: number): number {
    return this.lpm.lookup(family, addr, off);
  }

  describe(r: number): string {
    const x = this.routes[r]!;
    const p = x.prefix.len === 0 ? 'default' : prefixToString(x.prefix);
    return `${p}${x.via ? ` via ${x.via.text}` : ''} dev ${this.devices[x.dev]}`;
  }

  get size(): number {
    return this.routes.length;
  }
}
