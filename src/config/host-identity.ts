// Facts about this host or pod that the sidecar stamps onto requests, and the resolver
// settings from resolv.conf. Read-only file access; nothing is spawned.
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Address of the interface that holds the IPv4 default route, else the first non-internal one. */
export function primaryAddress(routeTable = safeRead('/proc/net/route')): string | undefined {
  const ifaces = os.networkInterfaces();
  const defaultIf = routeTable
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === '00000000' && f[7] === '00000000')?.[0];
  const pick = (name: string | undefined) =>
    name ? ifaces[name]?.find((a) => a.family === 'IPv4' && !a.internal)?.address : undefined;
  if (pick(defaultIf)) return pick(defaultIf);
  for (const name of Object.keys(ifaces)) if (pick(name)) return pick(name);
  return undefined;
}

/** `$PODIP` (Kubernetes downward API) if set, else the primary interface address. */
export function podAddress(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.PODIP?.trim() || primaryAddress();
}

export interface ResolvConf {
  nameservers: string[];
  search: string[];
  ndots: number;
}

export function parseResolvConf(text: string): ResolvConf {
  const out: ResolvConf = { nameservers: [], search: [], ndots: 1 };
  for (const raw of text.split('\n')) {
    const [key, ...rest] = raw
      .replace(/[#;].*/, '')
      .trim()
      .split(/\s+/);
    if (key === 'nameserver' && rest[0]) out.nameservers.push(rest[0]);
    else if (key === 'search' || key === 'domain') out.search = rest.filter(Boolean);
    else if (key === 'options') {
      for (const o of rest) {
        const m = o.match(/^ndots:(\d+)$/);
        if (m) out.ndots = Math.min(15, Number(m[1]));
      }
    }
  }
  return out;
}

export function readResolvConf(path = '/etc/resolv.conf'): ResolvConf {
  return parseResolvConf(safeRead(path));
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
