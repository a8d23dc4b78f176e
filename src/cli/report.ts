/** The text form of a replay report. */
import type { RunReport } from '../pipeline/run.js';
import type { StageReport } from '../pipeline/stage.js';
import { formatBytes, formatRate, table } from './output.js';

function pct(n: number, of: number): string {
  return of > 0 ? `${((100 * n) / of).toFixed(1)}%` : '-';
}

function breakdown(title: string, rec: Record<string, number>, of: number): string {
  const rows = Object.entries(rec).sort((a, b) => b[1] - a[1]).map(([k, v]) => [`  ${k}`, v, pct(v, of)]);
  if (rows.length === 0) return '';
  return `${title}\n${table(['', 'packets', 'share'], rows).split('\n').slice(1).join('\n')}\n`;
}

export function renderReport(r: RunReport): string {
  const c = r.capture;
  let s = `${r.file}: ${r.format}, ${r.interfaces.length} interface${r.interfaces.length === 1 ? '' : 's'}`
    + ` (${[...new Set(r.interfaces.map((f) => f.name))].join(', ')})\n`;
  s += `  ${c.packets.toLocaleString('en-US')} packets, ${formatBytes(c.bytes)} on the wire, `
    + `${c.captureSeconds.toFixed(3)} s of traffic; read in ${r.wallSeconds.toFixed(3)} s (${formatRate(r.packetsPerSecond)})\n`;
  if (!r.complete && r.error) s += `  INCOMPLETE: ${r.error.message}\n`;
  if (r.workers) s += `  on ${r.workers} worker threads (each reads and decodes the whole capture, then runs its shard of the flows)\n`;
  if (r.run) s += `  (${r.run.note})\n`;
  else if (c.packets < 100000 && c.packets > 0) s += `  (a small capture: per-packet costs below include the JIT warming up; --repeat 5 measures warm runs)\n`;
  s += '\n';
  s += breakdown('Link types', c.linkTypes, c.packets);
  s += breakdown('L3', c.l3, c.packets);
  s += breakdown('L4', c.l4, c.packets);
  const notes: string[] = [];
  if (c.vlanTagged) notes.push(`${c.vlanTagged.toLocaleString('en-US')} VLAN-tagged`);
  if (c.fragments) notes.push(`${c.fragments.toLocaleString('en-US')} IP fragments`);
  if (c.snaplenTruncated) notes.push(`${c.snaplenTruncated.toLocaleString('en-US')} cut by the snap length`);
  if (notes.length) s += `Also: ${notes.join(', ')}\n`;
  s += breakdown('Malformed', c.malformedByReason, c.packets);
  s += '\n';

  const v = r.verdicts;
  s += `Verdicts: ${v.packets.toLocaleString('en-US')} in = ${v.forwarded.toLocaleString('en-US')} forwarded`
    + ` + ${v.dropped.toLocaleString('en-US')} dropped + ${v.malformed.toLocaleString('en-US')} malformed\n`;
  s += breakdown('Drops', v.dropsByReason, v.packets);
  s += '\n';
  for (const [stage, rep] of Object.entries(r.stageReports)) {
    const body = renderStageReport({ ...rep, ...(r.stageConfig?.[stage] ?? {}) }, '  ');
    if (body) s += `${stage}\n${body}`;
  }
  s += `\nProfile ${r.profile}: per-stage cost\n`;
  s += table(['stage', 'calls', 'packets', 'dropped', 'ns/packet', 'packets/call', 'share of time'],
    r.stages.map((st) => [st.name, st.calls, st.packets, st.dropped, st.nsPerPacket.toFixed(1), st.packetsPerCall.toFixed(1),
      pct(st.ns, r.stages.reduce((a, x) => a + x.ns, 0))]));
  s += '\n';
  return s;
}

/** A stage's own figures, nested records indented; camelCase keys read as words. */
function renderStageReport(rep: StageReport, indent: string): string {
  let s = '';
  for (const [k, v] of Object.entries(rep)) {
    const label = k.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
    if (typeof v === 'number') s += `${indent}${label}: ${v.toLocaleString('en-US')}\n`;
    else {
      const inner = Object.entries(v);
      if (inner.length === 0) continue;
      if (inner.every(([, x]) => typeof x === 'number')) {
        s += `${indent}${label}: ${inner.map(([a, x]) => `${a} ${(x as number).toLocaleString('en-US')}`).join(', ')}\n`;
      } else s += `${indent}${label}:\n${renderStageReport(v, indent + '  ')}`;
    }
  }
  return s;
}
