// Proxy mode (#17 item 4) end to end: the real gateway (`tranproxy run --listen-proxy`) in the
// gateway lab, LAN clients set to use it as their proxy:
//   lan ─ gw (mixed inbound on its LAN address) ─ node (microsocks, ss-server -u) ─ remote
//          └─ direct
// curl -x (http:// URLs and CONNECT to a TLS server), curl --socks5-hostname, a python SOCKS5
// UDP ASSOCIATE client; domain rules send *.remote.test through the SOCKS5 node, UDP to the
// remote through Shadowsocks, the rest direct. Which way a flow went is read from the peers:
// the address each server saw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, gatewayRunArgs, withGatewayLab, type GatewayLab } from '../helpers/gateway-lab.js';
import { peerPath, startPeer, startTlsServer, startTranproxy, waitForPort } from '../helpers/lab.js';

const IP = gatewayLabAddresses(97);
const GW = IP.gwLan;
const PORT = 7890;

const have = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const MISSING = ['microsocks', 'ss-server', 'python3', 'curl', 'openssl'].filter((b) => !have(b));
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : MISSING.length
      ? `missing ${MISSING.join(', ')} (scripts/setup-deps.sh installs them)`
      : false;

/** The lab with its servers: web and UDP echo on remote and direct, a DNS server for *.direct.test, both nodes. */
async function withProxyLab(fn: (g: GatewayLab, peers: Peers) => Promise<void>): Promise<void> {
  await withGatewayLab({ net: 97, tmpPrefix: 'tpx-pmode-', remoteNames: ['www.remote.test'] }, async (g) => {
    await startPeer(g.remote, 'echo_headers', 80);
    await startPeer(g.direct, 'echo_headers', 80);
    const remoteEcho = await startPeer(g.remote, 'udp_echo', 5353);
    const directEcho = await startPeer(g.direct, 'udp_echo', 5353);
    const tls = await startTlsServer(g.direct, 443, { names: ['tls.direct.test'] });
    const dns = g.direct.spawn('python3', [
      peerPath('dns_server.py'),
      '53',
      IP.direct,
      `www.direct.test=${IP.direct}`,
      `tls.direct.test=${IP.direct}`,
    ]);
    await dns.waitForOutput(/^listening /m);
    g.node.spawn('microsocks', ['-i', IP.node, '-p', '1080']);
    g.node.spawn('ss-server', ['-s', IP.node, '-p', '8388', '-k', 'secret', '-m', 'aes-256-gcm', '-u']);
    await waitForPort(g.node, 1080);
    await waitForPort(g.node, 8388, { udp: true });
    await fn(g, { certFile: tls.certFile, remoteEcho, directEcho });
  });
}

interface Peers {
  certFile: string;
  /** UDP echo servers: they print the source of each datagram. */
  remoteEcho: LabProcess;
  directEcho: LabProcess;
}

/** The address the web server saw (its JSON echo), or curl's failure. */
async function seenBy(h: Host, args: string[]): Promise<string> {
  const r = await h.run('curl', ['-sS', '--max-time', '5', ...args], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  if (!line) return `curl exit ${r.status}: ${r.stderr.trim()} ${r.stdout.trim()}`;
  return (JSON.parse(line) as { client: { address: string } }).client.address;
}

async function httpStatus(h: Host, args: string[]): Promise<string> {
  const r = await h.run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...args], {
    allowFailure: true,
  });
  return r.stdout.trim();
}

/**
 * SOCKS5 UDP ASSOCIATE client: each argument HOST,PORT,TEXT is sent as one datagram through
 * the association; prints "TEXT HOST PORT" from each reply's header, or "timeout". Last, a
 * datagram with FRAG=1 (must be dropped: "timeout").
 */
const UDP_CLIENT = `
import socket,struct,sys
c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)
c.sendall(b'\\x05\\x01\\x00'); assert c.recv(2)==b'\\x05\\x00'
c.sendall(b'\\x05\\x03\\x00\\x01'+bytes(4)+bytes(2))
r=c.recv(10); assert r[1]==0,r
relay=(socket.inet_ntoa(r[4:8]),struct.unpack('!H',r[8:10])[0])
u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(3)
def addr(h):
    return b'\\x01'+socket.inet_aton(h) if h[0].isdigit() else b'\\x03'+bytes([len(h)])+h.encode()
def exchange(frag,h,p,m):
    u.sendto(b'\\x00\\x00'+bytes([frag])+addr(h)+struct.pack('!H',p)+m.encode(),relay)
    try:
        d,_=u.recvfrom(65535)
    except socket.timeout:
        return 'timeout'
    if d[3]==1: h,o=socket.inet_ntoa(d[4:8]),8
    else: h,o=d[5:5+d[4]].decode(),5+d[4]
    return '%s %s %d'%(d[o+2:].decode(),h,struct.unpack('!H',d[o:o+2])[0])
for spec in sys.argv[3:]:
    h,p,m=spec.split(',')
    print(exchange(0,h,int(p),m),flush=True)
u.settimeout(1)
print(exchange(1,sys.argv[3].split(',')[0],int(sys.argv[3].split(',')[1]),'fragment'),flush=True)
c.close()
`;

