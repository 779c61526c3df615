// nginx (Debian nginx-light) as a real HTTP peer inside a lab host: its own prefix directory,
// one process (no master, no daemon, as the lab's user), stopped with the lab.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForPort, type Host, type LabProcess } from './lab.js';

export interface NginxPeer {
  proc: LabProcess;
  /** The prefix directory: `root`s, logs and temp paths live here. */
  dir: string;
  /** Contents of a file in the prefix (e.g. an access log), '' if it does not exist yet. */
  read(file: string): string;
  remove(): void;
}

/**
 * Start nginx in `host` with `http` as the body of its http {} block ({{DIR}} stands for the
 * prefix directory); resolves once every port in `ports` listens. Remove the prefix with
 * remove() in the test's finally (the lab stops the process).
 */
export async function startNginx(host: Host, http: string, ports: number[]): Promise<NginxPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-nginx-'));
  chmodSync(dir, 0o755);
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      'events { worker_connections 1024; }',
      'http {',
      `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi; access_log off;`,
      http.replaceAll('{{DIR}}', dir),
      '}',
    ].join('\n'),
  );
  const proc = host.spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')]);
  const read = (file: string): string => {
    try {
      return readFileSync(join(dir, file), 'latin1');
    } catch {
      return '';
    }
  };
  try {
    for (const p of ports) await waitForPort(host, p);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(e as Error).message}\nnginx error.log:\n${read('error.log')}`);
  }
  return { proc, dir, read, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
