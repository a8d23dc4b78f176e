/**
 * Profiles: a pipeline named and configured in a small text file, Click-style.
 *
 *   # ebpf: XDP drops early, conntrack decides once per flow, policy is an LPM trie
 *   pipeline: xdp -> conntrack -> policy
 *
 *   [xdp]
 *   block: 192.0.2.0/24, 2001:db8:bad::/48
 *
 *   [policy]
 *   evaluator: trie
 *   rule: accept tcp to 10.0.0.0/8 port 80,443
 *
 * Lines are `key: value`; `#` starts a comment; `[name]` opens the section a stage of that name
 * reads. A stage type may appear more than once under names of its own, as Click's `name :: Class`:
 * `pipeline: pre :: policy -> conntrack -> post :: policy` has sections [pre] and [post], and
 * reports key by those names. A key may repeat (rule:, block:). Every value remembers its file and line, so a stage's
 * validation error points at the exact place: "web.profile:7: [policy] rule: unknown protocol".
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export class ProfileError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}${line > 0 ? `:${line}` : ''}: ${message}`);
    this.name = 'ProfileError';
  }
}

/**
 * Several errors of one profile, in file order, so one check shows every fix to make. Its message
 * has one line per error; file and line are the first one's.
 */
export class ProfileErrors extends ProfileError {
  constructor(readonly errors: readonly ProfileError[]) {
    super(errors[0]!.file, errors[0]!.line, '');
    this.message = errors.map((e) => e.message).join('\n');
  }
}

/** The errors found (at least one) as one error to throw: itself, or a ProfileErrors in file order. */
export function profileErrors(errors: readonly ProfileError[], profileFile: string): ProfileError {
  // The profile's own lines first, in order; then those of the files it refers to.
  const sorted = [...errors].sort((a, b) => Number(a.file !== profileFile) - Number(b.file !== profileFile) || a.line - b.line);
  return sorted.length === 1 ? sorted[0]! : new ProfileErrors(sorted);
}

export interface Entry {
  key: string;
  value: string;
  file: string;
  line: number;
}

/** One `[section]` of a profile: the config of the stage with that name. */
export class Section {
  readonly entries: Entry[] = [];
  private readonly used = new Set<Entry>();
  /** Every key the stage asked for, present or not: what it knows, for the unknown-key error. */
  private readonly asked = new Set<string>();

  constructor(readonly name: string, readonly file: string, readonly line: number) {}

  /** The value of a key that may appear at most once, or undefined. */
  get(key: string): Entry | undefined {
    const all = this.all(key);
    if (all.length > 1) throw this.error(all[1]!, `"${key}" is given ${all.length} times; it takes one value`);
    return all[0];
  }

  /** Every value of a repeatable key, in file order. */
  all(key: string): Entry[] {
    this.asked.add(key);
    const out = this.entries.filter((e) => e.key === key);
    for (const e of out) this.used.add(e);
    return out;
  }

  string(key: string, fallback: string): string {
    return this.get(key)?.value ?? fallback;
  }

