// Issue 3 end to end: the nginx-tranproxy seed invocation, keep-alive, pipelining, a 50 MB
// chunked upload, WebSocket, TLS passthrough, XFF modes, bad heads, exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host, Lab } from '../../src/netlab/lab.js';
import { peerPath, startPeer, startTlsServer, startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';

const NODE = process.execPath;
const SERVER = '10.73.1.2';
const POD = '10.73.1.1';

interface Echo {
  method: string;
  path: string;
  headers: [string, string][];
  client: { address: string };
  body: { length: number; sha256: string };
}

function header(e: Echo, name: string): string[] {
  return e.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
}

function parseEchoes(text: string): Echo[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Echo);
}

async function pod(lab: Lab): Promise<{ pod: Host; server: Host }> {
  const p = lab.addHost('pod');
  const server = lab.addHost('server');
  lab.link(p, server, { a: [`${POD}/24`, 'fd73:1::1/64'], b: [`${SERVER}/24`, 'fd73:1::2/64'] });
  await startPeer(server, 'echo_headers', 80);
  await startPeer(server, 'echo_headers', 8080);
  return { pod: p, server };
}

const SEED_FLAGS = [
  '-P',
  '80',
  '-P',
  '8080',
  '-N',
  SERVER,
  '--Set-Forwarded-For',
  'default',
  '--Set-Client-Hostname',
  'default',
  '-H',
  'tranproxy:true',
];

test("the seed's exact invocation stamps the wrapped command's requests and propagates its exit status", async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    const r = await p.run(
      NODE,
      [tranproxyBin(), 'run', ...SEED_FLAGS, '--', 'curl', '-sS', '--max-time', '5', `http://${SERVER}:8080/hello`],
      { allowFailure: true },
    );
    assert.equal(r.status, 0, r.stderr);
    const [echo] = parseEchoes(r.stdout);
    assert.ok(echo, r.stdout + r.stderr);
    assert.deepEqual(header(echo, 'tranproxy'), ['true']);
    assert.deepEqual(header(echo, 'x-client-hostname'), [hostname()]);
    assert.deepEqual(header(echo, 'x-forwarded-for'), [POD]);
    assert.match(r.stderr, /conn .*dst=10\.73\.1\.2:8080 .*requests=1/);
    // Rules were removed when the command exited.
    const nft = await p.run('nft', ['list', 'ruleset']);
    assert.doesNotMatch(nft.stdout, /tranproxy/);

    const failing = await p.run(NODE, [tranproxyBin(), 'run', ...SEED_FLAGS, '--', 'sh', '-c', 'exit 7'], {
      allowFailure: true,
    });
    assert.equal(failing.status, 7);
    const missing = await p.run(NODE, [tranproxyBin(), 'run', '-P', '80', '--', 'no-such-program-xyz'], {
      allowFailure: true,
    });
    assert.equal(missing.status, 127);
    assert.match(missing.stderr, /cannot run no-such-program-xyz: command not found/);
  });
});

test("the image's entry point takes the seed's arguments unchanged (no `run`): IMAGE -P 80 -H a:b -- cmd", async () => {
  const bin = mkdtempSync(join(tmpdir(), 'tpx-image-'));
  try {
    // `tranproxy` on PATH, as the image has it.
    writeFileSync(join(bin, 'tranproxy'), `#!/bin/sh\nexec "${NODE}" "${tranproxyBin()}" "$@"\n`);
    chmodSync(join(bin, 'tranproxy'), 0o755);
    const entry = join(tranproxyBin(), '../../../deploy/entrypoint.sh');
    await withLab(async (lab) => {
      const { pod: p } = await pod(lab);
      const r = await p.run(
        'sh',
        [entry, ...SEED_FLAGS, '--', 'curl', '-sS', '--max-time', '5', `http://${SERVER}:8080/image`],
        {
          allowFailure: true,
          env: { PATH: `${bin}:${process.env.PATH}` },
        },
      );
      assert.equal(r.status, 0, r.stderr);
      const [echo] = parseEchoes(r.stdout);
      assert.ok(echo, r.stdout + r.stderr);
      assert.deepEqual(header(echo, 'tranproxy'), ['true']);
      assert.deepEqual(header(echo, 'x-forwarded-for'), [POD]);
    });
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

test('keep-alive, pipelining, XFF append/replace, custom header replaces the client one', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    const proxy = await startTranproxy(p, ['run', ...SEED_FLAGS]);
    // 100 requests on one connection (curl reuses it for URLs on the same host).
    const urls = Array.from({ length: 100 }, (_, i) => `http://${SERVER}/r${i}`);
    const ka = await p.run('curl', [
      '-sS',
      '--max-time',
      '20',
      '-H',
      'X-Forwarded-For: 198.51.100.9',
      '-H',
      'tranproxy: client-said',
      ...urls,
    ]);
    const echoes = parseEchoes(ka.stdout);
    assert.equal(echoes.length, 100);
    for (const [i, e] of echoes.entries()) {
      assert.equal(e.path, `/r${i}`);
      assert.deepEqual(header(e, 'tranproxy'), ['true'], 'custom header replaces the client one');
      assert.deepEqual(header(e, 'x-forwarded-for'), [`198.51.100.9, ${POD}`], 'append keeps the client value');
    }
    await proxy.waitForOutput(/conn .*dst=10\.73\.1\.2:80 .*requests=100/);

    // Pipelining: three requests in one segment.
    const pipelined = ['/a', '/b', '/c'].map((path) => `GET ${path} HTTP/1.1\r\nHost: s\r\n\r\n`).join('');
    const pr = await p.run(NODE, [peerPath('raw_client.mjs'), SERVER, '80', '1500'], { input: pipelined });
    const pe = parseEchoes(pr.stdout);
    assert.deepEqual(
      pe.map((e) => e.path),
      ['/a', '/b', '/c'],
    );
    for (const e of pe) assert.deepEqual(header(e, 'tranproxy'), ['true']);
    await proxy.stop();

    const replacing = await startTranproxy(p, [
      'run',
      '-P',
      '80',
      '--Set-Forwarded-For',
      '192.0.2.1',
      '--xff-mode',
      'replace',
    ]);
    const rr = await p.run('curl', [
      '-sS',
      '--max-time',
      '5',
      '-H',
      'X-Forwarded-For: 198.51.100.9',
      `http://${SERVER}/`,
    ]);
    assert.deepEqual(header(parseEchoes(rr.stdout)[0]!, 'x-forwarded-for'), ['192.0.2.1']);
    await replacing.stop();
  });
});

