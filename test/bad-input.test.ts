/**
 * Damaged and hostile input through the command line, as a user meets it: `dplab replay FILE
 * --json -` must end with exit 0 (read to the end) or 2 (damaged: what came before is reported),
 * never crash, and say what is wrong in one "dplab: ..." line per problem. Packet counts come from
 * capinfos (captures/INDEX.tsv), tshark and libpcap (test/golden), not from dplab.
 *
 * Needs the build (npm test builds first): the CLI runs from dist/.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURES, ROOT, captureIndex } from './helpers.js';

const DPLAB = join(ROOT, 'bin', 'dplab.js');
/** Generous for a small file: these run several at a time on a machine shared with other tests. */
const TIMEOUT_MS = 20_000;

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; timedOut: boolean }

function replay(file: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DPLAB, 'replay', file, '--json', '-', '--no-progress'], { timeout: TIMEOUT_MS, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string; killed?: boolean }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout, stderr,
          timedOut: e?.killed === true,
        });
      });
  });
}

interface Report { capture: { packets: number; malformed: number; malformedByReason: Record<string, number> }; complete: boolean }

/** The JSON report `--json -` prints (alone on stdout: the text report goes to stderr). */
function jsonReport(stdout: string): Report | null {
  const at = stdout.startsWith('{') ? 0 : stdout.indexOf('\n{') + 1;
  if (at <= 0 && !stdout.startsWith('{')) return null;
  try { return JSON.parse(stdout.slice(at)) as Report; } catch { return null; }
}

/**
 * stderr's messages as lines; every one must be a single clear message from dplab, never a stack
 * trace. With --json -, stderr starts with the text report: messages start at the first "dplab"
 * line (anything that looks like a stack trace counts wherever it is).
 */
function messages(run: Run): string[] {
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  const first = lines.findIndex((l) => l.startsWith('dplab'));
  return lines.filter((l, k) => (first >= 0 && k >= first) || /^\s+at |Error\b/.test(l));
}

function expectCleanMessages(run: Run, file: string): void {
  const lines = messages(run);
  expect(lines.filter((l) => /^\s+at /.test(l) || /internal error/i.test(l))).toEqual([]);
  expect(lines.filter((l) => !l.startsWith(`dplab: ${file}`))).toEqual([]);
}

/** Link types dplab decodes (README); any other in a file makes the exit status 2. */
const DECODED_LINK_TYPES = new Set([0, 1, 12, 101, 108, 113, 228, 229, 276]);

/**
 * A second opinion for some damaged captures: test/golden/damaged.tsv (make-golden.mjs) holds the
 * file type Wireshark recognised (capinfos -t) and libpcap's reading (tcpdump --count).
 */
const SECOND_OPINION = new Map(readFileSync(join(ROOT, 'test', 'golden', 'damaged.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => {
  const [file, type, packets, error] = l.split('\t');
  return [file!, { type: type!, packets: packets === '' ? NaN : Number(packets), error: error ?? '' }];
}));

/**
 * Wireshark takes a file with the standard magic for a patched-libpcap variant (Kuznetsov's
 * "RedHat 6.1" with 24-byte record headers, Nokia, ...) when its heuristics find the first records
 * fit that layout better; capinfos' count then follows that layout. dplab reads the standard layout
 * only, as libpcap does, so for these files libpcap's count and error are the reference.
 */
const STANDARD_TYPES = new Set(['', 'Wireshark/tcpdump/... - pcap', 'Wireshark/tcpdump/... - nanosecond pcap', 'Wireshark/... - pcapng']);

const damaged = captureIndex().filter((r) => r.file.startsWith('fuzz/') || r.file.startsWith('malformed/'));

describe.concurrent('fuzzed and malformed captures: exit 0 or 2, one clear message per problem, the packets before the damage counted', () => {
  it('has the shipped damaged captures to run', () => {
    expect(damaged.length).toBeGreaterThanOrEqual(80);
  });

  for (const row of damaged) {
    it(`${row.file}`, async () => {
      const path = join(CAPTURES, row.file);
      const run = await replay(path);
      expect(run.timedOut).toBe(false);
      expect(run.signal).toBeNull();
      expectCleanMessages(run, path);
      const linkTypes = row.linktype.split(',').map((t) => parseInt(t, 10)).filter((t) => !Number.isNaN(t));
      const unsupported = linkTypes.some((t) => !DECODED_LINK_TYPES.has(t));
      const second = SECOND_OPINION.get(row.file);
      expect(second).toBeDefined();
      const patched = !STANDARD_TYPES.has(second!.type);
      // The reference stopped with a read error: the file is damaged, so dplab says so (exit 2).
      const damage = patched ? second!.error !== '' : row.readError;
      expect(run.code).toBe(damage || unsupported ? 2 : 0);
      if (run.code === 2) expect(messages(run).length).toBeGreaterThanOrEqual(1);
      const report = jsonReport(run.stdout);
      const packets = patched ? second!.packets : row.packets;
      // Nothing in the file read as a capture (its header is bad): the message alone, no report.
      if (report === null) expect([run.code, packets, run.stdout]).toEqual([2, 0, '']);
      else expect(report.capture.packets).toBe(packets);
    });
  }
});

/** caplen of every packet of a capture, from its tshark golden file. */
function goldenCapLens(capture: string): number[] {
  const lines = readFileSync(join(ROOT, 'test', 'golden', `${capture}.tsv`), 'utf8').trim().split('\n');
  const col = lines[0]!.split('\t').indexOf('caplen');
  return lines.slice(1).map((l) => Number(l.split('\t')[col]));
}

