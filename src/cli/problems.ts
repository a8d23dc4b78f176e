import type { PacketSource } from '../capture/source.js';

/** What a run learned about its capture: a source, or the same facts from a workers' report. */
export type CaptureOutcome = Pick<PacketSource, 'path' | 'packets'> & {
  interfaces: readonly { linkType: number; at?: number }[];
  error: { message: string } | null;
};
import { isSupportedLinkType, linkTypeName } from '../capture/linktype.js';
import { Exit } from './errors.js';
import { commas } from '../packet/format.js';

/**
 * Nothing in the file could be read as a capture (empty, another format, the file header cut
 * short): the one-line error says it all, so commands print no report of zeros.
 */
export function isNotACapture(src: CaptureOutcome): boolean {
  return src.error !== null && src.packets === 0 && src.interfaces.length === 0;
}

/**
 * After a run over a capture: say what could not be read (damage, unsupported link types) in one
 * line each on stderr, and pick the exit code. `complete` is false when the run stopped early on
 * purpose (--count), so an unread tail is not damage.
 */
export function reportCaptureProblems(src: CaptureOutcome, complete = true): number {
  let code: number = Exit.OK;
  const unsupported = src.interfaces.filter((f) => !isSupportedLinkType(f.linkType));
  for (const f of unsupported) {
    process.stderr.write(`dplab: ${src.path}${f.at === undefined ? '' : ` at byte ${f.at}`}: link type ${f.linkType} (${linkTypeName(f.linkType)}) is not supported; `
      + `its packets are counted as malformed (unsupported-link-type). dplab decodes Ethernet, Linux SLL/SLL2, raw IP and BSD loopback\n`);
    code = Exit.DAMAGED;
  }
  if (complete && src.error) {
    process.stderr.write(`dplab: ${src.error.message}${isNotACapture(src) ? '' : ` (${commas(src.packets)} packets read)`}\n`);
    code = Exit.DAMAGED;
  }
  return code;
}
