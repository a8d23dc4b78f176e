/**
 * Which stage names a profile may use, and how each is built from its section. Stages that need
 * another stage's state (policy caching its decision in conntrack's flow entries) find it in the
 * context, which the builder fills as it goes down the pipeline in order.
 */
import type { FlowTable } from '../conntrack/table.js';
import { ProfileError, profileErrors, type Profile, type Section } from './profile.js';
import type { Stage } from './stage.js';

export interface StageContext {
  /** The flow table of a conntrack stage earlier in the pipeline, or null. */
  conntrack: FlowTable | null;
  /** Workers the flows are sharded over (1 inline): per-flow tables split their capacity. */
  shards: number;
}

/** Builds a stage from its section; the stage takes the section's name (the instance name) as its own. */
export type StageFactory = (section: Section, ctx: StageContext) => Stage;

const factories = new Map<string, { create: StageFactory; summary: string }>();

/**
 * The stages dplab ships, each with the module that registers it when loaded. A command loads
 * only the modules its profile names (loadStages) instead of all of them: ~30 ms of a command's
 * start on the project's VM (read + decode needs xdp alone). `stages/index.js` still loads every one
 * (for `dplab profiles`, compare, the tests); test/registry.test.ts checks that this table and
 * that index name the same stages.
 */
const SHIPPED: Readonly<Record<string, string>> = {
  conntrack: '../stages/conntrack.js',
  policy: '../stages/policy.js',
  xdp: '../stages/xdp.js',
  dnat: '../stages/dnat.js',
  ctlb: '../stages/ctlb.js',
  l7: '../stages/l7.js',
  encrypt: '../stages/encrypt.js',
  route: '../stages/route.js',
  vfp: '../stages/vfp.js',
};

/** The names of the stages dplab ships, loaded or not. */
export const SHIPPED_STAGES: readonly string[] = Object.keys(SHIPPED);

/**
 * Load the modules of the shipped stages among `types` (a profile's stage types), so buildStages
 * can build them. Names that are not shipped stages are left for buildStages to report.
 */
export async function loadStages(types: readonly string[]): Promise<void> {
  for (const type of types) {
    const m = Object.hasOwn(SHIPPED, type) ? SHIPPED[type]! : null;
    if (m !== null && !factories.has(type)) await import(new URL(m, import.meta.url).href);
  }
}

export function registerStage(name: string, summary: string, create: StageFactory): void {
  factories.set(name, { create, summary });
}

export function stageNames(): { name: string; summary: string }[] {
  return [...factories].map(([name, f]) => ({ name, summary: f.summary }));
}

/**
 * Build a profile's stages in order. Bad keys and values throw a ProfileError naming file and
 * line: every one found in the profile, in file order, so one check shows every fix to make.
 */
export function buildStages(profile: Profile, shards = 1): Stage[] {
  const ctx: StageContext = { conntrack: null, shards };
  const stages: Stage[] = [];
  const errors: ProfileError[] = [...(profile.problems ?? [])];
  for (let k = 0; k < profile.stages.length; k++) {
    const name = profile.stages[k]!;
    const type = profile.types[k]!;
    const f = factories.get(type);
    if (!f) {
      errors.push(new ProfileError(profile.file, profile.pipelineLine,
        Object.hasOwn(SHIPPED, type)
          ? `stage "${type}" is not loaded (call loadStages with the profile's stage types before buildStages)`
          : `unknown stage "${type}" (stages: ${[...new Set([...SHIPPED_STAGES, ...factories.keys()])].join(', ')})`));
      continue;
    }
    const section = profile.sections.get(name)!;
    // A stage stops at its section's first bad entry: set that entry aside and build again to find
    // the next, until it builds or the error is not about one of its entries.
    for (;;) {
      try {
        stages.push(f.create(section, ctx));
        errors.push(...section.unknownKeys());
        break;
      } catch (e) {
        if (!(e instanceof ProfileError)) throw e;
        errors.push(e);
        const at = section.entries.findIndex((x) => x.file === e.file && x.line === e.line);
        if (at < 0) break;
        section.entries.splice(at, 1);
      }
    }
  }
  if (errors.length > 0) throw profileErrors(errors, profile.file);
  return stages;
}
