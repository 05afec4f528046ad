import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { AddressRange } from '../config';

/**
 * Where the fleet may send webhooks. A callbackUrl comes from a client, and the fleet POSTs to it from inside
 * its own network, so without this rule a client could make the fleet call a cloud metadata service, Redis or
 * anything else only the fleet can reach (SSRF). A destination must be http(s), and every address its host
 * resolves to must be ordinary public unicast, as ipaddr.js classes addresses (its table of special-purpose
 * ranges is kept up to date with the IANA registries; we keep no list of our own), unless the operator
 * allowed the host by name or the address by range (WEBHOOK_ALLOWED_HOSTS). The check runs when the bot is
 * created and again before each delivery, since DNS answers can change; a delivery then connects only to the
 * addresses checked (see workers/webhook-delivery.ts), so a second DNS answer never comes into play.
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

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** How a refusal names each of ipaddr.js' range classes; any class not named here is "a special-purpose address". */
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'an unspecified address',
  broadcast: 'a broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  private: 'a private address',
  uniqueLocal: 'a private address',
  carrierGradeNat: 'a carrier-grade NAT address',
  reserved: 'a reserved address',
  benchmarking: 'a reserved address',
  rfc6052: 'a NAT64 address outside 64:ff9b::/96',
  rfc6145: 'an IPv4-translated address',
  '6to4': 'a 6to4 tunnel address',
  teredo: 'a Teredo tunnel address',
};

const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96');

/**
 * The address a connection to `address` really reaches, where it embeds one: an IPv4-mapped address
 * (::ffff:a.b.c.d) is that IPv4 address on the wire, and the well-known NAT64 prefix (64:ff9b::/96) is
 * translated to its last 32 bits by the network's NAT64 gateway (on an IPv6-only subnet with DNS64 that is
 * how every IPv4 receiver is reached, so these are judged by the IPv4 address, not refused as a class).
 * 6to4 (2002::/16) and Teredo (2001::/32) also carry an IPv4 address, of a tunnel end point rather than of
 * the receiver; both are deprecated and no receiver needs them, so they are refused as they are.
 */
function reached(address: Address): { address: Address; via?: string } {
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return { address: v6.toIPv4Address() };
    if (v6.match(NAT64_WELL_KNOWN)) return { address: ipaddr.fromByteArray(v6.toByteArray().slice(12)), via: 'NAT64' };
  }
  return { address };
}

const inRange = (address: Address, [network, prefix]: [Address, number]) =>
  address.kind() === network.kind() && address.match(network, prefix);

export function createDestinationCheck(allow: AllowList): DestinationCheck {
  const allowedHosts = new Set(allow.allowedHosts.map((host) => host.toLowerCase()));
  const allowedRanges = allow.allowedRanges.map((range) => ipaddr.parseCIDR(`${range.address}/${range.prefix}`));

  /**
   * Why an address is refused, or null when it may be called: ordinary unicast, or inside a range the
   * operator allowed (as written, or as the IPv4 address it reaches).
   */
  const refusal = (raw: string): string | null => {
    if (!ipaddr.isValid(raw)) return 'an address that cannot be judged';
    const written = ipaddr.parse(raw);
    const target = reached(written);
    const range = target.address.range();
    if (range === 'unicast') return null;
    if (allowedRanges.some((allowed) => inRange(written, allowed) || inRange(target.address, allowed))) return null;
    const kind = RANGE_WORDS[range] ?? `a special-purpose address (${range})`;
    return target.via ? `a ${target.via} address of ${target.address.toString()}, ${kind}` : kind;
  };

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
      return {
        allowed: false,
        unresolved: true,
        reason: `host ${host} does not resolve (${(error as { code?: string }).code ?? 'error'})`,
      };
    }
    if (!addresses.length) return { allowed: false, unresolved: true, reason: `host ${host} does not resolve` };
    if (allowedHosts.has(host)) return { allowed: true, url, addresses };
    // Every address must pass: a name resolving to one public and one internal address is refused.
    for (const resolved of addresses) {
      const kind = refusal(resolved.address);
      if (kind) {
        const what = resolved.address === host ? `${host} is` : `${host} resolves to ${resolved.address},`;
        return { allowed: false, unresolved: false, reason: `is not an allowed webhook destination (${what} ${kind})` };
      }
    }
    return { allowed: true, url, addresses };
  };
}
