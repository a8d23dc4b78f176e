import { statSync } from 'node:fs';
import { inputName, isStreamInput } from '../capture/open.js';
import { nap, OutputError, OutputFile } from '../capture/outfile.js';
import { DEFAULT_BATCH_SIZE } from '../packet/batch.js';
import { lazyModule } from '../pipeline/lazy.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages, loadStages } from '../pipeline/registry.js';
import { defaultWorkers } from '../pipeline/threads.js';
import { runCaptureAsync, type RunReport, type StopFlag } from '../pipeline/run.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { Progress } from './output.js';
import { isNotACapture, reportCaptureProblems, type CaptureOutcome } from './problems.js';
import { renderReport } from './report.js';
import { commas } from '../packet/format.js';

export const DEFAULT_PROFILE = 'ebpf';

export const REPLAY_HELP = `dplab replay FILE [options]

Run a pcap or pcapng capture through a dataplane profile and print what happened and what it
cost: the capture (link types, protocols, malformed packets), the verdicts (every packet is
forwarded, dropped by a stage for a reason, or malformed), flow figures, and the per-stage table
(calls, packets, ns/packet, packets/call, as VPP's "show runtime").

FILE - reads the capture from standard input (as tcpdump -r -): dplab gen - | dplab replay -.
A pipe is read once: it runs inline (--workers N is noted on stderr and not used; workers each
re-read the file) and --repeat is refused.

Output files: - is standard output, for one of --json/--write/--write-dropped/--flows; the text
report then goes to stderr, so dplab replay x.pcap --json - | jq . sees only the JSON. Every
output is opened before any packet is read: one that cannot be written is one line, exit 1.

Options:
  --profile NAME|FILE   the pipeline to run (default: ${DEFAULT_PROFILE}); built-in profiles are in
                        profiles/ (dplab profiles lists them), or give a path to your own
  --json FILE           also write the report as JSON
  --write FILE          write the forwarded packets to a capture (pcap in, pcap out; pcapng likewise)
  --write-dropped FILE  write the dropped and malformed packets to a capture
  --flows FILE          write one line per flow (tuple, packets and bytes each way, state, end)
  --batch N             packets per batch (default 256)
  --workers N|auto      worker threads (default auto: one per core, at most 8, for captures of
                        256 MiB or more on a machine with more than 2 cores; otherwise none:
                        every worker decodes the whole capture, so on 2 cores two workers were
                        measured slower than one, and below 256 MiB starting them costs more).
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
the capture and profile); 4 when an output could not be written during the run (disk full: one
line names the file and what it holds, after the report of what was processed); 6 when the run
needed more memory than it could get (the report covers what was processed; one line says what
to change); 130 / 143 when SIGINT (Ctrl-C) / SIGTERM stopped the run: the report covers the
packets processed, marked INTERRUPTED (JSON: "interrupted"), and every output holds exactly
those (a second signal quits at once).

Examples:
  dplab replay captures/large/zeek_echo-connections.pcap
  dplab replay web.pcap --profile iptables --write-dropped dropped.pcap --json report.json
  tcpdump -i eth0 -w - | dplab replay - --write-dropped dropped.pcap
  dplab replay web.pcap --write - | tshark -r - -q -z conv,tcp
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
  // Only the stages the profile uses: loading all of them is ~30 ms of every start.
  await loadStages(profile.types);
  buildStages(profile); // validate before reading anything
  const file = positionals[0]!;
  let workers = values.workers === undefined || values.workers === 'auto'
    ? defaultWorkers(statSize(file)) : wholeNumber(values.workers, '--workers (or auto)', 'replay', 1, 64, 1);
  // Outputs: `-` is standard output, for one of them only; the text report then goes to stderr.
  const outputs = { '--write': values.write, '--write-dropped': values['write-dropped'], '--flows': values.flows, '--json': values.json };
  const toStdout = Object.entries(outputs).filter(([, v]) => v === '-').map(([k]) => k);
  if (toStdout.length > 1) throw new UsageError(`${toStdout.join(' and ')} cannot both go to standard output (-): give one of them a file`, 'replay');
  const say = (text: string): boolean => (toStdout.length ? process.stderr : process.stdout).write(text);
  if (isStreamInput(file)) {
    // A pipe is read once: no second run, and no workers (each re-reads the file).
    if (repeat > 1) throw new UsageError(`--repeat needs a file: ${inputName(file)} can be read only once`, 'replay');
    if (workers > 1) process.stderr.write(`dplab replay: ${inputName(file)} is read once, so it runs inline (--workers ${workers} needs a file each worker can re-read)\n`);
    workers = 1;
  }
  // --json is opened (and so checked) with the other outputs, before any packet is read.
  let jsonOut: OutputFile | null = null;
  const openJson = (): void => { if (values.json !== undefined && !jsonOut) jsonOut = new OutputFile('--json', values.json); };
  // SIGINT/SIGTERM: stop reading, report what was processed. A second signal ends dplab at once.
  const stop: StopFlag = { signal: null };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stop.signal) process.exit(sig === 'SIGTERM' ? Exit.SIGTERM : Exit.SIGINT);
    stop.signal = sig;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Test hook: sleep this many ms after each batch, and say when the first batch is done, so a
  // test can interrupt a run part-way through.
  const throttleMs = Number(process.env.DPLAB_TEST_SLOW_MS ?? 0) || 0;
  let started = false;
  const firstBatch = (packets: number): void => {
    if (throttleMs && !started && packets > 0) { started = true; process.stderr.write('dplab replay: (test hook) first batch done\n'); }
  };
  let report: RunReport | null = null;
  let outcome: CaptureOutcome | null = null;
  // One pool for every repeat: the workers' JIT warms up as the inline run's does.
  // The thread pool's code (piscina) is loaded only when threads run.
  const parallel = workers > 1 ? await lazyModule('pipeline/parallel', () => import('../pipeline/parallel.js')) : null;
  const pool = parallel && repeat > 1 ? parallel.workerPool(workers) : undefined;
  try {
    for (let run = 1; run <= repeat; run++) {
      const last = run === repeat;
      const label = repeat > 1 ? `replay ${run}/${repeat}` : 'replay';
      let progress: Progress | null = null;
      if (parallel) {
        const r = await parallel.runParallel({
          file, profile: values.profile ?? DEFAULT_PROFILE, workers, batchSize, pool, stop, throttleMs, beforeRead: openJson,
          write: last ? values.write : undefined,
          writeDropped: last ? values['write-dropped'] : undefined,
          flowLog: last ? values.flows : undefined,
          onProgress: (pos, size, packets) => {
            progress ??= new Progress(label, size, !values['no-progress']);
            progress.update(pos, packets);
            firstBatch(packets);
          },
        }).finally(() => (progress as Progress | null)?.end());
        report = r.report;
        outcome = { path: file, packets: report.capture.packets, interfaces: report.interfaces, error: report.error };
        if (isNotACapture(outcome)) return reportCaptureProblems(outcome);
        continue;
      }
      const result = await runCaptureAsync({
        file,
        stop,
        beforeRead: openJson,
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
          if (throttleMs) { firstBatch(src.packets); nap(throttleMs); }
        },
      });
      (progress as Progress | null)?.end();
      report = result.report;
      outcome = result.source;
      if (isNotACapture(outcome)) return reportCaptureProblems(outcome);
      if (report.interrupted) break;
    }
  } catch (e) {
    if (!(e instanceof OutputError) || !e.partial) throw e;
    // An output failed mid-run (disk full): the report of what was processed, then the one line.
    const partial = e.partial as RunReport;
    say(renderReport(partial));
    if (jsonOut && e.option !== '--json') try { (jsonOut as OutputFile).text(JSON.stringify(partial, null, 2) + '\n'); } catch { /* the first failure is the one reported */ }
    (jsonOut as OutputFile | null)?.close();
    process.stderr.write(`dplab replay: ${e.message}${e.note ? ` (${e.note})` : ''}; the run stopped there\n`);
    return Exit.OUTPUT;
  } finally {
    await pool?.destroy();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (!report || !outcome) throw new Error('no run');
  if (repeat > 1) report.run = { repeat, note: `run ${repeat} of ${repeat}; the earlier runs warmed up the JIT` };
  say(renderReport(report));
  if (jsonOut) {
    const out = jsonOut as OutputFile;
    try {
      out.text(JSON.stringify(report, null, 2) + '\n');
      out.close();
    } catch (e) {
      if (!(e instanceof OutputError)) throw e;
      process.stderr.write(`dplab replay: ${e.message}\n`);
      return Exit.OUTPUT;
    }
  }
  const v = report.verdicts;
  const wrote = (what: string | undefined, count: string): void => {
    if (what !== undefined && what !== '-') process.stderr.write(`dplab replay: wrote ${what}: ${count}\n`);
  };
  wrote(values.write, `${commas(v.forwarded)} forwarded packets`);
  wrote(values['write-dropped'], `${commas(v.dropped + v.malformed)} dropped and malformed packets`);
  wrote(values.flows, `${commas(report.flowsLogged ?? 0)} flows`);
  wrote(values.json, 'the report as JSON');
  if (report.interrupted) {
    reportCaptureProblems(outcome, false);
    return report.interrupted === 'SIGTERM' ? Exit.SIGTERM : Exit.SIGINT;
  }
  return reportCaptureProblems(outcome);
}


function statSize(file: string): number {
  try { return statSync(file).size; } catch { return 0; }
}
