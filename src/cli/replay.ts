import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openCapture } from '../capture/open.js';
import { Batch } from '../packet/batch.js';
import { TrafficSummary } from '../packet/summary.js';
import { Pipeline } from '../pipeline/runner.js';
import { Exit, UsageError } from './errors.js';
import { Progress } from './output.js';
import { reportCaptureProblems } from './problems.js';
import { renderReport, type ReplayReport } from './report.js';

export const REPLAY_HELP = `dplab replay FILE [options]

Read a pcap or pcapng capture, decode every packet and print a summary: packets and bytes by link
type and protocol, malformed packets by reason, the capture's duration, and how fast dplab read it.

Options:
  --json FILE     also write the report as JSON (use - for stdout)
  --no-progress   no progress bar (it is shown on stderr only when stderr is a terminal)

Exit status: 0 when the whole file was read; 2 when it is damaged or holds packets of an
unsupported link type (the report still covers every packet read before the damage); 1 for a
usage error or a file that cannot be opened.

Example:
  dplab replay captures/zeek_http_bro.org.pcap --json report.json
`;

export function replayCommand(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: 'string' },
      'no-progress': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help) { process.stdout.write(REPLAY_HELP); return Exit.OK; }
  if (positionals.length !== 1) throw new UsageError('replay needs exactly one capture file', 'replay');
  const file = positionals[0]!;
  const src = openCapture(file);
  const pipeline = new Pipeline([]);
  const summary = new TrafficSummary();
  const progress = new Progress('replay', src.size, !values['no-progress']);
  const b = new Batch();
  const t0 = process.hrtime.bigint();
  try {
    while (src.fill(b) > 0) {
      pipeline.process(b);
      summary.add(b);
      src.release(b);
      progress.update(src.position, src.packets);
    }
    pipeline.finish();
  } finally {
    progress.end();
    src.close();
  }
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const report: ReplayReport = {
    file,
    format: src.format,
    interfaces: src.interfaces.map((f) => ({ name: f.name, linkType: f.linkType, snapLen: f.snapLen })),
    complete: src.error === null,
    error: src.error ? { offset: src.error.offset, message: src.error.message } : null,
    wallSeconds,
    packetsPerSecond: wallSeconds > 0 ? summary.packets / wallSeconds : 0,
    capture: summary.toJSON(),
    verdicts: pipeline.counts(),
    stages: pipeline.runtime.map((r) => ({ ...r, nsPerPacket: r.packets ? r.ns / r.packets : 0, packetsPerCall: r.calls ? r.packets / r.calls : 0 })),
    stageReports: pipeline.reports(),
  };
  process.stdout.write(renderReport(report));
  if (values.json !== undefined) {
    const text = JSON.stringify(report, null, 2) + '\n';
    if (values.json === '-') process.stdout.write(text);
    else writeFileSync(values.json, text);
  }
  return reportCaptureProblems(src);
}
