import { writeFileSync } from 'node:fs';
import { standardOutput, writeAll } from '../capture/outfile.js';
import { generateSynth, MAX_PAYLOAD, SYNTH_DEFAULTS, writeSynthPcap, type SynthOptions, type SynthSummary } from '../gen/synth.js';
import { isOutOfMemory } from '../pipeline/memory.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError } from './errors.js';
import { formatBytes } from './output.js';
import { commas } from '../packet/format.js';

const D = SYNTH_DEFAULTS;

export const GEN_HELP = `dplab gen FILE [options]

Write synthetic traffic to FILE as a pcap (Ethernet, microsecond timestamps; - for stdout). The
same options and seed always give the same bytes, so a benchmark can regenerate its input.

TCP flows look real: SYN, SYN-ACK, ACK, data both ways with correct seq/ack, then FIN/ACK,
FIN/ACK, ACK, or an RST for a share of them. UDP flows alternate requests and replies. Attack
packets are lone SYNs from 192.0.2.0/24 or 2001:db8:bad::/48, for a blocklist to drop. Many flows
are active at once and their packets interleave; every checksum is correct.

Size (give one of --flows and --packets):
  --flows N              legitimate flows (default 1000); attack packets come on top
  --packets N            exactly N packets in all, attack packets included
  --packets-per-flow N   packets in each flow (default ${D.packetsPerFlow}); below 6 a TCP flow is cut short,
                         1 makes every flow a lone SYN

Mix (a share is a fraction or a percentage: 0.2 or 20%):
  --ipv6 SHARE       of flows that are IPv6 (default ${D.ipv6Share})
  --vlan SHARE       of flows with an 802.1Q tag, VLAN 100-103 (default ${D.vlanShare})
  --udp SHARE        of flows that are UDP (default ${D.udpShare})
  --rst SHARE        of TCP flows that end with an RST (default ${D.rstShare})
  --attack SHARE     of all packets that are attack SYNs (default ${D.attackShare})
  --scan SHARE       of all packets that are SYN-scan probes: a SYN to a well-known port (23, 445,
                     ...) from 100.64.0.0/24, answered 1-4 us later by the server's RST/ACK
                     (default ${D.scanShare}); dozens of such flows begin and end inside one batch
  --payload BYTES    payload of each data packet, 1-${MAX_PAYLOAD} (default ${D.payloadSize})

Shape:
  --concurrency N    flows active at once (default ${D.concurrency})
  --clients N        client hosts, 10.0.0.1 up (default ${D.clients})
  --servers N        servers, 172.16.0.1 up, 1-254 (default ${D.servers})
  --rate PPS         mean packets per second of the timeline (default ${commas(D.rate)})
  --start TIME       first timestamp: seconds since 1970 or an ISO date (default ${new Date(D.startTime * 1000).toISOString()})
  --seed N           seed of the generator (default ${D.seed})

Services (for the dnat and ctlb stages):
  --services FILE    also write a service table that makes every server address and port of the
                     traffic a service VIP (TCP 80/8080/8000, UDP 7777/40000, IPv4 and IPv6), each
                     with --backends N backends in 10.88.0.0/16 / fd00:88::/32 (default 3), e.g.
                     dplab gen svc.pcap --services svc.txt; then "[dnat] services: svc.txt"
  --backends N       backends per service, 0-250 (0: services without endpoints)

Examples:
  dplab gen small.pcap --flows 100
  dplab gen bench.pcap --packets 1000000 --payload 16 --attack 10%
  dplab gen - --flows 20 | tshark -r - -q -z conv,tcp
`;

