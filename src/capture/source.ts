import { closeSync, fstatSync, read, readSync, type Stats } from 'node:fs';
import type { Batch } from '../packet/batch.js';
import { CaptureError } from './errors.js';
import { nap } from './outfile.js';

/**
 * A packet source fills batches. At its end, or at damage it cannot read past, `fill` returns 0;
 * `error` then says what went wrong (the packets before it were delivered).
 */
export interface PacketSource {
  readonly path: string;
  readonly format: string;
  /** Interfaces seen so far (pcap has exactly one). */
  readonly interfaces: readonly InterfaceInfo[];
  /** Fill `batch` from the start with up to batch.capacity packets; 0 means no more for now. */
  fill(batch: Batch): number;
  /** True when `fill` returned 0 only because every chunk is still held by unfinished batches. */
  readonly blocked: boolean;
  /**
   * After `fill` returned 0: a promise to wait for before filling again (the next part of the file
   * is still being read), or null (the end, or damage). Only sources opened with `readAhead`.
   */
  waitForRead?(): Promise<void> | null;
  /** The batch's packets are done with: their bytes may be reused. */
  release(batch: Batch): void;
  readonly done: boolean;
  readonly error: CaptureError | null;
  /** Bytes of the file consumed so far, and its size (for progress). */
  readonly position: number;
  readonly size: number;
  /** Packets delivered so far. */
  readonly packets: number;
  close(): void;
}

export interface InterfaceInfo {
  linkType: number;
  snapLen: number;
  name: string;
  /** Timestamp units per second (1e6 for microseconds). */
  unitsPerSecond: number;
  /** Seconds added to every timestamp (pcapng if_tsoffset). */
  tsOffset: number;
  /** Byte offset in the file where the interface and its link type are described, when from a file. */
  at?: number;
}

/** Largest packet dplab accepts: libpcap's and Wireshark's MAXIMUM_SNAPLEN. */
export const MAX_PACKET = 262144;
export const DEFAULT_CHUNK_SIZE = 4 << 20;
const MIN_CHUNK_SIZE = 1 << 20;

export interface SourceOptions {
  /** Bytes read from the file at a time (default 4 MiB). */
  chunkSize?: number;
  /** Chunks in the pool: batches in flight keep theirs until released (default 2). */
  chunks?: number;
  /** The first bytes of a stream, already read by whoever opened it. */
  prefix?: Uint8Array;
  /**
   * Read the file's next chunk on libuv's thread pool while this one is parsed (see
   * ChunkedFileSource's `ahead`). Only for a caller that waits on `waitForRead()` when `fill`
   * returns 0 (runCaptureAsync); a synchronous caller would see the input end early.
   */
  readAhead?: boolean;
}

/**
 * Bytes before each chunk's data when reading ahead: the part of a record that the previous
 * chunk's end cut is copied in front of the data read behind it, so a record's bytes stay
 * contiguous. Any pcap record fits (16 + MAX_PACKET); a bigger carry (a huge pcapng block) takes
 * the synchronous path.
 */
const HEADROOM = MAX_PACKET + 4096;

/** A read on the thread pool into chunk `chunk` at HEADROOM, of the file from `at`. */
interface PendingRead {
  readonly chunk: Chunk;
  readonly at: number;
  done: boolean;
  got: number;
  error: Error | null;
  readonly finished: Promise<void>;
}

export interface Chunk {
  readonly id: number;
  readonly buf: Uint8Array;
  readonly dv: DataView;
  /** Bytes of `buf` holding file data. */
  len: number;
  /** File offset of buf[0]. */
  fileOffset: number;
  /** Batches handed out and not yet released. */
  refs: number;
}

/**
 * What refill() did. FAILED: the operating system refused a read (EIO, a vanished network file
 * system): the source is done, its error says where, and the packets before stand.
 */
export const enum Refill { OK, EOF, BLOCKED, FAILED }

