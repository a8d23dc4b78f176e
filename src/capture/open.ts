import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { isatty } from 'node:tty';
import type { Batch } from '../packet/batch.js';
import { CaptureError } from './errors.js';
import { PCAP_MAGIC_NS, PCAP_MAGIC_US, PcapReader } from './pcap.js';
import { BT_SHB, PcapngReader } from './pcapng.js';
import { isStreamStat, readStream, type InterfaceInfo, type PacketSource, type SourceOptions } from './source.js';

/** How a capture read from standard input (`-`) is named in reports and messages. */
export const STDIN_NAME = 'standard input';

/** How a capture argument is named in messages: `-` is standard input. */
export function inputName(file: string): string {
  return file === '-' ? STDIN_NAME : file;
}

/**
 * True when a capture argument can be read only once, in order (standard input, a named pipe,
 * /dev/stdin on a pipe): what cannot be re-read cannot run on workers or twice. A path that does
 * not exist is not a stream (opening it says what is wrong).
 */
export function isStreamInput(file: string): boolean {
  if (file === '-') return true;
  try { return isStreamStat(statSync(file)); } catch { return false; }
}

/**
 * Open a capture file, recognising pcap and pcapng by their first bytes. Throws CaptureError
 * (offset -1) when the file cannot be opened at all. A file that opens but is not a capture (empty,
 * unknown magic) is damage at byte 0, like a truncated header: the source comes back done, with
 * its error set and no packets, so callers report it the same way.
 */
export function openCapture(file: string, opts?: SourceOptions): PacketSource {
  if (file === '-') return openStdin(opts);
  const path = file;
  let fd: number;
  try {
    if (statSync(path).isDirectory()) throw new CaptureError(path, -1, 'is a directory', 'Give a pcap or pcapng file');
    fd = openSync(path, 'r');
  } catch (e) {
    if (e instanceof CaptureError) throw e;
    throw new CaptureError(path, -1, describeOpenError(e), hintForOpenError(e));
  }
  return openFd(path, fd, opts);
}

/**
 * `-`: standard input, as tcpdump and tshark read `-r -`. A pipe is read sequentially, in the same
 * chunks as a file, so memory stays bounded whatever it carries.
 */
function openStdin(opts?: SourceOptions): PacketSource {
  if (isatty(0)) {
    throw new CaptureError(STDIN_NAME, -1, 'is a terminal', 'Pipe a capture into dplab (dplab gen - | dplab replay -, tcpdump -w - | dplab replay -) or give a file');
  }
  let fd = 0;
  // A fresh open of the pipe is a blocking descriptor even if fd 0 was made non-blocking.
  try { if (!fstatSync(0).isFile()) fd = openSync('/dev/stdin', 'r'); } catch { fd = 0; }
  return openFd(STDIN_NAME, fd, opts);
}

function openFd(path: string, fd: number, opts?: SourceOptions): PacketSource {
  const head = new Uint8Array(4);
  let got = 0;
  let size: number;
  let stream = false;
  try {
    const st = fstatSync(fd);
    stream = isStreamStat(st);
    size = st.size;
    if (!stream) got = readSync(fd, head, 0, 4, 0);
    else {
      // A pipe cannot be read by position: read the magic number in order and hand it on.
      for (let n = -1; got < 4 && n !== 0;) got += n = readStream(fd, head, got, 4 - got);
      size = got;
    }
  } catch (e) {
    if (fd !== 0) closeSync(fd);
    throw new CaptureError(path, -1, describeOpenError(e), hintForOpenError(e));
  }
  if (stream) opts = { ...opts, prefix: head.subarray(0, got) };
  const unreadable = (problem: string, hint: string): PacketSource => {
    if (fd !== 0) closeSync(fd);
    return new UnreadableCapture(path, size, new CaptureError(path, 0, problem, hint));
  };
  if (got === 0) return unreadable('file is empty', 'Check that the capture finished writing');
  const dv = new DataView(head.buffer);
  const be = got === 4 ? dv.getUint32(0, false) : -1;
  const le = got === 4 ? dv.getUint32(0, true) : -1;
  if (be === PCAP_MAGIC_US || le === PCAP_MAGIC_US || be === PCAP_MAGIC_NS || le === PCAP_MAGIC_NS) {
    return new PcapReader(path, fd, opts);
  }
  if (be === BT_SHB) return new PcapngReader(path, fd, opts);
  if (head[0] === 0x1f && head[1] === 0x8b) return unreadable('is gzip-compressed', `Decompress it first: gunzip -k ${path}`);
  if (got < 4) return unreadable(`file is too short to be a capture (${got} bytes)`, 'Check that the capture finished writing');
  const magic = be.toString(16).padStart(8, '0');
  return unreadable(`not a pcap or pcapng file (it starts with 0x${magic})`,
    'dplab reads pcap (tcpdump -w) and pcapng (Wireshark, dumpcap) captures; convert others with editcap');
}

/** A file that is not a capture: no packets, and the reason as its error. */
class UnreadableCapture implements PacketSource {
  readonly format = 'unknown';
  readonly interfaces: readonly InterfaceInfo[] = [];
  readonly blocked = false;
  readonly done = true;
  readonly position = 0;
  readonly packets = 0;
  constructor(readonly path: string, readonly size: number, readonly error: CaptureError) {}
  fill(b: Batch): number { b.count = 0; return 0; }
  release(): void {}
  close(): void {}
}

function describeOpenError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EISDIR': return 'is a directory';
    default: return (e as Error).message;
  }
}

function hintForOpenError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'Make the file readable for this user (chmod or sudo)';
  if (code === 'ENOENT') return 'Check the path';
  return '';
}
