// `tranproxy publish` end to end, in a lab:
//
//   remote (10.1.0.2, fd01::2) ── host (10.1.0.1, fd01::1 | br0 10.0.0.1, fd00::1) ══ br0 ══ ctr (10.0.0.2, fd00::2)
//                                                                                   ╚═ sib (10.0.0.3)
//
// ctr runs echo_headers (:80), tcp_echo (:7000), udp_echo (:7001); tranproxy publishes them
// from the host netns. Checked: remote clients keep their address, localhost (127.0.0.1, ::1)
// and host-IP access from the host itself, hairpin (ctr itself and a sibling on the bridge),
// ports held before rules exist, TCP half-close, UDP, --userland-proxy=false with
// route_localnet restored, crash leftovers (--list, replace, --remove-all), clean removal
// (the host's nft ruleset back to exactly what it was), 200 ports from one process.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { fdCount, startPeer, tranproxyBin, waitForPort, withLab } from '../helpers/lab.js';

const NODE = process.execPath;
const READY = /tranproxy: ready: publishing .*/;

const PY_TCP = `
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect((host, port))
s.sendall(payload)
s.shutdown(socket.SHUT_WR)   # half-close: the echo comes back after our FIN
buf = b''
while True:
    d = s.recv(65536)
    if not d:
        break
    buf += d
sys.stdout.write(buf.decode())
`;

const PY_UDP = `
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(5):
    s.sendto(payload, (host, port))
    try:
        d, a = s.recvfrom(65535)
        sys.stdout.write(d.decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(3)
`;

const PY_BIND = `
import errno, socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
try:
    s.bind((host, port))
    print('bound')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
`;

interface Net {
  host: Host;
  ctr: Host;
  sib: Host;
  remote: Host;
}

/** The lab above; ctr and sib hang off br0 in the host netns; forwarding on in the host. */
async function lab4(lab: Lab): Promise<Net> {
  const host = lab.addHost('host');
  const ctr = lab.addHost('ctr');
  const sib = lab.addHost('sib');
  const remote = lab.addHost('remote');
  const ports = [
    lab.link(host, ctr, { a: [], b: ['10.0.0.2/24', 'fd00::2/64'] }).a,
    lab.link(host, sib, { a: [], b: ['10.0.0.3/24', 'fd00::3/64'] }).a,
  ];
  lab.link(host, remote, { a: ['10.1.0.1/24', 'fd01::1/64'], b: ['10.1.0.2/24', 'fd01::2/64'] });
  const ip = (args: string[]) => host.run('ip', args);
  await ip(['link', 'add', 'br0', 'type', 'bridge']);
  for (const p of ports) await ip(['link', 'set', p, 'master', 'br0']);
  await ip(['addr', 'add', '10.0.0.1/24', 'dev', 'br0']);
  await ip(['-6', 'addr', 'add', 'fd00::1/64', 'dev', 'br0', 'nodad']);
  await ip(['link', 'set', 'br0', 'up']);
  for (const h of [ctr, sib]) {
    h.addRoute('default', '10.0.0.1');
    h.addRoute('default', 'fd00::1');
  }
  host.enableForwarding();
  // An unrelated table the publisher must leave alone.
  await host.run('nft', ['-f', '-'], {
    input:
      'table inet other {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 1 accept\n\t}\n}\n',
  });
  return { host, ctr, sib, remote };
}

function publish(host: Host, args: string[]): LabProcess {
  return host.spawn(NODE, [tranproxyBin(), 'publish', ...args]);
}

async function cli(host: Host, args: string[]) {
  return host.run(NODE, [tranproxyBin(), 'publish', ...args], { allowFailure: true });
}

