/**
 * encrypt: node-to-node encryption as WireGuard does it (Calico's WireGuard mode). A packet from a
 * pod on one node to a pod on another is sealed whole (its IP packet) with ChaCha20-Poly1305 under
 * the key of that node pair and direction, into WireGuard's transport data message (type 4:
 * receiver index, 64-bit counter, ciphertext, 16-byte tag) in an outer IPv4/UDP packet from one
 * node's address to the other's, port 51820 both ways (src/crypto/wireguard.ts has the layout and
 * how keys are derived from the configured secret). The packet grows by 60 bytes plus WireGuard's
 * padding to 16 bytes: it moves to the batch's output area (wire.ts insertBytes), so --write writes
 * the sealed packet, with a valid outer IPv4 header checksum and UDP checksum. The link header is
 * kept; its Ethertype becomes IPv4's. Everything after encrypt sees the outer packet.
 *
 * The counter: WireGuard's is per session and direction, increasing by one per packet, and the
 * receiver accepts any counter above its window (gaps are fine, replays are not). dplab uses the
 * packet's number in the capture: strictly increasing within every pair, unique per key, and the
 * same whatever the batch size or the worker that sealed it (a per-pair running count would need
 * every packet of a node pair in one worker, i.e. sharding by node pair, which leaves one busy
 * worker for a two-node capture). The counts per pair are in the report.
 *
 * Packets not sealed pass as they are: not IP, source or destination on no configured node, both
 * on the same node (no tunnel), or a link layer with no Ethertype to rewrite (only Ethernet, SLL
 * and raw IP are sealed). A packet whose IP datagram the capture cut short cannot be sealed (the
 * bytes are not there): it is dropped, reason `truncated`.
 *
 * Config ([encrypt] section):
 *   secret: TEXT                    the keys' secret (required)
 *   node: NAME ADDR PREFIX[, ...]   a node, its (IPv4) underlay address and the pod prefixes on it (repeatable)
 *   ttl: 64                         outer TTL
 */
import { LinkType } from '../capture/linktype.js';
import { HEADER_BYTES, OUTER_IP, OUTER_UDP, Sealer, TAG_BYTES, WG_PORT, pairKey, paddedLength, receiverIndex } from '../crypto/wireguard.js';
import { Frag, L3, Verdict, type Batch } from '../packet/batch.js';
import { parseIPv4, parsePrefix, prefixToString } from '../packet/cidr.js';
import { symHash } from '../packet/hash.js';
import { insertBytes, packetBytes, packetLength, packetStart } from '../packet/wire.js';
import { Lpm } from '../policy/lpm.js';
import type { Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';

/** A node: its name and IPv4 underlay address (its pod prefixes are in readNodes' lpm, valued by the node's index). */
export interface Node { name: string; addr: number }

const Reason = { TRUNCATED: 0 } as const;
const How = { NOT_SEEN: 0, SEALED: 1, NO_NODE: 2, SAME_NODE: 3, LINK: 4, TRUNCATED: 5, NOT_IP: 6 } as const;

/** The node table from a section: `node: NAME ADDR PREFIX[, PREFIX...]`. */
export function readNodes(section: Section): { nodes: Node[]; lpm: Lpm } {
  const nodes: Node[] = [];
  const lpm = new Lpm();
  for (const e of section.all('node')) {
    const m = /^(\S+)\s+(\S+)\s+(.+)$/.exec(e.value);
    if (!m) throw section.error(e, `"${e.value}" is not NAME ADDRESS PREFIX[, PREFIX...] (e.g. "node-a 192.168.0.1 10.0.0.0/8, fd00:10::/64")`);
    if (nodes.some((n) => n.name === m[1])) throw section.error(e, `node "${m[1]}" is defined twice`);
    const addr = parseIPv4(m[2]!);
    if (addr === null) throw section.error(e, `"${m[2]}" is not an IPv4 address (the outer packet is IPv4/UDP)`);
    const prefixes = m[3]!.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const p of prefixes) {
      let pre;
      try { pre = parsePrefix(p); } catch (err) { throw section.error(e, `"${p}": ${(err as Error).message}`); }
      if (pre.family === 0) throw section.error(e, `"${p}" is not an IPv4 or IPv6 prefix`);
      const had = lpm.set(pre, nodes.length);
      if (had >= 0) throw section.error(e, `${prefixToString(pre)} is already on node "${nodes[had]!.name}"`);
    }
    nodes.push({ name: m[1]!, addr: addr >>> 0 });
  }
  if (nodes.length < 2) throw section.error(null, 'needs at least two "node:" lines (NAME ADDRESS PREFIX[, ...]): encryption is between nodes');
  return { nodes, lpm };
}

