/**
 * The flow table: typed arrays indexed by entry number (batch.flow[i] refers to one).
 * (Being written: this is the surface other stages rely on.)
 */
export class FlowTable {
  /** Policy decision cached per flow (Decision.*), made once on the flow's first packet. */
  readonly decision: Uint8Array;
  /** Index of the rule that made the decision, -1 for the default. */
  readonly rule: Int32Array;

  constructor(readonly capacity: number) {
    this.decision = new Uint8Array(capacity);
    this.rule = new Int32Array(capacity);
  }
}
