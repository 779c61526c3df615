// The anchors as the cases start them in the client ns, captured with REDIRECT in OUTPUT and
// running under their own uid (so their own upstream connections are not captured again).
import type { Host } from '../../src/netlab/lab.js';
import { type HaproxyOpts, haproxyRedirect, nginxSeed } from './configs.js';
import { anchorRules, PORT, type RunningProxy, startHaproxy, startNginx, UID } from './runner.js';

/** HAProxy in tcp mode (`server s 0.0.0.0:0`: follows SO_ORIGINAL_DST), maxconn 9000, for `capturedPort`. */
export function startHaproxyRedirect(host: Host, capturedPort: number, o: HaproxyOpts = {}): Promise<RunningProxy> {
  return startHaproxy(
    host,
    haproxyRedirect(PORT.haproxy, 9000, o),
    PORT.haproxy,
    UID.haproxy,
    anchorRules(UID.haproxy, capturedPort, PORT.haproxy),
  );
}

/** nginx configured as nginx-tranproxy generates it (`proxy_pass http://$host:PORT$request_uri`), for the HTTP port. */
export function startNginxSeed(host: Host, name: string): Promise<RunningProxy> {
  return startNginx(
    host,
    name,
    (p) => nginxSeed(p, PORT.nginx, PORT.http, '127.0.0.1'),
    PORT.nginx,
    UID.nginx,
    anchorRules(UID.nginx, PORT.http, PORT.nginx),
  );
}