test('proxy mode: HTTP proxy and SOCKS5 on one port, routed by domain rules to a SOCKS5 node or direct; UDP ASSOCIATE direct and through Shadowsocks', {
  skip,
  timeout: 60_000,
}, async () => {
  await withProxyLab(async (g, { certFile, remoteEcho, directEcho }) => {
    const config = join(g.tmp, 'gateway.yaml');
    writeFileSync(
      config,
      [
        `listen-proxy: ${GW}:${PORT}`,
        'nodes:',
        `  socks: socks5://${IP.node}:1080`,
        `  ss: ss://aes-256-gcm:secret@${IP.node}:8388`,
        'rules:',
        '  - domain-suffix: remote.test',
        '    outbound: socks',
        `  - cidr: ${IP.remote}/32`,
        '    network: udp',
        '    outbound: ss',
        'default: direct',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--config', config, '-N', IP.direct, '--admin']));
    assert.match(proxy.output(), new RegExp(`proxy=${GW}:${PORT} proxy-auth=off`));
    const x = ['-x', `http://${GW}:${PORT}`];

    // HTTP proxy, absolute-form: the domain rule decides; the servers see the node or the gateway.
    assert.equal(await seenBy(g.lan, [...x, 'http://www.remote.test/a']), IP.nodeSideOfRemote, proxy.output());
    await proxy.waitForOutput(
      /conn .*inbound=http .*dst=www\.remote\.test:80 domain=www\.remote\.test via=socks route=rules\[0\] .*close=eof/,
    );
    assert.equal(await seenBy(g.lan, [...x, 'http://www.direct.test/b']), IP.gwDirect);
    await proxy.waitForOutput(/conn .*inbound=http .*dst=www\.direct\.test:80 .*via=direct route=default/);
    // CONNECT to a TLS server: the client's own TLS session, end to end (SNI and certificate).
    const tlsSeen = await seenBy(g.lan, [...x, '--cacert', certFile, 'https://tls.direct.test/c']);
    assert.equal(tlsSeen, IP.gwDirect);
    await proxy.waitForOutput(/conn .*inbound=http .*dst=tls\.direct\.test:443 .*via=direct/);
    // A name nobody resolves: 502 from the proxy, not a hang.
    assert.equal(await httpStatus(g.lan, [...x, 'http://nowhere.direct.test/']), '502');

    // SOCKS5 with the name sent to the proxy (--socks5-hostname): routed the same way.
    const s5 = ['--socks5-hostname', `${GW}:${PORT}`];
    assert.equal(await seenBy(g.lan, [...s5, 'http://www.remote.test/d']), IP.nodeSideOfRemote);
    await proxy.waitForOutput(/conn .*inbound=socks5 .*dst=www\.remote\.test:80 .*via=socks route=rules\[0\]/);
    assert.equal(await seenBy(g.lan, [...s5, 'http://www.direct.test/e']), IP.gwDirect);
    await proxy.waitForOutput(/conn .*inbound=socks5 .*dst=www\.direct\.test:80 .*via=direct/);

    // Garbage gets a clean close and the proxy keeps serving.
    const junk = await g.lan.run('curl', ['-sS', '--max-time', '3', `telnet://${GW}:${PORT}`], {
      input: 'BREW /pot HTCPCP/1.0\r\n\r\n',
      allowFailure: true,
    });
    assert.match(junk.stdout, /^HTTP\/1\.1 400 Bad Request/);

    // UDP ASSOCIATE: to direct (default) and to the remote (UDP rule: the Shadowsocks node).
    const udp = await g.lan.run('python3', [
      '-c',
      UDP_CLIENT,
      GW,
      String(PORT),
      `${IP.direct},5353,to-direct`,
      `${IP.remote},5353,to-remote`,
    ]);
    assert.deepEqual(udp.stdout.trim().split('\n'), [
      `to-direct ${IP.direct} 5353`,
      `to-remote ${IP.remote} 5353`,
      'timeout',
    ]);
    await proxy.waitForOutput(
      new RegExp(`udp route src=${IP.lanClient}:\\d+ dst=${IP.remote}:5353 via=ss route=rules\\[1\\]`),
    );
    await proxy.waitForOutput(
      /conn .*inbound=socks5 .*dst=udp-associate:0 .*up=18 down=18 flows=2 dropped=1 .*close=eof/,
    );
    // A held CONNECT tunnel shows in /connections; the flows count in /metrics under the proxy listener.
    const hold = g.lan.spawn('python3', [
      '-c',
      'import socket,sys,time\nc=socket.create_connection((sys.argv[1],int(sys.argv[2])))\n' +
        'c.sendall(b"CONNECT www.direct.test:80 HTTP/1.1\\r\\n\\r\\n")\nprint(c.recv(100).decode().split("\\r")[0],flush=True)\ntime.sleep(5)',
      GW,
      String(PORT),
    ]);
    await hold.waitForOutput(/^HTTP\/1\.1 200 Connection established$/m);
    const conns = await g.gw.run('curl', ['-sS', 'http://127.0.0.1:15000/connections']);
    const held = (JSON.parse(conns.stdout) as Record<string, unknown>[]).map(({ listener, dst, domain, via }) => ({
      listener,
      dst,
      domain,
      via,
    }));
    assert.deepEqual(held, [
      { listener: `${GW}:${PORT}`, dst: 'www.direct.test:80', domain: 'www.direct.test', via: 'direct' },
    ]);
    await hold.stop();
    const metrics = await g.gw.run('curl', ['-sS', 'http://127.0.0.1:15000/metrics']);
    assert.match(
      metrics.stdout,
      new RegExp(`tranproxy_connections_total\\{listener="${GW}:${PORT}",outbound="socks",result="eof"\\} 2`),
    );

    // The remote saw the node (Shadowsocks), the direct server saw the gateway.
    assert.match(remoteEcho.output(), new RegExp(`^${IP.nodeSideOfRemote.replaceAll('.', '\\.')} \\d+$`, 'm'));
    assert.match(directEcho.output(), new RegExp(`^${IP.gwDirect.replaceAll('.', '\\.')} \\d+$`, 'm'));
    await proxy.stop();

    // With --proxy-auth: the right credentials pass, none or wrong ones are refused.
    const authed = await startTranproxy(
      g.gw,
      gatewayRunArgs(g, ['--listen-proxy', `${GW}:${PORT + 1}`, '--proxy-auth', 'alice:s3:cret', '-N', IP.direct]),
    );
    const at = `${GW}:${PORT + 1}`;
    assert.equal(await seenBy(g.lan, ['-x', `http://alice:s3:cret@${at}`, 'http://www.direct.test/f']), IP.gwDirect);
    assert.equal(await httpStatus(g.lan, ['-x', `http://${at}`, 'http://www.direct.test/g']), '407');
    assert.equal(await httpStatus(g.lan, ['-x', `http://alice:wrong@${at}`, 'http://www.direct.test/h']), '407');
    assert.equal(
      await seenBy(g.lan, ['--socks5-hostname', at, '--proxy-user', 'alice:s3:cret', 'http://www.direct.test/i']),
      IP.gwDirect,
    );
    assert.match(
      await seenBy(g.lan, ['--socks5-hostname', at, '--proxy-user', 'alice:nope', 'http://www.direct.test/j']),
      /^curl exit 97/,
    );
    assert.match(await seenBy(g.lan, ['--socks5-hostname', at, 'http://www.direct.test/k']), /^curl exit 97/);
    await authed.waitForOutput(/refused inbound=proxy src=\S+ reason=auth-failed user=alice/);
    assert.doesNotMatch(authed.output(), /nope|wrong|s3:cret/, 'passwords are never logged');
    await authed.stop();

    // From the file, with SIGHUP: the password changes on reload; the listeners cannot.
    const authFile = join(g.tmp, 'auth.yaml');
    const writeAuth = (port: number, pass: string) =>
      writeFileSync(authFile, `listen-proxy: ${GW}:${port}\nproxy-auth: "bob:${pass}"\n`, { mode: 0o600 });
    writeAuth(PORT + 2, 'first');
    const reloaded = await startTranproxy(g.gw, gatewayRunArgs(g, ['--config', authFile, '-N', IP.direct]));
    const at2 = `${GW}:${PORT + 2}`;
    assert.equal(await seenBy(g.lan, ['-x', `http://bob:first@${at2}`, 'http://www.direct.test/l']), IP.gwDirect);
    writeAuth(PORT + 2, 'second');
    reloaded.child.kill('SIGHUP');
    await reloaded.waitForOutput(/reloaded:/);
    assert.equal(await httpStatus(g.lan, ['-x', `http://bob:first@${at2}`, 'http://www.direct.test/m']), '407');
    assert.equal(await seenBy(g.lan, ['-x', `http://bob:second@${at2}`, 'http://www.direct.test/n']), IP.gwDirect);
    writeAuth(PORT + 3, 'second');
    reloaded.child.kill('SIGHUP');
    await reloaded.waitForOutput(
      /reload rejected, keeping the running configuration: proxyMode cannot change on reload/,
    );
    assert.equal(await seenBy(g.lan, ['-x', `http://bob:second@${at2}`, 'http://www.direct.test/o']), IP.gwDirect);
  });
});
