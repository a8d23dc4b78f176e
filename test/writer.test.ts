/**
 * CaptureWriter writes what it is given so that tshark reads back exactly the input: the same
 * packets with the same timestamps, lengths, link types and bytes. tshark reads both the original
 * capture and dplab's copy; the two views must agree. This test runs tshark (CI installs it): when
 * it is missing the test fails and says so, it never skips.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { CaptureWriter } from '../src/capture/writer.js';
import { Batch } from '../src/packet/batch.js';
import { CAPTURES } from './helpers.js';

/** Each frame as tshark sees it: time, lengths, encapsulation and an MD5 of the bytes. */
function tsharkFrames(file: string): string[] {
  let out: string;
  try {
    out = execFileSync('tshark', ['-n', '-r', file, '-o', 'frame.generate_md5_hash:TRUE', '-T', 'fields',
      '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.encap_type', '-e', 'frame.md5_hash', '-e', 'frame.cb_pen', '-e', 'frame.section_number'],
    { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('tshark is not installed: the writer test reads dplab\'s output back with it. Install it (apt-get install tshark); CI does.');
    throw new Error(`tshark could not read ${file}: ${err.stderr ?? err.message}`);
  }
  return out.split('\n').filter((l) => l !== '')
    // pcapng Custom Blocks are records to tshark, not packets: the writer does not copy them.
    .filter((l) => l.split('\t')[5] === '')
    .map((l) => { const c = l.split('\t'); return `${c.slice(0, 5).join('\t')}\t${c[6]}`; });
}

/**
 * What tshark must see in the copy, given the original (section number last). The copy is one
 * section, so every packet keeps everything but its section; a Simple Packet Block (no time) stays
 * one when it belongs to the copy's first interface, as those of the first section do, while one
 * from a later section (its own interface 0 is not the copy's) must become an Enhanced Packet Block
 * and carries the time dplab gives it: the last time before it in the file.
 */
function expectedCopy(original: string[]): string[] {
  let last = '';
  return original.map((l) => {
    const c = l.split('\t');
    const section = c.pop();
    if (c[0] === '' && section !== '1') c[0] = last;
    if (c[0] !== '') last = c[0]!;
    return `${c.join('\t')}\t${section === '' ? '' : '1'}`; // a classic pcap has no sections
  });
}

/** Read `input` with dplab and write every packet with CaptureWriter in `format`. */
function copy(input: string, output: string, format: 'pcap' | 'pcapng', chunkSize?: number): number {
  const src = openCapture(input, chunkSize ? { chunkSize, chunks: 2 } : undefined);
  const b = new Batch();
  let w: CaptureWriter | null = null;
  try {
    while (src.fill(b) > 0) {
      // pcapng sources describe interfaces as they go: open the writer once the first ones are known.
      w ??= new CaptureWriter(output, src.interfaces, format);
      for (let i = 0; i < b.count; i++) w.write(b, i);
      src.release(b);
    }
    expect(src.error).toBeNull();
  } finally {
    src.close();
    w?.close();
  }
  return w?.packets ?? 0;
}

const PCAP = [
  'dns/ppp_DnsPackets.pcap',
  'ipv4_frag/ppp_ip4_fragments.pcap',
  'linktype/ppp_sll2.pcap',
  'linktype/tcpdump_nflog.pcap',
  'tcp_http/ppp_one_http_stream_rst.pcap',
  'ts_endian/arkime_bigendian.pcap',
  'ts_endian/ppp_nanosecs_big_endian.pcap',
  'ts_endian/tcpdump_tcp-handshake-nano.pcap',
  // 2.9 MB: more than the writer's 1 MiB buffer, so it flushes along the way.
  'large/ppp_many-protocols.pcap',
];
const PCAPNG = [
  'icmp/ppp_IcmpPackets.pcapng',
  'vlan/ipfixprobe_vlan.pcapng',
  'pcapng/zeek_http_cooper-grill-dvwa.pcapng', // nanosecond resolution
  'pcapng/ppp_pcapng-example.pcapng', // two interfaces, nanosecond and microsecond, two link types
  'pcapng/gopacket_be_test006.pcapng', // big-endian, two link types
  'pcapng/gopacket_le_test100.pcapng', // three interfaces
  'pcapng/ppp_many_interfaces-1.pcapng', // eleven interfaces, three link types
  'pcapng/gopacket_le_test202.pcapng', // three sections, five interfaces, Simple Packet Blocks, Custom Blocks
  'pcapng/gopacket_be_test202.pcapng', // the same, big-endian
];

describe('CaptureWriter output reads back in tshark as the input', () => {
  let dir = '';
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dplab-writer-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  const cases = [...PCAP.map((f) => [f, 'pcap'] as const), ...PCAPNG.map((f) => [f, 'pcapng'] as const)];
  for (const [file, format] of cases) {
    it(`${file} -> ${format}: same packets, timestamps, lengths, link types and bytes`, () => {
      const input = join(CAPTURES, file);
      const output = join(dir, `${file.replace(/\//g, '_')}.${format}`);
      const original = tsharkFrames(input);
      const written = copy(input, output, format);
      expect(written).toBe(original.length);
      expect(tsharkFrames(output)).toEqual(expectedCopy(original));
    });
  }

  it('a pcap keeps its timestamp resolution: microsecond stays microsecond, nanosecond stays nanosecond (capinfos -t)', () => {
    const fileType = (f: string): string => /File type:\s*(.*)/.exec(execFileSync('capinfos', ['-t', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))![1]!.trim();
    for (const [file, type] of [['dns/ppp_DnsPackets.pcap', 'Wireshark/tcpdump/... - pcap'], ['ts_endian/tcpdump_tcp-handshake-nano.pcap', 'Wireshark/tcpdump/... - nanosecond pcap']] as const) {
      const input = join(CAPTURES, file);
      const output = join(dir, `resolution-${file.replace(/\//g, '_')}`);
      copy(input, output, 'pcap');
      expect(fileType(input), file).toBe(type);
      expect(fileType(output), file).toBe(type);
    }
  });

  it('a packet from an interface not yet described, near the end of the write buffer (1 MiB): every interface block fits', () => {
    // pcapng interface blocks are written when an interface is first used; a packet from interface
    // 199 brings 199 of them at once. Fill the buffer to just below its flush point first, for a
    // few distances from it, and check tshark reads every packet on the right interface.
    const interfaces = Array.from({ length: 200 }, (_, k) => ({ linkType: 1, snapLen: 262144, name: `if${k}`, unitsPerSecond: 1e6, tsOffset: 0 }));
    const frame = new Uint8Array(262144);
    for (let k = 0; k < frame.length; k++) frame[k] = (k * 31 + 7) & 0xff;
    const b = new Batch(1);
    b.bytes = frame;
    b.count = 1;
    const put = (w: CaptureWriter, len: number, iface: number, sec: number): void => {
      b.off[0] = 0; b.capLen[0] = len; b.wireLen[0] = len; b.iface[0] = iface; b.linkType[0] = 1; b.tsSec[0] = sec; b.tsNsec[0] = 0;
      w.write(b, 0);
    };
    for (const slack of [0, 100, 1000, 6000]) {
      const out = join(dir, `late-interfaces-${slack}.pcapng`);
      const w = new CaptureWriter(out, interfaces, 'pcapng');
      // SHB 28 bytes + IDB 32; each packet block is 32 bytes + data (lengths below are multiples of 4).
      const lens = [262100, 262100, 262100];
      const used = 28 + 32 + lens.reduce((a, n) => a + 32 + n, 0);
      lens.push((1 << 20) - used - 32 - 96 - slack);
      lens.forEach((len, k) => put(w, len, 0, 1700000000 + k));
      put(w, 60, 199, 1700000010);
      w.close();
      const frames = tsharkFrames(out);
      expect(frames.map((f) => f.split('\t').slice(1, 3).join('/'))).toEqual([...lens, 60].map((n) => `${n}/${n}`));
      const ifaces = execFileSync('tshark', ['-r', out, '-T', 'fields', '-e', 'frame.interface_id'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      expect(ifaces.trim().split('\n')).toEqual(['0', '0', '0', '0', '199']);
    }
  });

  it('a large capture copied to pcapng, then read back by dplab in 1 MiB chunks, still matches tshark', () => {
    // Blocks straddle the reader's chunks many times over: the pcapng carry-over path.
    const input = join(CAPTURES, 'large/ppp_many-protocols.pcap');
    const ng = join(dir, 'many.pcapng');
    const again = join(dir, 'many-again.pcapng');
    copy(input, ng, 'pcapng');
    expect(statSync(ng).size).toBeGreaterThan(2 << 20);
    copy(ng, again, 'pcapng', 1 << 20);
    expect(tsharkFrames(again)).toEqual(expectedCopy(tsharkFrames(ng)));
    expect(tsharkFrames(again).map((l) => l.replace(/\t1$/, '\t'))).toEqual(tsharkFrames(input));
  });
});
