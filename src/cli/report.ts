/** The text form of a replay report. */
import type { RunReport, StageRow } from '../pipeline/run.js';
import type { StageReport } from '../pipeline/stage.js';
import { formatBytes, formatRate, table } from './output.js';
import { commas } from '../packet/format.js';

function pct(n: number, of: number): string {
  return of > 0 ? `${((100 * n) / of).toFixed(1)}%` : '-';
}

/** Largest first; equal counts by name, so a report merged from workers' reads the same as one pipeline's. */
function breakdown(title: string, rec: Record<string, number>, of: number): string {
  const rows = Object.entries(rec).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([k, v]) => [`  ${k}`, v, pct(v, of)]);
  if (rows.length === 0) return '';
  return `${title}\n${table(['', 'packets', 'share'], rows).split('\n').slice(1).join('\n')}\n`;
}

export function renderReport(r: RunReport): string {
  const c = r.capture;
  let s = `${r.file}: ${r.format}, ${r.interfaces.length} interface${r.interfaces.length === 1 ? '' : 's'}`
    + ` (${[...new Set(r.interfaces.map((f) => f.name))].join(', ')})\n`;
  s += `  ${commas(c.packets)} packets, ${formatBytes(c.bytes)} on the wire, `
    + `${c.captureSeconds.toFixed(3)} s of traffic; read in ${r.wallSeconds.toFixed(3)} s (${formatRate(r.packetsPerSecond)})\n`;
  if (!r.complete && r.error) s += `  INCOMPLETE: ${r.error.message}\n`;
  if (r.interrupted) s += `  INTERRUPTED: ${r.interrupted} stopped the run after ${commas(c.packets)} packets; this report covers those only\n`;
  if (r.workers) s += `  on ${r.workers} worker threads (each reads and decodes the whole capture, then runs its shard of the flows)\n`;
  if (r.run) s += `  (${r.run.note})\n`;
  else if (c.packets < 100000 && c.packets > 0) s += `  (a small capture: per-packet costs below include the JIT warming up; --repeat 5 measures warm runs)\n`;
  s += '\n';
  s += breakdown('Link types', c.linkTypes, c.packets);
  s += breakdown('L3', c.l3, c.packets);
  s += breakdown('L4', c.l4, c.packets);
  const notes: string[] = [];
  if (c.vlanTagged) notes.push(`${commas(c.vlanTagged)} VLAN-tagged`);
  if (c.fragments) notes.push(`${commas(c.fragments)} IP fragments`);
  if (c.snaplenTruncated) notes.push(`${commas(c.snaplenTruncated)} cut by the snap length`);
  if (notes.length) s += `Also: ${notes.join(', ')}\n`;
  s += breakdown('Malformed', c.malformedByReason, c.packets);
  s += '\n';

  const v = r.verdicts;
  s += `Verdicts: ${commas(v.packets)} in = ${commas(v.forwarded)} forwarded`
    + ` + ${commas(v.dropped)} dropped + ${commas(v.malformed)} malformed\n`;
  s += breakdown('Drops', v.dropsByReason, v.packets);
  s += tableFullWarning(r);
  s += '\n';
  for (const [stage, rep] of Object.entries(r.stageReports)) {
    const body = renderStageReport({ ...rep, ...(r.stageConfig?.[stage] ?? {}) }, '  ');
    if (body) s += `${stage}\n${body}`;
  }
  s += `\nProfile ${r.profile}: per-stage cost${r.workers ? ` (summed over the ${r.workers} workers)` : ''}\n`;
  // With workers, a row marked * ran in every worker on every packet: its packets count each
  // packet once per worker, which is what its time paid for.
  const everyWorker = (st: StageRow): boolean => r.workers !== undefined && st.allPackets === true;
  // Emulation rows (the application's side, e.g. ctlb's socket re-addressing) are not dataplane
  // cost: shown apart, left out of the shares and the total.
  const dataplane = r.stages.filter((st) => !st.emulation);
  const emulated = r.stages.filter((st) => st.emulation);
  const dpNs = dataplane.reduce((a, x) => a + x.ns, 0);
  const row = (st: StageRow): (string | number)[] => [everyWorker(st) ? `${st.name} *` : st.name, st.calls, st.packets, st.dropped,
    st.nsPerPacket.toFixed(1), st.packetsPerCall.toFixed(1), st.emulation ? 'emulation' : pct(st.ns, dpNs)];
  s += table(['stage', 'calls', 'packets', 'dropped', 'ns/packet', 'packets/call', 'share of time'], [...dataplane, ...emulated].map(row));
  s += '\n';
  if (emulated.length > 0) {
    const inPackets = r.verdicts.packets;
    s += `dataplane total: ${inPackets > 0 ? (dpNs / inPackets).toFixed(1) : '-'} ns per packet in (the rows above the emulation rows)\n`;
    s += `emulation (${emulated.map((st) => st.name).join(', ')}): the capture holds the application's view (service addresses); these rows re-address\n`
      + '  packets as a connected socket would have sent them. A real kernel pays that once per connect(), not per packet:\n'
      + '  their cost is not part of the dataplane total.\n';
  }
  s += natReading(r, dpNs);
  if (r.stages.some(everyWorker)) {
    s += `* run by each of the ${r.workers} workers on every packet: packets counts each packet once per worker\n`;
  }
  return s;
}

