/**
 * The tracker's fast path (Conntrack.track: a plain ACK of an ESTABLISHED TCP flow that has seen
 * its reply, IPv4 or IPv6) must leave every packet and every flow exactly as the full path does.
 * The full path is the one checked against Linux's conntrack (conntrack-linux.test.ts); here two
 * trackers, one with `fastPath: false`, take the same packets side by side, and each packet's
 * answer (result, flow, direction, ctinfo), then every entry and every counter at the end, must
 * agree. Inputs: every clean shipped capture, and generated traffic with timeouts short enough
 * that flows expire, entries are reused and the table fills.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RF_CTR, RF_EXPIRES, RF_LAST, RF_SHIFT } from '../src/conntrack/layout.js';
import { TcpClass, tcpClass, tcpFlagsValid, tcpPlainAck } from '../src/conntrack/tcp.js';
import { Conntrack, defaultTimeouts, type ConntrackConfig, type Timeouts } from '../src/conntrack/tracker.js';
import { writeSynthPcap } from '../src/gen/synth.js';
import { CAPTURES, cleanCaptures, driveTrackers } from './helpers.js';

describe('tcpPlainAck', () => {
  it('is tcpFlagsValid and class ACK, for every flag byte', () => {
    for (let f = 0; f < 256; f++) expect(tcpPlainAck(f), `flags 0x${f.toString(16)}`).toBe(tcpFlagsValid(f) && tcpClass(f) === TcpClass.ACK);
  });
});

/** Both trackers over one capture, packet by packet, as the conntrack stage drives one (sweep included). */
function sideBySide(file: string, config: Omit<ConntrackConfig, 'fastPath'>): { fast: Conntrack; full: Conntrack; fastTaken: number } {
  const fast = new Conntrack({ ...config, fastPath: true });
  const full = new Conntrack({ ...config, fastPath: false });
  driveTrackers(file, [fast, full], (b, i) => {
    const rFast = fast.track(b, i);
    const got = [rFast, b.flow[i], b.dir[i], b.ctInfo[i]];
    const rFull = full.track(b, i);
    const want = [rFull, b.flow[i], b.dir[i], b.ctInfo[i]];
    expect(got, `${file} packet ${b.num[i]}`).toEqual(want);
  });
  expect(full.fastPackets, 'fastPath: false takes no packet the fast way').toBe(0);
  return { fast, full, fastTaken: fast.fastPackets };
}

/** Every entry as both tables hold it, and every counter of both trackers, must be the same. */
function expectSameState(fast: Conntrack, full: Conntrack, what: string): void {
  const entries = (ct: Conntrack) => {
    const t = ct.table;
    const out: number[][] = [];
    t.forEach((e) => {
      const f = e << RF_SHIFT;
      out.push([e, t.family(e), t.proto(e), t.sport(e), t.dport(e), t.state(e), t.status(e),
        t.recF[f + RF_EXPIRES]!, t.recF[f + RF_LAST]!, t.recF[f + RF_CTR]!, t.recF[f + RF_CTR + 1]!, t.recF[f + RF_CTR + 2]!, t.recF[f + RF_CTR + 3]!]);
    });
    return out;
  };
  expect(entries(fast), `${what}: entries`).toEqual(entries(full));
  for (const k of ['created', 'destroyed', 'info', 'invalid'] as const) expect([...fast[k]], `${what}: ${k}`).toEqual([...full[k]]);
  expect(fast.ignored, `${what}: ignored`).toBe(full.ignored);
}

const dir = mkdtempSync(join(tmpdir(), 'dplab-fastpath-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the fast path leaves every packet and flow as the full path does', () => {
  const config = { capacity: 65536, whenFull: 'evict' as const, loose: true, timeouts: defaultTimeouts() };
  const captures = cleanCaptures().filter((r) => !r.readError && r.packets > 0);

  it('on every clean shipped capture', () => {
    let taken = 0;
    for (const r of captures) {
      const { fast, full, fastTaken } = sideBySide(join(CAPTURES, r.file), config);
      expectSameState(fast, full, r.file);
      taken += fastTaken;
    }
    // The comparison means something only if the fast path ran.
    expect(taken).toBeGreaterThan(100);
  });

  it('on generated traffic where flows expire, entries are reused and the table fills', () => {
    const file = join(dir, 'churn.pcap');
    writeSynthPcap(file, { seed: 11, flows: 3000, packetsPerFlow: 12, ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, rstShare: 0.1, attackShare: 0.05, concurrency: 300, rate: 20000 });
    const short: Timeouts = defaultTimeouts();
    // 300 flows at once at 20,000 packets a second: a flow's packets come ~15 ms apart, so with
    // timeouts of 15 ms about half its gaps outlast its entry. The fast path meets expired entries,
    // the sweep frees numbers for reuse, and with 200 entries the table fills.
    short.tcp.fill(0.015);
    short.udp = 0.015;
    short.udpStream = 0.015;
    for (const capacity of [65536, 200]) {
      const { fast, full, fastTaken } = sideBySide(file, { ...config, capacity, timeouts: short });
      expectSameState(fast, full, `churn.pcap, capacity ${capacity}`);
      expect(fastTaken, `capacity ${capacity}: fast path taken`).toBeGreaterThan(1000);
      expect(fast.destroyed.reduce((a, x) => a + x, 0), `capacity ${capacity}: flows ended`).toBeGreaterThan(1000);
    }
  });
});
