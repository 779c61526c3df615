// Differential fuzz of the injection-port promise (SECURITY.md): random and mutated request
// streams — pipelined, split at random points, with bodies, upgrade and CONNECT attempts,
// odd whitespace, underscores, long methods, the h2 preface — go through a real
// `tranproxy run` (REDIRECT in the client's netns) to three real parsers: nginx (Debian
// nginx-light, underscores_in_headers on, so X_Client_Hostname counts as it does for CGI),
// Node's own http server and python3's http.server. Each prints every request it parsed.
// Every one of them must carry exactly the injected values, and no spoofed copy (names
// compared as CGI/WSGI see them: case-folded, '_' as '-').
//
// Knobs: FUZZ_SEED=<n>|random (default fixed), FUZZ_SCALE=<k> multiplies the connections
// (`npm run fuzz` runs a long random campaign). A failure prints the seed and the bytes of
// the connection that carried the bad request, to replay it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Host } from '../../src/netlab/lab.js';
import { peerPath, startTranproxy, waitForPort, withLab } from '../helpers/lab.js';
import { startNginx } from '../helpers/nginx.js';
import { mulberry32 } from '../helpers/prng.js';
import { steady } from '../helpers/wait.js';

const SERVER = '10.74.1.2';
const POD = '10.74.1.1';
const PORTS = { nginx: 80, node: 81, python: 82 } as const;
const INJECTED: Record<string, string> = {
  'x-client-hostname': 'pod-x',
  tranproxy: 'true',
  'x-forwarded-for': '10.9.9.9',
};
const SCALE = Number(process.env.FUZZ_SCALE ?? 1) || 1;
const SEED =
  process.env.FUZZ_SEED === 'random'
    ? (Date.now() ^ (process.pid << 8)) >>> 0
    : Number(process.env.FUZZ_SEED ?? 0x1d14) >>> 0;
const CONNECTIONS = Math.round(240 * SCALE);

type Rnd = () => number;
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;

const SPOOFS = [
  'X-Client-Hostname: spoofed',
  'x_client_hostname: spoofed',
  'X-CLIENT_HOSTNAME:spoofed',
  'X_Client-Hostname:\tspoofed \t',
  'tranproxy: false',
  'Tranproxy:false',
  'X-Forwarded-For: 6.6.6.6',
  'x_forwarded_for: 6.6.6.6',
];
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: s\r\nX-Client-Hostname: spoofed\r\ntranproxy: false\r\n\r\n';

/** One request; `id` goes into the target so a record leads back to its connection. */
function request(rnd: Rnd, id: string): string {
  const eol = rnd() < 0.2 ? '\n' : '\r\n';
  const connect = rnd() < 0.04;
  const upgrade = !connect && rnd() < 0.15;
  const method = connect
    ? 'CONNECT'
    : pick(rnd, [
        'GET',
        'GET',
        'POST',
        'PUT',
        'HEAD',
        'DELETE',
        'OPTIONS',
        'PROPFIND',
        'A'.repeat(21 + int(rnd, 10)),
        'get',
      ]);
  const spoofs = Array.from({ length: int(rnd, 4) }, () => pick(rnd, SPOOFS));
  const target = connect ? 's:80' : `/${upgrade && rnd() < 0.5 ? 'ws101-' : 'f'}${id}${spoofs.length ? 's' : ''}`;
  const lines = [`${method} ${target} HTTP/1.${rnd() < 0.1 ? 0 : 1}`, 'Host: s', ...spoofs];
  if (upgrade)
    lines.push(
      `Upgrade: ${rnd() < 0.15 ? 'h2c' : 'websocket'}`,
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    );
  if (rnd() < 0.2) lines.push(`X-Pad: ${'p'.repeat(int(rnd, 2000))}`);
  let body = '';
  const bodyKind = upgrade || connect ? 'none' : pick(rnd, ['none', 'none', 'cl', 'chunked']);
  if (bodyKind === 'cl') {
    body = rnd() < 0.5 ? SMUGGLED : 'x'.repeat(int(rnd, 300));
    lines.push(`Content-Length: ${body.length}`);
  } else if (bodyKind === 'chunked') {
    lines.push('Transfer-Encoding: chunked');
    const data = rnd() < 0.5 ? SMUGGLED : 'y'.repeat(1 + int(rnd, 200));
    body = `${data.length.toString(16)}${rnd() < 0.3 ? ';ext=1' : ''}\r\n${data}\r\n0\r\n${rnd() < 0.3 ? 'X-Client-Hostname: spoofed\r\n' : ''}\r\n`;
  }
  // Sometimes the client sends the next bytes at once, as if the upgrade had succeeded.
  const after = upgrade && rnd() < 0.5 ? `\x81\x85\x37\xfa\x21\x3d${SMUGGLED}` : '';
  return lines.join(eol) + eol + eol + body + after;
}

