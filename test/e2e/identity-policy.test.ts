// Issue 14 items 1-5 end to end, as they were reported: the sidecar
// `tranproxy run -P … --Set-Client-Hostname default -H tranproxy:true` in front of nginx
// echoing $http_x_client_hostname / $http_tranproxy. Each case was an unstamped or spoofed
// request reaching nginx (or a 400 inside a response body) before the injection-port policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { peerPath, startTranproxy, withLab, type Host } from '../helpers/lab.js';
import { startNginx, type NginxPeer } from '../helpers/nginx.js';

const NODE = process.execPath;
const SERVER = '10.75.1.2';
const POD = '10.75.1.1';
const BIG = 32 << 20;
const ECHO = 'return 200 "uri=$request_uri xch=$http_x_client_hostname tp=$http_tranproxy\\n";';
const STAMPED = `xch=${hostname()} tp=true`;

async function backend(server: Host): Promise<NginxPeer> {
  const nginx = await startNginx(
    server,
    [
      `  server { listen 80; location / { ${ECHO} } location /big { root {{DIR}}/www; } }`,
      `  server { listen 81 http2; location / { ${ECHO} } }`, // h2c with prior knowledge
      `  server { listen 82; underscores_in_headers on; location / { ${ECHO} } }`, // folds _ and - like CGI
    ].join('\n'),
    [80, 81, 82],
  );
  mkdirSync(join(nginx.dir, 'www'));
  writeFileSync(join(nginx.dir, 'www/big'), Buffer.alloc(BIG, 0x7a));
  return nginx;
}

const raw = (pod: Host, port: number, input: string) =>
  pod.run(NODE, [peerPath('raw_client.mjs'), SERVER, String(port), '1500'], { input });

test('identity headers cannot be skipped or forged on an injection port (issue 14 items 1-5)', async (t) => {
  await withLab(async (lab) => {
    const pod = lab.addHost('pod');
    const server = lab.addHost('server');
    lab.link(pod, server, { a: [`${POD}/24`], b: [`${SERVER}/24`] });
    const nginx = await backend(server);
    try {
      const proxy = await startTranproxy(pod, [
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
        'default',
        '-H',
        'tranproxy:true',
      ]);

      await t.test('1. an Upgrade the server never accepted does not turn the connection to passthrough', async () => {
        const c1 = await pod.run('curl', [
          '-sS',
          '--max-time',
          '5',
          '-H',
          'Upgrade: websocket',
          '-H',
          'Connection: Upgrade',
          `http://${SERVER}/a`,
          '--next',
          '-sS',
          '--max-time',
          '5',
          '-H',
          'X-Client-Hostname: spoofed',
          '-H',
          'tranproxy: false',
          `http://${SERVER}/b`,
        ]);
        assert.match(c1.stdout, new RegExp(`^uri=/b ${STAMPED}$`, 'm'), c1.stdout + c1.stderr);
        const r1 = await raw(
          pod,
          80,
          'GET /a HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' +
            'GET /b HTTP/1.1\r\nHost: s\r\nX-Client-Hostname: spoofed\r\ntranproxy: false\r\n\r\n',
        );
        assert.match(r1.stdout, new RegExp(`uri=/a ${STAMPED}\\n[^]*uri=/b ${STAMPED}\\n`), r1.stdout);
      });
      await t.test(
        '2. a long method is stamped; GET<TAB>/ is refused, and so is the rest of its connection',
        async () => {
          const c2 = await pod.run('curl', [
            '-sS',
            '--max-time',
            '5',
            '-X',
            'AAAAAAAAAAAAAAAAAAAAA',
            '-H',
            'X-Client-Hostname: spoofed',
            `http://${SERVER}/m`,
          ]);
          assert.match(c2.stdout, new RegExp(`^uri=/m ${STAMPED}$`, 'm'), c2.stdout + c2.stderr);
          const r2 = await raw(
            pod,
            80,
            'GET\t/a HTTP/1.1\r\nHost: s\r\nX-Client-Hostname: spoofed\r\n\r\nGET /later HTTP/1.1\r\nHost: s\r\nX-Client-Hostname: spoofed\r\n\r\n',
          );
          assert.equal(r2.stdout, 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        },
      );
      await t.test(
        '3. h2c with prior knowledge is refused: nginx (listen … http2) never sees the request',
        async () => {
          const c3 = await pod.run(
            'curl',
            [
              '-sS',
              '--max-time',
              '5',
              '--http2-prior-knowledge',
              '-H',
              'X-Client-Hostname: spoofed',
              `http://${SERVER}:81/h2`,
            ],
            { allowFailure: true },
          );
          assert.notEqual(c3.status, 0);
          assert.doesNotMatch(c3.stdout, /uri=|spoofed/);
          await proxy.waitForOutput(/close=rejected error="400 HTTP\/2 prior knowledge \(h2c\) refused/);
        },
      );
      // nginx with underscores_in_headers on folds _ and - the way CGI/WSGI servers do.
      await t.test('4. X_Client_Hostname is dropped: to a CGI-style server it is X-Client-Hostname', async () => {
        const r4 = await raw(
          pod,
          82,
          'GET /u HTTP/1.1\r\nHost: s\r\nX_Client_Hostname: spoofed\r\nTRANPROXY: false\r\n\r\n',
        );
        assert.match(r4.stdout, new RegExp(`uri=/u ${STAMPED}\\n`), r4.stdout);
      });
      await t.test('5. a 400 for a pipelined bad request comes after the whole 32 MiB response before it', async () => {
        const r5 = await pod.run(NODE, [peerPath('late_reader.mjs'), SERVER, '80', '3000'], {
          input: 'GET /big HTTP/1.1\r\nHost: s\r\n\r\nGET\t/bad HTTP/1.1\r\n\r\n',
          timeoutMs: 30_000,
        });
        const got = JSON.parse(r5.stdout) as { total: number; head: string; tail: string };
        const headEnd = got.head.indexOf('\r\n\r\n') + 4;
        assert.match(
          got.head.slice(0, headEnd),
          new RegExp(`^HTTP/1.1 200 OK\r\n[^]*Content-Length: ${BIG}\r\n`),
          got.head,
        );
        const refusal = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';
        assert.equal(
          got.total,
          headEnd + BIG + refusal.length,
          `whole body, then the refusal; the last bytes: ${JSON.stringify(got.tail.slice(-120))}`,
        );
        assert.equal(got.tail, 'z'.repeat(400 - refusal.length) + refusal);
      });
    } finally {
      nginx.remove();
    }
  });
});
