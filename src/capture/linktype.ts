/** LINKTYPE_* values (https://www.tcpdump.org/linktypes.html) that dplab decodes, and names for output. */
export const LinkType = {
  NULL: 0,
  ETHERNET: 1,
  RAW_OPENBSD: 12,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

const NAMES: Record<number, string> = {
  0: 'NULL',
  1: 'EN10MB',
  12: 'RAW',
  101: 'RAW',
  108: 'LOOP',
  113: 'LINUX_SLL',
  228: 'IPV4',
  229: 'IPV6',
  276: 'LINUX_SLL2',
  // Common ones dplab does not decode, named so a message can say what it met.
  9: 'PPP',
  50: 'PPP_HDLC',
  105: 'IEEE802_11',
  127: 'IEEE802_11_RADIOTAP',
  160: 'USER13',
  239: 'NFLOG',
  253: 'NETLINK',
  256: 'BLUETOOTH_LE_LL_WITH_PHDR',
};

export function linkTypeName(t: number): string {
  return NAMES[t] ?? `LINKTYPE_${t}`;
}

export function isSupportedLinkType(t: number): boolean {
  return t === 0 || t === 1 || t === 12 || t === 101 || t === 108 || t === 113 || t === 228 || t === 229 || t === 276;
}