export function genCommand(argv: string[]): number {
  const str = { type: 'string' } as const;
  const args = parseCommandLine('gen', argv, GEN_HELP, {
    flows: str, packets: str, 'packets-per-flow': str, ipv6: str, vlan: str, udp: str, rst: str, attack: str, scan: str,
    payload: str, concurrency: str, clients: str, servers: str, rate: str, start: str, seed: str,
    services: str, backends: str,
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('gen needs exactly one output file (- for stdout)', 'gen');
  if (values.flows !== undefined && values.packets !== undefined) throw new UsageError('give --flows or --packets, not both', 'gen');
  const file = positionals[0]!;
  const opts: SynthOptions = {
    flows: count('--flows', values.flows),
    packets: count('--packets', values.packets),
    packetsPerFlow: count('--packets-per-flow', values['packets-per-flow']),
    ipv6Share: share('--ipv6', values.ipv6),
    vlanShare: share('--vlan', values.vlan),
    udpShare: share('--udp', values.udp),
    rstShare: share('--rst', values.rst),
    attackShare: share('--attack', values.attack),
    scanShare: share('--scan', values.scan),
    payloadSize: count('--payload', values.payload),
    concurrency: count('--concurrency', values.concurrency),
    clients: count('--clients', values.clients),
    servers: count('--servers', values.servers),
    rate: count('--rate', values.rate),
    startTime: startTime(values.start),
    seed: count('--seed', values.seed),
  };
  for (const k of Object.keys(opts) as (keyof SynthOptions)[]) if (opts[k] === undefined) delete opts[k];

  const t0 = process.hrtime.bigint();
  let summary: SynthSummary;
  try {
    summary = file === '-'
      ? generateSynth(opts, (block, length) => writeAll(standardOutput(), block, 0, length))
      : writeSynthPcap(file, opts);
  } catch (e) {
    if (e instanceof RangeError && !isOutOfMemory(e)) throw new UsageError(e.message, 'gen');
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new UsageError(`cannot write ${file}: ${(e as Error).message.replace(/^\w+: /, '').replace(/, \w+ '.*'$/, '')}`, 'gen');
    throw e;
  }
  if (values.services !== undefined) {
    const backends = count('--backends', values.backends) ?? 3;
    if (backends < 0 || backends > 250) throw new UsageError('--backends wants 0-250', 'gen');
    try {
      writeFileSync(values.services, synthServices(opts.servers ?? D.servers, backends));
    } catch (e) {
      throw new UsageError(`cannot write ${values.services}: ${(e as Error).message.replace(/^\w+: /, '')}`, 'gen');
    }
  } else if (values.backends !== undefined) throw new UsageError('--backends goes with --services FILE', 'gen');
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const s = summary;
  const n = commas;
  process.stderr.write(`dplab gen: wrote ${file === '-' ? 'stdout' : file}: ${n(s.packets)} packets (${formatBytes(s.bytes)}) in ${secs.toFixed(2)} s\n`
    + `  ${n(s.tcpFlows)} TCP flows (${n(s.rstFlows)} end with RST), ${n(s.udpFlows)} UDP flows, ${n(s.attackPackets)} attack SYN${s.attackPackets === 1 ? '' : 's'}${s.scanProbes ? `, ${n(s.scanProbes)} scan probes (SYN + RST)` : ''}; `
    + `${n(s.ipv6Packets)} IPv6 and ${n(s.vlanPackets)} VLAN-tagged packets; ${((s.lastMicros - s.firstMicros) / 1e6).toFixed(3)} s of traffic\n`);
  return Exit.OK;
}

/**
 * The service table of gen's servers: each server port a VIP with `backends` backends; server s's
 * backends are 10.88.s.1.. (fd00:88:0:s::1..) on the VIP port + 10000 (40000 - 10000).
 */
export function synthServices(servers: number, backends: number): string {
  const lines = ['# dplab gen --services: every server port of the generated traffic as a service VIP'];
  const be = (v6: boolean, s: number, k: number, port: number): string => (v6 ? `[fd00:88:0:${s.toString(16)}::${(k + 1).toString(16)}]:${port}` : `10.88.${s}.${k + 1}:${port}`);
  for (const v6 of [false, true]) {
    for (let s = 1; s <= servers; s++) {
      const vip = v6 ? `[fd00:172:16::${s.toString(16)}]` : `172.16.0.${s}`;
      for (const [proto, port] of [['tcp', 80], ['tcp', 8080], ['tcp', 8000], ['udp', 7777], ['udp', 40000]] as const) {
        const target = port + 10000 > 65535 ? port - 10000 : port + 10000;
        lines.push(`${proto} ${vip}:${port} ->${Array.from({ length: backends }, (_, k) => ` ${be(v6, s, k, target)}`).join('')}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}

/** A whole number option; anything else is a usage error naming the option. */
function count(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v.replace(/_/g, ''));
  if (v.trim() === '' || !Number.isInteger(x)) throw new UsageError(`${name} wants a whole number, got "${v}"`, 'gen');
  return x;
}

/** A share: 0.25 or 25%. */
function share(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const pct = v.endsWith('%');
  const x = Number(pct ? v.slice(0, -1) : v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new UsageError(`${name} wants a share such as 0.2 or 20%, got "${v}"`, 'gen');
  return pct ? x / 100 : x;
}

/** Seconds since 1970, or an ISO 8601 date. */
function startTime(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new UsageError(`--start wants seconds since 1970 or an ISO date such as 2024-01-01T00:00:00Z, got "${v}"`, 'gen');
  return Math.floor(ms / 1000);
}
