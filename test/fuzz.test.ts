/**
 * Property-based fuzzing of the capture readers and the decoder through runCapture (open -> fill
 * -> decode -> a profile's stages): random bytes, random records behind valid headers, and
 * mutations and truncations of the shipped clean captures. The properties are in
 * scripts/fuzz-lib.mjs (shared with scripts/fuzz.mjs, which runs them for as long as you like).
 *
 * The seed is fixed so a failure reproduces; fast-check prints it with the shrunk counterexample.
 * FUZZ_SEED=n and FUZZ_RUNS=n override it and the number of cases per property.
 */
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CaptureError } from '../src/capture/errors.js';
import { openCapture } from '../src/capture/open.js';
import { Batch } from '../src/packet/batch.js';
import { decodeBatch, decodePacket } from '../src/packet/decode.js';
import { Pipeline } from '../src/pipeline/runner.js';
import { builtinProfiles, loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
// @ts-expect-error plain JavaScript shared with scripts/fuzz.mjs
import { createFuzz } from '../scripts/fuzz-lib.mjs';
import { CAPTURES, cleanCaptures } from './helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 0);

/** Clean captures small enough to mutate many times (about 80 files, every format and link type). */
const seeds = cleanCaptures().filter((r) => {
  const size = readFileSync(join(CAPTURES, r.file)).length;
  return size <= 30_000;
}).map((r) => ({ name: r.file, bytes: new Uint8Array(readFileSync(join(CAPTURES, r.file))) }));

const dir = mkdtempSync(join(tmpdir(), 'dplab-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fuzz = createFuzz({ fc, runCapture, buildStages, loadProfile, builtinProfiles, CaptureError, openCapture, Pipeline, Batch, decodeBatch, decodePacket }, seeds, dir);

describe('fuzzing the readers and the decoder (fixed seed)', () => {
  it('has pcap and pcapng captures to mutate', () => {
    expect(seeds.length).toBeGreaterThan(40);
    expect(seeds.some((s) => s.name.endsWith('.pcapng'))).toBe(true);
  });

  it('random bytes and random records behind valid headers: a report or one CaptureError, the books balance', () => {
    fc.assert(fuzz.properties.random(), { seed: SEED, numRuns: RUNS || 150 });
  });

  it('mutated captures (bit flips, overwrites, cut and corrupted lengths, bad magic, huge snap length): the same, and the packets before the damage survive', () => {
    fc.assert(fuzz.properties.mutated(), { seed: SEED, numRuns: RUNS || 200 });
  });

  it('truncated captures: exactly the packets before the cut, and an error at the record it cuts', () => {
    fc.assert(fuzz.properties.truncated(), { seed: SEED, numRuns: RUNS || 100 });
  });

  it('captures of 1-2.5 MiB read in 1 MiB chunks, damaged near a chunk boundary or anywhere: the same', () => {
    fc.assert(fuzz.properties.large(), { seed: SEED, numRuns: RUNS || 20 });
  });

  it('the decoder alone: reads nothing past a packet\'s captured length, never throws, fast path = general path', () => {
    fc.assert(fuzz.properties.decoder(), { seed: SEED, numRuns: RUNS || 2000 });
  });
});
