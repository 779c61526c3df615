// Configuration files of the anchors (HAProxy, nginx) and of the HTTP server, as text.
// The anchors run at their best: HAProxy with its default threads (one per CPU), optionally
// splicing; nginx with `worker_processes auto`. They log nothing (tranproxy
// writes one line per connection; the anchors' access logs are off, which can only flatter them).

export interface HaproxyOpts {
  /** splice(2) between the sockets in both directions (`option splice-request`, `option splice-response`).
   *  Not `option splice-auto`: HAProxy 2.6 made no splice(2) call with it in this lab (perf stat). */
  splice?: boolean;
}

// Splice needs a pipe (2 fds) per spliced connection, maxconn/4 pipes by default: with maxconn 9000
// HAProxy would ask for more fds than the lab's hard limit (20,000) lets an unprivileged user raise to.
const haproxyPipes = (o: HaproxyOpts): string => (o.splice ? '\n    maxpipes 900' : '');

const haproxyDefaults = (o: HaproxyOpts): string => `defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h${o.splice ? '\n    option splice-request\n    option splice-response' : ''}
`;

/** HAProxy `mode tcp` with `server 0.0.0.0:0`: the destination is the client connection's
 *  original destination (getsockname, then SO_ORIGINAL_DST for IPv4 in HAProxy 2.6). */
export function haproxyRedirect(listenPort: number, maxconn: number, o: HaproxyOpts = {}): string {
  return `global
    maxconn ${maxconn}${haproxyPipes(o)}

${haproxyDefaults(o)}
listen redirect
    bind 0.0.0.0:${listenPort}
    maxconn ${maxconn}
    server s 0.0.0.0:0
`;
}

/** HAProxy as a TPROXY gateway: transparent bind, upstream from the client's own address. */
export function haproxyTproxy(listenPort: number, maxconn: number, o: HaproxyOpts = {}): string {
  return `global
    maxconn ${maxconn}${haproxyPipes(o)}

${haproxyDefaults(o)}
listen tproxy
    bind 0.0.0.0:${listenPort} transparent
    source 0.0.0.0 usesrc clientip
    server s 0.0.0.0:0
`;
}

/** `workers`: 'auto' for the anchors (one per CPU), 1 for the lab's HTTP server. */
function nginxCommon(prefix: string, body: string, workers: 'auto' | 1 = 'auto'): string {
  return `worker_processes ${workers};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
worker_rlimit_nofile 16384;

events {
    worker_connections 8192;
}

http {
    access_log off;
    client_body_temp_path ${prefix}/body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
${body}
}
`;
}

/** The HTTP server behind every proxy: "ok" for everything, and /check echoes headers a, b, c. */
export function nginxServer(prefix: string, port: number): string {
  return nginxCommon(
    prefix,
    `    keepalive_requests 1000000;
    server {
        listen ${port} backlog=4096;
        location = /check {
            return 200 "a=$http_a b=$http_b c=$http_c\\n";
        }
        location / {
            return 200 "ok";
        }
    }`,
    1,
  );
}

const HEADERS = `            proxy_set_header a "1";
            proxy_set_header b "2";
            proxy_set_header c "3";`;

/**
 * nginx as nginx-tranproxy configures it: a server per captured port, the destination taken
 * from the Host header (`proxy_pass http://$host:PORT$request_uri` with a resolver), one
 * proxy_set_header per -H flag, nginx's defaults otherwise (HTTP/1.0 upstream, a new upstream
 * connection per request). The Host here is an IP literal, which nginx uses without a query.
 */
export function nginxSeed(prefix: string, listenPort: number, upstreamPort: number, resolver: string): string {
  return nginxCommon(
    prefix,
    `    server {
        listen ${listenPort} backlog=4096;
        location / {
            resolver ${resolver};
            proxy_pass http://$host:${upstreamPort}$request_uri;
${HEADERS}
        }
    }`,
  );
}

/** nginx at its fastest for this job: a fixed upstream with a keep-alive pool. */
export function nginxFast(prefix: string, listenPort: number, upstream: string): string {
  return nginxCommon(
    prefix,
    `    upstream backend {
        server ${upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen ${listenPort} backlog=4096;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
${HEADERS}
        }
    }`,
  );
}
