/**
 * The flow log: one tab-separated line per conntrack entry when it ends (timeout, eviction,
 * reopened tuple, or end of input), like `conntrack -E` destroy events with accounting on. The last
 * column, nat_to, is where a translated flow's replies come from (its DNAT backend), else "-".
 */
import { outputFile, type OutputFile } from '../capture/outfile.js';
import { DESTROY_NAMES, Status, type FlowTable } from '../conntrack/table.js';
import { TCP_STATE_NAMES } from '../conntrack/tcp.js';
import { ipToString, protoName } from '../packet/format.js';

export const FLOW_LOG_HEADER = 'proto\tsrc\tsport\tdst\tdport\tpackets_orig\tbytes_orig\tpackets_reply\tbytes_reply\tfirst\tlast\tstate\tassured\tend\tnat_to';

export interface FlowRecord {
  proto: number;
  family: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  packets: [number, number];
  bytes: [number, number];
  /** TCP packets the state machine let through without counting (retransmitted SYN/ACK ...). */
  ignored: [number, number];
  ignoredBytes: [number, number];
  first: number;
  last: number;
  state: string;
  assured: boolean;
  end: string;
  /** A translated flow: where its replies come from (the DNAT backend, address:port); else null. */
  natTo: string | null;
}

/** Read entry e of the table into a record (called once per flow, never per packet). */
export function flowRecord(t: FlowTable, e: number, why: number): FlowRecord {
  const proto = t.proto(e);
  const family = t.family(e);
  return {
    proto,
    family,
    src: ipToString(family, t.rec, t.srcAt(e)),
    sport: t.sport(e),
    dst: ipToString(family, t.rec, t.dstAt(e)),
    dport: t.dport(e),
    packets: [t.packets(e, 0), t.packets(e, 1)],
    bytes: [t.bytes(e, 0), t.bytes(e, 1)],
    ignored: [t.ignored[e << 1]!, t.ignored[(e << 1) | 1]!],
    ignoredBytes: [t.ignoredBytes[e << 1]!, t.ignoredBytes[(e << 1) | 1]!],
    first: t.first(e),
    last: t.last(e),
    state: proto === 6 ? TCP_STATE_NAMES[t.state(e)]! : (t.status(e) & Status.SEEN_REPLY) ? 'replied' : 'unreplied',
    assured: (t.status(e) & Status.ASSURED) !== 0,
    end: DESTROY_NAMES[why]!,
    natTo: t.replyFrom(e),
  };
}

export class FlowLog {
  private readonly out: OutputFile;
  private buf = '';
  flows = 0;
  /** Flows surely in the file: those of every flush that succeeded. */
  flushed = 0;
  private failed = false;

  constructor(out: string | OutputFile, header = true) {
    this.out = outputFile('--flows', out);
    if (header) this.buf = FLOW_LOG_HEADER + '\n';
  }

  add(r: FlowRecord): void {
    this.flows++;
    this.buf += `${protoName(r.proto)}\t${r.src}\t${r.sport}\t${r.dst}\t${r.dport}\t${r.packets[0]}\t${r.bytes[0]}\t${r.packets[1]}\t${r.bytes[1]}\t`
      + `${r.first.toFixed(6)}\t${r.last.toFixed(6)}\t${r.state}\t${r.assured ? 'yes' : 'no'}\t${r.end}\t${r.natTo ?? '-'}\n`;
    if (this.buf.length > 1 << 16) this.flush();
  }

  flush(): void {
    if (this.failed) return;
    try {
      if (this.buf) this.out.text(this.buf);
    } catch (e) {
      this.failed = true;
      throw e;
    }
    this.buf = '';
    this.flushed = this.flows;
  }

  close(): void {
    try { this.flush(); } finally { this.out.close(); }
  }
}
