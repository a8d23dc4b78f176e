/** dplab live IFACE: the replay pipeline on frames arriving on a real interface. */
import { totalmem } from 'node:os';
import { OutputError, OutputFile } from '../capture/outfile.js';
import { DEFAULT_BATCH_SIZE } from '../packet/batch.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import type { RunReport, StopFlag } from '../pipeline/run.js';
import { LiveError, type CaptureKind, type KernelCounts, type LiveSource } from '../live/source.js';
import { liveTick, openLiveSource, runLiveWorkers, type LiveTick } from '../live/workers.js';
import { runLive } from '../live/run.js';
import { DEFAULT_BLOCKS, DEFAULT_BLOCK_SIZE, RETIRE_MS } from '../live/packet.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { formatRate } from './output.js';
import { renderReport } from './report.js';
import { DEFAULT_PROFILE } from './replay.js';
import { commas } from '../packet/format.js';

export const LIVE_HELP = `dplab live IFACE [options]

Run the replay pipeline on packets arriving on a network interface (a test NIC, a veth in a lab),
as they arrive. While it runs, a status line on stderr (when it is a terminal) shows packets/s,
drops by stage, flows and each stage's ns/packet a few times a second. It stops on Ctrl-C
(SIGINT), SIGTERM, --duration or --count, and prints the same report as dplab replay, plus the
kernel's own count of packets it dropped before dplab could read them. Needs root or
CAP_NET_RAW (and CAP_NET_ADMIN for the large socket buffers).

Capture paths (--capture):
  packet  (default) AF_PACKET with a TPACKET_V3 ring mapped into dplab (through koffi): whole
          Ethernet frames as tcpdump sees them (both directions, ARP, VLAN tags, other hosts'
          packets), with the kernel's nanosecond timestamps. Batches are read in place from the
          ring, no copy; the kernel hands a block of the ring over when it is full or ${RETIRE_MS} ms
          after its first packet, so a quiet link still sees verdicts promptly. The kernel's drop
          counter (PACKET_STATISTICS) counts frames that found the ring full. Costs a ring of
          memory (--ring-mb, default ${(DEFAULT_BLOCK_SIZE * DEFAULT_BLOCKS) >> 20} MiB) and puts the interface in promiscuous mode
          while it runs. With --workers N, N sockets in one PACKET_FANOUT group (FANOUT_HASH):
          the kernel sends both directions of a flow to the same worker, as replay's sharding does.
  raw     raw IPv4 sockets (npm raw-socket), one per protocol (ICMP, IGMP, TCP, UDP, GRE, ESP, AH,
          SCTP), bound to the interface: only IPv4 packets this host receives (no Ethernet header,
          no ARP or IPv6, nothing it sends, nothing for other hosts), timestamped when dplab reads
          them; every packet is one system call and one copy, so it tops out far below packet.
          The kernel's count is the sockets' drops column in /proc/net/raw (receive buffer full).
          Useful where AF_PACKET is not allowed, or to see exactly what the host's IP stack got.

Options:
  --capture raw|packet  the capture path (default packet)
  --profile NAME|FILE   the pipeline to run (default: ${DEFAULT_PROFILE}; dplab profiles lists them)
  --duration S          stop after S seconds (decimals allowed)
  --count N             stop after N packets
  --workers N           packet capture only: N worker threads, one socket each in a fanout group
                        (default 1). Any N gives the same verdicts and flows, except for what
                        needs packets of several flows in one place (ICMP errors quoting a flow the
                        kernel hashed elsewhere, xdp's per-source rate limit)
  --write FILE          write the forwarded packets as a pcap (nanosecond timestamps); it is
                        complete after Ctrl-C (one worker only)
  --write-dropped FILE  write the dropped and malformed packets likewise (one worker only)
  --json FILE           also write the report as JSON (- is standard output; the text report
                        then goes to stderr)
  --batch N             packets per batch at most (default ${DEFAULT_BATCH_SIZE}); a batch also ends when no
                        packet is waiting
  --ring-mb N           packet capture: the ring per socket, MiB (default ${(DEFAULT_BLOCK_SIZE * DEFAULT_BLOCKS) >> 20}), in ${DEFAULT_BLOCK_SIZE >> 10} KiB
                        blocks, each handed to dplab when full or ${RETIRE_MS} ms after its first packet:
                        if dplab stalls, the kernel drops nothing for N x ${((1 << 20) / DEFAULT_BLOCK_SIZE) * RETIRE_MS} ms of light
                        traffic, or N MiB of heavy traffic
  --no-status           no status line

Exit status: 0 when stopped by Ctrl-C, SIGTERM, --duration, --count or the interface going down
(the report covers every packet read); 1 for a usage error, a bad profile, or a capture that
cannot start (not root, no such interface, interface down, ring cannot be set up: one line says
what to do); 3 when a stage failed (a bug: what was processed is reported); 4 when an output
could not be written; 6 when the run needed more memory than it could get (what was processed
is reported).

Examples:
  sudo dplab live eth1
  sudo dplab live veth0 --profile iptables --duration 10 --json report.json
  sudo dplab live eth1 --workers 2 --no-status
  sudo ip netns exec lab dplab live veth1 --capture raw --write-dropped dropped.pcap
`;