  /** One of a fixed set of words. */
  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const e = this.get(key);
    if (!e) return fallback;
    if (!(choices as readonly string[]).includes(e.value)) {
      throw this.error(e, `"${e.value}" is not one of: ${choices.join(', ')}`);
    }
    return e.value as T;
  }

  /** A whole number in [min, max]; accepts 1k / 64k / 1m / 512Ki style suffixes. */
  integer(key: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const e = this.get(key);
    if (!e) return fallback;
    const n = parseCount(e.value);
    if (n === null || !Number.isInteger(n)) throw this.error(e, `"${e.value}" is not a whole number`);
    if (n < min || n > max) throw this.error(e, `${n} is out of range (${min}..${max})`);
    return n;
  }

  /** A duration in seconds: "30", "30s", "2m", "5d", "500ms". */
  seconds(key: string, fallback: number): number {
    const e = this.get(key);
    if (!e) return fallback;
    const n = parseDuration(e.value);
    if (n === null) throw this.error(e, `"${e.value}" is not a duration (e.g. 30s, 2m, 5d)`);
    return n;
  }

  boolean(key: string, fallback: boolean): boolean {
    const e = this.get(key);
    if (!e) return fallback;
    if (/^(yes|true|on)$/i.test(e.value)) return true;
    if (/^(no|false|off)$/i.test(e.value)) return false;
    throw this.error(e, `"${e.value}" is not yes/no`);
  }

  /** An error pointing at an entry (or at the section header). */
  error(at: Entry | null, message: string): ProfileError {
    return new ProfileError(at?.file ?? this.file, at?.line ?? this.line, `[${this.name}] ${at ? `${at.key}: ` : ''}${message}`);
  }

  /** After a stage read its config: a key it did not read is a typo the user should hear about. */
  unknownKeys(): ProfileError[] {
    const known = [...this.asked];
    return this.entries.filter((e) => !this.used.has(e))
      .map((e) => this.error(e, `unknown key${known.length ? ` (this section knows: ${known.join(', ')})` : ''}`));
  }
}

export interface Profile {
  name: string;
  file: string;
  description: string;
  /** Stage instance names in order, from the `pipeline:` line (the type's name unless `name :: type`). */
  stages: string[];
  /** Each instance's stage type, in the same order. */
  types: string[];
  /** Line of the `pipeline:` entry, for errors about stage names. */
  pipelineLine: number;
  sections: Map<string, Section>;
  /** Line errors found while parsing; buildStages reports them with the stages' own, in file order. */
  problems?: ProfileError[];
}

/** Parse profile text. `file` names it in errors; relative `file:` references resolve against it. */
export function parseProfile(text: string, file: string, name = file): Profile {
  const sections = new Map<string, Section>();
  let description = '';
  let stages: string[] | null = null;
  let types: string[] = [];
  let pipelineLine = 0;
  let current: Section | null = null;
  const problems: ProfileError[] = [];
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    try {
      const raw = lines[n]!;
      const hash = raw.indexOf('#');
      if (n === 0 || (description === '' && !stages)) {
        const m = /^\s*#\s?(.*)$/.exec(raw);
        if (m && !description && m[1]!.trim()) description = m[1]!.trim();
      }
      const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
      if (line === '') continue;
      const sec = /^\[([a-z][a-z0-9-]*)\]$/.exec(line);
      if (sec || line.startsWith('[')) {
        // A bad header still opens a section, one that is not kept: its lines are not mistaken
        // for the previous section's.
        current = new Section(sec?.[1] ?? '?', file, lineNo);
        if (!sec) throw new ProfileError(file, lineNo, `bad section header "${line}" (expected [name], lowercase)`);
        if (sections.has(sec[1]!)) throw new ProfileError(file, lineNo, `section [${sec[1]}] appears twice`);
        sections.set(sec[1]!, current);
        continue;
      }
      const colon = line.indexOf(':');
      if (colon <= 0) throw new ProfileError(file, lineNo, `expected "key: value", got "${line}"`);
      const key = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (!/^[a-z][a-z0-9-]*$/.test(key)) throw new ProfileError(file, lineNo, `bad key "${key}" (lowercase letters, digits, -)`);
      if (!current) {
        if (key !== 'pipeline') throw new ProfileError(file, lineNo, `"${key}" must be inside a [section]; only "pipeline:" comes before the sections`);
        if (stages) throw new ProfileError(file, lineNo, '"pipeline:" is given twice');
        const elements = value.split('->').map((s) => /^([a-z][a-z0-9-]*)(?:\s*::\s*([a-z][a-z0-9-]*))?$/.exec(s.trim()));
        if (elements.some((m) => m === null)) {
          throw new ProfileError(file, lineNo, `pipeline "${value}" is not a chain of stage names like "xdp -> conntrack -> policy" (a name for a stage: "pre :: policy")`);
        }
        stages = elements.map((m) => m![1]!);
        types = elements.map((m) => m![2] ?? m![1]!);
        pipelineLine = lineNo;
        continue;
      }
      current.entries.push({ key, value, file, line: lineNo });
    } catch (e) {
      // A bad line is reported with every other one; parsing goes on with the next line.
      if (!(e instanceof ProfileError)) throw e;
      problems.push(e);
    }
  }
  if (!stages) {
    problems.push(new ProfileError(file, 0, 'no "pipeline:" line (e.g. "pipeline: xdp -> conntrack -> policy")'));
    throw profileErrors(problems, file);
  }
  const dup = stages.find((s, k) => stages!.indexOf(s) !== k);
  if (dup) problems.push(new ProfileError(file, pipelineLine, `stage "${dup}" appears twice in the pipeline (give each its own name: "pre :: ${types[stages.indexOf(dup)]}")`));
  for (const [s, section] of sections) {
    if (!stages.includes(s)) problems.push(new ProfileError(file, section.line, `section [${s}] configures a stage that is not in the pipeline (${stages.join(' -> ')})`));
  }
  for (const s of stages) if (!sections.has(s)) sections.set(s, new Section(s, file, pipelineLine));
  return { name, file, description, stages, types, pipelineLine, sections, problems };
}

