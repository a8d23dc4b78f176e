import { builtinProfiles, loadProfile, pipelineText } from '../pipeline/profile.js';
import { buildStages, stageNames } from '../pipeline/registry.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit } from './errors.js';
import { renderStageReport } from './report.js';

export const PROFILES_HELP = `dplab profiles [NAME|FILE]

List the built-in profiles (the pipelines dplab ships) and the stages a profile can use; with a
name or a file, check that profile and print it.

A profile is a small text file:

  # mine: what it models, in one line
  pipeline: xdp -> conntrack -> policy

  [xdp]
  block: 192.0.2.0/24, 2001:db8:bad::/48

  [policy]
  evaluator: trie              # chain (iptables), set (ipset), trie (eBPF LPM map)
  rule: drop tcp port 23
  rules: my.rules              # one rule per line, relative to the profile

Examples:
  dplab profiles
  dplab profiles ./mine.profile && dplab replay web.pcap --profile ./mine.profile
`;

export function profilesCommand(argv: string[]): number {
  const args = parseCommandLine('profiles', argv, PROFILES_HELP, {});
  if (!args) return Exit.OK;
  const { positionals } = args;
  if (positionals.length > 0) {
    const p = loadProfile(positionals[0]!);
    // Building the stages validates every key and value.
    const stages = buildStages(p);
    // The profile as checked, itself a valid profile: its settings without the comments, and what
    // each stage made of them as comments.
    let s = `# ${p.file}: ok${p.description ? `\n# ${p.description}` : ''}\npipeline: ${pipelineText(p)}\n`;
    for (const st of stages) {
      s += `\n[${st.name}]\n`;
      for (const e of p.sections.get(st.name)?.entries ?? []) s += `${e.key}: ${e.value}\n`;
      s += renderStageReport(st.describe?.() ?? {}, '# ');
    }
    process.stdout.write(s);
    return Exit.OK;
  }
  let s = 'Built-in profiles (dplab replay FILE --profile NAME):\n';
  for (const name of builtinProfiles()) {
    const p = loadProfile(name);
    s += `  ${name.padEnd(16)} ${pipelineText(p)}\n  ${''.padEnd(16)} ${p.description.replace(/^[a-z0-9-]+:\s*/, '')}\n`;
  }
  s += '\nStages:\n';
  for (const st of stageNames()) s += `  ${st.name.padEnd(16)} ${st.summary}\n`;
  process.stdout.write(s);
  return Exit.OK;
}
