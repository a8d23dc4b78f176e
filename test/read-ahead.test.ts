/**
 * Reading ahead: a file source opened with `readAhead` reads its next chunk on libuv's thread pool
 * while the current one is parsed, and a record cut by a chunk's end is carried into the headroom
 * in front of the next chunk's data. The reference is the synchronous reader (chunks of 1 MiB, one
 * chunk), which pcap-parser-equivalence checks against pcap-parser and decode-golden against
 * tshark; the hand-made pcapng's packet count is tshark's. Everything read ahead must come out the
 * same, packet for packet, error for error.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import type { PacketSource, SourceOptions } from '../src/capture/source.js';
import { Batch } from '../src/packet/batch.js';
import { loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture, runCaptureAsync, type RunReport, type RunSpec } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { CAPTURES, dplab, tsharkCount } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-ahead-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;

interface Read { packets: string[]; error: string | null; waits: number }

function signature(b: Batch, i: number): string {
  const off = b.off[i]!;
  const md5 = createHash('md5').update(b.bytes.subarray(off, off + b.capLen[i]!)).digest('hex');
  return `${b.num[i]} ${b.tsSec[i]}.${b.tsNsec[i]} if=${b.iface[i]} lt=${b.linkType[i]} wire=${b.wireLen[i]} cap=${b.capLen[i]} ${md5}`;
}

function drain(src: PacketSource, b: Batch, out: string[]): number {
  let n = 0;
  while (src.fill(b) > 0) {
    for (let i = 0; i < b.count; i++) out.push(signature(b, i));
    n += b.count;
    src.release(b);
  }
  return n;
}

/** The reference: synchronous reads. */
function readInOrder(path: string): Read {
  const src = openCapture(path, { chunkSize: MiB, chunks: 1 });
  const packets: string[] = [];
  try { drain(src, new Batch(), packets); } finally { src.close(); }
  return { packets, error: src.error ? `${src.error.offset}: ${src.error.message}` : null, waits: 0 };
}

/** Read ahead in 1 MiB chunks, waiting for each read as runCaptureAsync does. */
async function readAhead(path: string, opts: SourceOptions = {}): Promise<Read> {
  const src = openCapture(path, { chunkSize: MiB, readAhead: true, ...opts });
  const packets: string[] = [];
  const b = new Batch(opts.chunks === undefined ? 256 : 7);
  let waits = 0;
  try {
    for (;;) {
      drain(src, b, packets);
      const w = src.waitForRead?.() ?? null;
      if (w === null) break;
      waits++;
      await w;
    }
  } finally { src.close(); }
  return { packets, error: src.error ? `${src.error.offset}: ${src.error.message}` : null, waits };
}

/** The largest shipped pcap, and a pcapng copy of it (editcap, from tshark's package). */
const ZEEK = join(CAPTURES, 'large/zeek_echo-connections.pcap');
function pcapngCopy(): string {
  const out = join(dir, 'zeek.pcapng');
  const r = spawnSync('editcap', ['-F', 'pcapng', ZEEK, out], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`editcap could not write a pcapng copy (${r.error?.message ?? r.stderr}): install it, e.g. apt-get install tshark`);
  return out;
}

