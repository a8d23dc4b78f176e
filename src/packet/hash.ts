/**
 * The symmetric flow hash: both directions of a 5-tuple hash the same, so RSS-style sharding sends
 * them to the same worker and conntrack finds one entry for both.
 *
 * Symmetry comes from combining each address word and the ports of the two endpoints with + and ^
 * (both commutative), which also keeps it cheap: one multiply per word instead of ordering the
 * endpoints and hashing each (measured: ~25 ns/packet less here). MurmurHash3's finaliser then
 * spreads the bits. Everything stays int32 (| 0): a uint32 above 2^31 is a heap double in V8.
 */
import type { Batch } from './batch.js';

const K1 = 0x9e3779b1 | 0;
const K2 = 0x85ebca77 | 0;
const F1 = 0x85ebca6b | 0;
const F2 = 0xc2b2ae35 | 0;

/**
 * Hash of the flow (A at ao, pa) <-> (B at bo, pb) of protocol `proto`; addresses are 4 words
 * (IPv4 uses word 0 and zeros). The result is an int32 (stored in a Uint32Array it reads back
 * unsigned); returning it unsigned would box it as a heap double half the time.
 */
export function symHash(proto: number, A: Uint32Array, ao: number, B: Uint32Array, bo: number, pa: number, pb: number): number {
  let a = A[ao]! | 0; let b = B[bo]! | 0;
  let h = Math.imul(proto + 1, K1) ^ ((a + b) | 0);
  h = Math.imul(h, K2) ^ (a ^ b);
  a = A[ao + 1]! | 0; b = B[bo + 1]! | 0;
  h = Math.imul(h ^ ((a + b) | 0), K1) ^ (a ^ b);
  a = A[ao + 2]! | 0; b = B[bo + 2]! | 0;
  h = Math.imul(h ^ ((a + b) | 0), K2) ^ (a ^ b);
  a = A[ao + 3]! | 0; b = B[bo + 3]! | 0;
  h = Math.imul(h ^ ((a + b) | 0), K1) ^ (a ^ b);
  h = Math.imul(h ^ (pa + pb), K2) ^ ((pa ^ pb) << 16);
  h ^= h >>> 16;
  h = Math.imul(h, F1);
  h ^= h >>> 13;
  h = Math.imul(h, F2);
  h ^= h >>> 16;
  return h;
}

/**
 * The flow hash of decoded packet i. ICMP queries use their identifier as both ports; an ICMP
 * error hashes as the flow it quotes, so it lands where that flow's state is (conntrack RELATED).
 */
export function flowHash(b: Batch, i: number, sport: number, dport: number): number {
  const w = i << 2;
  if (b.inProto[i] !== 0 || b.inSrc[w] !== 0 || b.inSrc[w + 3] !== 0) {
    return symHash(b.inProto[i]!, b.inSrc, w, b.inDst, w, b.inSport[i]!, b.inDport[i]!);
  }
  const proto = b.proto[i]!;
  if ((proto === 1 || proto === 58) && b.icmpId[i] !== 0) {
    const id = b.icmpId[i]!;
    return symHash(proto, b.src, w, b.dst, w, id, id);
  }
  return symHash(proto, b.src, w, b.dst, w, sport, dport);
}
