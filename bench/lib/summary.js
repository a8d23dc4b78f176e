// The summary at the top of bench/results/latest.md: one row per comparison, taken from each
// benchmark's JSON (bench, case, dplab's figure, the peer, the peer's figure, the ratio).
//
// ratio is always "how many times faster dplab's side is": the peer's time (or ns) over dplab's,
// equivalently dplab's Mpps over the peer's; above 1 dplab's side is faster. Where the pair is two
// designs inside dplab (a chain against a trie, per-packet DNAT against connect-time balancing),
// the "dplab" column holds the first named in the case and the "peer" column the other.
// A benchmark whose JSON has another shape (it changed) gives no rows and says so; it never stops
// the suite.

const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const mpps = (x) => `${f(x)} Mpps`;
const ns = (x) => `${f(x, 1)} ns`;
/** A row where both figures are rates (higher is faster). */
const rate = (bench, kase, dplab, a, peer, b) => ({ bench, case: kase, dplab, dplabFigure: mpps(a), peer, peerFigure: mpps(b), ratio: a / b });
/** A row where both figures are costs (lower is faster). */
const cost = (bench, kase, dplab, a, peer, b, unit = ns) => ({ bench, case: kase, dplab, dplabFigure: unit(a), peer, peerFigure: unit(b), ratio: b / a });

