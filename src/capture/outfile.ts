/**
 * Output files (--write, --write-dropped, --flows, --json): opened and probed before any packet is
 * read, so a path that cannot be written fails at once in one line, and written so that a failure
 * mid-run (disk full) names the file and leaves it holding only whole records.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** How `-` (standard output) is named in messages. */
export const STDOUT_NAME = 'standard output';

/** An output that could not be opened or written: which option, which file, why, in words. */
export class OutputError extends Error {
  /** The report of everything processed before a failure mid-run (set by the run loop). */
  partial: unknown = null;
  /** What the file holds after a failure mid-run, e.g. "it holds the first 1,200 packets". */
  note = '';
  constructor(readonly option: string, readonly file: string, readonly problem: string, readonly duringRun: boolean) {
    super(`cannot write ${option} ${file}: ${problem}`);
    this.name = 'OutputError';
  }
}

const EMPTY = new Uint8Array(0);

let pauseCell: Int32Array | null = null;
/**
 * Sleep `ms` on this thread (a descriptor answered EAGAIN). The cell is made at the first wait,
 * not as the module loads: dplab's start-up snapshot (scripts/snapshot.js) is built where no
 * SharedArrayBuffer may exist.
 */
export function nap(ms: number): void {
  Atomics.wait(pauseCell ??= new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Write all of buf[off, off + len) to fd. A non-blocking descriptor (a pipe Node made so) that is
 * full answers EAGAIN: wait a little and go on, never fail.
 */
export function writeAll(fd: number, buf: Uint8Array, off: number, len: number): void {
  const end = off + len;
  while (off < end) {
    try {
      off += writeSync(fd, buf, off, end - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      nap(0.2);
    }
  }
}

let stdoutFd = -1;

/**
 * Standard output for binary data. A pipe is opened afresh through /dev/stdout, which gives a
 * blocking descriptor whatever Node did to fd 1; anything else is fd 1 itself.
 */
export function standardOutput(): number {
  if (stdoutFd >= 0) return stdoutFd;
  stdoutFd = 1;
  try { if (fstatSync(1).isFIFO()) stdoutFd = openSync('/dev/stdout', 'w'); } catch { stdoutFd = 1; }
  return stdoutFd;
}

/** The cause of a failed open or write, in words, naming the folder when that is the problem. */
export function describeWriteError(e: unknown, path: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT': {
      let dir = dirname(path);
      while (!existsSync(dir) && dirname(dir) !== dir) {
        const up = dirname(dir);
        if (existsSync(up)) break;
        dir = up;
      }
      return `no such folder ${dir.endsWith('/') ? dir : `${dir}/`}`;
    }
    case 'ENOTDIR': {
      let dir = dirname(path);
      while (dirname(dir) !== dir) {
        try { if (!statSync(dir).isDirectory()) break; } catch { /* keep going up */ }
        dir = dirname(dir);
      }
      return `${dir} is a file, not a folder`;
    }
    case 'EISDIR': return 'it is a folder';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EROFS': return 'read-only file system';
    case 'ENOSPC': return 'no space left on device';
    case 'EDQUOT': return 'disk quota exceeded';
    case 'EFBIG': return 'file too large';
    case 'EIO': return 'input/output error (this file does not take data)';
    case 'EPIPE': return 'the reader went away (broken pipe)';
    default: return (e as Error)?.message?.replace(/^\w+: /, '').replace(/, \w+ '.*'$/, '') ?? String(e);
  }
}

/** One output: `-` is standard output. Opening it probes it with an empty write. */
export class OutputFile {
  readonly fd: number;
  readonly stdout: boolean;
  /** Bytes written so far (all of them whole: a failed write is cut back off a regular file). */
  bytes = 0;
  private readonly regular: boolean;
  private closed = false;

  constructor(readonly option: string, readonly path: string) {
    this.stdout = path === '-';
    try {
      this.fd = this.stdout ? standardOutput() : openSync(path, 'w');
      // /proc/version and the like open for writing but refuse data: find out now.
      writeSync(this.fd, EMPTY, 0, 0);
      this.regular = fstatSync(this.fd).isFile();
    } catch (e) {
      throw new OutputError(option, this.name, describeWriteError(e, path), false);
    }
  }

  /** `standard output` or the path. */
  get name(): string {
    return this.stdout ? STDOUT_NAME : this.path;
  }

  /** Write all of it, or throw OutputError having cut the file back to what it held before. */
  write(buf: Uint8Array, off: number, len: number): void {
    try {
      writeAll(this.fd, buf, off, len);
    } catch (e) {
      if (this.regular) try { ftruncateSync(this.fd, this.bytes); } catch { /* keep the first error */ }
      throw new OutputError(this.option, this.name, describeWriteError(e, this.path), true);
    }
    this.bytes += len;
  }

  text(s: string): void {
    const b = Buffer.from(s);
    this.write(b, 0, b.length);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.stdout || this.fd <= 2) return;
    try {
      closeSync(this.fd);
    } catch (e) {
      throw new OutputError(this.option, this.name, describeWriteError(e, this.path), true);
    }
  }
}

/** Open an output given as a path or an already open OutputFile. */
export function outputFile(option: string, out: string | OutputFile): OutputFile {
  return typeof out === 'string' ? new OutputFile(option, out) : out;
}
