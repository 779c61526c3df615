// VMess, VLESS and Trojan nodes end to end in the gateway lab: a LAN host's connections are
// captured on the gateway and leave through real servers from Debian on the node: one
// v2ray 4.34 process with an inbound per protocol × transport (tcp, tls, ws, ws+tls; VMess
// with each security) and the trojan server (trojan-gfw). The remote's HTTP echo peer says
// which address it saw: the node's, never the client's. The TLS inbounds use a self-signed
// certificate made here; a node whose link gives neither its CA nor allowInsecure is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  gatewayLabAddresses,
  gatewayRunArgs,
  udpExchange,
  withGatewayLab,
  type GatewayLab,
} from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';
import type { Host } from '../../src/netlab/lab.js';
import { selfSignedCertArgs } from '../helpers/certs.js';

const NET = 86;
const {
  node: NODE_IP,
  remote: REMOTE,
  nodeSideOfRemote: NODE_SIDE_OF_REMOTE,
  lanClient: LAN_CLIENT,
} = gatewayLabAddresses(NET);
const ID = '6f0c1d2e-3b4a-4c5d-8e9f-a0b1c2d3e4f5';
const TROJAN_PASSWORD = 'tr0jan pass#1';

interface Inbound {
  port: number;
  protocol: 'vmess' | 'vless' | 'trojan';
  network: 'tcp' | 'ws';
  tls: boolean;
  path?: string;
}

const INBOUNDS: Inbound[] = [
  { port: 10001, protocol: 'vmess', network: 'tcp', tls: false },
  { port: 10002, protocol: 'vmess', network: 'tcp', tls: true },
  { port: 10003, protocol: 'vmess', network: 'ws', tls: false, path: '/vm' },
  { port: 10004, protocol: 'vmess', network: 'ws', tls: true, path: '/vmt' },
  { port: 10011, protocol: 'vless', network: 'tcp', tls: false },
  { port: 10012, protocol: 'vless', network: 'tcp', tls: true },
  { port: 10013, protocol: 'vless', network: 'ws', tls: false, path: '/vl' },
  { port: 10014, protocol: 'vless', network: 'ws', tls: true, path: '/vlt' },
  { port: 10021, protocol: 'trojan', network: 'tcp', tls: true },
  { port: 10022, protocol: 'trojan', network: 'ws', tls: true, path: '/tr' },
];
const TROJAN_GFW_PORT = 443;

function v2rayConfig(cert: string, key: string): string {
  const clients = (p: Inbound['protocol']) =>
    p === 'trojan'
      ? { clients: [{ password: TROJAN_PASSWORD }] }
      : p === 'vless'
        ? { clients: [{ id: ID }], decryption: 'none' }
        : { clients: [{ id: ID, alterId: 0 }] };
  return JSON.stringify({
    log: { loglevel: 'warning' },
    inbounds: INBOUNDS.map((i) => ({
      listen: NODE_IP,
      port: i.port,
      protocol: i.protocol,
      settings: clients(i.protocol),
      streamSettings: {
        network: i.network,
        security: i.tls ? 'tls' : 'none',
        ...(i.tls ? { tlsSettings: { certificates: [{ certificateFile: cert, keyFile: key }] } } : {}),
        ...(i.path ? { wsSettings: { path: i.path } } : {}),
      },
    })),
    outbounds: [{ protocol: 'freedom' }],
  });
}

function trojanGfwConfig(cert: string, key: string): string {
  return JSON.stringify({
    run_type: 'server',
    local_addr: NODE_IP,
    local_port: TROJAN_GFW_PORT,
    remote_addr: REMOTE,
    remote_port: 80,
    password: [TROJAN_PASSWORD],
    log_level: 2,
    ssl: { cert, key, alpn: ['http/1.1'], reuse_session: true, session_ticket: false },
    tcp: { no_delay: true, keep_alive: true, reuse_port: false, fast_open: false },
  });
}

/** The node link for an inbound, with the TLS settings given (`ca` file, or allowInsecure). */
function linkFor(i: Inbound, tlsWay: { ca: string } | 'insecure', extra: { scy?: string } = {}): string {
  const tlsParams: Record<string, string> = i.tls
    ? tlsWay === 'insecure'
      ? { allowInsecure: '1' }
      : { sni: 'node.test', ca: tlsWay.ca }
    : {};
  const ws: Record<string, string> = i.network === 'ws' ? { type: 'ws', path: i.path!, host: 'node.test' } : {};
  if (i.protocol === 'vmess') {
    const json = {
      v: '2',
      ps: `vmess ${i.network}${i.tls ? '+tls' : ''}`,
      add: NODE_IP,
      port: String(i.port),
      id: ID,
      aid: '0',
      scy: extra.scy ?? 'auto',
      net: i.network,
      type: 'none',
      ...(i.network === 'ws' ? { path: i.path, host: 'node.test' } : {}),
      tls: i.tls ? 'tls' : '',
      ...tlsParams,
    };
    return `vmess://${Buffer.from(JSON.stringify(json)).toString('base64')}`;
  }
  const query = new URLSearchParams({
    ...ws,
    ...(i.protocol === 'vless' ? { security: i.tls ? 'tls' : 'none', encryption: 'none' } : {}),
    ...tlsParams,
  });
  const user = i.protocol === 'trojan' ? encodeURIComponent(TROJAN_PASSWORD) : ID;
  return `${i.protocol}://${user}@${NODE_IP}:${i.port}?${query}#${i.protocol}`;
}