const EXTRACT = {
  read(j) {
    const c = (id) => j.contenders.find((x) => x.id === id);
    const me = c('dplab-decode');
    return ['tcpdump', 'pcap-parser', 'capinfos', 'tshark'].filter((id) => c(id))
      .map((id) => rate('read', '1M small packets: read + decode', 'dplab read+decode', me.mpps, id, c(id).mpps));
  },
  pipeline(j) {
    const rows = [];
    const p = (id) => j.profiles?.find((x) => x.id === id);
    if (p('ebpf')) {
      for (const id of ['iptables', 'ipset', 'stateless']) if (p(id)) rows.push(rate('pipeline', '1M packets end to end', 'ebpf', p('ebpf').mpps, id, p(id).mpps));
    }
    for (const r of j.policy ?? []) {
      if (r.rules === 10000) rows.push(cost('pipeline', `${r.rules} rules, ${r.evaluator}: pipeline ns/packet`, 'once per flow', r.perFlow.pipelineNsPerPacket, 'per packet', r.perPacket.pipelineNsPerPacket));
    }
    return rows;
  },
  policy(j) {
    return j.evaluators.filter((e) => e.rules === 10000 || e.rules === 10).flatMap((e) => [
      cost('policy', `${e.rules} rules, ns/packet`, 'trie', e.nsPerPacket.trie, 'chain', e.nsPerPacket.chain),
      cost('policy', `${e.rules} rules, ns/packet`, 'trie', e.nsPerPacket.trie, 'set', e.nsPerPacket.set),
    ]);
  },
  flowtable(j) {
    return j.inputs.flatMap((i) => {
      const ft = i.contenders.find((c) => c.id === 'flowtable');
      return i.contenders.filter((c) => c !== ft).map((c) => cost('flowtable', `${i.id}: ns/lookup`, 'FlowTable', ft.nsPerLookup, c.label ?? c.id, c.nsPerLookup));
    });
  },
  flowtrack(j) {
    const c = (id) => j.contenders.find((x) => x.id === id);
    const rows = [];
    const kase = `${(j.capture.packets / 1e6).toFixed(1)}M packets, 20 a flow (wall, start-up incl.)`;
    for (const me of ['dplab ebpf', 'dplab conntrack-only']) {
      if (!c(me)) continue;
      for (const peer of ['nfpcapd', 'argus', 'tshark conv,tcp']) if (c(peer)) rows.push(rate('flowtrack', kase, me, c(me).mpps, peer, c(peer).mpps));
    }
    for (const s of j.skipped ?? []) rows.push({ bench: 'flowtrack', case: kase, dplab: '-', dplabFigure: '-', peer: s.id, peerFigure: s.install ? `skipped (${s.install})` : 'skipped', ratio: NaN });
    return rows;
  },
  nat(j) {
    return j.results.flatMap((r) => [
      cost('nat', `${r.packetsPerFlow} packets/flow: dataplane ns/packet`, 'ctlb', r.ctlb.dataplaneNs, 'dnat', r.dnat.dataplaneNs),
      ...(r.tcprewrite ? [rate('nat', `${r.packetsPerFlow} packets/flow: pcap in, pcap out`, 'dnat', r.dnat.mpps, 'tcprewrite', r.tcprewrite.mpps)] : []),
    ]);
  },
  l7(j) {
    return j.results.flatMap((r) => [
      cost('l7', `${r.packetsPerFlow} packets/flow: l7 ns/packet`, 'proxy', r.proxy.l7Ns, 'inline', r.inline.l7Ns),
      ...(r.ndpiMpps ? [rate('l7', `${r.packetsPerFlow} packets/flow: end to end`, 'inline', r.inline.mpps, 'ndpiReader', r.ndpiMpps)] : []),
    ]);
  },
  micro(j) {
    const t = (name) => j.tasks.find((x) => x.name === name);
    const rows = [];
    const pair = (kase, a, b) => { if (t(a) && t(b)) rows.push(cost('micro', kase, a, t(a).nsPerPacket, b, t(b).nsPerPacket)); };
    pair('conntrack ns/packet', 'conntrack hit', 'conntrack new');
    pair('policy ns/packet (shipped rules)', 'policy trie', 'policy chain');
    pair('policy ns/packet (shipped rules)', 'policy trie', 'policy set');
    pair('one endpoint rewritten, ns/packet', 'setEndpoint', 'setAddress+setPort');
    return rows;
  },
  speed(j) {
    const c = (id) => j.commandLine.find((x) => x.id === id);
    const rows = [];
    if (c('tcpdump')) {
      rows.push(rate('speed', 'command line, read + decode', 'dplab replay', c('read-decode').mpps, 'tcpdump -r', c('tcpdump').mpps));
      rows.push(rate('speed', 'command line, ebpf profile, 1 worker', 'dplab replay', c('ebpf-w1').mpps, 'tcpdump -r', c('tcpdump').mpps));
    }
    rows.push(rate('speed', 'command line, ebpf profile', '--workers 2', c('ebpf-w2').mpps, '--workers 1', c('ebpf-w1').mpps));
    for (const r of j.conntrack) rows.push({ bench: 'speed', case: `conntrack, ${r.id}`, dplab: 'conntrack', dplabFigure: ns(r.nsPerPacket), peer: '-', peerFigure: '-', ratio: NaN });
    return rows;
  },
  workers(j) {
    return (j.profiles ?? []).map((p) => {
      const w = (id) => p.contenders.find((c) => c.id === id);
      return { bench: 'workers', case: `${p.profile}, ${(j.capture.packets / 1e6).toFixed(0)}M packets, warm pool`, dplab: '2 workers', dplabFigure: `${f(w('w2').medianSeconds, 3)} s`, peer: '1 worker', peerFigure: `${f(w('w1').medianSeconds, 3)} s`, ratio: w('w1').medianSeconds / w('w2').medianSeconds };
    });
  },
  encrypt(j) {
    return j.results.filter((r) => r.openssl).map((r) => cost('encrypt', `${r.payload}-byte payload, ns/packet`, 'encrypt stage', r.stage.nsPerPacket, 'openssl speed', r.openssl.nsPerPacket));
  },
  route(j) {
    return j.results.map((r) => cost('route', `${r.routes} routes, dataplane ns/packet`, 'bypass', r.bypass.dataplaneNs, 'full path', r.full.dataplaneNs));
  },
  pipe(j) {
    return [{ bench: 'pipe', case: `${(j.packets / 1e6).toFixed(0)}M packets through a pipe, peak RSS ${f(j.peakRssMb, 0)} MB`, dplab: 'gen | replay', dplabFigure: mpps(j.packetsPerSecond / 1e6), peer: '-', peerFigure: '-', ratio: NaN }];
  },
};

/** The summary rows of one benchmark's JSON ([] when it wrote none), and a note when its shape was not understood. */
export function summaryRows(name, json) {
  if (!json || !EXTRACT[name]) return { rows: [], note: null };
  try {
    return { rows: EXTRACT[name](json), note: null };
  } catch (e) {
    return { rows: [], note: `${name}: its JSON was not understood for the summary (${e.message})` };
  }
}

/** The rows as a markdown table. */
export function summaryMarkdown(rows) {
  const esc = (s) => String(s).replace(/\|/g, '\\|');
  const lines = ['| bench | case | dplab | figure | peer | figure | ratio |', '|---|---|---|---:|---|---:|---:|'];
  for (const r of rows) lines.push(`| ${[r.bench, r.case, r.dplab, r.dplabFigure, r.peer, r.peerFigure, Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}x` : '-'].map(esc).join(' | ')} |`);
  return lines.join('\n') + '\n';
}
