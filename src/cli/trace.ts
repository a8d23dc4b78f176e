import { inputName, isStreamInput, openCapture } from '../capture/open.js';
import { Batch, Verdict } from '../packet/batch.js';
import { decodeBatch, MALFORMED_NAMES } from '../packet/decode.js';
import { commas, ipToString, l3Name, packetTime, protoName } from '../packet/format.js';
import { loadProfile, pipelineText } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import { runCapture } from '../pipeline/run.js';
import type { Stage } from '../pipeline/stage.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { LineWriter } from './output.js';
import { isNotACapture, reportCaptureProblems } from './problems.js';
import { DEFAULT_PROFILE } from './replay.js';

export const TRACE_HELP = `dplab trace FILE --packet N[-M] [--flow] [options]

Show a packet's path through the pipeline, stage by stage, with each decision and the conntrack
state after it (in the spirit of VPP "trace add" and OVS "ofproto/trace"). Every packet before
it still runs through the pipeline, one at a time, so the state it meets is the real one.
FILE - reads the capture from standard input.

Options:
  --packet N | N-M   the packet(s) to trace (numbers as in dplab decode and tshark)
  --flow             trace every packet of the flow (both directions) of the --packet N given,
                     from the flow's first packet, which may come before N
  --profile NAME|FILE  the pipeline (default: ${DEFAULT_PROFILE})
  --limit N          with --flow, stop after N packets (default 100; the trace says when the
                     flow has more)

Exit status: 0 traced; 1 usage error or no such packet; 2 the capture is damaged before the
packet, or is not a capture.

Examples:
  dplab trace captures/tcp_http/ppp_one_http_stream_fin.pcap --packet 1-3
  dplab trace captures/large/zeek_echo-connections.pcap --packet 5 --flow --profile iptables
`;

const FLAGS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

