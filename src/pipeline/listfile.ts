/**
 * Files a profile names for a stage to read at construction (rules: web.rules, block-file: bad.txt):
 * one item per line, `#` comments, the path relative to the profile. Each line keeps its number,
 * so an error about an item names the list file and line.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { profileRelative, type Entry, type Section } from './profile.js';

export interface ListFile {
  /** The path as the user would type it: relative to the working directory when below it. */
  shown: string;
  lines: { text: string; line: number }[];
}

/** Read the list file an entry names; a file that cannot be read is an error at the entry. */
export function readListFile(section: Section, e: Entry): ListFile {
  const path = profileRelative(e.file, e.value);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw section.error(e, `cannot read ${path}: ${why}`);
  }
  const lines: ListFile['lines'] = [];
  text.split(/\r?\n/).forEach((raw, n) => {
    const hash = raw.indexOf('#');
    const t = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (t !== '') lines.push({ text: t, line: n + 1 });
  });
  const rel = relative(process.cwd(), path);
  return { shown: rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path, lines };
}