describe('reading ahead reads what the synchronous reader reads', () => {
  it('every packet of the shipped captures bigger than two chunks, pcap and pcapng', async () => {
    const files = [join(CAPTURES, 'large/ppp_many-protocols.pcap'), ZEEK, pcapngCopy()];
    for (const f of files) {
      const want = readInOrder(f);
      const got = await readAhead(f);
      expect(got.error, f).toBeNull();
      expect(got.packets.length, f).toBe(want.packets.length);
      expect(got.packets, f).toEqual(want.packets);
      // The reads did run ahead: the parser caught up with at least one of them.
      expect(got.waits, f).toBeGreaterThan(0);
    }
  });

  it('a capture cut off mid-record: the same packets, then the same error at the same offset', async () => {
    const whole = readFileSync(ZEEK);
    for (const cut of [whole.length - 1000, 3 * MiB + 7]) {
      const f = join(dir, `cut-${cut}.pcap`);
      writeFileSync(f, whole.subarray(0, cut));
      const want = readInOrder(f);
      expect(want.error).toMatch(/is cut short/);
      const got = await readAhead(f);
      expect(got.error).toBe(want.error);
      expect(got.packets).toEqual(want.packets);
    }
  });

  it('a pcapng block longer than the headroom, and one longer than a chunk (skipped), around packets', async () => {
    // Hand-made: SHB, IDB, then EPBs with 900 KB custom blocks (a block cut by a chunk's end more
    // than the headroom before it is a carry the headroom cannot take: the synchronous path) and a
    // 3 MB one (longer than a chunk: skipped, while a read ahead is in flight) between them.
    const le = (n: number, bytes: number): Buffer => { const x = Buffer.alloc(bytes); if (bytes === 2) x.writeUInt16LE(n); else x.writeUInt32LE(n); return x; };
    const block = (type: number, body: Buffer): Buffer => {
      const pad = Buffer.alloc((4 - (body.length % 4)) % 4);
      const len = 12 + body.length + pad.length;
      return Buffer.concat([le(type, 4), le(len, 4), body, pad, le(len, 4)]);
    };
    const shb = block(0x0a0d0d0a, Buffer.concat([le(0x1a2b3c4d, 4), le(1, 2), le(0, 2), Buffer.alloc(8, 0xff)]));
    const idb = block(1, Buffer.concat([le(1, 2), le(0, 2), le(65535, 4)]));
    let seq = 0;
    const epb = (): Buffer => {
      const frame = Buffer.alloc(60 + (seq % 900), seq & 0xff);
      frame.writeUInt16BE(0x0800, 12);
      const body = Buffer.concat([le(0, 4), le(0, 4), le(seq * 1000, 4), le(frame.length, 4), le(frame.length, 4), frame]);
      seq++;
      return block(6, body);
    };
    const packets = (n: number): Buffer[] => Array.from({ length: n }, epb);
    const custom = (bytes: number): Buffer => block(0x00000bad, Buffer.concat([le(32473, 4), Buffer.alloc(bytes, 0x5a)]));
    const parts = [shb, idb, ...packets(3000), custom(900_000), ...packets(1000), custom(900_000), ...packets(2000),
      custom(900_000), ...packets(3000), custom(3 * MiB), ...packets(3000)];
    const f = join(dir, 'blocks.pcapng');
    writeFileSync(f, Buffer.concat(parts));
    const want = readInOrder(f);
    expect(want.error).toBeNull();
    expect(want.packets.length).toBe(tsharkCount(f));
    for (const chunks of [2, 3]) {
      const got = await readAhead(f, { chunks });
      expect(got.error).toBeNull();
      expect(got.packets).toEqual(want.packets);
    }
  });

  it('closing while a read is in flight leaves no descriptor open', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const before = fds();
    const src = openCapture(ZEEK, { chunkSize: MiB, readAhead: true });
    const b = new Batch();
    expect(src.fill(b)).toBeGreaterThan(0);
    src.release(b);
    src.close();
    // The read finishes on the thread pool, then closes the file.
    for (let k = 0; k < 100 && fds() !== before; k++) await new Promise((r) => setTimeout(r, 10));
    expect(fds()).toBe(before);
  });
});

/**
 * Make every later read of descriptor `fd` fail as a disk's would: close it and open /dev/null
 * write-only in its place (the lowest free number is the one just closed, so nothing else can
 * take it), so read() returns EBADF from the kernel. The source's close() closes the stand-in.
 */
function breakReads(fd: number): void {
  closeSync(fd);
  const extra: number[] = [];
  let f = openSync('/dev/null', 'w');
  while (f !== fd) {
    extra.push(f);
    if (extra.length > 64) throw new Error(`could not take descriptor ${fd} over`);
    f = openSync('/dev/null', 'w');
  }
  for (const x of extra) closeSync(x);
}

describe('a read the operating system refuses mid-file ends the capture like damage', () => {
  // The reference: where each of the first packets ends in the file (24-byte header, then records).
  const ends: number[] = [];
  {
    const src = openCapture(ZEEK, { chunkSize: MiB, chunks: 1 });
    const b = new Batch();
    let at = 24;
    while (src.fill(b) > 0) {
      for (let i = 0; i < b.count; i++) ends.push(at += 16 + b.capLen[i]!);
      src.release(b);
    }
    src.close();
  }
  const want = readInOrder(ZEEK).packets;

  for (const ahead of [false, true]) {
    it(ahead ? 'reading ahead: the packets before it, then an error naming the file and the first byte not delivered' : 'reading synchronously: the same', async () => {
      const src = openCapture(ZEEK, { chunkSize: MiB, chunks: ahead ? 2 : 1, readAhead: ahead });
      const b = new Batch();
      const packets: string[] = [];
      expect(src.fill(b)).toBeGreaterThan(0);
      for (let i = 0; i < b.count; i++) packets.push(signature(b, i));
      src.release(b);
      breakReads((src as unknown as { fd: number }).fd);
      try {
        for (;;) {
          drain(src, b, packets);
          const w = src.waitForRead?.() ?? null;
          if (w === null) break;
          await w;
        }
        expect(src.done).toBe(true);
        const e = src.error;
        expect(e?.message).toMatch(new RegExp(`^${ZEEK} at byte \\d+: reading the file from byte \\d+ failed \\(EBADF: bad file descriptor, read\\)\\. The disk or file system returned an error`));
        // Some packets were delivered, not all, exactly the capture's first ones, and the error's
        // offset is where the last of them ends.
        expect(packets.length).toBeGreaterThan(0);
        expect(packets.length).toBeLessThan(want.length);
        expect(packets).toEqual(want.slice(0, packets.length));
        expect(e!.offset).toBe(ends[packets.length - 1]);
        expect(src.position).toBe(e!.offset);
      } finally {
        src.close();
      }
    });
  }
});