/**
 * What per-packet NAT cost on this capture, from this run's figures: the dnat rows' time per
 * translated packet and per flow, and what connect-time balancing would do instead.
 */
function natReading(r: RunReport, dataplaneNs: number): string {
  let s = '';
  for (const st of r.stages) {
    const rep = r.stageReports[st.name];
    const t = rep?.packetsTranslated;
    if (t === undefined || typeof t === 'number') continue;
    const packets = (t.original as number) + (t.reply as number);
    const flows = rep!.bindingsCreated as number;
    if (packets === 0 || flows === 0 || st.packets === 0) continue;
    const share = dataplaneNs > 0 ? (100 * st.ns) / dataplaneNs : 0;
    const pl = (x: number, word: string): string => `${commas(x)} ${word}${x === 1 ? '' : 's'}`;
    s += `NAT: ${st.name} translated ${pl(packets, 'packet')} of ${pl(flows, 'flow')} `
      + `(${(packets / flows).toFixed(1)} packets per flow), at ${(st.ns / packets).toFixed(1)} ns per translated packet: `
      + `${share.toFixed(1)}% of the dataplane time,\n  ${(st.ns / flows / 1000).toFixed(2)} us per flow. Connect-time balancing (ctlb) `
      + `would choose ${flows === 1 ? 'its backend once' : `${pl(flows, 'backend')} once each`}, at connect(), and rewrite none of these packets.\n`;
  }
  return s;
}

/**
 * A flow table filled: say so where it cannot be missed, with the setting to raise, for every
 * conntrack stage whatever its instance name (`host :: conntrack` reports as "host").
 */
function tableFullWarning(r: RunReport): string {
  let s = '';
  for (const [name, rep] of Object.entries(r.stageReports)) {
    const full = rep.tableFull;
    if (full === undefined || typeof full === 'number') continue;
    const n = (k: string): string => commas((full[k] as number | undefined) ?? 0);
    const capacity = r.stageConfig?.[name]?.capacity;
    s += `WARNING: the flow table filled: ${n('flowsEvicted')} flows were evicted to make room and ${n('packetsDropped')} packets `
      + `were dropped for lack of room, so flows and verdicts depend on its size. Raise "[${name}] capacity:" in the profile`
      + `${typeof capacity === 'number' ? ` (now ${commas(capacity)})` : ''}.\n`;
  }
  return s;
}

/** Records of more numbers than this are summarised in the text report. */
const LONG_RECORD = 24;

/** A stage's own figures, nested records indented; camelCase keys read as words. */
export function renderStageReport(rep: StageReport, indent: string): string {
  let s = '';
  for (const [k, v] of Object.entries(rep)) {
    const label = words(k);
    if (typeof v === 'number') s += `${indent}${label}: ${commas(v)}\n`;
    else {
      const inner = Object.entries(v);
      if (inner.length === 0) continue;
      if (inner.every(([, x]) => typeof x === 'number') && inner.length > LONG_RECORD) {
        // Hundreds of backends are not a report: how many, the fewest and the most (--json has all).
        const xs = inner.map(([, x]) => x as number);
        s += `${indent}${label}: ${commas(inner.length)} entries, fewest ${commas(Math.min(...xs))}, `
          + `most ${commas(Math.max(...xs))}, total ${commas(xs.reduce((a, x) => a + x, 0))} (--json lists each)\n`;
      } else if (inner.every(([, x]) => typeof x === 'number')) {
        s += `${indent}${label}: ${inner.map(([a, x]) => `${words(a)} ${commas(x as number)}`).join(', ')}\n`;
      } else s += `${indent}${label}:\n${renderStageReport(v, indent + '  ')}`;
    }
  }
  return s;
}

/** A camelCase key as words: trieNodes reads "trie nodes". */
function words(key: string): string {
  return key.replace(/([a-z])([A-Z])/g, (_, a: string, b: string) => `${a} ${b.toLowerCase()}`);
}