const ODD = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x5f, 0x2d, 0x00, 0x0b, 0x0c, 0x1c, 0x85, 0xa0, 0x16];

/** A connection's bytes: pipelined requests, sometimes the h2 preface, sometimes damaged. */
function connection(rnd: Rnd, c: number): Buffer {
  let text = rnd() < 0.03 ? 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' : '';
  // Bytes before the first request: skipped by some parser, or no method at all (python's
  // http.server still takes "\x16GET / HTTP/1.1" as a request).
  if (rnd() < 0.08) text += pick(rnd, [' ', '\t', '\x1c', '\r\n', '\x0b', '\x16', '\x00', '{', '\xff']);
  for (let r = 1 + int(rnd, 4); r > 0; r--) text += request(rnd, `${c}-${r}`);
  if (rnd() < 0.15) text = text.replace(/ /, pick(rnd, ['\t', '  ', ' \t', '\x0b']));
  const bytes = [...Buffer.from(text, 'latin1')];
  if (rnd() < 0.4) {
    for (let k = 1 + int(rnd, 3); k > 0; k--) {
      const at = int(rnd, bytes.length);
      const b = rnd() < 0.8 ? pick(rnd, ODD) : int(rnd, 256);
      const op = int(rnd, 3);
      if (op === 0) bytes[at] = b;
      else if (op === 1) bytes.splice(at, 0, b);
      else bytes.splice(at, 1);
    }
  }
  return Buffer.from(bytes);
}

function splitRandomly(rnd: Rnd, b: Buffer): Buffer[] {
  const cuts = [...new Set(Array.from({ length: int(rnd, 6) }, () => 1 + int(rnd, Math.max(1, b.length - 1))))].sort(
    (x, y) => x - y,
  );
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, b.length]) {
    if (cut > from) out.push(b.subarray(from, cut));
    from = cut;
  }
  return out;
}

interface Parsed {
  server: string;
  method: string;
  target: string;
  values: Record<string, string[]>;
}

/** CGI/WSGI view of a header name. */
const fold = (name: string): string => name.toLowerCase().replace(/_/g, '-');

function parsedBy(text: string, server: string): Parsed[] {
  const out: Parsed[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as {
      server: string;
      method: string;
      target: string;
      headers?: [string, string][];
      status?: string;
      xch?: string;
      tp?: string;
      xff?: string;
    };
    if (r.server !== server) continue;
    const values: Record<string, string[]> = {};
    if (r.headers) {
      for (const [n, v] of r.headers) if (fold(n) in INJECTED) (values[fold(n)] ??= []).push(v);
    } else {
      if (r.status !== '200') continue; // refused by nginx itself: no application saw it
      // nginx 1.22 shows the first matching header; a client line comes before the injected block.
      for (const [k, v] of [
        ['x-client-hostname', r.xch],
        ['tranproxy', r.tp],
        ['x-forwarded-for', r.xff],
      ] as const)
        if (v) values[k] = [v];
    }
    out.push({ server: r.server, method: r.method, target: r.target, values });
  }
  return out;
}

async function startServers(server: Host) {
  const nginx = await startNginx(
    server,
    [
      `  log_format parsed escape=json '{"server":"nginx","method":"$request_method","target":"$request_uri","status":"$status",'`,
      `    '"xch":"$http_x_client_hostname","tp":"$http_tranproxy","xff":"$http_x_forwarded_for"}';`,
      '  underscores_in_headers on;',
      `  server { listen ${PORTS.nginx}; access_log {{DIR}}/parsed.log parsed; location / { return 200 "parsed\\n"; } }`,
    ].join('\n'),
    [PORTS.nginx],
  );
  const node = server.spawn(process.execPath, [peerPath('parsed_node.mjs'), String(PORTS.node)]);
  const python = server.spawn('python3', [peerPath('parsed_python.py'), String(PORTS.python)]);
  await waitForPort(server, PORTS.node);
  await waitForPort(server, PORTS.python);
  return { nginx, node, python };
}

