/**
 * WireGuard's transport data message (type 4), as the kernel's drivers/net/wireguard/send.c builds
 * it, with keys that come from a configured secret instead of a Noise handshake:
 *
 *   outer IPv4 (20) | UDP 51820 -> 51820 (8) | type 4, 3 zero bytes | receiver index (u32 LE) |
 *   counter (u64 LE) | ChaCha20-Poly1305(inner IP packet + zero padding to 16 bytes) | tag (16)
 *
 * The AEAD is RFC 8439's, with an empty AAD and a 96-bit nonce of 32 zero bits then the counter
 * (little-endian), as WireGuard's. Keys are per direction of a node pair (WireGuard has a sending
 * key per session and direction) and derived deterministically so a replay, a test and a
 * decrypting pass all agree:
 *
 *   key(A -> B)            = HKDF-SHA256(ikm = secret, salt = "dplab wireguard", info = "key A->B", 32 bytes)
 *   receiver index(A -> B) = first 4 bytes (LE) of HKDF-SHA256(secret, "dplab wireguard", "index A->B", 4)
 *
 * A and B are node names as the profile writes them. Nothing here is secret in any real sense: it
 * is the cost and the bytes of WireGuard's data path, not its security.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { onesSum, put32 } from '../packet/wire.js';

export const WG_PORT = 51820;
export const WG_TYPE_DATA = 4;
/** Outer IPv4 + UDP + the data message's header. */
export const OUTER_IP = 20;
export const OUTER_UDP = 8;
export const WG_HEADER = 16;
export const HEADER_BYTES = OUTER_IP + OUTER_UDP + WG_HEADER;
export const TAG_BYTES = 16;

const SALT = 'dplab wireguard';

export function pairKey(secret: string, from: string, to: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, SALT, `key ${from}->${to}`, 32));
}

export function receiverIndex(secret: string, from: string, to: string): number {
  return Buffer.from(hkdfSync('sha256', secret, SALT, `index ${from}->${to}`, 4)).readUInt32LE(0);
}

/** WireGuard pads the plaintext to a multiple of 16 bytes (send.c: calculate_skb_padding, MTU aside). */
export function paddedLength(n: number): number {
  return (n + 15) & ~15;
}

const NONCE_BYTES = 12;

/** The 96-bit nonce for a counter: 4 zero bytes, then the counter as u64 little-endian. */
export function writeNonce(nonce: Uint8Array, counter: number): void {
  nonce.fill(0, 0, 4);
  let c = counter;
  for (let k = 0; k < 8; k++) { nonce[4 + k] = c % 256; c = Math.floor(c / 256); }
}

/**
 * A sealer holds the scratch it reuses (nonce, zero padding). `seal` writes a whole data message
 * into `out` at `at` (outer IPv4 header first), reading the plaintext from `plain[pFrom..pTo)`.
 * The plaintext may lie inside `out` after `at + HEADER_BYTES` (it is read before the ciphertext
 * over it is written: node:crypto returns the ciphertext in a buffer of its own, one allocation per
 * call plus the cipher object: the honest cost of per-packet crypto from JavaScript).
 * Returns the message's length from `at` (outer IP total length).
 */
export class Sealer {
  private readonly nonce = new Uint8Array(NONCE_BYTES);
  private readonly zeros = new Uint8Array(16);

  seal(key: Buffer, index: number, counter: number, src: number, dst: number, ttl: number,
    plain: Uint8Array, pFrom: number, pTo: number, out: Uint8Array, at: number): number {
    const n = pTo - pFrom;
    const padded = paddedLength(n);
    const total = HEADER_BYTES + padded + TAG_BYTES;
    writeNonce(this.nonce, counter);
    const c = createCipheriv('chacha20-poly1305', key, this.nonce, { authTagLength: TAG_BYTES });
    const body = c.update(plain.subarray(pFrom, pTo));
    const pad = padded > n ? c.update(this.zeros.subarray(0, padded - n)) : null;
    c.final();
    const tag = c.getAuthTag();
    const m = at + OUTER_IP + OUTER_UDP;
    out.set(body, m + WG_HEADER);
    if (pad) out.set(pad, m + WG_HEADER + n);
    out.set(tag, m + WG_HEADER + padded);
    // WireGuard header: type 4, reserved, receiver index LE, counter LE.
    out[m] = WG_TYPE_DATA; out[m + 1] = 0; out[m + 2] = 0; out[m + 3] = 0;
    out[m + 4] = index & 0xff; out[m + 5] = (index >>> 8) & 0xff; out[m + 6] = (index >>> 16) & 0xff; out[m + 7] = index >>> 24;
    out.set(this.nonce.subarray(4, 12), m + 8);
    // Outer IPv4: no options, id 0, DF (WireGuard's outer packets are not fragmented by it), TTL.
    const ip = at;
    out[ip] = 0x45; out[ip + 1] = 0;
    out[ip + 2] = total >>> 8; out[ip + 3] = total & 0xff;
    out[ip + 4] = 0; out[ip + 5] = 0; out[ip + 6] = 0x40; out[ip + 7] = 0;
    out[ip + 8] = ttl; out[ip + 9] = 17; out[ip + 10] = 0; out[ip + 11] = 0;
    put32(out, ip + 12, src);
    put32(out, ip + 16, dst);
    const hs = onesSum(out, ip, ip + 20, 0);
    out[ip + 10] = (~hs >>> 8) & 0xff; out[ip + 11] = ~hs & 0xff;
    // UDP with its checksum over the pseudo-header and the whole message.
    const u = ip + OUTER_IP;
    const ulen = total - OUTER_IP;
    out[u] = WG_PORT >>> 8; out[u + 1] = WG_PORT & 0xff; out[u + 2] = WG_PORT >>> 8; out[u + 3] = WG_PORT & 0xff;
    out[u + 4] = ulen >>> 8; out[u + 5] = ulen & 0xff; out[u + 6] = 0; out[u + 7] = 0;
    let s = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + ulen;
    s = onesSum(out, u, u + ulen, s);
    let cs = ~s & 0xffff;
    if (cs === 0) cs = 0xffff;
    out[u + 6] = cs >>> 8; out[u + 7] = cs & 0xff;
    return total;
  }
}

/**
 * Open a data message (from its WireGuard header, `msg` = header + ciphertext + tag) with `key`:
 * the padded plaintext, or null when the tag does not verify. For tests and a decrypting pass.
 */
export function openMessage(key: Buffer, msg: Uint8Array): { index: number; counter: bigint; plain: Buffer } | null {
  if (msg.length < WG_HEADER + TAG_BYTES || msg[0] !== WG_TYPE_DATA) return null;
  const view = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  const index = view.readUInt32LE(4);
  const counter = view.readBigUInt64LE(8);
  const nonce = Buffer.alloc(NONCE_BYTES);
  view.copy(nonce, 4, 8, 16);
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  d.setAuthTag(view.subarray(view.length - TAG_BYTES));
  try {
    const plain = Buffer.concat([d.update(view.subarray(WG_HEADER, view.length - TAG_BYTES)), d.final()]);
    return { index, counter, plain };
  } catch {
    return null;
  }
}