describe('a replay reads ahead and reports what a synchronous run reports', () => {
  // A 12 MB capture (more than two 4 MiB chunks) with traffic to service VIPs, and profiles that
  // keep per-flow state across the chunk ends where a read ahead moves the batch boundaries:
  // ebpf (conntrack, policy's cached decision, ctlb's sockets), dnat and vfp (NAT bindings).
  const gen = join(dir, 'gen.pcap');
  const services = join(dir, 'svc.txt');
  const g = dplab('gen', gen, '--packets', '120000', '--seed', '5', '--services', services);
  writeFileSync(join(dir, 'dnat.profile'), `pipeline: conntrack -> dnat -> policy\n[dnat]\nservices: ${services}\n[policy]\ndefault: accept\n`);
  writeFileSync(join(dir, 'vfp.profile'), `pipeline: conntrack -> vfp\n[vfp]\nservices: ${services}\n`);

  const run = async (profile: string, ahead: boolean, batchSize: number): Promise<{ report: RunReport; flows: string; written: Buffer; readsAhead: number }> => {
    const tag = `${profile.replace(/\W/g, '_')}-${ahead ? 'ahead' : 'sync'}-${batchSize}`;
    const spec: RunSpec = {
      file: gen, profile, stages: buildStages(loadProfile(profile)), timing: false, batchSize,
      flowLog: join(dir, `${tag}.flows`), write: join(dir, `${tag}.pcap`),
    };
    const r = ahead ? await runCaptureAsync(spec) : runCapture(spec);
    const readsAhead = (r.source as PacketSource & { readsAhead: number }).readsAhead;
    return { report: r.report, flows: readFileSync(join(dir, `${tag}.flows`), 'utf8'), written: readFileSync(join(dir, `${tag}.pcap`)), readsAhead };
  };
  // Batches end at chunk ends and at --batch: calls per stage differ, nothing else may.
  const plain = (r: RunReport): unknown => JSON.parse(JSON.stringify(r, (k, v) => (['wallSeconds', 'packetsPerSecond', 'calls', 'packetsPerCall', 'ns', 'nsPerPacket'].includes(k) ? undefined : v)));

  it('generates the capture and its service table', () => {
    expect(g.status, g.stderr).toBe(0);
  });
  for (const name of ['ebpf', 'dnat', 'vfp']) {
    it(`${name}: read ahead at --batch 1, 7 and 256, the same report, flows and forwarded packets as a synchronous run`, async () => {
      const profile = name === 'ebpf' ? name : join(dir, `${name}.profile`);
      const sync = await run(profile, false, 256);
      // runCapture reads synchronously, runCaptureAsync ahead.
      expect(sync.readsAhead).toBe(0);
      for (const batch of [1, 7, 256]) {
        const ahead = await run(profile, true, batch);
        expect(ahead.readsAhead).toBeGreaterThan(1);
        expect(plain(ahead.report), `--batch ${batch}`).toEqual(plain(sync.report));
        expect(ahead.flows, `--batch ${batch}`).toBe(sync.flows);
        expect(ahead.written.equals(sync.written), `--batch ${batch}`).toBe(true);
      }
      if (name !== 'ebpf') {
        // The NAT profiles did translate: their flow log names backends (10.88.0.0/16).
        expect(sync.flows).toMatch(/10\.88\./);
      }
    }, 60_000);
  }

  it('ebpf from the command line: --workers 1 (read ahead) and --workers 2 give the same verdicts, flows and written packets', () => {
    const out = (w: string): { verdicts: unknown; flows: string; written: Buffer } => {
      const r = dplab('replay', gen, '--profile', 'ebpf', '--workers', w, '--no-progress', '--json', join(dir, `w${w}.json`),
        '--write', join(dir, `w${w}.pcap`), '--flows', join(dir, `w${w}.flows`));
      expect(r.status, r.stderr).toBe(0);
      const flows = readFileSync(join(dir, `w${w}.flows`), 'utf8').trim().split('\n').sort().join('\n');
      return { verdicts: JSON.parse(readFileSync(join(dir, `w${w}.json`), 'utf8')).verdicts, flows, written: readFileSync(join(dir, `w${w}.pcap`)) };
    };
    const one = out('1');
    const two = out('2');
    expect(two.verdicts).toEqual(one.verdicts);
    // Two workers log each worker's flows in turn: the same lines, another order.
    expect(two.flows).toBe(one.flows);
    expect(two.written.equals(one.written)).toBe(true);
  }, 60_000);
});
