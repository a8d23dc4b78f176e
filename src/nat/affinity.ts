/**
 * Client-IP session affinity (Kubernetes sessionAffinity: ClientIP), as kube-proxy writes it with
 * `-m recent`: per service, the backend each client address last connected to and when. A new
 * connection whose client connected less than the service's timeout ago goes to the same backend,
 * and every new connection refreshes the time (`--set`).
 *
 * A fixed-size table (typed arrays, nothing allocated per connection): open addressing with a
 * probe window of PROBE slots; when the window is full the least recently used entry in it gives
 * way (the `recent` module's lists are bounded too: ip_list_tot, 100 per list by default; this
 * table is much larger, so it forgets a client only under far more clients than that).
 */
import { fmix } from '../packet/hash.js';
import type { ServiceTable } from './services.js';

const PROBE = 16;
const ROW = 6; // svc + 1, address x4, backend

export class Affinity {
  private readonly rows: Uint32Array;
  private readonly last: Float64Array;
  private readonly mask: number;
  private readonly timeout: Float64Array;
  /** Clients forgotten to make room. */
  displaced = 0;

  constructor(services: ServiceTable, slots = 1 << 16) {
    const any = services.services.some((s) => s.affinity > 0);
    const n = any ? slots : 2;
    this.rows = new Uint32Array(n * ROW);
    this.last = new Float64Array(n);
    this.mask = n - 1;
    this.timeout = Float64Array.from(services.services.map((s) => s.affinity));
  }

  private home(svc: number, A: Uint32Array, ao: number): number {
    return fmix(Math.imul(svc + 1, 0x9e3779b1) ^ A[ao]! ^ fmix(A[ao + 1]! ^ A[ao + 2]! ^ A[ao + 3]!)) & this.mask;
  }

  private matches(s: number, svc: number, A: Uint32Array, ao: number): boolean {
    const r = s * ROW;
    const rows = this.rows;
    return rows[r] === svc + 1 && rows[r + 1] === A[ao] && rows[r + 2] === A[ao + 1] && rows[r + 3] === A[ao + 2] && rows[r + 4] === A[ao + 3];
  }

  /** The backend client A last used for service svc, if within the service's timeout at `now`; else -1. */
  find(svc: number, A: Uint32Array, ao: number, now: number): number {
    let s = this.home(svc, A, ao);
    for (let k = 0; k < PROBE; k++, s = (s + 1) & this.mask) {
      if (this.rows[s * ROW] === 0) return -1;
      if (this.matches(s, svc, A, ao)) return now - this.last[s]! <= this.timeout[svc]! ? this.rows[s * ROW + 5]! : -1;
    }
    return -1;
  }

  /** Client A connected to backend k of service svc at `now`. */
  set(svc: number, A: Uint32Array, ao: number, k: number, now: number): void {
    let s = this.home(svc, A, ao);
    let oldest = s;
    for (let j = 0; j < PROBE; j++, s = (s + 1) & this.mask) {
      if (this.rows[s * ROW] === 0 || this.matches(s, svc, A, ao)) { oldest = s; break; }
      if (this.last[s]! < this.last[oldest]!) oldest = s;
      if (j === PROBE - 1) this.displaced++;
    }
    const r = oldest * ROW;
    this.rows[r] = svc + 1;
    this.rows[r + 1] = A[ao]!; this.rows[r + 2] = A[ao + 1]!; this.rows[r + 3] = A[ao + 2]!; this.rows[r + 4] = A[ao + 3]!;
    this.rows[r + 5] = k;
    this.last[oldest] = now;
  }
}
