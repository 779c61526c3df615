// A config file may hold node passwords and decides where traffic goes: refuse one that
// someone else could change, warn about one everybody can read while it holds secrets.
import { statSync } from 'node:fs';
import { parseNodeUri } from '../outbound/uri.js';
import type { ConfigFile } from './file.js';
import { refuseWritableByOthers, type FileFacts } from './safe-read.js';

export type { FileFacts };

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/** Node passwords (any URI with one, every Shadowsocks and Trojan node), VMess/VLESS ids, a console password hash, proxy-auth. */
export function configSecrets(file: Pick<ConfigFile, 'nodes' | 'console' | 'run'>): string[] {
  const out: string[] = [];
  const uris: [string, string][] = Object.entries(file.nodes).map(([name, n]) => [`nodes.${name}`, n.uri]);
  if (file.run.upstream) uris.push(['upstream', file.run.upstream]);
  for (const [where, uri] of uris) {
    try {
      const spec = parseNodeUri(uri);
      if (('password' in spec && spec.password) || 'id' in spec) out.push(where);
    } catch {
      // unparsable URIs were reported by the loader already; assume the worst
      out.push(where);
    }
  }
  if (file.console?.passwordHash) out.push('console.password-hash');
  if (file.run.proxyAuth) out.push('proxy-auth');
  return out;
}

/**
 * Throws UsageError when the file is group- or world-writable, or owned by a user other than
 * root and `selfUid`; returns warnings (world-readable with secrets in it).
 */
export function checkConfigPermissions(
  path: string,
  facts: FileFacts,
  selfUid: number,
  secrets: readonly string[],
): string[] {
  const mode = facts.mode & 0o7777;
  refuseWritableByOthers(`--config ${path}`, path, facts, selfUid, "the proxy's rules and nodes");
  if (secrets.length && mode & 0o004) {
    return [
      `--config ${path}: mode ${octal(mode)} lets every user read the secrets in it (${secrets.join(', ')}): run 'chmod o-r ${path}'`,
    ];
  }
  return [];
}

/** checkConfigPermissions for a loaded file, from the file system. */
export function checkConfigFile(file: ConfigFile): string[] {
  const st = statSync(file.path);
  return checkConfigPermissions(
    file.path,
    { mode: st.mode, uid: st.uid },
    process.geteuid?.() ?? 0,
    configSecrets(file),
  );
}