async function curlJson(
  h: Host,
  url: string,
  extra: string[] = [],
): Promise<{ client: { address: string }; body?: { length: number; sha256: string } } | undefined> {
  const r = await h.run('curl', ['-sS', '--max-time', '8', ...extra, url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? JSON.parse(line) : undefined;
}

async function withV2rayLab(fn: (g: GatewayLab, ca: string) => Promise<void>): Promise<void> {
  const names = ['www.remote.test', ...Array.from({ length: 20 }, (_, n) => `n${n}.remote.test`)];
  await withGatewayLab({ net: NET, tmpPrefix: 'tpx-v2ray-', remoteNames: names }, async (g) => {
    const cert = join(g.tmp, 'node.crt');
    const key = join(g.tmp, 'node.key');
    await g.node.run('openssl', selfSignedCertArgs({ names: ['node.test', NODE_IP], keyFile: key, certFile: cert }));
    // The data plane reads the CA after dropping its privileges: it must be readable to all.
    chmodSync(g.tmp, 0o711);
    chmodSync(cert, 0o644);
    writeFileSync(join(g.tmp, 'v2ray.json'), v2rayConfig(cert, key));
    writeFileSync(join(g.tmp, 'trojan.json'), trojanGfwConfig(cert, key));
    await startPeer(g.remote, 'echo_headers', 80);
    g.node.spawn('v2ray', ['-config', join(g.tmp, 'v2ray.json')]);
    g.node.spawn('trojan', ['-c', join(g.tmp, 'trojan.json')]);
    for (const p of [...INBOUNDS.map((i) => i.port), TROJAN_GFW_PORT]) await waitForPort(g.node, p);
    await fn(g, cert);
  });
}

test('VMess (each security), VLESS and Trojan over tcp, tls, ws and ws+tls: LAN traffic leaves through v2ray and trojan, the remote sees the node', async () => {
  await withV2rayLab(async (g, ca) => {
    // One node per case, picked by the domain the LAN host asks for (sniffed from Host).
    const cases: Array<{ name: string; link: string }> = [];
    for (const i of INBOUNDS)
      cases.push({
        name: `${i.protocol}-${i.network}${i.tls ? '-tls' : ''}`,
        link: linkFor(i, i.port === 10022 ? 'insecure' : { ca }),
      });
    cases.push({ name: 'vmess-aes', link: linkFor(INBOUNDS[0]!, { ca }, { scy: 'aes-128-gcm' }) });
    cases.push({ name: 'vmess-chacha', link: linkFor(INBOUNDS[1]!, { ca }, { scy: 'chacha20-poly1305' }) });
    cases.push({ name: 'vmess-none', link: linkFor(INBOUNDS[2]!, { ca }, { scy: 'none' }) });
    cases.push({
      name: 'trojan-gfw',
      link: linkFor({ port: TROJAN_GFW_PORT, protocol: 'trojan', network: 'tcp', tls: true }, { ca }),
    });
    const config = join(g.tmp, 'nodes.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        ...cases.map((c) => `  ${c.name}: '${c.link}'`),
        'rules:',
        ...cases.map((c, n) => `  - domain: n${n}.remote.test\n    outbound: ${c.name}`),
        `default: ${cases[3]!.name}`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, []), '--config', config]);
    for (const [n, c] of cases.entries()) {
      const host = `n${n}.remote.test`;
      const echo = await curlJson(g.lan, `http://${host}/`, ['--resolve', `${host}:80:${REMOTE}`]);
      assert.equal(
        echo?.client.address,
        NODE_SIDE_OF_REMOTE,
        `${c.name}: the remote sees the node\n${proxy.output().slice(-2000)}`,
      );
    }
    // A WebSocket has no half-close: those flows end when the node has been silent for 5 s
    // after the client's end (as v2ray's own client does), so their log lines come together.
    for (const [n, c] of cases.entries()) {
      await proxy.waitForOutput(new RegExp(`conn .*domain=n${n}\\.remote\\.test via=${c.name} .*close=eof`), 10_000);
    }
    // No domain: the IP address goes in the request (default node: VMess over ws+tls); 2 MiB up intact.
    const body = Buffer.alloc(2 << 20, 'tranproxy-');
    writeFileSync(join(g.tmp, 'body'), body);
    const big = await curlJson(g.lan, `http://${REMOTE}/upload`, ['--data-binary', `@${join(g.tmp, 'body')}`]);
    assert.equal(big?.client.address, NODE_SIDE_OF_REMOTE);
    assert.deepEqual(big?.body, { length: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    assert.doesNotMatch(
      proxy.output(),
      new RegExp(`${ID}|${TROJAN_PASSWORD.replace('#', '\\#')}`),
      'ids and passwords never reach the log',
    );
    assert.doesNotMatch(
      proxy.output(),
      new RegExp(`src=${LAN_CLIENT.replace(/\./g, '\\.')}:\\d+ .*close=(?!eof)`),
      'every flow ended cleanly',
    );
  });
});

test('certificates are verified: a node link with neither its CA nor allowInsecure is refused (ECERT); a wrong password relays nothing', async () => {
  await withV2rayLab(async (g, ca) => {
    const gfw: Inbound = { port: TROJAN_GFW_PORT, protocol: 'trojan', network: 'tcp', tls: true };
    const unverified = linkFor(gfw, { ca: '' }).replace('&ca=', '');
    const config = join(g.tmp, 'nodes.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        `  unverified: '${unverified}'`,
        `  insecure: '${linkFor(gfw, 'insecure')}'`,
        `  wrong-password: '${linkFor(INBOUNDS[9]!, { ca }).replace(encodeURIComponent(TROJAN_PASSWORD), 'nope')}'`,
        'rules:',
        '  - domain: n0.remote.test\n    outbound: unverified',
        '  - domain: n1.remote.test\n    outbound: insecure',
        '  - domain: n2.remote.test\n    outbound: wrong-password',
        'default: direct',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, []), '--config', config]);
    const get = (n: number) =>
      curlJson(g.lan, `http://n${n}.remote.test/`, ['--resolve', `n${n}.remote.test:80:${REMOTE}`]);
    assert.equal(await get(0), undefined, 'self-signed certificate, no CA given: refused');
    await proxy.waitForOutput(/conn .*via=unverified .*error=ECERT/);
    assert.equal((await get(1))?.client.address, NODE_SIDE_OF_REMOTE, 'allowInsecure=1 in the link: accepted');
    // v2ray's trojan closes a connection with a wrong password: nothing is relayed.
    assert.equal(await get(2), undefined);
    await proxy.waitForOutput(/conn .*via=wrong-password .*down=0 /);
    // The proxy is still serving.
    assert.equal((await get(1))?.client.address, NODE_SIDE_OF_REMOTE);
  });
});