export function traceCommand(argv: string[]): number {
  const args = parseCommandLine('trace', argv, TRACE_HELP, {
    packet: { type: 'string' },
    flow: { type: 'boolean' },
    profile: { type: 'string' },
    limit: { type: 'string' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('trace needs exactly one capture file', 'trace');
  const m = /^(\d+)(?:-(\d+))?$/.exec(values.packet ?? '');
  if (!m) throw new UsageError('--packet wants a packet number N or a range N-M (e.g. --packet 12)', 'trace');
  const from = Number(m[1]);
  const to = m[2] ? Number(m[2]) : from;
  if (from < 1 || to < from) throw new UsageError(`--packet ${values.packet} is not a range of packet numbers from 1`, 'trace');
  if (values.flow && m[2]) throw new UsageError('--flow follows the flow of one packet: give --packet N', 'trace');
  const limit = wholeNumber(values.limit, '--limit', 'trace', 1, Infinity, 100);
  const file = positionals[0]!;
  if (values.flow && isStreamInput(file)) throw new UsageError(`--flow reads the capture twice (to find the flow, then to trace it): give a file, not ${inputName(file)}`, 'trace');
  const profile = loadProfile(values.profile ?? DEFAULT_PROFILE);
  const stages = buildStages(profile);
  // --flow: the flow of packet N, traced from its first packet, which may come before N.
  const flowKey = values.flow ? keyOfPacket(file, from) : null;
  const out = new LineWriter();
  const header = `Tracing ${file} through profile ${profile.name}: ${pipelineText(profile)}`
    + (values.flow ? `, every packet of the flow of packet ${from} from its first` : '');
  let shown = 0;
  let more = false;
  let stopped = false;
  // The packet as read, before a stage rewrites it (NAT): taken by a first, invisible stage.
  let asRead = '';
  const reader: Stage = { name: 'read', reasons: [], process: (b) => { asRead = packetWhat(b, 0); }, report: () => ({}) };
  const { source } = runCapture({
    file,
    profile: profile.name,
    stages: [reader, ...stages],
    batchSize: 1,
    timing: false,
    onBatch: (b) => {
      const n = b.num[0]!;
      const show = flowKey === null ? n >= from && n <= to : flowKey !== undefined && tupleKey(b, 0) === flowKey;
      if (show && shown === limit) more = true;
      else if (show) {
        if (shown === 0) out.line(header);
        out.line('');
        for (const line of tracePacket(b, 0, [reader, ...stages], asRead)) out.line(line);
        shown++;
      }
      stopped = more || (flowKey === null && n >= to);
      return stopped;
    },
  });
  if (isNotACapture(source)) return reportCaptureProblems(source);
  if (shown === 0) {
    out.flush();
    const code = reportCaptureProblems(source, !stopped);
    process.stderr.write(`dplab trace: there is no packet ${from}: ${file} has ${commas(source.packets)} packet${source.packets === 1 ? '' : 's'}`
      + `${source.error ? ' before the damage' : ''}\n`);
    return code === Exit.OK ? Exit.USAGE : code;
  }
  if (more) out.line(`\nStopped at --limit ${limit}: the flow has more packets (raise --limit to see them).`);
  else if (flowKey === null && source.packets < to) out.line(`\nThe capture ends at packet ${source.packets}.`);
  out.flush();
  return reportCaptureProblems(source, !stopped);
}

/**
 * The flow key of packet `n`, read without running the pipeline; undefined when the capture has no
 * packet `n` (the trace run then says why).
 */
function keyOfPacket(file: string, n: number): string | undefined {
  const src = openCapture(file);
  const b = new Batch();
  try {
    while (src.fill(b) > 0) {
      const last = b.num[b.count - 1]!;
      if (last >= n) {
        decodeBatch(b);
        return tupleKey(b, n - b.num[0]!);
      }
      src.release(b);
    }
  } finally {
    src.close();
  }
  return undefined;
}

/** Both directions of a flow give the same key. */
function tupleKey(b: Batch, i: number): string {
  const w = i << 2;
  const f = b.family[i]!;
  if (f === 0) return `l2 ${b.l3Type[i]}`;
  const a = `${ipToString(f, b.src, w)} ${b.sport[i]}`;
  const z = `${ipToString(f, b.dst, w)} ${b.dport[i]}`;
  return `${b.proto[i]} ${a < z ? `${a} ${z}` : `${z} ${a}`}`;
}

/** One packet's protocol, addresses and ports (TCP flags, ICMP type) as a line's tail. */
function packetWhat(b: Batch, i: number): string {
  const w = i << 2;
  const f = b.family[i]!;
  if (f === 0) return l3Name(b.l3Type[i]!);
  const p = b.proto[i]!;
  const ports = b.sport[i] || b.dport[i] ? [`:${b.sport[i]}`, `:${b.dport[i]}`] : ['', ''];
  let what = `${protoName(p)} ${ipToString(f, b.src, w)}${ports[0]} -> ${ipToString(f, b.dst, w)}${ports[1]}`;
  if (p === 6) what += ` [${FLAGS.filter((_, k) => (b.tcpFlags[i]! >> k) & 1).join(',')}]`;
  if (p === 1 || p === 58) what += ` type ${b.icmpType[i]} code ${b.icmpCode[i]}`;
  return what;
}

/**
 * The trace of packet i. `stages` may start with an invisible reader stage (name 'read') that took
 * `asRead`, the packet as it was read: the line names the packet so, and the verdict line says how
 * it left when a stage rewrote it.
 */
export function tracePacket(b: Batch, i: number, stages: Stage[], asRead?: string): string[] {
  const lines: string[] = [];
  const f = b.family[i]!;
  const now = packetWhat(b, i);
  const what = asRead ?? now;
  lines.push(`Packet ${b.num[i]}  ${packetTime(b, i) || 'no timestamp'}  ${b.wireLen[i]} bytes  ${what}`);
  const mal = b.malformed[i]!;
  const decode = mal !== 0 ? `malformed: ${MALFORMED_NAMES[mal]} (dropped before any stage)`
    : `ok: ${f ? `ipv${f}` : l3Name(b.l3Type[i]!)}${b.vlan[i] ? ` vlan ${b.vlan[i]}` : ''}${f ? `, flow hash 0x${b.hash[i]!.toString(16).padStart(8, '0')}` : ''}`;
  lines.push(`  ${'decode'.padEnd(10)} ${decode}`);
  const dropped = b.verdict[i] !== Verdict.PASS;
  for (let s = asRead === undefined ? 0 : 1; s < stages.length; s++) {
    const st = stages[s]!;
    let text: string;
    if (mal !== 0 || (dropped && b.stage[i]! < s)) text = '(not reached)';
    else {
      text = st.explain ? st.explain(b, i) : 'pass';
      if (dropped && b.stage[i] === s) text += `  => DROP (${st.reasons[b.reason[i]!] ?? b.reason[i]})`;
    }
    lines.push(`  ${st.name.padEnd(10)} ${text}`);
  }
  const changed = !dropped && mal === 0 && now !== what ? ` as ${now}` : '';
  lines.push(`  => ${mal !== 0 ? 'malformed' : dropped ? `dropped by ${stages[b.stage[i]!]!.name}` : 'forwarded'}${changed}`);
  return lines;
}