/** A pipe, a terminal, a socket: read once, in order, with no size known before its end. */
export function isStreamStat(st: Stats): boolean {
  return !st.isFile() && !st.isBlockDevice();
}

/**
 * Streams a file through a small pool of large chunks, so memory stays bounded whatever the file
 * size. A record that straddles the end of a chunk is carried to the start of the next one, so a
 * record's bytes are always contiguous and a batch never spans two chunks.
 */
export abstract class ChunkedFileSource implements PacketSource {
  abstract readonly format: string;
  abstract readonly interfaces: readonly InterfaceInfo[];
  abstract fill(batch: Batch): number;

  /** The file's size; for a stream, 0 until its end, then the bytes it held. */
  size: number;
  error: CaptureError | null = null;
  done = false;
  blocked = false;
  packets = 0;

  protected readonly fd: number;
  protected readonly pool: Chunk[] = [];
  /** The chunk being parsed, and the offset in it of the next unparsed byte. */
  protected c: Chunk;
  protected pos = 0;
  /** File offset where the next read starts. */
  private readAt = 0;
  private eof = false;
  /**
   * Reading ahead: whenever parsing moves to a new chunk, the next part of the file is read into
   * the free chunk by libuv's thread pool, so the copy from the page cache (58-79 ms of a 358 MB
   * file here), or the wait for the disk, happens while this thread parses. From the page cache:
   * read + decode 1.07x, ebpf (its stages wait on memory) unchanged; from disk: 1.24x and 1.16x
   * (DESIGN.md "Tenth pass").
   */
  private readonly ahead: boolean;
  private pending: PendingRead | null = null;
  /** Set when fill() returned 0 because the next chunk's read has not finished yet. */
  private waiting: Promise<void> | null = null;
  private closeWhenRead = false;
  /** Chunks parsed that were read ahead (for tests and benchmarks). */
  readsAhead = 0;
  /**
   * A pipe or terminal (standard input): read sequentially, never by position (ESPIPE), and its
   * size is unknown (0) until its end.
   */
  readonly stream: boolean;

  constructor(readonly path: string, fd: number, opts: SourceOptions = {}) {
    this.fd = fd;
    const st = fstatSync(fd);
    this.stream = isStreamStat(st);
    this.size = this.stream ? 0 : st.size;
    // A file smaller than a chunk gets chunks of its size: compare reads the capture once per run,
    // and two 4 MiB chunks of zeroed shared memory were ~3 ms of each run of a small capture. A
    // chunk is at least MIN_CHUNK_SIZE, which holds the largest record, unless the whole file is
    // smaller still (no record is larger than the file): with the launcher's malloc settings a
    // chunk comes from malloc's heap and is zeroed as it is made, and the two 1 MiB chunks of a
    // small capture were a fresh 2 MB huge page to clear, ~5 ms of a 1-packet replay's ~75 here.
    const fits = this.stream ? Infinity : st.size + 1;
    const chunkSize = fits <= MIN_CHUNK_SIZE ? fits : Math.max(MIN_CHUNK_SIZE, Math.min(opts.chunkSize ?? DEFAULT_CHUNK_SIZE, fits));
    const count = Math.max(1, opts.chunks ?? 2);
    // Worth a thread-pool read only when the file takes more than two chunks.
    this.ahead = opts.readAhead === true && !this.stream && count >= 2 && st.size > 2 * chunkSize;
    const bytes = this.ahead ? HEADROOM + chunkSize : chunkSize;
    for (let id = 0; id < count; id++) {
      const buf = new Uint8Array(new SharedArrayBuffer(bytes));
      this.pool.push({ id, buf, dv: new DataView(buf.buffer), len: 0, fileOffset: 0, refs: 0 });
    }
    this.c = this.pool[0]!;
    if (opts.prefix) {
      // Bytes a stream's opener already read (the magic number): they start the first chunk.
      this.c.buf.set(opts.prefix, 0);
      this.c.len = opts.prefix.length;
      this.readAt = opts.prefix.length;
    }
  }