test('UDP through VMess, VLESS and Trojan nodes (tcp, tls, ws+tls): replies come back from the remote, which sees the node', async () => {
  await withV2rayLab(async (g, ca) => {
    const byPort: Array<[number, string, string]> = [
      [5301, 'vmess-tcp', linkFor(INBOUNDS[0]!, { ca }, { scy: 'chacha20-poly1305' })],
      [5302, 'vmess-wss', linkFor(INBOUNDS[3]!, { ca })],
      [5303, 'vless-tcp', linkFor(INBOUNDS[4]!, { ca })],
      [5304, 'vless-ws', linkFor(INBOUNDS[6]!, { ca })],
      [5305, 'trojan-tls', linkFor(INBOUNDS[8]!, { ca })],
      [5306, 'trojan-gfw', linkFor({ port: TROJAN_GFW_PORT, protocol: 'trojan', network: 'tcp', tls: true }, { ca })],
    ];
    const echoes = [];
    for (const [port] of byPort) echoes.push(await startPeer(g.remote, 'udp_echo', port));
    const config = join(g.tmp, 'udp.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        ...byPort.map(([, name, link]) => `  ${name}: '${link}'`),
        'rules:',
        ...byPort.map(([port, name]) => `  - port: ${port}\n    network: udp\n    outbound: ${name}`),
        'default: direct',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const proxy = await startTranproxy(g.gw, [
      ...gatewayRunArgs(g, ['--udp', '-P', '5301-5306', '--udp-idle-timeout', '2s']),
      '--config',
      config,
    ]);
    for (const [i, [port, name]] of byPort.entries()) {
      const replies = await udpExchange(g.lan, REMOTE, port, [`${name}-1`, `${name}-2`]);
      assert.deepEqual(
        replies,
        [`${name}-1 ${REMOTE} ${port}`, `${name}-2 ${REMOTE} ${port}`],
        `${name}\n${proxy.output().slice(-1500)}`,
      );
      await echoes[i]!.waitForOutput(new RegExp(`^${NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')} \\d+$`, 'm'));
      await proxy.waitForOutput(
        new RegExp(`udp route src=\\S+ dst=${REMOTE.replace(/\./g, '\\.')}:${port} via=${name} route=rules`),
      );
    }
    for (const e of echoes)
      assert.doesNotMatch(
        e.output(),
        new RegExp(`^${LAN_CLIENT.replace(/\./g, '\\.')} `, 'm'),
        'the client never reaches the remote itself',
      );
  });
});
