// Issue 4 end to end, in the seed's topology: LAN hosts route through a gateway namespace;
// a "remote" namespace is reachable only through the upstream node. Real nodes from Debian:
// microsocks (SOCKS5, with and without auth), tinyproxy (HTTP CONNECT), ss-server
// (Shadowsocks AEAD, each cipher).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import {
  gatewayLabAddresses,
  gatewayCapture,
  gatewayRunArgs,
  microsocks,
  withGatewayLab,
  type GatewayLab,
} from '../helpers/gateway-lab.js';
import { peerPath, startPeer, startTranproxy, tranproxyBin, waitForPort } from '../helpers/lab.js';
import { childPids } from '../helpers/procs.js';

const {
  node: NODE_IP,
  remote: REMOTE,
  nodeSideOfRemote: NODE_SIDE_OF_REMOTE,
  direct: DIRECT_SRV,
  lanClient: LAN_CLIENT,
} = gatewayLabAddresses(74);

/** The gateway lab with the servers every test here talks to; the node resolves *.remote.test. */
async function withGateway(fn: (g: GatewayLab, lab: Lab) => Promise<void>): Promise<void> {
  await withGatewayLab(
    { net: 74, tmpPrefix: 'tpx-gw-', remoteNames: ['www.remote.test', 'api.remote.test'] },
    async (g, lab) => {
      await startPeer(g.remote, 'echo_headers', 80);
      await startPeer(g.remote, 'tcp_echo', 7);
      await startPeer(g.direct, 'echo_headers', 80);
      await fn(g, lab);
    },
  );
}

async function curlJson(
  h: Host,
  url: string,
  extra: string[] = [],
): Promise<{ client: { address: string } } | undefined> {
  const r = await h.run('curl', ['-sS', '--max-time', '6', ...extra, url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as { client: { address: string } }) : undefined;
}

/** A raw TCP round trip. No half-close: microsocks closes both ways on the first FIN. */
async function tcpExchange(h: Host, ip: string, port: number, text: string): Promise<string> {
  const r = await h.run(process.execPath, [peerPath('raw_client.mjs'), ip, String(port), '700'], {
    input: text,
    allowFailure: true,
  });
  return r.stdout;
}

test('SOCKS5 node: curl and a raw TCP exchange from a LAN host leave through the node', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1080);
    const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--upstream', `socks5://${NODE_IP}:1080`]));
    const echo = await curlJson(g.lan, `http://${REMOTE}/via-node`);
    assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE, 'the remote server sees the node, not the client');
    // After the handshake nothing transforms the bytes: the pair goes to the splice engine.
    await proxy.waitForOutput(/conn .*dst=10\.74\.3\.2:80 .*via=upstream route=default .*close=eof relay=splice/);
    assert.equal(await tcpExchange(g.lan, REMOTE, 7, 'hello through socks\n'), 'hello through socks\n');
    await proxy.waitForOutput(/conn .*dst=10\.74\.3\.2:7 .*via=upstream/);
    // Sniffed domain is sent to the node, which resolves it itself.
    const named = await curlJson(g.lan, 'http://www.remote.test/', ['--resolve', `www.remote.test:80:${REMOTE}`]);
    assert.equal(named?.client.address, NODE_SIDE_OF_REMOTE);
    await proxy.waitForOutput(/conn .*domain=www\.remote\.test via=upstream/);
  });
});

test('small-router layout: rules apply, then one process (--one-process, no child) carries the LAN through the node', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1080);
    const capture = gatewayCapture(g);
    const cli = (args: string[]) => g.gw.run(process.execPath, [tranproxyBin(), ...args]);
    await cli(['rules', 'apply', ...capture]);
    try {
      const upstream = ['--upstream', `socks5://${NODE_IP}:1080`];
      const proxy = await startTranproxy(g.gw, ['run', ...capture, '--firewall', 'none', '--one-process', ...upstream]);
      assert.match(proxy.output(), /ready: .*layout=one-process .*relay=kernel/);
      assert.deepEqual(childPids(proxy.pid), [], 'no data-plane child process');
      const echo = await curlJson(g.lan, `http://${REMOTE}/one-process`);
      assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE, 'the remote server sees the node, not the client');
      await proxy.waitForOutput(/conn .*dst=10\.74\.3\.2:80 .*via=upstream route=default/);
    } finally {
      await cli(['rules', 'remove']);
    }
  });
});

test('one node without the engine (--relay js): the JS path builds the routing the engine would not need', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1080);
    const args = ['--upstream', `socks5://${NODE_IP}:1080`, '--relay', 'js'];
    const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, args));
    assert.doesNotMatch(proxy.output(), /ready: .*relay=kernel/, 'not the engine-only path');
    const echo = await curlJson(g.lan, `http://${REMOTE}/js-path`);
    assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE, 'the remote server sees the node, not the client');
    await proxy.waitForOutput(/conn .*dst=10\.74\.3\.2:80 .*via=upstream route=default .*close=eof/);
  });
});

