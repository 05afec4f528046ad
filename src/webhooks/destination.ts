import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { AddressRange } from '../config';

/**
 * Where the fleet may send webhooks. A callbackUrl comes from a client, and the fleet POSTs to it from inside
 * its own network, so without this rule a client could make the fleet call a cloud metadata service, Redis or
 * anything else only the fleet can reach (SSRF). A destination must be http(s), and every address its host
 * resolves to must be public: not loopback, link-local, private, unspecified or multicast, unless the
 * operator allowed the host by name or the address by range (WEBHOOK_ALLOWED_HOSTS). The check runs when the
 * bot is created and again before each delivery, since DNS answers can change; a delivery then connects only
 * to the addresses checked (see workers/webhook-delivery.ts), so a second DNS answer never comes into play.
 */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Destination =
  | { allowed: true; url: URL; addresses: ResolvedAddress[] }
  /** `unresolved`: the host name did not resolve now, which may pass; any other refusal is final. */
  | { allowed: false; unresolved: boolean; reason: string };

export type DestinationCheck = (url: string) => Promise<Destination>;

export interface AllowList {
  allowedHosts: readonly string[];
  allowedRanges: readonly AddressRange[];
}

/** Address classes never reached unless allowed. IPv4-mapped IPv6 (::ffff:127.0.0.1) matches its IPv4 rule. */
const REFUSED: Array<[network: string, prefix: number, family: 'ipv4' | 'ipv6', kind: string]> = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address'],
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address'],
  ['10.0.0.0', 8, 'ipv4', 'a private address'],
  ['172.16.0.0', 12, 'ipv4', 'a private address'],
  ['192.168.0.0', 16, 'ipv4', 'a private address'],
  // carrier-grade NAT space, where some clouds put internal services (100.100.100.200 is a metadata address)
  ['100.64.0.0', 10, 'ipv4', 'a private address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['240.0.0.0', 4, 'ipv4', 'a reserved address'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['fc00::', 7, 'ipv6', 'a private address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
];

const REFUSED_CLASSES = REFUSED.map(([network, prefix, family, kind]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, family);
  return { list, kind };
});

const familyName = (family: 4 | 6) => (family === 4 ? 'ipv4' : 'ipv6');

/** What a refused address is ("a loopback address", ...), or null for a public one. */
function refusedAddressKind({ address, family }: ResolvedAddress): string | null {
  return REFUSED_CLASSES.find(({ list }) => list.check(address, familyName(family)))?.kind ?? null;
}

export function createDestinationCheck(allow: AllowList): DestinationCheck {
  const allowedHosts = new Set(allow.allowedHosts.map((host) => host.toLowerCase()));
  const allowedRanges = new BlockList();
  for (const range of allow.allowedRanges) allowedRanges.addSubnet(range.address, range.prefix, range.family);

  const resolve = async (host: string): Promise<ResolvedAddress[]> => {
    const literal = isIP(host) as 0 | 4 | 6;
    if (literal) return [{ address: host, family: literal }];
    return (await lookup(host, { all: true, verbatim: true })) as ResolvedAddress[];
  };

  return async (raw) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { allowed: false, unresolved: false, reason: 'is not a URL' };
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return { allowed: false, unresolved: false, reason: 'must be an http:// or https:// URL' };
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    let addresses: ResolvedAddress[];
    try {
      addresses = await resolve(host);
    } catch (error) {
      return { allowed: false, unresolved: true, reason: `host ${host} does not resolve (${(error as { code?: string }).code ?? 'error'})` };
    }
    if (!addresses.length) return { allowed: false, unresolved: true, reason: `host ${host} does not resolve` };
    if (allowedHosts.has(host)) return { allowed: true, url, addresses };
    // Every address must pass: a name resolving to one public and one internal address is refused.
    for (const resolved of addresses) {
      const kind = refusedAddressKind(resolved);
      if (kind && !allowedRanges.check(resolved.address, familyName(resolved.family))) {
        const what = resolved.address === host ? `${host} is` : `${host} resolves to ${resolved.address},`;
        return { allowed: false, unresolved: false, reason: `is not an allowed webhook destination (${what} ${kind})` };
      }
    }
    return { allowed: true, url, addresses };
  };
}