test('a 50 MB chunked upload arrives intact; IPv6 works too', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    await startTranproxy(p, ['run', ...SEED_FLAGS]);
    const dir = mkdtempSync(join(tmpdir(), 'tpx-upload-'));
    try {
      const file = join(dir, 'blob');
      const data = randomBytes(50 << 20);
      writeFileSync(file, data);
      const want = createHash('sha256').update(data).digest('hex');
      const r = await p.run('curl', [
        '-sS',
        '--max-time',
        '60',
        '-H',
        'Transfer-Encoding: chunked',
        '-T',
        file,
        `http://${SERVER}/upload`,
      ]);
      const [echo] = parseEchoes(r.stdout);
      assert.ok(echo, r.stdout + r.stderr);
      assert.equal(echo.body.length, data.length);
      assert.equal(echo.body.sha256, want);
      assert.deepEqual(header(echo, 'transfer-encoding'), ['chunked']);
      assert.deepEqual(header(echo, 'tranproxy'), ['true']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const v6 = await p.run('curl', ['-sS', '--max-time', '5', 'http://[fd73:1::2]/six']);
    const [e6] = parseEchoes(v6.stdout);
    assert.deepEqual(header(e6!, 'tranproxy'), ['true']);
    assert.equal(e6!.client.address, 'fd73:1::1');
  });
});

test('WebSocket: headers go into the handshake, then raw bytes pass both ways', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    await startTranproxy(p, ['run', ...SEED_FLAGS]);
    const handshake =
      'GET /ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    // Bytes after the handshake look like a malformed HTTP request: they must pass raw.
    const r = await p.run(NODE, [peerPath('raw_client.mjs'), SERVER, '80', '1500'], {
      input: `${handshake}NOT HTTP \x00\x01 raw-after-upgrade`,
    });
    assert.match(r.stdout, /^HTTP\/1\.1 101 Switching Protocols/);
    assert.match(r.stdout, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
    const seen = JSON.parse(Buffer.from(r.stdout.match(/X-Request-Headers: (\S+)/)![1]!, 'base64').toString()) as [
      string,
      string,
    ][];
    assert.ok(
      seen.some(([n, v]) => n.toLowerCase() === 'tranproxy' && v === 'true'),
      JSON.stringify(seen),
    );
    assert.ok(r.stdout.endsWith('NOT HTTP \x00\x01 raw-after-upgrade'), 'raw bytes echoed after the upgrade');
  });
});

test('TLS on a captured port passes through untouched', async () => {
  await withLab(async (lab) => {
    const { pod: p, server } = await pod(lab);
    const tls = await startTlsServer(server, 443, { names: ['tls.test', SERVER] });
    const proxy = await startTranproxy(p, ['run', '-P', '443', '-H', 'tranproxy:true']);
    const r = await p.run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      tls.certFile,
      '--resolve',
      `tls.test:443:${SERVER}`,
      'https://tls.test/secure',
    ]);
    const [echo] = parseEchoes(r.stdout);
    assert.ok(echo, r.stdout + r.stderr);
    assert.equal(echo.path, '/secure');
    // Encrypted: the proxy cannot (and must not) inject.
    assert.deepEqual(header(echo, 'tranproxy'), []);
    await proxy.waitForOutput(/conn .*dst=10\.73\.1\.2:443 .*close=eof requests=0/);
  });
});