/** Byte offset of record `k` (1-based) of a classic pcap whose records have these captured lengths. */
function recordOffset(capLens: number[], k: number): number {
  let at = 24;
  for (let j = 0; j < k - 1; j++) at += 16 + capLens[j]!;
  return at;
}

describe.concurrent('made-up damage: one message naming the file and the byte offset, a non-zero exit, the earlier packets counted', () => {
  let dir = '';
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dplab-bad-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  const base = 'dns/ppp_DnsPackets.pcap';
  const original = (): Buffer => readFileSync(join(CAPTURES, base));
  const capLens = goldenCapLens(base);

  /**
   * Run dplab on `bytes` written to a temp file; check the one message, the exit and the count. A
   * file with nothing readable as a capture gets the message alone: no report of zeros.
   */
  async function expectDamage(name: string, bytes: Buffer, offset: number, packets: number, about: RegExp): Promise<Report | null> {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    const run = await replay(path);
    expect(run.timedOut).toBe(false);
    expectCleanMessages(run, path);
    expect(messages(run)).toHaveLength(1);
    expect(messages(run)[0]).toMatch(new RegExp(`^dplab: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} at byte ${offset}: `));
    expect(messages(run)[0]).toMatch(about);
    expect(run.code).toBe(2);
    if (offset === 0 && packets === 0) {
      expect(run.stdout).toBe('');
      return null;
    }
    const report = jsonReport(run.stdout);
    expect(report).not.toBeNull();
    expect(report!.capture.packets).toBe(packets);
    return report!;
  }

  it('uses a capture of many packets', () => expect(capLens.length).toBe(464));

  it('an empty file', async () => {
    await expectDamage('empty.pcap', Buffer.alloc(0), 0, 0, /empty/);
  });

  it('random bytes', async () => {
    let x = 2463534242;
    const junk = Buffer.alloc(4096);
    for (let k = 0; k < junk.length; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; junk[k] = x & 0xff; }
    await expectDamage('junk.pcap', junk, 0, 0, /not a pcap or pcapng file/);
  });

  it('a pcap file header cut short', async () => {
    await expectDamage('short-header.pcap', original().subarray(0, 10), 0, 0, /header is cut short/);
  });

  it('a last record cut short', async () => {
    const last = capLens.length;
    const at = recordOffset(capLens, last);
    await expectDamage('short-record.pcap', original().subarray(0, at + 16 + (capLens[last - 1]! >> 1)), at, last - 1, /record 464 is cut short/);
  });

  it('a record whose length field claims 0xffffffff bytes', async () => {
    const bytes = Buffer.from(original());
    const at = recordOffset(capLens, 3);
    bytes.writeUInt32LE(0xffffffff, at + 8);
    await expectDamage('huge-record.pcap', bytes, at, 2, /record 3 claims 4294967295 bytes/);
  });

  it('an unsupported link type (147): every packet counted, as unsupported-link-type', async () => {
    const bytes = Buffer.from(original());
    bytes.writeUInt32LE(147, 20);
    const report = await expectDamage('linktype-147.pcap', bytes, 20, capLens.length, /link type 147 .* is not supported/);
    expect(report!.capture.malformedByReason).toEqual({ 'unsupported-link-type': capLens.length });
  });

  it('a pcapng whose last block is cut short', async () => {
    const ng = readFileSync(join(CAPTURES, 'pcapng/ppp_pcapng-example.pcapng'));
    // The last block starts its own trailing length before the end of the file.
    const lastBlock = ng.length - ng.readUInt32LE(ng.length - 4);
    const packets = goldenCapLens('pcapng/ppp_pcapng-example.pcapng').length;
    await expectDamage('short-block.pcapng', ng.subarray(0, lastBlock + 20), lastBlock, packets - 1, /cut short|claims \d+ bytes/);
  });
});

describe.concurrent('files that cannot be read at all: exit 1 and one message naming the file', () => {
  let dir = '';
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dplab-open-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  it('a directory', async () => {
    const run = await replay(dir);
    expect(run.code).toBe(1);
    expectCleanMessages(run, dir);
    expect(messages(run)).toEqual([`dplab: ${dir}: is a directory. Give a pcap or pcapng file`]);
  });

  it('a missing file', async () => {
    const path = join(dir, 'missing.pcap');
    const run = await replay(path);
    expect(run.code).toBe(1);
    expect(messages(run)).toEqual([`dplab: ${path}: no such file. Check the path`]);
  });

  it('a file without read permission (as root, which may read anything, it is read like any other)', async () => {
    const path = join(dir, 'locked.pcap');
    writeFileSync(path, readFileSync(join(CAPTURES, 'dns/tcpdump_dns_udp.pcap')));
    chmodSync(path, 0o000);
    const run = await replay(path);
    if (process.getuid?.() === 0) {
      // chmod 000 does not stop root (CI runs as root): the file must simply be read.
      expect(run.code).toBe(0);
      expect(messages(run)).toEqual([]);
      expect(jsonReport(run.stdout)!.capture.packets).toBe(2);
    } else {
      expect(run.code).toBe(1);
      expect(messages(run)).toEqual([`dplab: ${path}: permission denied. Make the file readable for this user (chmod or sudo)`]);
    }
  });
});
