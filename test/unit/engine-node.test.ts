// The engine's side of flows through a node: the SOCKS5 dialog its loop speaks (pure), and
// which configurations the engine serves through a node (engineNodeOf, engineServes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socks5Dialog, type DialogStep } from '../../src/relay/engine/socks5-dialog.js';
import { engineNodeOf, engineServes, NODE_HANDSHAKE_TIMEOUT_MS } from '../../src/proxy/served-plane.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../../src/outbound/node-conn.js';
import { routingOf } from '../../src/config/routing.js';
import type { ConfigFile } from '../../src/config/file.js';
import { SsSession } from '../../src/relay/engine/ss-session.js';
import {
  AeadStreamDecryptor,
  AeadStreamEncryptor,
  masterKey,
  SS_CIPHERS,
} from '../../src/outbound/shadowsocks-aead.js';

const DST = { address: '203.0.113.7', port: 443, family: 4 as const };

/** Feeds `reply` one exact read at a time, as the loop does; returns the steps that were not 'wait'. */
function run(d: Socks5Dialog, reply: Buffer): DialogStep[] {
  const steps: DialogStep[] = [];
  let at = 0;
  while (at < reply.length) {
    const n = Math.min(d.want(), reply.length - at);
    const step = d.feed(reply.subarray(at, at + n));
    at += n;
    if (step.t !== 'wait') steps.push(step);
    if (step.t === 'failed' || step.t === 'done') break;
  }
  return steps;
}

test('SOCKS5 dialog without auth: greeting, request for the IP, done on success; reads never pass the reply', () => {
  const d = new Socks5Dialog('10.0.0.1:1080', { dst: DST });
  assert.deepEqual(d.first(), Buffer.from([5, 1, 0]));
  assert.equal(d.want(), 2);
  const [req] = run(d, Buffer.from([5, 0]));
  assert.deepEqual(req, { t: 'send', bytes: Buffer.from([5, 1, 0, 1, 203, 0, 113, 7, 1, 187]) });
  // VER REP RSV ATYP: the rest of an IPv4 reply is then known exactly.
  assert.equal(d.want(), 5);
  assert.equal(d.feed(Buffer.from([5, 0, 0, 1, 10])).t, 'wait');
  assert.equal(d.want(), 5);
  assert.deepEqual(d.feed(Buffer.from([0, 0, 1, 0, 80])), { t: 'done' });
});

test('SOCKS5 dialog: the sniffed domain is asked for; a domain-typed reply is read to its exact length', () => {
  const d = new Socks5Dialog('n:1', { dst: DST, domain: 'www.example.com' });
  const [req] = run(d, Buffer.from([5, 0]));
  assert.equal(req!.t, 'send');
  const bytes = (req as { bytes: Buffer }).bytes;
  assert.equal(bytes[3], 3);
  assert.equal(bytes.subarray(5, 5 + 15).toString(), 'www.example.com');
  const reply = Buffer.from([5, 0, 0, 3, 4, ...Buffer.from('host'), 0, 80]);
  assert.deepEqual(run(d, Buffer.concat([reply, Buffer.from('target bytes')])), [{ t: 'done' }]);
});

test('SOCKS5 dialog with credentials: offers no-auth and user/password, sends RFC 1929 when asked, then the request', () => {
  const open = new Socks5Dialog('n:1', { dst: DST }, { username: 'alice', password: 's3cret' });
  const [direct] = run(open, Buffer.from([5, 0])); // a node that needs none: straight to the request, as on the JS path
  assert.deepEqual(direct, { t: 'send', bytes: Buffer.from([5, 1, 0, 1, 203, 0, 113, 7, 1, 187]) });
  const d = new Socks5Dialog('n:1', { dst: DST }, { username: 'alice', password: 's3cret' });
  assert.deepEqual(d.first(), Buffer.from([5, 2, 0, 2]));
  const [auth] = run(d, Buffer.from([5, 2]));
  assert.deepEqual(auth, {
    t: 'send',
    bytes: Buffer.from([1, 5, ...Buffer.from('alice'), 6, ...Buffer.from('s3cret')]),
  });
  const [req] = run(d, Buffer.from([1, 0]));
  assert.equal(req!.t, 'send');
  assert.deepEqual(run(d, Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])), [{ t: 'done' }]);
});