export class EncryptStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['truncated'];
  readonly rewrites = true;
  readonly nodes: Node[];
  private readonly lpm: Lpm;
  /** Per ordered pair (from * N + to): key and receiver index. */
  readonly keys: Buffer[];
  readonly indexes: Uint32Array;
  readonly secret: string;
  private readonly ttl: number;
  private readonly sealer = new Sealer();
  private readonly perPair: Float64Array;
  private sealed = 0;
  private plaintextBytes = 0;
  private bytesAdded = 0;
  private noNode = 0;
  private sameNode = 0;
  private otherLink = 0;
  private truncated = 0;
  private how = new Uint8Array(0);
  private pairOf = new Int32Array(0);

  constructor(section: Section) {
    this.name = section.name;
    const s = section.get('secret');
    if (!s || s.value === '') throw section.error(null, 'needs "secret:" (the node pair keys are derived from it)');
    this.secret = s.value;
    const { nodes, lpm } = readNodes(section);
    this.nodes = nodes;
    this.lpm = lpm;
    this.ttl = section.integer('ttl', 64, 1, 255);
    const N = nodes.length;
    this.keys = [];
    this.indexes = new Uint32Array(N * N);
    for (let a = 0; a < N; a++) {
      for (let c = 0; c < N; c++) {
        this.keys.push(pairKey(this.secret, nodes[a]!.name, nodes[c]!.name));
        this.indexes[a * N + c] = receiverIndex(this.secret, nodes[a]!.name, nodes[c]!.name);
      }
    }
    this.perPair = new Float64Array(N * N);
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) { this.how = new Uint8Array(b.capacity); this.pairOf = new Int32Array(b.capacity); }
    const how = this.how;
    const n = b.count;
    const N = this.nodes.length;
    const { verdict, family, src, dst } = b;
    for (let i = 0; i < n; i++) {
      how[i] = How.NOT_SEEN;
      if (verdict[i] !== Verdict.PASS) continue;
      const f = family[i]!;
      if (f !== 4 && f !== 6) { how[i] = How.NOT_IP; continue; }
      const w = i << 2;
      const a = this.lpm.lookup(f, src, w);
      const c = this.lpm.lookup(f, dst, w);
      if (a < 0 || c < 0) { this.noNode++; how[i] = How.NO_NODE; continue; }
      if (a === c) { this.sameNode++; how[i] = How.SAME_NODE; continue; }
      const start = packetStart(b, i);
      const len = packetLength(b, i);
      const l3 = b.l3[i]!;
      const l3End = b.l3End[i]!;
      // The link header must end in an Ethertype we can set to IPv4's, or there must be none.
      const lt = b.linkType[i]!;
      let ethertype = false;
      if (lt === LinkType.ETHERNET || lt === LinkType.LINUX_SLL) {
        const x = packetBytes(b, i);
        const et = (x[l3 - 2]! << 8) | x[l3 - 1]!;
        if ((et !== L3.IPV4 && et !== L3.IPV6) || l3 - start < 14) { this.otherLink++; how[i] = How.LINK; continue; }
        ethertype = true;
      } else if (!(lt === LinkType.RAW || lt === LinkType.RAW_OPENBSD || (lt === LinkType.IPV4 && f === 4))) {
        this.otherLink++; how[i] = How.LINK; continue;
      }
      if (l3End > start + len || l3End <= l3) {
        verdict[i] = Verdict.DROP;
        b.stage[i] = self;
        b.reason[i] = Reason.TRUNCATED;
        this.truncated++;
        how[i] = How.TRUNCATED;
        continue;
      }
      const ipLen = l3End - l3;
      const grow = HEADER_BYTES + paddedLength(ipLen) - ipLen + TAG_BYTES;
      const out = insertBytes(b, i, l3 - start, grow);
      // The inner packet now starts `grow` bytes after where the outer one goes.
      const outer = b.l3[i]! - grow;
      const pair = a * N + c;
      const counter = b.num[i]!;
      const from = this.nodes[a]!.addr;
      const to = this.nodes[c]!.addr;
      const total = this.sealer.seal(this.keys[pair]!, this.indexes[pair]!, counter, from, to, this.ttl,
        out, b.l3[i]!, b.l3End[i]!, out, outer);
      if (ethertype) { out[outer - 2] = 0x08; out[outer - 1] = 0x00; }
      // What is on the wire now: the outer packet.
      b.l3[i] = outer;
      b.l4[i] = outer + OUTER_IP;
      b.pay[i] = outer + OUTER_IP + OUTER_UDP;
      b.l3End[i] = outer + total;
      b.l3Type[i] = L3.IPV4;
      b.family[i] = 4;
      b.proto[i] = 17;
      b.frag[i] = Frag.NONE;
      b.ipId[i] = 0;
      b.ttl[i] = this.ttl;
      src[w] = from; src[w + 1] = 0; src[w + 2] = 0; src[w + 3] = 0;
      dst[w] = to; dst[w + 1] = 0; dst[w + 2] = 0; dst[w + 3] = 0;
      b.sport[i] = WG_PORT;
      b.dport[i] = WG_PORT;
      b.hash[i] = symHash(17, src, w, dst, w, WG_PORT, WG_PORT);
      this.perPair[pair]!++;
      this.sealed++;
      this.plaintextBytes += ipLen;
      this.bytesAdded += grow;
      how[i] = How.SEALED;
      this.pairOf[i] = pair;
    }
  }

  describe(): StageReport {
    return { nodes: this.nodes.length };
  }

  report(): StageReport {
    const pairs: StageReport = {};
    const N = this.nodes.length;
    for (let p = 0; p < N * N; p++) {
      if (this.perPair[p]! > 0) pairs[`${this.nodes[Math.floor(p / N)]!.name}->${this.nodes[p % N]!.name}`] = this.perPair[p]!;
    }
    return {
      packetsSealed: this.sealed,
      plaintextBytes: this.plaintextBytes,
      bytesAdded: this.bytesAdded,
      sealedByPair: pairs,
      notSealed: { noNode: this.noNode, sameNode: this.sameNode, otherLink: this.otherLink },
      truncatedDropped: this.truncated,
    };
  }

  explain(b: Batch, i: number): string {
    switch (this.how[i]) {
      case How.NOT_SEEN: return '-';
      case How.NOT_IP: return 'not IP: sent as is';
      case How.NO_NODE: return 'source or destination on no configured node: sent in the clear';
      case How.SAME_NODE: return 'both ends on one node: no tunnel';
      case How.LINK: return 'link layer without an Ethertype to rewrite: sent in the clear';
      case How.TRUNCATED: return 'the capture cut the datagram short: cannot seal';
      default: {
        const p = this.pairOf[i]!;
        const N = this.nodes.length;
        const a = this.nodes[Math.floor(p / N)]!;
        const c = this.nodes[p % N]!;
        return `sealed ${a.name} -> ${c.name} (WireGuard data, receiver index ${this.indexes[p]!.toString(16)}, counter ${b.num[i]}), `
          + `+${packetLength(b, i) - b.capLen[i]!} bytes`;
      }
    }
  }
}

registerStage('encrypt', 'node-to-node encryption as WireGuard: each packet between nodes sealed with ChaCha20-Poly1305 into outer IPv4/UDP 51820',
  (section: Section, _ctx: StageContext) => new EncryptStage(section));
