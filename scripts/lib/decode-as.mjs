/**
 * tshark "decode as" settings for the captures whose layering tshark can only guess: the golden
 * scripts pass these so tshark's answer does not hang on a heuristic.
 *
 * vlan/dplab_eompls-pw-cw.pcap: Ethernet over MPLS with a control word on label 200. tshark's
 * pwethheuristic decides between "control word" and "no control word" by whether the bytes look
 * like MAC addresses of OUIs it knows; made by scripts/make-fixtures.mjs.
 */
const DECODE_AS = {
  'vlan/dplab_eompls-pw-cw.pcap': ['-d', 'mpls.label==200,pwethcw'],
};

/** Extra tshark arguments for the capture at `rel` (its path under captures/). */
export function decodeAs(rel) {
  return DECODE_AS[rel] ?? [];
}
