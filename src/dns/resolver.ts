// Name resolution for the few names tranproxy must resolve itself (upstream nodes given by
// name, --dst-from-host). Relaying never needs DNS: destinations come from the kernel.
// Uses the -N nameservers (or resolv.conf's) and honours search domains and ndots.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ResolvConf } from '../config/host-identity.js';

export class ResolveError extends Error {
  constructor(
    readonly host: string,
    readonly code: string,
  ) {
    super(`cannot resolve '${host}': ${code}`);
    this.name = 'ResolveError';
  }
}

/** Candidate FQDNs in resolv.conf order: search domains first for short names. */
export function searchCandidates(name: string, conf: Pick<ResolvConf, 'search' | 'ndots'>): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const dots = name.split('.').length - 1;
  const searched = conf.search.map((d) => `${name}.${d}`);
  return dots >= conf.ndots ? [name, ...searched] : [...searched, name];
}

/**
 * What tranproxy resolves host names with: the -N nameservers when given (every lookup then
 * goes to them, like the seed's resolver), else undefined: the system's getaddrinfo, which
 * also reads /etc/hosts.
 */
export function resolverForNames(
  conf: ResolvConf,
  nameserversGiven: boolean,
): ((name: string) => Promise<{ address: string; family: 4 | 6 }>) | undefined {
  if (!nameserversGiven) return undefined;
  const r = new NameResolver(conf);
  return (name) => r.resolve(name);
}

export class NameResolver {
  private readonly resolver = new Resolver({ timeout: 2000, tries: 2 });

  constructor(private readonly conf: ResolvConf) {
    if (conf.nameservers.length) this.resolver.setServers(conf.nameservers);
  }

  /** First address of `name` (IPv4 preferred), trying search domains; IP literals as is. */
  async resolve(name: string): Promise<{ address: string; family: 4 | 6 }> {
    const literal = name.replace(/^\[(.*)\]$/, '$1');
    const v = isIP(literal);
    if (v) return { address: literal, family: v as 4 | 6 };
    let lastCode = 'ENOTFOUND';
    for (const fqdn of searchCandidates(name, this.conf)) {
      for (const family of [4, 6] as const) {
        try {
          const addrs = family === 4 ? await this.resolver.resolve4(fqdn) : await this.resolver.resolve6(fqdn);
          if (addrs[0]) return { address: addrs[0], family };
        } catch (e) {
          lastCode = (e as NodeJS.ErrnoException).code ?? 'ERROR';
        }
      }
    }
    throw new ResolveError(name, lastCode);
  }
}