test('-N: the upstream node given by name is resolved through the -N nameserver', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1080);
    // Only this nameserver knows the node's name; the system resolver does not.
    const dnsPeer = g.direct.spawn('python3', [
      peerPath('dns_server.py'),
      '53',
      DIRECT_SRV,
      `node-a.upstream.test=${NODE_IP}`,
    ]);
    await dnsPeer.waitForOutput(/^listening /m);
    const proxy = await startTranproxy(
      g.gw,
      gatewayRunArgs(g, ['--upstream', 'socks5://node-a.upstream.test:1080', '-N', DIRECT_SRV]),
    );
    const echo = await curlJson(g.lan, `http://${REMOTE}/named-node`);
    assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE, 'through the node found by its name');
    await dnsPeer.waitForOutput(/query node-a\.upstream\.test/);
    await proxy.waitForOutput(/conn .*dst=10\.74\.3\.2:80 .*via=upstream/);
  });
});

test('SOCKS5 with auth, HTTP CONNECT (tinyproxy) and Shadowsocks (each cipher) nodes', async () => {
  await withGateway(async (g) => {
    const nodes: [string, () => Promise<LabProcess>][] = [];
    nodes.push([`socks5://alice:s3cret@${NODE_IP}:1081`, () => microsocks(g.node, NODE_IP, 1081, ['alice', 's3cret'])]);
    const tinyConf = join(g.tmp, 'tinyproxy.conf');
    writeFileSync(
      tinyConf,
      `Port 3128\nListen ${NODE_IP}\nTimeout 30\nAllow 10.74.0.0/16\nMaxClients 50\nLogLevel Error\n`,
    );
    nodes.push([
      `http://${NODE_IP}:3128`,
      async () => {
        const p = g.node.spawn('tinyproxy', ['-d', '-c', tinyConf]);
        await waitForPort(g.node, 3128);
        return p;
      },
    ]);
    for (const [i, method] of ['aes-128-gcm', 'aes-256-gcm', 'chacha20-ietf-poly1305'].entries()) {
      const port = 8388 + i;
      const userinfo = Buffer.from(`${method}:pa:ss`).toString('base64url');
      nodes.push([
        `ss://${userinfo}@${NODE_IP}:${port}#n${i}`,
        async () => {
          const p = g.node.spawn('ss-server', ['-s', NODE_IP, '-p', String(port), '-k', 'pa:ss', '-m', method]);
          await waitForPort(g.node, port);
          return p;
        },
      ]);
    }
    for (const [uri, start] of nodes) {
      const peer = await start();
      const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--upstream', uri]));
      const echo = await curlJson(g.lan, `http://${REMOTE}/`);
      assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE, uri);
      assert.equal(await tcpExchange(g.lan, REMOTE, 7, `raw ${uri}\n`), `raw ${uri}\n`, uri);
      await proxy.stop();
      await peer.stop();
    }
  });
});

test('domain rules: one name direct, another through the node, a third rejected; node down is quick and isolated', async () => {
  await withGateway(async (g) => {
    const socks = await microsocks(g.node, NODE_IP, 1080);
    const config = join(g.tmp, 'gateway.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        `  node-a: socks5://${NODE_IP}:1080`,
        'rules:',
        '  - domain-suffix: direct.test',
        '    outbound: direct',
        '  - domain-keyword: blocked',
        '    outbound: reject',
        '  - domain-suffix: remote.test',
        '    outbound: node-a',
        'default: direct',
        '',
      ].join('\n'),
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, []), '--config', config]);
    const direct = await curlJson(g.lan, 'http://www.direct.test/', ['--resolve', `www.direct.test:80:${DIRECT_SRV}`]);
    // Direct flows keep the client's own address (TPROXY full transparency).
    assert.equal(direct?.client.address, LAN_CLIENT);
    await proxy.waitForOutput(/conn .*domain=www\.direct\.test via=direct route=rules\[0\]/);
    const proxied = await curlJson(g.lan, 'http://api.remote.test/', ['--resolve', `api.remote.test:80:${REMOTE}`]);
    assert.equal(proxied?.client.address, NODE_SIDE_OF_REMOTE);
    await proxy.waitForOutput(/conn .*domain=api\.remote\.test via=node-a route=rules\[2\]/);

    const t0 = Date.now();
    const blocked = await g.lan.run(
      'curl',
      ['-sS', '--max-time', '5', '--resolve', `ads.blocked.test:80:${DIRECT_SRV}`, 'http://ads.blocked.test/'],
      { allowFailure: true },
    );
    assert.notEqual(blocked.status, 0);
    assert.ok(Date.now() - t0 < 2000, 'reject is immediate');
    await proxy.waitForOutput(/conn .*domain=ads\.blocked\.test via=reject route=rules\[1\] .*close=rejected-by-rule/);

    await socks.stop();
    const t1 = Date.now();
    const down = await g.lan.run(
      'curl',
      ['-sS', '--max-time', '8', '--resolve', `api.remote.test:80:${REMOTE}`, 'http://api.remote.test/'],
      { allowFailure: true },
    );
    assert.notEqual(down.status, 0);
    assert.ok(Date.now() - t1 < 3000, `node down must fail fast, took ${Date.now() - t1} ms`);
    await proxy.waitForOutput(/conn .*via=node-a .*close=connect-failed error=ECONNREFUSED/);
    // Other traffic is unaffected.
    const still = await curlJson(g.lan, 'http://www.direct.test/', ['--resolve', `www.direct.test:80:${DIRECT_SRV}`]);
    assert.equal(still?.client.address, LAN_CLIENT);
  });
});

