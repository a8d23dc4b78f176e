/** The test-only stages (test/fixtures/test-stages.mjs) over src/'s packet setters, for in-process tests. */
import { LinkType } from '../src/capture/linktype.js';
import { Frag, Verdict } from '../src/packet/batch.js';
import * as wire from '../src/packet/wire.js';
import { testStages } from './fixtures/test-stages.mjs';

export const { Rewrite, VlanPush } = testStages(wire, { Verdict, Frag, LinkType });
