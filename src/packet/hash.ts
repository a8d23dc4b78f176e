/**
 * The symmetric flow hash: both directions of a 5-tuple hash the same, so RSS-style sharding sends
 * them to the same worker and conntrack finds one entry for both.
 *
 * Each endpoint (address, port) is hashed on its own through MurmurHash3's finaliser, and the two
 * are added: addition makes it symmetric, and the nonlinear per-endpoint step keeps different pairs
 * apart. (An earlier version combined raw words with + and ^, which is symmetric too but linear:
 * 145k generated flows shared 5k hashes, e.g. 10.0.0.195 <-> 172.16.0.8 and 10.0.0.202 <->
 * 172.16.0.1 on the same ports; bench/flowtable.js found it.) Everything stays int32 (| 0): a uint32
 * above 2^31 is a heap double in V8.
 */
import type { Batch } from './batch.js';

const K1 = 0x9e3779b1 | 0;
const K2 = 0x85ebca77 | 0;
const F1 = 0x85ebca6b | 0;
const F2 = 0xc2b2ae35 | 0;

/**
 * MurmurHash3's 32-bit finaliser: the one mixing step every hash in dplab ends with. This module's
 * own code calls the private names (mix, sym): V8 reads an exported binding through its module
 * cell at every use, even in its own module (src/conntrack/layout.ts).
 */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, F1);
  h ^= h >>> 13;
  h = Math.imul(h, F2);
  return h ^ (h >>> 16);
}
export const fmix = mix;

/** An address's four words folded into one (rotated apart); an IPv4 address (words 1-3 zero) folds to itself. */
function fold(w0: number, w1: number, w2: number, w3: number): number {
  const a1 = w1 | 0; const a2 = w2 | 0; const a3 = w3 | 0;
  return (w0 | 0) ^ ((a1 << 8) | (a1 >>> 24)) ^ ((a2 << 16) | (a2 >>> 16)) ^ ((a3 << 24) | (a3 >>> 8));
}
export const foldAddress = fold;

/** One endpoint: its folded address (fold) with the port mixed in, then finalised. */
function endpoint(a: number, port: number): number {
  return mix(a ^ Math.imul(port + 1, K1));
}

/**
 * The flow hash from the two endpoints' folded addresses: what sym() computes after folding. The
 * decoder's fast path calls it (as symHashFolded) with the address words it has just read, rather
 * than reading them back from the batch.
 */
function folded(proto: number, a: number, b: number, pa: number, pb: number): number {
  return mix((endpoint(a, pa) + endpoint(b, pb) + Math.imul(proto + 1, K2)) | 0);
}
export const symHashFolded = folded;

/**
 * Hash of the flow (A at ao, pa) <-> (B at bo, pb) of protocol `proto`; addresses are 4 words
 * (IPv4 uses word 0 and zeros). The result is an int32 (stored in a Uint32Array it reads back
 * unsigned); returning it unsigned would box it as a heap double half the time.
 */
function sym(proto: number, A: Uint32Array, ao: number, B: Uint32Array, bo: number, pa: number, pb: number): number {
  return folded(proto, fold(A[ao]!, A[ao + 1]!, A[ao + 2]!, A[ao + 3]!), fold(B[bo]!, B[bo + 1]!, B[bo + 2]!, B[bo + 3]!), pa, pb);
}
export const symHash = sym;

/**
 * The flow hash of decoded packet i. ICMP queries use their identifier as both ports; an ICMP
 * error hashes as the flow it quotes, so it lands where that flow's state is (conntrack RELATED).
 */
export function flowHash(b: Batch, i: number, sport: number, dport: number): number {
  const w = i << 2;
  if (b.inProto[i] !== 0 || b.inSrc[w] !== 0 || b.inSrc[w + 3] !== 0) {
    return sym(b.inProto[i]!, b.inSrc, w, b.inDst, w, b.inSport[i]!, b.inDport[i]!);
  }
  const proto = b.proto[i]!;
  if ((proto === 1 || proto === 58) && b.icmpId[i] !== 0) {
    const id = b.icmpId[i]!;
    return sym(proto, b.src, w, b.dst, w, id, id);
  }
  return sym(proto, b.src, w, b.dst, w, sport, dport);
}