test('UDP through the gateway: TPROXY UDP relayed direct, replies come from the original destination', async () => {
  await withGateway(async (g) => {
    const echo = await startPeer(g.direct, 'udp_echo', 5353);
    const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--udp', '-P', '5353', '--udp-idle-timeout', '1s']));
    assert.match(proxy.output(), /protocols=tcp,udp/);
    // A python client that checks the reply's source address (it must be the server's).
    const script =
      'import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n' +
      `s.sendto(b"ping-udp",("${DIRECT_SRV}",5353))\nd,a=s.recvfrom(100)\nprint(d.decode(),a[0],a[1])\n`;
    const r = await g.lan.run('python3', ['-c', script], { allowFailure: true });
    assert.equal(r.stdout.trim(), `ping-udp ${DIRECT_SRV} 5353`, r.stderr);
    await echo.waitForOutput(/^10\.74\.4\.1 \d+$/m); // the gateway relayed it
    await proxy.waitForOutput(/udp src=10\.74\.1\.2:\d+ dst=10\.74\.4\.2:5353 .*close=idle/, 8000);
    await proxy.stop();
    const nft = await g.gw.run('nft', ['list', 'ruleset']);
    assert.doesNotMatch(nft.stdout, /tranproxy/);
  });
});

test('DNS forwarder on the gateway: queries go through the node, fake-IP maps connections back to their domain', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1080);
    const dnsPeer = g.remote.spawn('python3', [peerPath('dns_server.py'), '53', REMOTE, `www.remote.test=${REMOTE}`]);
    await dnsPeer.waitForOutput(/^listening /m);
    const config = join(g.tmp, 'dns.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        `  node-a: socks5://${NODE_IP}:1080`,
        'rules:',
        '  - domain-suffix: remote.test',
        '    outbound: node-a',
        'default: direct',
        'dns:',
        '  listen: 10.74.1.1:53',
        `  nameservers: [${REMOTE}]`,
        '  via: node-a',
        '  cache: true',
        '  fake-ip:',
        '    enabled: true',
        '    range: 198.18.0.0/15',
        '',
      ].join('\n'),
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, []), '--config', config]);
    await proxy.waitForOutput(/dns ready: listen=10\.74\.1\.1:53 via=node-a fake-ip=198\.18\.0\.0\/15/);
    const resolve = `const {Resolver}=require('dns').promises;const r=new Resolver();r.setServers(['10.74.1.1']);r[process.argv[1]](process.argv[2]).then(a=>console.log(a.join(',')),e=>{console.log(e.code)})`;
    const fake = (await g.lan.run(process.execPath, ['-e', resolve, 'resolve4', 'www.remote.test'])).stdout.trim();
    assert.match(fake, /^198\.1[89]\.\d+\.\d+$/, 'a fake address from the range');
    assert.doesNotMatch(dnsPeer.output(), /query/, 'fake-IP answers A queries itself');
    // Other types are forwarded, through the node over TCP: the DNS server sees the node.
    await g.lan.run(process.execPath, ['-e', resolve, 'resolveTxt', 'www.remote.test']);
    await dnsPeer.waitForOutput(/query www\.remote\.test from 10\.74\.3\.1 tcp/);
    // A connection to the fake address is routed by its domain and reaches the real server.
    const echo = await curlJson(g.lan, 'http://www.remote.test/', ['--resolve', `www.remote.test:80:${fake}`]);
    assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE);
    await proxy.waitForOutput(
      new RegExp(
        `conn .*dst=${fake.replace(/\./g, '\\.')}:80 domain=www\\.remote\\.test via=node-a route=rules\\[0\\]`,
      ),
    );
  });
});

test('node down: its fallback node carries the flow', async () => {
  await withGateway(async (g) => {
    await microsocks(g.node, NODE_IP, 1082); // the fallback; the primary (1080) is not running
    const config = join(g.tmp, 'fallback.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        '  primary:',
        `    uri: socks5://${NODE_IP}:1080`,
        '    fallback: backup',
        `  backup: socks5://${NODE_IP}:1082`,
        'default: primary',
        '',
      ].join('\n'),
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, []), '--config', config]);
    const echo = await curlJson(g.lan, `http://${REMOTE}/`);
    assert.equal(echo?.client.address, NODE_SIDE_OF_REMOTE);
    await proxy.waitForOutput(/node unreachable, using fallback node=primary error=ECONNREFUSED fallback=backup/);
    await proxy.waitForOutput(/conn .*via=backup fallback-from=primary route=default .*close=eof/);
  });
});