test('SOCKS5 dialog failures carry the JS path codes: garbage, refusal, bad password, no acceptable method, early close', () => {
  const fail = (steps: DialogStep[]) => steps.at(-1) as Extract<DialogStep, { t: 'failed' }>;
  let f = fail(run(new Socks5Dialog('n:1', { dst: DST }), Buffer.from('HTTP/1.1 400')));
  assert.equal(f.code, 'EHANDSHAKE');
  assert.match(f.detail, /^node n:1 sent an invalid method selection reply/);

  let d = new Socks5Dialog('n:1', { dst: DST });
  run(d, Buffer.from([5, 0]));
  f = fail(run(d, Buffer.from([5, 5, 0, 1, 0, 0, 0, 0, 0, 0])));
  assert.equal(f.code, 'EREFUSED');
  assert.match(f.detail, /could not connect to 203\.0\.113\.7:443: connection refused \(SOCKS reply 5\)/);

  d = new Socks5Dialog('n:1', { dst: DST });
  run(d, Buffer.from([5, 0]));
  f = fail(run(d, Buffer.from([5, 0, 1])));
  assert.equal(f.code, 'EHANDSHAKE', 'a non-zero reserved byte');

  d = new Socks5Dialog('n:1', { dst: DST }, { username: 'a', password: 'b' });
  run(d, Buffer.from([5, 2]));
  assert.equal(fail(run(d, Buffer.from([1, 1]))).code, 'EAUTH');
  assert.equal(fail(run(new Socks5Dialog('n:1', { dst: DST }), Buffer.from([5, 0xff]))).code, 'EAUTH');
  // Asked for no auth, the node picks user/password: not what was offered.
  assert.equal(fail(run(new Socks5Dialog('n:1', { dst: DST }), Buffer.from([5, 2]))).code, 'EHANDSHAKE');

  d = new Socks5Dialog('n:1', { dst: DST });
  assert.equal((d.closed() as { code: string }).code, 'EHANDSHAKE');
  d = new Socks5Dialog('n:1', { dst: DST }, { username: 'a', password: 'b' });
  run(d, Buffer.from([5, 2]));
  assert.equal((d.closed() as { code: string }).code, 'EAUTH');
});

const base = { udp: false, proxyMode: undefined, inject: undefined, connectTimeoutMs: 3000 };
const file = (f: Partial<ConfigFile>): ConfigFile => ({ nodes: {}, routeRules: [], ...f }) as unknown as ConfigFile;

test('engineNodeOf: --upstream socks5 at an IP, no rules: the engine carries it, with name, credentials and timeouts', () => {
  const routing = routingOf(undefined, 'socks5://alice:pw@10.1.2.3:1080', 300);
  const node = engineNodeOf({ ...base, routing });
  assert.deepEqual(node, {
    kind: 'socks5',
    name: 'upstream',
    address: { address: '10.1.2.3', port: 1080, family: 4 },
    username: 'alice',
    password: 'pw',
    connectTimeoutMs: 3000,
    handshakeTimeoutMs: 10_000,
    sniffTimeoutMs: 300,
  });
  assert.equal(NODE_HANDSHAKE_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, 'the JS path and the engine wait alike');
  assert.equal(engineServes({ routing, node }), true);
  assert.equal(engineServes({ routing, node, relay: 'js' }), false);
  assert.equal(engineServes({ routing }), false, 'routing without an engine node stays on the JS path');
});