  get position(): number {
    return this.c.fileOffset + this.pos;
  }

  /** Chunk `id`'s bytes (a worker receiving a batch maps chunkId to this). */
  chunk(id: number): Chunk {
    return this.pool[id]!;
  }

  release(batch: Batch): void {
    if (batch.count > 0 && batch.chunkId >= 0) this.pool[batch.chunkId]!.refs--;
    batch.chunkId = -1;
  }

  close(): void {
    if (this.fd === 0) return;
    // A read in flight still uses the descriptor: it closes it when it finishes.
    if (this.pending !== null && !this.pending.done) this.closeWhenRead = true;
    else closeSync(this.fd);
  }

  /** Bytes available at `pos` in the current chunk. */
  protected avail(): number {
    return this.c.len - this.pos;
  }

  /** Give the current batch its chunk. */
  protected handOut(batch: Batch, n: number): number {
    batch.count = n;
    if (n > 0) {
      batch.bytes = this.c.buf;
      batch.chunkId = this.c.id;
      this.c.refs++;
      this.packets += n;
    }
    return n;
  }

  /** Make `need` bytes available at `pos`, reading more of the file as needed. */
  protected ensure(need: number): Refill {
    while (this.c.len - this.pos < need) {
      const r = this.refill();
      if (r !== Refill.OK) return r;
    }
    return Refill.OK;
  }

  /**
   * Move the unparsed tail of the current chunk to the start of a free chunk and read more of the
   * file behind it. BLOCKED when every other chunk is still in use by batches in flight, or when
   * the read ahead into the next chunk has not finished (`waitForRead()` says when it has).
   */
  protected refill(): Refill {
    if (this.eof) return Refill.EOF;
    const p = this.pending;
    if (p !== null) {
      if (!p.done) {
        this.waiting = p.finished;
        return Refill.BLOCKED;
      }
      this.pending = null;
      if (p.error) return this.readFailed(p.error, p.at);
      const r = this.takeAhead(p);
      if (r !== null) return r;
    }
    const cur = this.c;
    const carry = cur.len - this.pos;
    let next: Chunk | undefined;
    if (cur.refs === 0) next = cur;
    else for (const k of this.pool) if (k.refs === 0 && k !== cur) { next = k; break; }
    if (!next) { this.blocked = true; return Refill.BLOCKED; }
    this.blocked = false;
    if (carry > 0) {
      if (next === cur) cur.buf.copyWithin(0, this.pos, cur.len);
      else next.buf.set(cur.buf.subarray(this.pos, cur.len), 0);
    }
    next.fileOffset = cur.fileOffset + this.pos;
    let len = carry;
    // One read is enough unless the OS returns short reads; loop until the chunk is full or EOF.
    while (len < next.buf.length) {
      let got: number;
      try {
        got = this.stream ? readStream(this.fd, next.buf, len, next.buf.length - len)
          : readSync(this.fd, next.buf, len, next.buf.length - len, this.readAt);
      } catch (e) {
        // Parsing stands where it stopped: at the start of `next`, which holds the carried tail.
        next.len = len;
        this.c = next;
        this.pos = 0;
        return this.readFailed(e, this.readAt);
      }
      if (got === 0) { this.eof = true; if (this.stream) this.size = this.readAt; break; }
      this.readAt += got;
      len += got;
    }
    next.len = len;
    this.c = next;
    this.pos = 0;
    this.readNext();
    return len > carry ? Refill.OK : Refill.EOF;
  }

