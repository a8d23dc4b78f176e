/**
 * Option parsing for every command: node's parseArgs, with dplab's own one-line messages (and a
 * suggestion for a mistyped option) instead of Node's, and --help/-h and --version/-V everywhere.
 * A CLI library would add start-up time for two features this file gives in a few lines.
 */
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

export const VERSION = 'dplab 0.1.0';

export interface Parsed<V> {
  values: V;
  positionals: string[];
}

/**
 * The command's options and file names, or null when --help or --version asked for text instead
 * (printed here: the command then exits 0).
 */
export function parseCommandLine<O extends Record<string, OptionSpec>>(command: string, argv: string[], help: string, options: O): Parsed<{
  [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string
}> | null {
  const all = { ...options, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'V' } } as const;
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true });
  } catch (e) {
    throw usageFromParseArgs(e, command, all);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help || values.version) {
    process.stdout.write(values.help ? help : `${VERSION}\n`);
    return null;
  }
  return { values: values as never, positionals: parsed.positionals };
}

/** parseArgs' error as a UsageError in dplab's words; anything else unchanged. */
function usageFromParseArgs(e: unknown, command: string, options: Record<string, OptionSpec>): unknown {
  const code = (e as { code?: string }).code;
  const message = (e as Error).message ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const given = /'([^']+)'/.exec(message)?.[1] ?? '';
    const name = given.replace(/^-+/, '').replace(/=.*$/, '');
    const guess = suggest(name, Object.keys(options));
    return new UsageError(`unknown option ${given}${guess ? `; did you mean --${guess}?` : ''}`, command);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const option = /Option '(?:-\w, )?(--[\w-]+)/.exec(message)?.[1] ?? 'an option';
    const spec = options[option.replace(/^--/, '')];
    return new UsageError(spec?.type === 'boolean' ? `${option} takes no value` : `${option} needs a value`, command);
  }
  return e;
}

/** The known name closest to `name`: at most a third of its letters (at least one) typed wrong. */
export function suggest(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

/** Levenshtein distance where swapping two neighbouring letters (--flwos) is one mistake, not two. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
