import { statSync, writeFileSync } from 'node:fs';
import { DEFAULT_BATCH_SIZE } from '../packet/batch.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import { defaultWorkers, runParallel, workerPool } from '../pipeline/parallel.js';
import { runCapture, type RunReport } from '../pipeline/run.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { Progress } from './output.js';
import { isNotACapture, reportCaptureProblems, type CaptureOutcome } from './problems.js';
import { renderReport } from './report.js';

export const DEFAULT_PROFILE = 'ebpf';

export const REPLAY_HELP = `dplab replay FILE [options]

Run a pcap or pcapng capture through a dataplane profile and print what happened and what it
cost: the capture (link types, protocols, malformed packets), the verdicts (every packet is
forwarded, dropped by a stage for a reason, or malformed), flow figures, and the per-stage table
(calls, packets, ns/packet, packets/call, as VPP's "show runtime").

Options:
  --profile NAME|FILE   the pipeline to run (default: ${DEFAULT_PROFILE}); built-in profiles are in
                        profiles/ (dplab profiles lists them), or give a path to your own
  --json FILE           also write the report as JSON (- for stdout)
  --write FILE          write the forwarded packets to a capture (pcap in, pcap out; pcapng likewise)
  --write-dropped FILE  write the dropped and malformed packets to a capture
  --flows FILE          write one line per flow (tuple, packets and bytes each way, state, end)
  --batch N             packets per batch (default 256)
  --workers N|auto      worker threads (default auto: one per core for captures of 256 MiB or
                        more, none below, where starting them costs more than they save).
                        Flows are sharded by their symmetric hash, as NIC RSS does, so any N gives
                        the same verdicts and flows (as long as the flow table never fills: each
                        worker holds its share of the configured capacity)
  --repeat N            run the capture N times and report the last run: on a small capture
                        the first run's per-packet costs are mostly the JIT compiling dplab
  --no-progress         no progress bar (shown on stderr only when it is a terminal)

Exit status: 0 when the whole file was read; 2 when it is damaged or holds packets of an
unsupported link type (the report still covers every packet before the damage); 1 for a
usage error, a bad profile or a file that cannot be opened; 3 when a stage or worker thread
failed, which is a bug in dplab (what was processed is still reported; please report it with
the capture and profile).

Examples:
  dplab replay captures/large/zeek_echo-connections.pcap
  dplab replay web.pcap --profile iptables --write-dropped dropped.pcap --json report.json
`;

export async function replayCommand(argv: string[]): Promise<number> {
  const args = parseCommandLine('replay', argv, REPLAY_HELP, {
    profile: { type: 'string' },
    json: { type: 'string' },
    write: { type: 'string' },
    'write-dropped': { type: 'string' },
    flows: { type: 'string' },
    batch: { type: 'string' },
    repeat: { type: 'string' },
    workers: { type: 'string' },
    'no-progress': { type: 'boolean' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('replay needs exactly one capture file', 'replay');
  const batchSize = wholeNumber(values.batch, '--batch', 'replay', 1, 65536, DEFAULT_BATCH_SIZE);
  const repeat = wholeNumber(values.repeat, '--repeat', 'replay', 1, 1000, 1);
  const profile = loadProfile(values.profile ?? DEFAULT_PROFILE);
  buildStages(profile); // validate before reading anything
  const file = positionals[0]!;
  const workers = values.workers === undefined || values.workers === 'auto'
    ? defaultWorkers(statSize(file)) : wholeNumber(values.workers, '--workers (or auto)', 'replay', 1, 64, 1);
  let report: RunReport | null = null;
  let outcome: CaptureOutcome | null = null;
  // One pool for every repeat: the workers' JIT warms up as the inline run's does.
  const pool = workers > 1 && repeat > 1 ? workerPool(workers) : undefined;
  try {
    for (let run = 1; run <= repeat; run++) {
      const last = run === repeat;
      const label = repeat > 1 ? `replay ${run}/${repeat}` : 'replay';
      let progress: Progress | null = null;
      if (workers > 1) {
        const r = await runParallel({
          file, profile: values.profile ?? DEFAULT_PROFILE, workers, batchSize, pool,
          write: last ? values.write : undefined,
          writeDropped: last ? values['write-dropped'] : undefined,
          flowLog: last ? values.flows : undefined,
          onProgress: (pos, size, packets) => {
            progress ??= new Progress(label, size, !values['no-progress']);
            progress.update(pos, packets);
          },
        }).finally(() => (progress as Progress | null)?.end());
        report = r.report;
        outcome = { path: file, packets: report.capture.packets, interfaces: report.interfaces, error: report.error };
        if (isNotACapture(outcome)) return reportCaptureProblems(outcome);
        continue;
      }
      const result = runCapture({
        file,
        profile: profile.name,
        // Fresh stages each run: every run starts from empty flow tables.
        stages: buildStages(profile),
        write: last ? values.write : undefined,
        writeDropped: last ? values['write-dropped'] : undefined,
        flowLog: last ? values.flows : undefined,
        batchSize,
        onBatch: (_b, src) => {
          progress ??= new Progress(label, src.size, !values['no-progress']);
          progress.update(src.position, src.packets);
        },
      });
      (progress as Progress | null)?.end();
      report = result.report;
      outcome = result.source;
      if (isNotACapture(outcome)) return reportCaptureProblems(outcome);
    }
  } finally {
    await pool?.destroy();
  }
  if (!report || !outcome) throw new Error('no run');
  if (repeat > 1) report.run = { repeat, note: `run ${repeat} of ${repeat}; the earlier runs warmed up the JIT` };
  process.stdout.write(renderReport(report));
  if (values.json !== undefined) {
    const text = JSON.stringify(report, null, 2) + '\n';
    if (values.json === '-') process.stdout.write(text);
    else writeFileSync(values.json, text);
  }
  const v = report.verdicts;
  const wrote = (what: string | undefined, count: string): void => {
    if (what !== undefined && what !== '-') process.stderr.write(`dplab replay: wrote ${what}: ${count}\n`);
  };
  wrote(values.write, `${v.forwarded.toLocaleString('en-US')} forwarded packets`);
  wrote(values['write-dropped'], `${(v.dropped + v.malformed).toLocaleString('en-US')} dropped and malformed packets`);
  wrote(values.flows, `${(report.flowsLogged ?? 0).toLocaleString('en-US')} flows`);
  wrote(values.json, 'the report as JSON');
  return reportCaptureProblems(outcome);
}

function statSize(file: string): number {
  try { return statSync(file).size; } catch { return 0; }
}