  /**
   * Move to the chunk read ahead, the current chunk's tail copied in front of its data. null
   * (nothing changed) when its bytes cannot be used: they are not the file's next (skip() moved the
   * reading position), or the tail is longer than the headroom; the caller then reads
   * synchronously.
   */
  private takeAhead(p: PendingRead): Refill | null {
    const cur = this.c;
    const carry = cur.len - this.pos;
    if (p.at !== this.readAt || carry > HEADROOM) return null;
    const next = p.chunk;
    const start = HEADROOM - carry;
    if (carry > 0) next.buf.set(cur.buf.subarray(this.pos, cur.len), start);
    next.fileOffset = cur.fileOffset + this.pos - start;
    next.len = HEADROOM + p.got;
    this.readAt += p.got;
    if (p.got === 0) this.eof = true;
    this.c = next;
    this.pos = start;
    this.readsAhead++;
    this.readNext();
    return p.got > 0 ? Refill.OK : Refill.EOF;
  }

  /**
   * A read failed: the source ends there, as at damage. The error's offset is the first byte not
   * delivered (the packets before it were); its text names the byte the failed read started at.
   */
  private readFailed(e: unknown, at: number): Refill {
    const why = (e as NodeJS.ErrnoException)?.message ?? String(e);
    this.fail(this.position, `reading the file from byte ${at} failed (${why})`,
      'The disk or file system returned an error; the packets before it were read. Check the device (dmesg), or copy the capture to a local disk and run again');
    return Refill.FAILED;
  }

  /** Reading ahead: start reading the file's next part into a chunk no batch holds. */
  private readNext(): void {
    if (!this.ahead || this.eof || this.pending !== null || this.closeWhenRead) return;
    let free: Chunk | undefined;
    for (const k of this.pool) if (k.refs === 0 && k !== this.c) { free = k; break; }
    if (!free) return;
    let settle!: () => void;
    const p: PendingRead = {
      chunk: free, at: this.readAt, done: false, got: 0, error: null,
      finished: new Promise<void>((r) => { settle = r; }),
    };
    read(this.fd, free.buf, HEADROOM, free.buf.length - HEADROOM, this.readAt, (err, got) => {
      p.done = true;
      p.got = got;
      p.error = err;
      if (this.closeWhenRead) closeSync(this.fd);
      settle();
    });
    this.pending = p;
  }

  /**
   * After fill() returned 0: a promise that settles when the read it waits for has finished (then
   * fill again), or null when fill returned 0 for any other reason (the end, damage, or chunks
   * held by batches in flight).
   */
  waitForRead(): Promise<void> | null {
    const w = this.waiting;
    this.waiting = null;
    return w;
  }

  /** Skip `n` bytes from `pos`, reading past them in the file if they are not in memory. */
  protected skip(n: number): void {
    if (this.pos + n <= this.c.len) {
      this.pos += n;
      return;
    }
    const target = this.c.fileOffset + this.pos + n;
    if (this.stream) {
      // A pipe cannot seek: read past the bytes (rare: only blocks larger than a chunk are skipped).
      const scratch = new Uint8Array(1 << 16);
      while (!this.eof && this.readAt < target) {
        let got: number;
        try {
          got = readStream(this.fd, scratch, 0, Math.min(scratch.length, target - this.readAt));
        } catch (e) {
          this.readFailed(e, this.readAt);
          return;
        }
        if (got === 0) { this.eof = true; this.size = this.readAt; } else this.readAt += got;
      }
    } else {
      this.readAt = Math.min(target, this.size);
      this.eof = false;
    }
    this.c.fileOffset = target - this.c.len;
    this.pos = this.c.len;
  }

  /** Bytes of the file left from `pos`, whether in memory or not. */
  protected remainingInFile(): number {
    if (this.stream && !this.eof) return Infinity;
    return this.size - (this.c.fileOffset + this.pos);
  }

  protected fail(offset: number, problem: string, hint: string): void {
    this.error = new CaptureError(this.path, offset, problem, hint);
    this.done = true;
  }
}

/**
 * One sequential read from a pipe or terminal. A non-blocking descriptor (EAGAIN: nothing to read
 * yet) is waited on in short sleeps rather than failed.
 */
export function readStream(fd: number, buf: Uint8Array, at: number, length: number): number {
  for (;;) {
    try {
      return readSync(fd, buf, at, length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      nap(0.2);
    }
  }
}