test(`differential: every request nginx, Node and python parse carries exactly the injected values (seed ${SEED}, ${CONNECTIONS} connections)`, async () => {
  await withLab(async (lab) => {
    const pod = lab.addHost('pod');
    const server = lab.addHost('server');
    lab.link(pod, server, { a: [`${POD}/24`], b: [`${SERVER}/24`] });
    const peers = await startServers(server);
    try {
      await startTranproxy(pod, [
        'run',
        '-P',
        '80',
        '-P',
        '81',
        '-P',
        '82',
        '--family',
        'ipv4',
        '--Set-Client-Hostname',
        'pod-x',
        '-H',
        'tranproxy:true',
        '--Set-Forwarded-For',
        '10.9.9.9',
        '--xff-mode',
        'replace',
      ]);
      const rnd = mulberry32(SEED);
      const ports = Object.values(PORTS);
      const conns = Array.from({ length: CONNECTIONS }, (_, c) => {
        const bytes = connection(rnd, c);
        return { port: ports[c % ports.length]!, bytes, chunks: splitRandomly(rnd, bytes) };
      });
      const job = {
        host: SERVER,
        parallel: 12,
        gapMs: 3,
        idleMs: 250,
        conns: conns.map((c) => ({ port: c.port, chunks: c.chunks.map((b) => b.toString('base64')) })),
      };
      const run = await pod.run(process.execPath, [peerPath('fuzz_client.mjs')], {
        input: JSON.stringify(job),
        timeoutMs: 60_000 * SCALE + 30_000,
      });
      assert.equal(run.status, 0, run.stderr);
      // The servers' last lines: their logs stop growing once every parsed request is written out.
      const logged = () =>
        peers.nginx.read('parsed.log').length + peers.node.output().length + peers.python.output().length;
      await steady("the servers' logs", logged, { everyMs: 200 });

      const records = [
        ...parsedBy(peers.nginx.read('parsed.log'), 'nginx'),
        ...parsedBy(peers.node.output(), 'node'),
        ...parsedBy(peers.python.output(), 'python'),
      ];
      const replay = (p: Parsed): string => {
        const c = Number(/^\/(?:f|ws101-)(\d+)-/.exec(p.target)?.[1]);
        const conn = conns[c];
        return conn
          ? `\nconnection ${c} (port ${conn.port}) chunks: ${JSON.stringify(conn.chunks.map((b) => b.toString('latin1')))}`
          : '';
      };
      for (const p of records) {
        for (const [name, value] of Object.entries(INJECTED)) {
          assert.deepEqual(
            p.values[name] ?? [],
            [value],
            `FUZZ_SEED=${SEED}: ${p.server} parsed ${p.method} ${p.target} with ${name}: ${JSON.stringify(p.values[name] ?? [])}${replay(p)}`,
          );
        }
      }
      // Not vacuous: each parser saw many requests, and many that carried spoofed lines.
      for (const s of ['nginx', 'node', 'python']) {
        const mine = records.filter((r) => r.server === s);
        assert.ok(mine.length >= CONNECTIONS / 10, `${s} parsed only ${mine.length} requests`);
        assert.ok(
          mine.filter((r) => r.target.endsWith('s')).length >= CONNECTIONS / 40,
          `${s}: too few spoof attempts parsed`,
        );
      }
      const statuses = (JSON.parse(run.stdout) as { statuses: Record<string, number> }).statuses;
      assert.ok((statuses['400'] ?? 0) > 0, `no request was refused: ${JSON.stringify(statuses)}`);
      console.log(
        `# seed ${SEED}: ${records.length} requests parsed (${['nginx', 'node', 'python'].map((s) => `${s} ${records.filter((r) => r.server === s).length}`).join(', ')}); client saw ${JSON.stringify(statuses)}`,
      );
    } finally {
      peers.nginx.remove();
    }
  });
});
