/** dplab's command line: one function per command, errors turned into one clear line each. */
import { CaptureError } from '../capture/errors.js';
import { OutputError } from '../capture/outfile.js';
import { ProfileError } from '../pipeline/profile.js';
import type { RunReport } from '../pipeline/run.js';
import { lazyModule } from '../pipeline/lazy.js';
import { isOutOfMemory } from '../pipeline/memory.js';
import { StageFailure, WorkerFailure } from '../pipeline/runner.js';
import { renderReport } from './report.js';
import { VERSION } from './args.js';
import { Exit, UsageError } from './errors.js';

const HELP = `dplab - a userspace dataplane lab: replay real packets through XDP-, conntrack-, NAT- and
L7-style stages and see what each design costs, per stage, per packet and per flow.

Usage: dplab COMMAND [options]

Commands:
  replay FILE    run a capture through the pipeline and print what happened and what it cost
  compare FILE   several profiles over the same packets, side by side, with verdict differences
  sweep PARAM    profiles across packets per flow, rule count, attack share or active flows
  trace FILE     follow packets through the stages, with each decision and the conntrack state
  decode FILE    print one line per packet (number, time, protocol, addresses, ports, length)
  profiles       list the built-in profiles and stages; check a profile file
  gen FILE       write synthetic traffic (flows, IPv6/VLAN/UDP/attack shares) as a pcap
  calibrate FILE the same packets through eBPF models of the stages, run by the kernel: ns and verdicts
  live IFACE     run the pipeline on packets arriving on an interface, with a live status line

Run "dplab COMMAND --help" for a command's options and examples; "dplab --version" for the version.
Exit status: 0 done; 1 usage error, bad profile or unreadable file; 2 the capture is damaged or not
a capture (what was read is reported); 3 a stage or worker failed: a bug in dplab, please report it;
4 an output could not be written mid-run; 6 out of memory; 130/143 stopped by SIGINT/SIGTERM (3, 4,
6, 130 and 143 still report what was processed).
Captures: pcap (micro- or nanosecond, either byte order) and pcapng; Ethernet (802.1Q, QinQ,
MPLS, PPPoE), Linux SLL/SLL2, raw IPv4/IPv6 and BSD loopback link types.
`;

interface Command { run: (argv: string[]) => number | Promise<number>; help: string }

/**
 * Each command's module is loaded when that command runs (or its help is asked for): a start
 * pays for one command's code, not for all of them (all of them took ~90 ms of every start).
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  replay: async () => { const m = await lazyModule('cli/replay', () => import('./replay.js')); return { run: m.replayCommand, help: m.REPLAY_HELP }; },
  compare: async () => { const m = await lazyModule('cli/compare', () => import('./compare.js')); return { run: m.compareCommand, help: m.COMPARE_HELP }; },
  sweep: async () => { const m = await lazyModule('cli/sweep', () => import('./sweep.js')); return { run: m.sweepCommand, help: m.SWEEP_HELP }; },
  trace: async () => { const m = await lazyModule('cli/trace', () => import('./trace.js')); return { run: m.traceCommand, help: m.TRACE_HELP }; },
  decode: async () => { const m = await lazyModule('cli/decode', () => import('./decode.js')); return { run: m.decodeCommand, help: m.DECODE_HELP }; },
  profiles: async () => { const m = await lazyModule('cli/profiles', () => import('./profiles.js')); return { run: m.profilesCommand, help: m.PROFILES_HELP }; },
  gen: async () => { const m = await lazyModule('cli/gen', () => import('./gen.js')); return { run: m.genCommand, help: m.GEN_HELP }; },
  calibrate: async () => { const m = await lazyModule('cli/calibrate', () => import('./calibrate.js')); return { run: m.calibrateCommand, help: m.CALIBRATE_HELP }; },
  live: async () => { const m = await lazyModule('cli/live', () => import('./live.js')); return { run: m.liveCommand, help: m.LIVE_HELP }; },
};

/**
 * Run the command line as the program: `dplab ...` (bin/dplab.js, or the start-up snapshot) comes
 * here. Sets the exit code; a reader that went away ("dplab replay big.pcap | head") stops the
 * run quietly, as other Unix tools do.
 */
export async function runCli(argv: string[]): Promise<void> {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  process.exitCode = await main(argv);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    const topic = cmd === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && Object.hasOwn(COMMANDS, topic) ? (await COMMANDS[topic]!()).help : HELP);
    return cmd === undefined ? Exit.USAGE : Exit.OK;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return Exit.OK;
  }
  const load = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!load) {
    process.stderr.write(`dplab: unknown command "${cmd}". Commands: ${Object.keys(COMMANDS).join(', ')}. See dplab --help\n`);
    return Exit.USAGE;
  }
  try {
    return await (await load()).run(rest);
  } catch (e) {
    return reportError(e, cmd);
  }
}

/** What to do when the run needed more memory than it could get (exit 6). */
const MEMORY_ADVICE = 'The state held at that point (flows, buffers) needed more memory than this process may use: '
  + 'raise the limit (ulimit -v, the container\'s memory limit) or let the stages hold less (a smaller conntrack '
  + 'capacity in the profile)';

export function reportError(e: unknown, cmd: string): number {
  if (e instanceof CaptureError) {
    process.stderr.write(`dplab: ${e.message}\n`);
    return e.offset >= 0 ? Exit.DAMAGED : Exit.USAGE;
  }
  if (e instanceof StageFailure || e instanceof WorkerFailure) {
    // What was processed before the failure is still reported.
    const partial = e.partial as RunReport | null;
    if (partial) process.stdout.write(renderReport(partial) + 'INCOMPLETE: the run stopped at the failure below.\n');
    if (e.outOfMemory) {
      process.stderr.write(`dplab: out of memory: ${e.message}. ${MEMORY_ADVICE}\n`);
      return Exit.MEMORY;
    }
    process.stderr.write(`dplab: ${e.message}. This is a bug in dplab or in a stage: please report it with the capture and profile\n`);
    return Exit.INTERNAL;
  }
  if (e instanceof OutputError) {
    // Before the run (nothing read): a usage problem. During it: the report of what was processed.
    const partial = e.partial as RunReport | null;
    if (partial) process.stdout.write(renderReport(partial));
    process.stderr.write(`dplab ${cmd}: ${e.message}${e.note ? ` (${e.note})` : ''}\n`);
    return e.duringRun ? Exit.OUTPUT : Exit.USAGE;
  }
  if (e instanceof ProfileError) {
    // One line per error: a profile check reports all it found.
    for (const line of e.message.split('\n')) process.stderr.write(`dplab: profile ${line}\n`);
    return Exit.USAGE;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`dplab ${e.command || cmd}: ${e.message}${e.message.endsWith('?') ? '' : '.'} See dplab ${e.command || cmd} --help\n`);
    return Exit.USAGE;
  }
  if (isOutOfMemory(e)) {
    process.stderr.write(`dplab ${cmd}: out of memory: ${(e as Error).message}. ${MEMORY_ADVICE}\n`);
    return Exit.MEMORY;
  }
  process.stderr.write(`dplab: internal error, please report it with the command line: ${(e as Error)?.stack ?? String(e)}\n`);
  return Exit.INTERNAL;
}