test('engineNodeOf: anything the engine cannot carry stays on the JS path', () => {
  const socks = routingOf(undefined, 'socks5://10.1.2.3:1080', 300);
  assert.equal(engineNodeOf({ ...base, routing: undefined }), undefined);
  assert.equal(engineNodeOf({ ...base, routing: socks, udp: true }), undefined, 'UDP capture');
  assert.equal(engineNodeOf({ ...base, routing: socks, proxyMode: {} }), undefined, 'proxy mode');
  assert.equal(engineNodeOf({ ...base, routing: socks, inject: { set: [] } }), undefined, 'header injection');
  for (const uri of [
    'socks5://node.example:1080', // a name: the loop cannot resolve
    'http://10.1.2.3:3128',
    'ss://YWVzLTI1Ni1nY206c2VjcmV0@10.1.2.3:8388/?plugin=obfs-local%3Bobfs%3Dhttp',
  ])
    assert.equal(engineNodeOf({ ...base, routing: routingOf(undefined, uri, 300) }), undefined, uri);
  const withRules = { ...socks!, rules: [{ match: { port: [25] }, outbound: 'reject' }] } as unknown as typeof socks;
  assert.equal(engineNodeOf({ ...base, routing: withRules }), undefined, 'rules');
  const withGroup = { ...socks!, groups: { g: { kind: 'select', members: ['upstream'] } } } as unknown as typeof socks;
  assert.equal(engineNodeOf({ ...base, routing: withGroup }), undefined, 'groups');
  assert.equal(engineNodeOf({ ...base, routing: { ...socks!, dns: {} as never } }), undefined, 'DNS forwarder');
  assert.equal(
    engineNodeOf({ ...base, routing: { ...socks!, defaultOutbound: 'direct' } }),
    undefined,
    'default direct',
  );
  const fallback = { ...socks!, nodes: { upstream: { ...socks!.nodes.upstream!, fallback: 'direct' } } };
  assert.equal(engineNodeOf({ ...base, routing: fallback }), undefined, 'a fallback');
  // A file whose only route is its default node: served, named as the file names it.
  const fromFile = routingOf(
    file({ nodes: { a: { uri: 'socks5://10.1.2.4:1080' } }, default: 'a', defaultGiven: true } as never),
    undefined,
    300,
  );
  assert.equal(engineNodeOf({ ...base, routing: fromFile })?.name, 'a');
  const ss = engineNodeOf({
    ...base,
    routing: routingOf(undefined, 'ss://YWVzLTI1Ni1nY206c2VjcmV0@10.1.2.3:8388', 300),
  });
  assert.equal(ss?.kind, 'shadowsocks');
  assert.equal(ss?.method, 'aes-256-gcm');
  assert.equal(ss?.password, 'secret');
});

test('SsSession: the header rides with the first client bytes; the node stream opens; tampered, truncated and silent nodes fail with the JS codes', () => {
  const info = SS_CIPHERS['chacha20-ietf-poly1305'];
  const master = masterKey('chacha20-ietf-poly1305', 'pw');
  const header = Buffer.from([1, 10, 0, 0, 1, 0, 80]);
  const s = new SsSession(info, master, header, 'n: node 10.0.0.1:8388');
  const server = new AeadStreamDecryptor(info, master);
  const sealed = (s.push(Buffer.from('GET /')) as { kind: 'forward'; chunks: Buffer[] }[])[0]!.chunks;
  assert.deepEqual(Buffer.concat(server.push(Buffer.concat(sealed))), Buffer.concat([header, Buffer.from('GET /')]));
  assert.equal(s.takeHeader(), undefined, 'the header went with the bytes');
  const reply = new AeadStreamEncryptor(info, master).seal(Buffer.from('HTTP/1.1 200 OK\r\n'));
  // Split mid-chunk: the first part is held until the rest comes.
  assert.deepEqual(s.decode(reply.subarray(0, 40)), []);
  assert.equal(Buffer.concat(s.decode(reply.subarray(40))).toString(), 'HTTP/1.1 200 OK\r\n');
  assert.equal(s.end(false), undefined);
  s.free();

  const tampered = new SsSession(info, master, header, 'n: node x');
  const bad = Buffer.from(reply);
  bad[bad.length - 1]! ^= 1;
  assert.throws(() => tampered.decode(bad));
  assert.equal(tampered.failure?.code, 'EAUTH');
  const cut = new SsSession(info, master, header, 'n: node x');
  cut.decode(reply.subarray(0, reply.length - 3));
  assert.equal(cut.end(true)?.code, 'EPROTO');
  const silent = new SsSession(info, master, header, 'n: node x');
  assert.ok(silent.takeHeader()!.length > 0, 'a client that waits: the header goes alone');
  assert.equal(silent.end(false)?.code, 'ENOREPLY');
  assert.match(silent.failure!.detail, /^n: node x closed the connection without answering/);
});