async function httpClient(from: Host, url: string): Promise<{ client: { address: string } }> {
  const r = await from.run('curl', ['-sS', '-g', '--max-time', '5', url], { allowFailure: true });
  assert.equal(r.status, 0, `curl ${url} from ${from.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { client: { address: string } };
}

async function tcpEcho(from: Host, addr: string, port: number, payload: string): Promise<string> {
  const r = await from.run('python3', ['-c', PY_TCP, addr, String(port), payload], { allowFailure: true });
  assert.equal(r.status, 0, `tcp ${addr}:${port} from ${from.name}: ${r.stderr}`);
  return r.stdout;
}

async function udpEcho(from: Host, addr: string, port: number, payload: string): Promise<string> {
  const r = await from.run('python3', ['-c', PY_UDP, addr, String(port), payload], { allowFailure: true });
  assert.equal(r.status, 0, `udp ${addr}:${port} from ${from.name}: no answer ${r.stderr}`);
  return r.stdout;
}

async function tryBind(h: Host, proto: 'tcp' | 'udp', addr: string, port: number): Promise<string> {
  return (await h.run('python3', ['-c', PY_BIND, proto, addr, String(port)])).stdout.trim();
}

async function ruleset(h: Host): Promise<string> {
  return (await h.run('nft', ['list', 'ruleset'])).stdout;
}

async function sysctl(h: Host, key: string): Promise<string> {
  return (await h.run('sysctl', ['-n', key])).stdout.trim();
}

/** The lines a peer printed after `mark` (its output length at some earlier moment). */
function since(p: LabProcess, mark: number): string {
  return p.output().slice(mark);
}

async function waitLine(p: LabProcess, mark: number, re: RegExp, ms = 5000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = since(p, mark).match(re);
    if (m) return m[0];
    if (Date.now() > deadline) throw new Error(`no ${re} in:\n${since(p, mark)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resident set size of a process, in kB. */
function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('publish: remote, localhost, host IP, hairpin, held ports, UDP, IPv6, --list, clean removal', async (t: TestContext) => {
  await withLab(
    async (lab) => {
      const net = await lab4(lab);
      const { host, ctr, sib, remote } = net;
      await startPeer(ctr, 'echo_headers', 80);
      const echo = await startPeer(ctr, 'tcp_echo', 7000);
      const uecho = await startPeer(ctr, 'udp_echo', 7001);
      const before = await ruleset(host);

      const pub = publish(host, [
        '8080:10.0.0.2:80',
        '9000:10.0.0.2:7000',
        '9001:10.0.0.2:7001/udp',
        '8086:[fd00::2]:80',
        '--udp-idle-timeout',
        '1s',
      ]);
      const ready = await pub.waitForOutput(READY);
      t.diagnostic(ready);
      assert.match(
        ready,
        /tcp \*:8080->10\.0\.0\.2:80, tcp \*:9000->10\.0\.0\.2:7000, udp \*:9001->10\.0\.0\.2:7001, tcp \*:8086->\[fd00::2\]:80/,
      );
      assert.equal(pub.output().match(/ready:/g)?.length, 1, 'one line at start');

      await t.test("remote client: DNAT, the target sees the client's own address", async () => {
        assert.equal((await httpClient(remote, 'http://10.1.0.1:8080/')).client.address, '10.1.0.2');
        assert.equal((await httpClient(remote, 'http://[fd01::1]:8086/')).client.address, 'fd01::2');
        assert.equal(await tcpEcho(remote, '10.1.0.1', 9000, 'remote half-close'), 'remote half-close');
        await echo.waitForOutput(/^10\.1\.0\.2 \d+$/m);
        assert.doesNotMatch(pub.output(), /conn .*src=10\.1\.0\.2/, 'NATed, not relayed by the userland proxy');
      });

      await t.test('localhost: 127.0.0.1 and ::1 through the userland proxy, with half-close', async () => {
        const mark = pub.output().length;
        assert.equal((await httpClient(host, 'http://127.0.0.1:8080/')).client.address, '10.0.0.1');
        await waitLine(
          pub,
          mark,
          /conn id=\d+ proto=tcp src=127\.0\.0\.1:\d+ via=127\.0\.0\.1:8080 dst=10\.0\.0\.2:80 up=\d+ down=\d+ close=eof dur=\d+ms/,
        );
        assert.equal(await tcpEcho(host, '127.0.0.1', 9000, 'x'.repeat(100_000)), 'x'.repeat(100_000));
        await waitLine(
          pub,
          mark,
          /conn id=\d+ proto=tcp src=127\.0\.0\.1:\d+ via=127\.0\.0\.1:9000 dst=10\.0\.0\.2:7000 up=100000 down=100000 close=eof/,
        );
        assert.equal((await httpClient(host, 'http://[::1]:8086/')).client.address, 'fd00::1');
        // Its line too: one still to come would show up after the next subtest's mark.
        await waitLine(
          pub,
          mark,
          /conn id=\d+ proto=tcp src=\[::1\]:\d+ via=\[::1\]:8086 dst=\[fd00::2\]:80 .*close=eof/,
        );
        // ::1 to an IPv4 target: the [::] listener relays across families.
        assert.equal((await httpClient(host, 'http://[::1]:8080/')).client.address, '10.0.0.1');
        await waitLine(pub, mark, /conn id=\d+ proto=tcp src=\[::1\]:\d+ via=\[::1\]:8080 dst=10\.0\.0\.2:80 /);
      });

      await t.test('host IP from the host itself: OUTPUT DNAT', async () => {
        const mark = pub.output().length;
        assert.equal((await httpClient(host, 'http://10.1.0.1:8080/')).client.address, '10.1.0.1');
        assert.equal((await httpClient(host, 'http://10.0.0.1:8080/')).client.address, '10.0.0.1');
        assert.equal(await tcpEcho(host, '10.1.0.1', 9000, 'host ip'), 'host ip');
        await sleep(200);
        assert.doesNotMatch(since(pub, mark), /conn /, 'NATed, not relayed');
      });

      await t.test(
        'hairpin: a sibling on the bridge (MASQUERADE) and the target itself (userland) reach HOST_IP:HOST_PORT',
        async () => {
          const mark = pub.output().length;
          assert.equal(
            (await httpClient(sib, 'http://10.1.0.1:8080/')).client.address,
            '10.0.0.1',
            'sibling → other host IP',
          );
          assert.equal(
            (await httpClient(sib, 'http://10.0.0.1:8080/')).client.address,
            '10.0.0.1',
            'sibling → bridge IP',
          );
          assert.equal((await httpClient(sib, 'http://[fd00::1]:8086/')).client.address, 'fd00::1', 'sibling, IPv6');
          assert.equal(await tcpEcho(sib, '10.0.0.1', 9000, 'sib'), 'sib');
          // The target reaching itself (bridge port hairpin is not ours to enable): userland proxy.
          assert.equal(
            (await httpClient(ctr, 'http://10.0.0.1:8080/')).client.address,
            '10.0.0.1',
            'target → bridge IP',
          );
          assert.equal(
            (await httpClient(ctr, 'http://10.1.0.1:8080/')).client.address,
            '10.0.0.1',
            'target → other host IP',
          );
          assert.equal((await httpClient(ctr, 'http://[fd00::1]:8086/')).client.address, 'fd00::1', 'target, IPv6');
          await waitLine(
            pub,
            mark,
            /conn id=\d+ proto=tcp src=10\.0\.0\.2:\d+ via=10\.0\.0\.1:8080 dst=10\.0\.0\.2:80 .*close=eof/,
          );
          // The sibling's connections closed before the target's began: a line of theirs would be here by now.
          assert.doesNotMatch(
            since(pub, mark),
            /conn .*src=(10\.0\.0\.3|\[fd00::3\])/,
            'siblings are NATed, not relayed',
          );
          await waitLine(
            pub,
            mark,
            /conn id=\d+ proto=tcp src=\[fd00::2\]:\d+ via=\[fd00::1\]:8086 dst=\[fd00::2\]:80 .*close=eof/,
          );
        },
      );

      await t.test('every host port is held by the one process: a second bind gets EADDRINUSE', async () => {
        assert.equal(await tryBind(host, 'tcp', '0.0.0.0', 8080), 'EADDRINUSE');
        assert.equal(await tryBind(host, 'tcp', '::', 8080), 'EADDRINUSE');
        assert.equal(await tryBind(host, 'tcp', '127.0.0.1', 9000), 'EADDRINUSE');
        assert.equal(await tryBind(host, 'udp', '0.0.0.0', 9001), 'EADDRINUSE');
        assert.equal(await tryBind(host, 'tcp', '0.0.0.0', 8099), 'bound', 'control: a free port binds');
        const ss = (await host.run('ss', ['-H', '-lntup'])).stdout;
        const pids = new Set([...ss.matchAll(/pid=(\d+)/g)].map((m) => m[1]));
        assert.deepEqual([...pids], [String(pub.pid)], `one process holds them all:\n${ss}`);
        for (const p of ['8080', '9000', '8086']) assert.match(ss, new RegExp(`tcp .*0\\.0\\.0\\.0:${p} `));
        assert.match(ss, /udp .*0\.0\.0\.0:9001 /);
      });

      await t.test('UDP from remote (DNAT) and from localhost (userland, idle timeout)', async () => {
        let mark = uecho.output().length;
        assert.equal(await udpEcho(remote, '10.1.0.1', 9001, 'dgram remote'), 'dgram remote');
        await waitLine(uecho, mark, /^10\.1\.0\.2 \d+$/m);
        mark = uecho.output().length;
        const pmark = pub.output().length;
        assert.equal(await udpEcho(host, '127.0.0.1', 9001, 'dgram local'), 'dgram local');
        await waitLine(uecho, mark, /^10\.0\.0\.1 \d+$/m);
        assert.equal(await udpEcho(host, '::1', 9001, 'dgram v6 local'), 'dgram v6 local');
        // One line per flow once it has been idle for --udp-idle-timeout (1 s).
        await waitLine(
          pub,
          pmark,
          /conn id=\d+ proto=udp src=127\.0\.0\.1:\d+ via=0\.0\.0\.0:9001 dst=10\.0\.0\.2:7001 up=11 down=11 dur=\d+ms close=idle/,
          5000,
        );
        await waitLine(
          pub,
          pmark,
          /conn id=\d+ proto=udp src=\[::1\]:\d+ via=\[::\]:9001 dst=10\.0\.0\.2:7001 up=14 down=14 .*close=idle/,
          5000,
        );
      });

      await t.test('--list reads the mappings back from the nft table', async () => {
        const r = await cli(host, ['--list']);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^tcp \\*:8080->10\\.0\\.0\\.2:80 +pid ${pub.pid} \\(running\\)$`, 'm'));
        assert.match(r.stdout, /^udp \*:9001->10\.0\.0\.2:7001 /m);
        assert.match(r.stdout, /^tcp \*:8086->\[fd00::2\]:80 /m);
        assert.equal(r.stdout.trim().split('\n').length, 4);
      });

      await t.test('a second publisher of a held port fails before touching any rule', async () => {
        const rules = await ruleset(host);
        const r = await cli(host, ['8080:10.0.0.3:80']);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /host port 8080\/tcp on 0\.0\.0\.0 is already in use/);
        assert.equal(await ruleset(host), rules);
      });

      await t.test('SIGTERM: rules gone, the ruleset exactly as before, ports free', async () => {
        assert.equal(await pub.stop('SIGTERM'), 0);
        assert.equal(await ruleset(host), before);
        assert.match(await ruleset(host), /table inet other/, 'the unrelated table is untouched');
        assert.equal(await tryBind(host, 'tcp', '0.0.0.0', 8080), 'bound');
        assert.equal((await cli(host, ['--list'])).stdout, 'no published ports\n');
      });
    },
    { prefix: 'tpxpub' },
  );
});

test('publish --userland-proxy=false: 127.0.0.1 NATed via route_localnet, restored on exit', async (t: TestContext) => {
  await withLab(
    async (lab) => {
      const { host, ctr, remote } = await lab4(lab);
      await startPeer(ctr, 'echo_headers', 80);
      const uecho = await startPeer(ctr, 'udp_echo', 7001);
      const before = await ruleset(host);
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '0');

      const pub = publish(host, [
        '--userland-proxy=false',
        '8080:10.0.0.2:80',
        '9001:10.0.0.2:7001/udp',
        '127.0.0.1:8081:10.0.0.2:80',
      ]);
      t.diagnostic(await pub.waitForOutput(READY));
      assert.match(pub.output(), /userland-proxy=false/);
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '1');

      const mark = pub.output().length;
      // Hairpin NAT for localhost: the target sees the host's bridge address (masquerade), no relay.
      assert.equal((await httpClient(host, 'http://127.0.0.1:8080/')).client.address, '10.0.0.1');
      assert.equal((await httpClient(host, 'http://127.0.0.1:8081/')).client.address, '10.0.0.1');
      const umark = uecho.output().length;
      assert.equal(await udpEcho(host, '127.0.0.1', 9001, 'nat dgram'), 'nat dgram');
      await waitLine(uecho, umark, /^10\.0\.0\.1 \d+$/m);
      assert.equal((await httpClient(remote, 'http://10.1.0.1:8080/')).client.address, '10.1.0.2');
      // ::1 cannot be NATed to another host: the userland proxy still serves it.
      assert.equal((await httpClient(host, 'http://[::1]:8080/')).client.address, '10.0.0.1');
      await waitLine(pub, mark, /conn id=\d+ proto=tcp src=\[::1\]/);
      // The NATed connections closed before that one began: a line of theirs would be here by now.
      assert.equal(since(pub, mark).match(/conn /g)?.length, 1, 'only ::1 went through the userland proxy');
      // The port is held in this mode too.
      assert.equal(await tryBind(host, 'tcp', '0.0.0.0', 8080), 'EADDRINUSE');

      assert.equal(await pub.stop('SIGINT'), 0);
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '0');
      assert.equal(await ruleset(host), before);
    },
    { prefix: 'tpxpub' },
  );
});

test('publish: crash leftovers are listed, replaced by the next run, removed by --remove-all', async (t: TestContext) => {
  await withLab(
    async (lab) => {
      const { host, ctr, remote } = await lab4(lab);
      await startPeer(ctr, 'echo_headers', 80);
      const before = await ruleset(host);

      const crashed = publish(host, ['--userland-proxy=false', '8080:10.0.0.2:80']);
      await crashed.waitForOutput(READY);
      const deadPid = crashed.pid;
      await crashed.stop('SIGKILL');
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '1', 'a crash leaves the sysctl behind');
      const listed = await cli(host, ['--list']);
      assert.match(
        listed.stdout,
        new RegExp(`tcp \\*:8080->10\\.0\\.0\\.2:80 +pid ${deadPid} \\(not running: leftover`),
      );

      // The next run of the same mapping replaces the leftovers (it holds the port now) ...
      const next = publish(host, ['8080:10.0.0.2:80']);
      await next.waitForOutput(READY);
      const rules = await ruleset(host);
      assert.equal(rules.match(/tpx-publish tcp \*:8080 10\.0\.0\.2:80 pid=/g)?.length, 4, rules);
      assert.doesNotMatch(rules, new RegExp(`pid=${deadPid}`));
      assert.equal((await httpClient(remote, 'http://10.1.0.1:8080/')).client.address, '10.1.0.2');
      // ... and, as the last owner, restores route_localnet as recorded by the crashed run.
      assert.equal(await next.stop('SIGTERM'), 0);
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '0');
      assert.equal(await ruleset(host), before);

      // Crash again; this time --remove-all cleans up (idempotent).
      const again = publish(host, ['--userland-proxy=false', '8080:10.0.0.2:80', '9000-9009:10.0.0.2:7000-7009/udp']);
      await again.waitForOutput(READY);
      await again.stop('SIGKILL');
      assert.notEqual(await ruleset(host), before);
      const rm = await cli(host, ['--remove-all']);
      assert.equal(rm.status, 0, rm.stderr);
      t.diagnostic(rm.stderr.trim());
      assert.match(rm.stderr, /rules removed rules=\d+ restored_route_localnet=0/);
      assert.equal(await sysctl(host, 'net.ipv4.conf.all.route_localnet'), '0');
      assert.equal(await ruleset(host), before);
      assert.equal((await cli(host, ['--remove-all'])).status, 0, 'idempotent');
      assert.equal(await ruleset(host), before);
    },
    { prefix: 'tpxpub' },
  );
});

/** curl from `from`; the HTTP status ('000' when nothing answered in time). */
async function httpCode(from: Host, url: string): Promise<string> {
  return (
    await from.run('curl', ['-s', '-g', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', url], {
      allowFailure: true,
    })
  ).stdout;
}

async function iptablesS(h: Host, tool: string, chain: string): Promise<string> {
  return (await h.run(tool, ['-w', '-S', chain], { allowFailure: true })).stdout;
}

test('publish on FORWARD-DROP hosts: iptables (nft and legacy, both families) get our own accept chain; an nft drop chain falls back to the userland proxy', async (t: TestContext) => {
  await withLab(
    async (lab) => {
      const { host, ctr, remote } = await lab4(lab);
      await startPeer(ctr, 'echo_headers', 80);
      // remote may route to the containers directly: that flow is not published and stays dropped.
      remote.addRoute('10.0.0.0/24', '10.1.0.1');
      const before = await ruleset(host);

      await t.test('iptables -P FORWARD DROP (iptables-nft, IPv4 and IPv6): DNAT accepted, nothing else', async () => {
        for (const tool of ['iptables', 'ip6tables']) await host.run(tool, ['-P', 'FORWARD', 'DROP']);
        const forwardBefore = await iptablesS(host, 'iptables', 'FORWARD');
        assert.equal(await httpCode(remote, 'http://10.0.0.2/'), '000', 'policy DROP in force');
        const pub = publish(host, ['8080:10.0.0.2:80', '8086:[fd00::2]:80']);
        await pub.waitForOutput(READY);
        assert.match(await iptablesS(host, 'iptables', 'FORWARD'), /^-A FORWARD -j TPX_PUBLISH$/m);
        assert.match(
          await iptablesS(host, 'iptables', 'TPX_PUBLISH'),
          /--ctorigdstport 8080 --ctreplsrcport 80 .*tpx-publish tcp \*:8080 10\.0\.0\.2:80 pid=\d+.* -j ACCEPT/,
        );
        assert.equal(
          (await httpClient(remote, 'http://10.1.0.1:8080/')).client.address,
          '10.1.0.2',
          'NATed through the DROP, client address kept',
        );
        assert.equal((await httpClient(remote, 'http://[fd01::1]:8086/')).client.address, 'fd01::2');
        assert.doesNotMatch(pub.output(), /conn .*src=10\.1\.0\.2/, 'not the userland proxy');
        assert.equal(
          await httpCode(remote, 'http://10.0.0.2/'),
          '000',
          'exactly what is published: the direct route stays dropped',
        );
        assert.equal(await pub.stop('SIGTERM'), 0);
        assert.equal(await iptablesS(host, 'iptables', 'FORWARD'), forwardBefore, 'jump removed');
        assert.equal(await iptablesS(host, 'iptables', 'TPX_PUBLISH'), '', 'chain removed');
        assert.equal(await iptablesS(host, 'ip6tables', 'TPX_PUBLISH'), '');
        assert.equal(await httpCode(remote, 'http://10.1.0.1:8080/'), '000', 'gone with the publisher');
        // The test's own DROP goes with the tables iptables-nft made for it.
        for (const fam of ['ip', 'ip6']) await host.run('nft', ['delete', 'table', fam, 'filter']);
      });

      await t.test('iptables-legacy -P FORWARD DROP: the jump goes into the legacy FORWARD', async () => {
        await host.run('iptables-legacy', ['-P', 'FORWARD', 'DROP']);
        const pub = publish(host, ['8080:10.0.0.2:80']);
        await pub.waitForOutput(READY);
        assert.match(await iptablesS(host, 'iptables-legacy', 'FORWARD'), /^-A FORWARD -j TPX_PUBLISH$/m);
        assert.equal((await httpClient(remote, 'http://10.1.0.1:8080/')).client.address, '10.1.0.2');
        assert.equal(await pub.stop('SIGTERM'), 0);
        assert.doesNotMatch(await iptablesS(host, 'iptables-legacy', 'FORWARD'), /TPX_PUBLISH/);
        await host.run('iptables-legacy', ['-P', 'FORWARD', 'ACCEPT']);
      });

      await t.test(
        'nft chain with policy drop: no accept of ours can pass it; remote clients relayed, the fix named',
        async () => {
          await host.run('nft', ['-f', '-'], {
            input:
              'table inet userfw {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n',
          });
          let pub = publish(host, ['8080:10.0.0.2:80']);
          await pub.waitForOutput(READY);
          assert.match(
            pub.output(),
            /nft chain inet userfw forward \(policy drop\) drops forwarded traffic.*nft insert rule inet userfw forward ct status dnat accept/,
          );
          assert.equal(
            (await httpClient(remote, 'http://10.1.0.1:8080/')).client.address,
            '10.0.0.1',
            'works, through the userland proxy',
          );
          await pub.waitForOutput(/conn .*src=10\.1\.0\.2:\d+ via=10\.1\.0\.1:8080/);
          assert.equal(await pub.stop('SIGTERM'), 0);
          // The operator lets DNATed flows through, as the warning says: NAT again.
          await host.run('nft', ['insert', 'rule', 'inet', 'userfw', 'forward', 'ct', 'status', 'dnat', 'accept']);
          pub = publish(host, ['8080:10.0.0.2:80']);
          await pub.waitForOutput(READY);
          assert.doesNotMatch(pub.output(), /drops forwarded traffic/);
          assert.equal((await httpClient(remote, 'http://10.1.0.1:8080/')).client.address, '10.1.0.2');
          assert.equal(await pub.stop('SIGTERM'), 0);
          await host.run('nft', ['delete', 'table', 'inet', 'userfw']);
        },
      );
      assert.equal(await ruleset(host), before);
    },
    { prefix: 'tpxpub' },
  );
});

test('publish: 200 ports from one process', async (t: TestContext) => {
  await withLab(
    async (lab) => {
      const { host, ctr, remote } = await lab4(lab);
      await startPeer(ctr, 'tcp_echo', 30000);
      await startPeer(ctr, 'tcp_echo', 30199);
      const before = await ruleset(host);
      // Baseline: the same process publishing one port.
      const one = publish(host, ['20000:10.0.0.2:30000']);
      await one.waitForOutput(READY);
      const oneRssKb = rss(one.pid);
      assert.equal(await one.stop('SIGTERM'), 0);

      const started = Date.now();
      const pub = publish(host, ['20000-20199:10.0.0.2:30000-30199']);
      await pub.waitForOutput(READY, 30_000);
      const startMs = Date.now() - started;
      await waitForPort(host, 20199);

      const ss = (await host.run('ss', ['-H', '-lntp'])).stdout.trim().split('\n');
      const ours = ss.filter((l) => l.includes(`pid=${pub.pid},`));
      assert.equal(ours.length, 400, 'every port on 0.0.0.0 and [::]');
      assert.equal(ss.length, 400, 'nobody else listens');
      const registry = (await ruleset(host)).match(/continue comment "tpx-publish tcp/g)?.length;
      assert.equal(registry, 200);

      assert.equal(await tcpEcho(remote, '10.1.0.1', 20000, 'first'), 'first');
      assert.equal(await tcpEcho(remote, '10.1.0.1', 20199, 'last'), 'last');
      assert.equal(await tcpEcho(host, '127.0.0.1', 20199, 'local last'), 'local last');

      const rssKb = rss(pub.pid);
      const fds = fdCount(pub.pid);
      t.diagnostic(
        `200 ports (400 listeners) in one process: RSS ${(rssKb / 1024).toFixed(1)} MiB (1 port: ${(oneRssKb / 1024).toFixed(1)} MiB), ` +
          `${fds} fds, ready after ${startMs} ms`,
      );
      assert.ok(rssKb > 0 && rssKb < 200 * 1024, `RSS ${rssKb} kB`);

      assert.equal(await pub.stop('SIGTERM'), 0);
      assert.equal(await ruleset(host), before);
    },
    { prefix: 'tpxpub' },
  );
});

test('publish: usage errors exit 2 and change nothing; golden scripts are valid nft', async () => {
  await withLab(
    async (lab) => {
      const host = lab.addHost('host');
      const before = await ruleset(host);
      for (const [args, re] of [
        [['8080:fd00::2:80'], /put IPv6 addresses in brackets/],
        [['8000-8010:10.0.0.2:80-81'], /differ in length/],
        [[], /nothing to publish/],
        [['--firewall', 'none', '--userland-proxy=false', '80:10.0.0.2:80'], /cannot be combined with --firewall none/],
        [['--list', '80:10.0.0.2:80'], /--list takes no mappings/],
        [['--userland-proxy=maybe', '80:10.0.0.2:80'], /'maybe' is not true or false/],
      ] as [string[], RegExp][]) {
        const r = await cli(host, args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, re);
      }
      assert.equal(await ruleset(host), before);
      // Every golden script applies cleanly in check mode (no change).
      const golden = fileURLToPath(new URL('../golden/', import.meta.url));
      for (const name of ['publish-default.nft', 'publish-no-userland-proxy.nft', 'publish-forwarding-off.nft']) {
        const r = await host.run('nft', ['-c', '-f', golden + name], { allowFailure: true });
        assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      }
      assert.equal(await ruleset(host), before);
    },
    { prefix: 'tpxpub' },
  );
});

test('publish --firewall none: userland proxy only, no table at all', async () => {
  await withLab(
    async (lab) => {
      const { host, ctr, remote } = await lab4(lab);
      await startPeer(ctr, 'echo_headers', 80);
      const before = await ruleset(host);
      const pub = publish(host, ['--firewall', 'none', '8080:10.0.0.2:80']);
      await pub.waitForOutput(READY);
      assert.equal(await ruleset(host), before);
      assert.equal(
        (await httpClient(remote, 'http://10.1.0.1:8080/')).client.address,
        '10.0.0.1',
        'relayed: the target sees the host',
      );
      assert.equal((await httpClient(host, 'http://127.0.0.1:8080/')).client.address, '10.0.0.1');
      await pub.waitForOutput(
        /conn id=\d+ proto=tcp src=10\.1\.0\.2:\d+ via=10\.1\.0\.1:8080 dst=10\.0\.0\.2:80 .*close=eof/,
      );
      assert.equal(await pub.stop('SIGTERM'), 0);
    },
    { prefix: 'tpxpub' },
  );
});
