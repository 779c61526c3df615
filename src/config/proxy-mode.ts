// Proxy mode settings: `--listen-proxy ADDR:PORT` (repeatable) and its credentials,
// `--proxy-auth USER:PASS` or `--proxy-auth-file FILE` (one USER:PASS line).
import { readFileSync, statSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { parseAdminAddress } from '../observe/admin.js';
import { splitList } from './values.js';

export interface ProxyModeConfig {
  listen: { host: string; port: number }[];
  /** Required of every client when set (HTTP Basic, SOCKS5 username/password). */
  auth?: { username: string; password: string };
}

export function proxyModeOf(
  listen: string[] | undefined,
  auth: string | undefined,
  authFile: string | undefined,
): ProxyModeConfig | undefined {
  const addresses = splitList(listen).map((text) => {
    const a = parseAdminAddress(text);
    if (!a || !text.includes(':'))
      throw new UsageError(`--listen-proxy: '${text}' is not ADDRESS:PORT (e.g. 192.168.1.1:7890 or [::]:7890)`);
    return a;
  });
  if (auth !== undefined && authFile !== undefined)
    throw new UsageError('--proxy-auth and --proxy-auth-file: give one of them');
  const creds =
    auth !== undefined
      ? parseCredentials(auth, '--proxy-auth')
      : authFile !== undefined
        ? parseCredentials(readSecretFile(authFile), `--proxy-auth-file ${authFile}`)
        : undefined;
  if (!addresses.length) {
    if (creds) throw new UsageError('--proxy-auth needs --listen-proxy');
    return undefined;
  }
  return { listen: addresses, ...(creds ? { auth: creds } : {}) };
}

/** USER:PASS; both within SOCKS5's 255 bytes, the user not empty, no line breaks. */
export function parseCredentials(text: string, flag: string): { username: string; password: string } {
  const colon = text.indexOf(':');
  const username = colon > 0 ? text.slice(0, colon) : '';
  const password = text.slice(colon + 1);
  if (!username || /[\r\n]/.test(text))
    throw new UsageError(`${flag}: expected USER:PASS (one line, the user not empty)`);
  if (Buffer.byteLength(username) > 255 || Buffer.byteLength(password) > 255)
    throw new UsageError(`${flag}: user and password are at most 255 bytes each (SOCKS5)`);
  return { username, password };
}

function readSecretFile(file: string): string {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--proxy-auth-file ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  if (mode & 0o026)
    throw new UsageError(
      `--proxy-auth-file ${file}: mode 0${mode.toString(8)} lets other users read or change the password: run 'chmod 600 ${file}'`,
    );
  return text.replace(/\r?\n$/, '');
}