test('malformed and oversized heads get 400/431 while a parallel good connection succeeds', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    const proxy = await startTranproxy(p, ['run', ...SEED_FLAGS, '--max-head-size', '4096']);
    const smuggle = 'POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n';
    const huge = `GET / HTTP/1.1\r\nHost: s\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`;
    const [bad, big, good] = await Promise.all([
      p.run(NODE, [peerPath('raw_client.mjs'), SERVER, '80'], { input: smuggle }),
      p.run(NODE, [peerPath('raw_client.mjs'), SERVER, '80'], { input: huge }),
      p.run('curl', ['-sS', '--max-time', '5', `http://${SERVER}/good`]),
    ]);
    assert.match(bad.stdout, /^HTTP\/1\.1 400 Bad Request/);
    assert.match(big.stdout, /^HTTP\/1\.1 431 /);
    assert.equal(parseEchoes(good.stdout)[0]?.path, '/good');
    await proxy.waitForOutput(/close=rejected error="400 [^"]+"/);
    await proxy.waitForOutput(/close=rejected error="431 [^"]+"/);
  });
});

test('--head-timeout 1s: a slowloris client gets 408 and is closed while other clients are served', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    const proxy = await startTranproxy(p, ['run', ...SEED_FLAGS, '--head-timeout', '1s']);
    // One byte every 150 ms: this head would take ~20 s; each byte must not extend the deadline.
    const slowHead = `GET /slow HTTP/1.1\r\nHost: s\r\nX-Pad: ${'a'.repeat(100)}\r\n\r\n`;
    const slow = p.run(NODE, [peerPath('slow_client.mjs'), SERVER, '80', '150'], { input: slowHead });
    const during = await p.run('curl', ['-sS', '--max-time', '5', `http://${SERVER}/during`]);
    assert.equal(parseEchoes(during.stdout)[0]?.path, '/during');
    const s = await slow;
    assert.equal(s.stdout, 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    const closedMs = Number(/closed after (\d+) ms/.exec(s.stderr)?.[1]);
    assert.ok(closedMs >= 900 && closedMs < 4000, `closed after ${closedMs} ms: ${s.stderr}`);
    await proxy.waitForOutput(
      /conn .*dst=10\.73\.1\.2:80 .*close=head-timeout error="408 request head not complete within 1000ms"/,
    );
    // The proxy goes on serving, keep-alive included.
    const after = await p.run('curl', ['-sS', '--max-time', '5', `http://${SERVER}/after1`, `http://${SERVER}/after2`]);
    assert.deepEqual(
      parseEchoes(after.stdout).map((e) => e.path),
      ['/after1', '/after2'],
    );
  });
});

test('bad header flags are usage errors', async () => {
  await withLab(async (lab) => {
    const h = lab.addHost('solo');
    for (const [flag, re] of [
      [['-H', 'no-colon'], /-H\/--header 'no-colon'/],
      [['-H', 'bad name:x'], /header/i],
      [['-N', 'not-an-ip'], /--nameserver: 'not-an-ip' is not an IP address/],
      [['--xff-mode', 'replace'], /--xff-mode needs --Set-Forwarded-For/],
    ] as const) {
      const r = await h.run(NODE, [tranproxyBin(), 'run', ...flag], { allowFailure: true });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});

test('--dst-from-host: without NAT the destination comes from the Host header', async () => {
  await withLab(async (lab) => {
    const { pod: p } = await pod(lab);
    const proxy = await startTranproxy(p, [
      'run',
      '--firewall',
      'none',
      '--proxy-user',
      'none',
      '--dst-from-host',
      '-H',
      'tranproxy:true',
      '--family',
      'ipv4',
      '--admin',
      `${POD}:15000`,
    ]);
    const r = await p.run('curl', [
      '-sS',
      '--max-time',
      '5',
      '-H',
      `Host: ${SERVER}:8080`,
      'http://127.0.0.1:15001/via-host',
    ]);
    const [echo] = parseEchoes(r.stdout);
    assert.ok(echo, r.stdout + r.stderr);
    assert.equal(echo.path, '/via-host');
    assert.deepEqual(header(echo, 'tranproxy'), ['true']);
    await proxy.waitForOutput(/conn .*dst=10\.73\.1\.2:8080 .*close=eof/);
    const noHost = await p.run(NODE, [peerPath('raw_client.mjs'), '127.0.0.1', '15001'], {
      input: 'GET / HTTP/1.0\r\n\r\n',
    });
    assert.match(noHost.stdout, /^HTTP\/1\.1 400 /);
    // Our own admin API (here on the pod's address) is no destination: the proxy refuses to
    // connect there for a client, as it refuses its own listener.
    const viaUs = await p.run(
      'curl',
      ['-sS', '--max-time', '5', '-H', `Host: ${POD}:15000`, 'http://127.0.0.1:15001/connections'],
      { allowFailure: true },
    );
    assert.doesNotMatch(viaUs.stdout, /\[/, 'the admin API answered through the proxy');
    await proxy.waitForOutput(new RegExp(`refused .*dst=${POD.replace(/\./g, '\\.')}:15000 reason=loop`));
    const direct = await p.run('curl', ['-sf', `http://${POD}:15000/connections`]);
    assert.match(direct.stdout, /^\[/, 'the admin API itself is up');
  });
});
