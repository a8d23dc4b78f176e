/**
 * The HTML report of compare and sweep: one self-contained page (uPlot's code and CSS inlined,
 * the figures as JSON inside it; nothing is fetched when it is opened). uPlot was chosen by size:
 * 51 KB minified against ~200 KB for Chart.js and ~1 MB for ECharts, and it draws bars and lines.
 *
 * The page draws one bar chart of per-stage ns/packet per profile (compare) and one line chart per
 * sweep, and records on <body> how many charts it drew and every error it met
 * (data-charts, data-errors), so a headless browser can check it (test/html.test.ts).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { CompareResult } from '../pipeline/compare.js';
import type { SweepPoint } from './sweep.js';
import { commas } from '../packet/format.js';

function asset(path: string): string {
  // Resolved when a page is written, not as the module loads (the start-up snapshot is built
  // where only Node's own modules can be required).
  return readFileSync(createRequire(import.meta.url).resolve(`uplot/dist/${path}`), 'utf8');
}

/** Text safe inside HTML, and JSON safe inside a <script> element. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
function json(x: unknown): string {
  return JSON.stringify(x).replace(/</g, '\\u003c');
}

export interface HtmlInput {
  compare?: CompareResult;
  reading?: string[];
  sweep?: { param: string; profiles: string[]; points: SweepPoint[] };
}

export function renderHtml(input: HtmlInput): string {
  const c = input.compare;
  let body = '';
  if (c) {
    body += `<h1>dplab compare</h1><p>${esc(c.file)}: ${commas(c.packets)} packets, ${c.captureSeconds.toFixed(3)} s of traffic; batches of ${c.batchSize}.`
      + `${c.packets < 100_000 ? ' A small capture: per-packet costs are noisy at this size (the JIT is still warming); compare ratios on larger captures.' : ''}</p>`;
    body += '<table><tr><th>profile</th><th>pipeline</th><th>dataplane ns/packet</th><th>vs first</th><th>forwarded</th><th>dropped</th><th>flows</th><th>NAT translated</th><th>connects</th><th>latency p50 / p99 (us)</th></tr>';
    const base = c.results[0]?.dataplaneNsPerPacket ?? 1;
    for (const p of c.results) {
      body += `<tr><td>${esc(p.profile)}</td><td>${esc(p.pipeline)}</td><td>${p.dataplaneNsPerPacket.toFixed(1)}</td><td>${(p.dataplaneNsPerPacket / base).toFixed(2)}x</td>`
        + `<td>${p.verdicts.forwarded}</td><td>${p.verdicts.dropped}</td><td>${p.flows}</td><td>${p.natTranslated}</td><td>${p.connects}</td>`
        + `<td>${p.latencyUs.p50.toFixed(1)} / ${p.latencyUs.p99.toFixed(1)}</td></tr>`;
    }
    body += '</table><h2>Per-stage cost (ns/packet)</h2><div class="chart" id="stages"></div>';
    body += `<h2>Verdict differences</h2><p>${commas(c.differences.flows)} flows (${commas(c.differences.packets)} packets) forwarded by one profile and dropped by another.</p>`;
    if (c.differences.listed.length > 0) {
      body += `<table><tr><th>flow</th><th>packets</th>${c.results.map((p) => `<th>${esc(p.profile)}</th>`).join('')}</tr>`;
      for (const d of c.differences.listed.slice(0, 200)) body += `<tr><td>${esc(d.flow)}</td><td>${d.packets}</td>${d.verdicts.map((v) => `<td>${esc(v)}</td>`).join('')}</tr>`;
      body += '</table>';
    }
    if (input.reading?.length) body += `<h2>Reading</h2><ul>${input.reading.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>`;
  }
  const sw = input.sweep;
  if (sw) body += `<h1>dplab sweep: ${esc(sw.param)}</h1><div class="chart" id="sweep"></div>`;

  const data = {
    stages: c ? {
      profiles: c.results.map((p) => p.profile),
      names: [...new Set(c.results.flatMap((p) => p.stages.map((s) => s.name)))],
      ns: c.results.map((p) => Object.fromEntries(p.stages.map((s) => [s.name, s.nsPerPacket]))),
      emulation: c.results.map((p) => p.stages.filter((s) => s.emulation).map((s) => s.name)),
    } : null,
    sweep: sw ? { param: sw.param, profiles: sw.profiles, x: sw.points.map((p) => p.value), y: sw.profiles.map((_, k) => sw.points.map((p) => p.profiles[k]!.nsPerPacket)) } : null,
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dplab report</title>
<style>${asset('uPlot.min.css')}
body{font:14px system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left} .chart{margin:1em 0}
</style></head>
<body data-charts="0" data-errors="0">
<div id="errors"></div>
${body}
<script>
(function(){
  var errors = [];
  function fail(m){ errors.push(String(m)); document.body.setAttribute('data-errors', String(errors.length)); var e=document.getElementById('errors'); e.textContent = errors.join('\\n'); }
  window.addEventListener('error', function(ev){ fail(ev.message); });
  var origError = console.error; console.error = function(){ fail(Array.prototype.join.call(arguments, ' ')); origError.apply(console, arguments); };
  window.__dplabFail = fail;
})();
</script>
<script>${asset('uPlot.iife.min.js')}</script>
<script>
(function(){
  var data = ${json(data)};
  var drawn = 0;
  var colours = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f'];
  try {
    if (data.stages) {
      // One bar per (profile, stage), grouped by profile.
      var labels = [], values = [];
      data.stages.profiles.forEach(function(p, j){
        data.stages.names.forEach(function(name){ var v = data.stages.ns[j][name]; if (v !== undefined) { labels.push(p + ' ' + name + (data.stages.emulation[j].indexOf(name) >= 0 ? ' (emulation)' : '')); values.push(v); } });
      });
      var xs = labels.map(function(_, k){ return k; });
      new uPlot({ width: Math.max(600, Math.min(1400, 70 * labels.length)), height: 340,
        series: [{}, { label: 'ns/packet', fill: colours[0] + '99', stroke: colours[0], paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } }],
        scales: { x: { time: false, range: [-0.6, labels.length - 0.4] } },
        axes: [{ rotate: -40, size: 110, splits: function(){ return xs; }, values: function(u, ticks){ return ticks.map(function(t){ return labels[t] || ''; }); } }, { label: 'ns/packet' }] },
        [xs, values], document.getElementById('stages'));
      drawn++;
    }
    if (data.sweep) {
      var s2 = [{ label: data.sweep.param }];
      data.sweep.profiles.forEach(function(p, j){ s2.push({ label: p, stroke: colours[j % colours.length], width: 2, points: { show: true } }); });
      new uPlot({ width: 900, height: 360, series: s2, scales: { x: { time: false, distr: 3 } }, axes: [{ label: data.sweep.param }, { label: 'dataplane ns/packet' }] },
        [data.sweep.x].concat(data.sweep.y), document.getElementById('sweep'));
      drawn++;
    }
  } catch (e) { window.__dplabFail(e && e.stack || e); }
  document.body.setAttribute('data-charts', String(drawn));
})();
</script>
</body></html>
`;
}