export interface LiveSummary {
  interface: string;
  capture: CaptureKind;
  workers: number;
  /** What ended the capture: SIGINT, SIGTERM, duration, count, or the interface going down or away. */
  stoppedBy: string;
  seconds: number;
  kernel: KernelCounts;
  /** With --workers N: the packets the kernel's fanout gave each worker. */
  workerPackets?: number[];
}

export type LiveReport = RunReport & { live: LiveSummary };

export async function liveCommand(argv: string[]): Promise<number> {
  const args = parseCommandLine('live', argv, LIVE_HELP, {
    capture: { type: 'string' },
    profile: { type: 'string' },
    duration: { type: 'string' },
    count: { type: 'string' },
    workers: { type: 'string' },
    write: { type: 'string' },
    'write-dropped': { type: 'string' },
    json: { type: 'string' },
    batch: { type: 'string' },
    'ring-mb': { type: 'string' },
    'no-status': { type: 'boolean' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('live needs exactly one interface (ip link lists them)', 'live');
  const iface = positionals[0]!;
  const kind = (values.capture ?? 'packet') as CaptureKind;
  if (kind !== 'raw' && kind !== 'packet') throw new UsageError(`--capture is raw or packet, got "${values.capture}"`, 'live');
  const batchSize = wholeNumber(values.batch, '--batch', 'live', 1, 65536, DEFAULT_BATCH_SIZE);
  const workers = wholeNumber(values.workers, '--workers', 'live', 1, 64, 1);
  const count = values.count === undefined ? undefined : wholeNumber(values.count, '--count', 'live', 1, Number.MAX_SAFE_INTEGER, 0);
  // The kernel allocates the whole ring at once, unswappable: too large a ring invites the OOM killer.
  const ringMax = Math.max(1, Math.min(4096, Math.floor(totalmem() / (1 << 20) / 4)));
  const ringMb = wholeNumber(values['ring-mb'], `--ring-mb (up to a quarter of this machine's memory)`, 'live', 1, ringMax, Math.min(ringMax, (DEFAULT_BLOCK_SIZE * DEFAULT_BLOCKS) >> 20));
  let duration: number | undefined;
  if (values.duration !== undefined) {
    duration = Number(values.duration);
    if (!Number.isFinite(duration) || duration <= 0) throw new UsageError(`--duration wants seconds above 0, got "${values.duration}"`, 'live');
  }
  if (workers > 1 && kind === 'raw') throw new UsageError('--workers needs --capture packet (raw sockets cannot share flows between workers)', 'live');
  if (workers > 1 && (values.write !== undefined || values['write-dropped'] !== undefined)) {
    throw new UsageError('--write and --write-dropped need one worker (--workers 1)', 'live');
  }
  if (workers > 1 && count !== undefined) throw new UsageError('--count needs one worker (--workers 1); use --duration', 'live');
  const profileName = values.profile ?? DEFAULT_PROFILE;
  const profile = loadProfile(profileName);
  buildStages(profile); // validate before opening anything
  const outputs = { '--write': values.write, '--write-dropped': values['write-dropped'], '--json': values.json };
  const toStdout = Object.entries(outputs).filter(([, v]) => v === '-').map(([k]) => k);
  if (toStdout.length > 1) throw new UsageError(`${toStdout.join(' and ')} cannot both go to standard output (-): give one of them a file`, 'live');
  const say = (text: string): boolean => (toStdout.length ? process.stderr : process.stdout).write(text);
  const jsonOut = values.json !== undefined ? new OutputFile('--json', values.json) : null;

  const stop: StopFlag = { signal: null };
  let stoppedBy = '';
  let wake: () => void = () => {};
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stop.signal) process.exit(sig === 'SIGTERM' ? Exit.SIGTERM : Exit.SIGINT);
    stop.signal = sig;
    stoppedBy ||= sig;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const status = new StatusLine(iface, !values['no-status'] && process.stderr.isTTY === true);
  const ring = { blockSize: DEFAULT_BLOCK_SIZE, blocks: ringMb * ((1 << 20) / DEFAULT_BLOCK_SIZE) };
  const t0 = Date.now();
  let timer: NodeJS.Timeout | null = null;
  let report: RunReport;
  let kernel: KernelCounts;
  let workerPackets: number[] | undefined;
  const started = (): void => {
    process.stderr.write(`dplab live: capturing on ${iface} (${kind === 'packet' ? `AF_PACKET TPACKET_V3 ring, ${ringMb} MiB${workers > 1 ? ` per worker, ${workers} workers in a fanout group` : ''}` : 'raw IPv4 sockets'}), profile ${profile.name}; Ctrl-C stops and reports\n`);
  };
  try {
    if (workers === 1) {
      let src: LiveSource;
      try {
        src = openLiveSource(kind, { iface, limit: count, ...ring });
      } catch (e) {
        jsonOut?.close();
        throw e;
      }
      wake = () => src.wake();
      if (duration !== undefined) timer = setTimeout(() => { stoppedBy ||= 'duration'; src.end(); }, duration * 1000);
      const result = await runLive({
        file: iface, source: src, stop, profile: profile.name, stages: buildStages(profile), batchSize,
        write: values.write, writeDropped: values['write-dropped'],
        onReady: started,
        onTick: (run, s) => status.show(liveTick(run, s)),
      });
      report = result.report;
      kernel = src.kernel();
      if (src.stopReason) stoppedBy ||= src.stopReason;
    } else {
      const r = await runLiveWorkers({
        iface, workers, profile: profileName, batchSize, ...ring, stop,
        setWake: (f) => { wake = f; },
        durationMs: duration === undefined ? undefined : duration * 1000,
        onDuration: () => { stoppedBy ||= 'duration'; },
        onReady: started,
        onTick: (t) => status.show(t),
      });
      report = r.report;
      kernel = r.kernel;
      workerPackets = r.workerPackets;
      if (r.stopReason) stoppedBy ||= r.stopReason;
    }
  } catch (e) {
    status.end();
    if (e instanceof LiveError) {
      process.stderr.write(`dplab live: ${e.message}${e.hint ? `. ${e.hint}` : ''}\n`);
      return Exit.USAGE;
    }
    if (e instanceof OutputError && e.partial) {
      say(renderReport(e.partial as RunReport));
      process.stderr.write(`dplab live: ${e.message}${e.note ? ` (${e.note})` : ''}; the capture stopped there\n`);
      return Exit.OUTPUT;
    }
    throw e;
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  status.end();
  if (!stoppedBy) stoppedBy = count !== undefined && report.capture.packets >= count ? 'count' : 'end';
  // A live capture always ends by being stopped: that is its normal end, not an interruption.
  delete report.interrupted;
  const live: LiveReport = { ...report, live: { interface: iface, capture: kind, workers, stoppedBy, seconds: (Date.now() - t0) / 1000, kernel, ...(workerPackets ? { workerPackets } : {}) } };
  say(renderReport(live) + renderLive(live));
  if (jsonOut) {
    try {
      jsonOut.text(JSON.stringify(live, null, 2) + '\n');
      jsonOut.close();
    } catch (e) {
      if (!(e instanceof OutputError)) throw e;
      process.stderr.write(`dplab live: ${e.message}\n`);
      return Exit.OUTPUT;
    }
  }
  const v = report.verdicts;
  if (values.write !== undefined && values.write !== '-') process.stderr.write(`dplab live: wrote ${values.write}: ${commas(v.forwarded)} forwarded packets\n`);
  if (values['write-dropped'] !== undefined && values['write-dropped'] !== '-') {
    process.stderr.write(`dplab live: wrote ${values['write-dropped']}: ${commas(v.dropped + v.malformed)} dropped and malformed packets\n`);
  }
  return Exit.OK;
}

function renderLive(r: LiveReport): string {
  const l = r.live;
  const k = l.kernel;
  const read = r.capture.packets;
  let s = `\nLive capture on ${l.interface} (${l.capture === 'packet' ? 'AF_PACKET ring' : 'raw IPv4 sockets'}${l.workers > 1 ? `, ${l.workers} workers` : ''}): `
    + `${l.seconds.toFixed(1)} s, stopped by ${l.stoppedBy}\n`;
  s += `  dplab read ${commas(read)} packets; the kernel dropped ${commas(k.drops)} before dplab could read them (${k.source})`;
  if (k.packets !== undefined) s += `; it counted ${commas(k.packets)} for these sockets`;
  s += '\n';
  if (l.workerPackets) s += `  the kernel's fanout gave the workers ${l.workerPackets.map((n) => commas(n)).join(' / ')} packets; peakEntries is the sum of their peaks (an upper bound)\n`;
  if (k.drops > 0) s += `  ${commas(k.drops)} packets were never seen by the pipeline: the traffic outran it (a bigger ${l.capture === 'packet' ? 'ring (--ring-mb) or --workers' : 'socket buffer, or --capture packet'} may help)\n`;
  return s;
}

/** The status line: redrawn in place on stderr a few times a second, only on a terminal. */
class StatusLine {
  private last: LiveTick | null = null;
  private lastAt = 0;
  private drawn = false;
  private readonly t0 = performance.now();
  constructor(private readonly iface: string, private readonly on: boolean) {}

  show(t: LiveTick): void {
    if (!this.on) return;
    const now = performance.now();
    const prev = this.last;
    const dt = prev ? (now - this.lastAt) / 1000 : (now - this.t0) / 1000;
    const rate = dt > 0 ? (t.packets - (prev?.packets ?? 0)) / dt : 0;
    const drops = Object.entries(t.counts.dropsByReason).reduce<Record<string, number>>((a, [k, v]) => {
      const stage = k.split('/')[0]!;
      a[stage] = (a[stage] ?? 0) + v;
      return a;
    }, {});
    const ns = t.runtime.map((x, k) => {
      const dp = x.packets - (prev?.runtime[k]?.packets ?? 0);
      const dn = x.ns - (prev?.runtime[k]?.ns ?? 0);
      return `${x.name} ${dp > 0 ? (dn / dp).toFixed(0) : '-'}`;
    }).join(' ');
    const dropText = Object.entries(drops).map(([k, v]) => `${k} ${commas(v)}`).join(', ') || 'none';
    const line = `${this.iface} ${((now - this.t0) / 1000).toFixed(0)}s  in ${formatRate(rate)} (${commas(t.packets)})  `
      + `fwd ${commas(t.counts.forwarded)}  dropped: ${dropText}${t.counts.malformed ? `, malformed ${t.counts.malformed}` : ''}  `
      + `kernel-dropped ${commas(t.kernelDrops)}  flows ${commas(t.flows.active)} (${commas(t.flows.created)} made)  ns/pkt: ${ns}`;
    const width = process.stderr.columns ?? 160;
    process.stderr.write(`\r\x1b[K${line.length > width - 1 ? line.slice(0, width - 1) : line}`);
    this.drawn = true;
    this.last = t;
    this.lastAt = now;
  }

  end(): void {
    if (this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}