/** The pipeline as the profile writes it: "xdp -> pre :: policy -> conntrack". */
export function pipelineText(p: Pick<Profile, 'stages' | 'types'>): string {
  return p.stages.map((s, k) => (s === p.types[k] ? s : `${s} :: ${p.types[k]}`)).join(' -> ');
}

/** The profiles shipped with dplab live in profiles/ at the package root. */
export const PROFILE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'profiles');

export function builtinProfiles(): string[] {
  if (!existsSync(PROFILE_DIR)) return [];
  return readdirSync(PROFILE_DIR).filter((f) => f.endsWith('.profile')).map((f) => f.slice(0, -'.profile'.length)).sort();
}

/** Whether loadProfile takes `nameOrPath` as a file (a path, or a name ending in .profile) rather than a built-in's name. */
export function isProfilePath(nameOrPath: string): boolean {
  return nameOrPath.includes('/') || nameOrPath.endsWith('.profile');
}

/** Load a profile by built-in name ("ebpf") or by path ("./my.profile"). */
export function loadProfile(nameOrPath: string): Profile {
  const looksLikePath = isProfilePath(nameOrPath);
  const file = looksLikePath ? (isAbsolute(nameOrPath) ? nameOrPath : resolve(nameOrPath)) : join(PROFILE_DIR, `${nameOrPath}.profile`);
  if (!existsSync(file)) {
    const names = builtinProfiles();
    throw new ProfileError(nameOrPath, 0, looksLikePath
      ? 'no such profile file'
      : `no built-in profile of that name (built-in: ${names.join(', ') || 'none'}); give a path to use your own`);
  }
  const name = looksLikePath ? file : nameOrPath;
  return parseProfile(readFileSync(file, 'utf8'), looksLikePath ? nameOrPath : `profiles/${nameOrPath}.profile`, name);
}

/** Resolve a file a profile refers to (rules: web.rules) relative to the profile's own folder. */
export function profileRelative(profileFile: string, ref: string): string {
  if (isAbsolute(ref)) return ref;
  const base = profileFile.startsWith('profiles/') ? join(PROFILE_DIR, '..', profileFile) : resolve(profileFile);
  return join(dirname(base), ref);
}

/** A count with an optional suffix: k = 1000, Ki = 1024, m = 10^6, Mi = 2^20 (say what you mean). */
export function parseCount(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(k|Ki|m|Mi|g|Gi)?$/.exec(s.replace(/_/g, '').trim());
  if (!m) return null;
  const mult: Record<string, number> = { k: 1e3, Ki: 1024, m: 1e6, Mi: 1 << 20, g: 1e9, Gi: 1 << 30 };
  return Number(m[1]) * (m[2] ? mult[m[2]]! : 1);
}

export function parseDuration(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) return null;
  const mult: Record<string, number> = { ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400 };
  return Number(m[1]) * (m[2] ? mult[m[2]]! : 1);
}
