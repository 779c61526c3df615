// Firewall engine against a real kernel, as root, only inside throw-away network namespaces
// named tpxfw-<pid>-<random>: the host's own netfilter and routes are never touched.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ToolFailedError, UsageError } from '../../src/errors.js';
import { applyPlan, removeRules, showRules, type Backend } from '../../src/firewall/apply.js';
import type { CapturePlan } from '../../src/firewall/plan.js';
import { runSync } from '../../src/kernel/exec.js';
import { BASE, PLANS } from '../golden/plans.js';

const BACKENDS: Backend[] = ['nft', 'iptables'];
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : false;

// ---- namespaces and peers ----

interface Lab {
  ns: string[];
  procs: ChildProcess[];
}

async function withNetns(count: number, fn: (ns: string[], lab: Lab) => Promise<void> | void): Promise<void> {
  const lab: Lab = { ns: [], procs: [] };
  try {
    for (let i = 0; i < count; i++) {
      const name = `tpxfw-${process.pid}-${randomBytes(3).toString('hex')}`;
      runSync('ip', ['netns', 'add', name]);
      lab.ns.push(name);
      runSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    }
    await fn(lab.ns, lab);
  } finally {
    for (const p of lab.procs) p.kill('SIGKILL');
    for (const name of lab.ns) {
      runSync('ip', ['netns', 'del', name], { allowFailure: true });
      rmSync(`/run/tranproxy/forwarding-${name}.json`, { force: true }); // a subtest may end with rules left
    }
  }
}

/** veth between two namespaces: a gets .1 / ::1, b gets .2 / ::2 of 10.2N.0.0/24 and fd0N::/64. */
function link(a: string, b: string, n: number): void {
  runSync('ip', ['-n', a, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb', 'netns', b]);
  for (const [ns, dev, host] of [
    [a, 'va', 1],
    [b, 'vb', 2],
  ] as const) {
    runSync('ip', ['-n', ns, 'addr', 'add', `10.2${n}.0.${host}/24`, 'dev', dev]);
    runSync('ip', ['-n', ns, '-6', 'addr', 'add', `fd0${n}::${host}/64`, 'dev', dev, 'nodad']);
    runSync('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
}

// A TCP server that answers every connection with "TAG LOCAL_ADDR LOCAL_PORT" and closes.
// Transparent (IP_TRANSPARENT/IPV6_TRANSPARENT) for TPROXY: then LOCAL_* is the original destination.
const SERVER = `
import socket, sys
port, tag, transparent, bind = int(sys.argv[1]), sys.argv[2], sys.argv[3] == '1', sys.argv[4]
fam = socket.AF_INET if '.' in bind else socket.AF_INET6
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
if transparent: s.setsockopt(socket.IPPROTO_IPV6, 75, 1) if fam == socket.AF_INET6 else s.setsockopt(socket.SOL_IP, 19, 1)
s.bind((bind, port)); s.listen(64)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    a = c.getsockname()
    c.sendall(('%s %s %s\\n' % (tag, a[0].replace('::ffff:', ''), a[1])).encode()); c.close()
`;

// UDP under TPROXY: the original destination arrives as IP_ORIGDSTADDR (IP_RECVORIGDSTADDR = 20).
const UDP_SERVER = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)
s.setsockopt(socket.SOL_IP, 20, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('listening', flush=True)
while True:
    data, anc, _, peer = s.recvmsg(200, 256)
    dst = [socket.inet_ntoa(raw[4:8]) + ' ' + str(struct.unpack('!H', raw[2:4])[0]) for lvl, typ, raw in anc if typ == 20]
    s.sendto(('proxy-udp ' + ' '.join(dst)).encode(), peer)
`;

const CLIENT = `
import os, socket, sys
host, port, uid, timeout, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
if uid: os.setgid(uid); os.setuid(uid)
try:
    if proto == 'udp':
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b'hi', (host, port)); print(s.recvfrom(200)[0].decode())
    else:
        s = socket.create_connection((host, port), timeout=timeout)
        print(s.recv(200).decode().strip())
except Exception as e:
    print('ERR', type(e).__name__)
`;

async function server(
  lab: Lab,
  ns: string,
  port: number,
  tag: string,
  opts: { transparent?: boolean; bind?: string; udp?: boolean } = {},
) {
  const args = opts.udp
    ? [UDP_SERVER, String(port)]
    : [SERVER, String(port), tag, opts.transparent ? '1' : '0', opts.bind ?? '::'];
  const p = spawn('ip', ['netns', 'exec', ns, PY, '-c', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  lab.procs.push(p);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.stdout!.once('data', () => resolve());
    p.once('exit', (code) => reject(new Error(`server ${tag} in ${ns} exited ${code}: ${err}`)));
  });
}

/** Connect from `ns` and return the server's answer, or "ERR <reason>". */
function connect(
  ns: string,
  host: string,
  port: number,
  opts: { uid?: number; timeout?: number; udp?: boolean } = {},
): string {
  const args = [host, String(port), String(opts.uid ?? 0), String(opts.timeout ?? 3), opts.udp ? 'udp' : 'tcp'];
  return runSync('ip', ['netns', 'exec', ns, PY, '-c', CLIENT, ...args]).stdout.trim();
}

// ---- state dumps ----

function sh(ns: string, tool: string, args: string[]): string {
  return runSync(tool, args, { netns: ns }).stdout;
}

/** Everything a backend can change, counters and timestamps stripped. */
function dump(ns: string, backend: Backend): string {
  const fw =
    backend === 'nft'
      ? sh(ns, 'nft', ['list', 'ruleset'])
      : ['iptables-save', 'ip6tables-save'].map((t) => sh(ns, t, [])).join('');
  const routing = ['-4', '-6'].flatMap((f) => [
    sh(ns, 'ip', [f, 'rule', 'show']),
    sh(ns, 'ip', [f, 'route', 'show', 'table', 'all']),
  ]);
  return [fw, ...routing]
    .join('\n')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n')
    .replace(/\[\d+:\d+\]/g, '[0:0]');
}

/** Nothing of ours anywhere: no table, chain, jump, tagged rule or route. */
function assertClean(ns: string): void {
  assert.equal(showRules({ netns: ns }), '');
  for (const backend of BACKENDS) assert.doesNotMatch(dump(ns, backend), /tranproxy|TRANPROXY|proto 116/);
}

const BOTH = PLANS['tproxy-both']!;

// ---- tests ----

for (const backend of BACKENDS) {
  test(`${backend}: apply is idempotent, remove leaves nothing and can repeat`, { skip }, () =>
    withNetns(1, ([ns]) => {
      const t = { netns: ns! };
      const before = dump(ns!, backend);
      applyPlan(BOTH, backend, t);
      const first = dump(ns!, backend);
      assert.notEqual(first, before);
      if (backend === 'nft') assert.match(first, /table inet tranproxy \{[^]*tproxy ip6 to :15001/);
      else assert.match(first, /-A PREROUTING -j TRANPROXY_MANGLE_PRE\n[^]*-A OUTPUT -j TRANPROXY_MANGLE_OUT/);
      for (const f of ['-4', '-6']) {
        assert.match(sh(ns!, 'ip', [f, 'rule', 'show']), /fwmark 0x1 lookup 100 proto 116/);
        assert.match(sh(ns!, 'ip', [f, 'route', 'show', 'table', '100']), /^local default dev lo/m);
      }
      applyPlan(BOTH, backend, t);
      assert.equal(dump(ns!, backend), first, 're-apply changes nothing');
      if (backend === 'iptables') {
        assert.equal(
          sh(ns!, 'iptables-save', ['-t', 'mangle']).match(/-A PREROUTING -j TRANPROXY_MANGLE_PRE/g)?.length,
          1,
        );
      }
      assert.notEqual(showRules(t), '');
      removeRules(t);
      assertClean(ns!);
      removeRules(t);
      assertClean(ns!);
    }),
  );

  test(`${backend}: every golden plan loads into the kernel`, { skip }, () =>
    withNetns(1, ([ns]) => {
      for (const [name, plan] of Object.entries(PLANS)) {
        applyPlan(plan, backend, { netns: ns });
        const shown = showRules({ netns: ns });
        assert.match(shown, backend === 'nft' ? /table inet tranproxy/ : /TRANPROXY_/, name);
        assert.equal(/proto 116/.test(shown), plan.mode === 'tproxy', `${name}: routing only for TPROXY`);
      }
      removeRules({ netns: ns });
      assertClean(ns!);
    }),
  );

  test(`${backend}: apply after a crashed run (any backend, other plan) leaves only the new plan`, { skip }, () =>
    withNetns(2, ([crashed, fresh]) => {
      const other: Backend = backend === 'nft' ? 'iptables' : 'nft';
      const plan = PLANS['redirect-output-dualstack']!;
      applyPlan(BOTH, other, { netns: crashed });
      applyPlan(PLANS['tproxy-output']!, backend, { netns: crashed });
      applyPlan(plan, backend, { netns: crashed });
      applyPlan(plan, backend, { netns: fresh });
      assert.equal(showRules({ netns: crashed }), showRules({ netns: fresh }));
      const d = dump(crashed!, backend) + dump(crashed!, other);
      assert.doesNotMatch(d, /mangle_|MANGLE|proto 116/, 'nothing of the earlier TPROXY plans survives');
    }),
  );

  test(`${backend}: a failing apply removes everything it applied`, { skip }, () =>
    withNetns(1, ([ns]) => {
      const t = { netns: ns };
      assert.throws(
        () => applyPlan({ ...BOTH, inInterfaces: ['eth0" } accept; flush ruleset; {'] }, backend, t),
        UsageError,
      );
      assertClean(ns!);
      // A backend that fails half-way: routes (and for iptables the IPv4 rules) are in already.
      const [tool, marker] =
        backend === 'nft' ? ['nft', 'table inet tranproxy {'] : ['ip6tables-restore', '-A TRANPROXY_'];
      const real = runSync('sh', ['-c', `command -v ${tool}`]).stdout.trim();
      const dir = mkdtempSync(join(tmpdir(), 'tpxfw-'));
      writeFileSync(
        join(dir, tool),
        `${[
          '#!/bin/sh',
          'tmp=$(mktemp); cat > "$tmp"',
          `if grep -qF -e '${marker}' "$tmp"; then rm -f "$tmp"; echo 'injected failure' >&2; exit 1; fi`,
          `${real} "$@" < "$tmp"; rc=$?; rm -f "$tmp"; exit $rc`,
        ].join('\n')}\n`,
      );
      chmodSync(join(dir, tool), 0o755);
      const path = process.env.PATH;
      process.env.PATH = `${dir}:${path}`;
      try {
        applyPlan(PLANS['redirect-output']!, 'nft' === backend ? 'iptables' : 'nft', t); // an earlier good state
        assert.throws(
          () => applyPlan(BOTH, backend, t),
          (e: unknown) => e instanceof ToolFailedError && /injected failure/.test(e.message),
        );
      } finally {
        process.env.PATH = path;
        rmSync(dir, { recursive: true, force: true });
      }
      assertClean(ns!);
    }),
  );

  test(`${backend}: REDIRECT output captures the host's TCP except loopback, excluded ports and uids`, { skip }, () =>
    withNetns(2, async ([host, peer], lab) => {
      link(host!, peer!, 1);
      await server(lab, peer!, 8080, 'origin');
      await server(lab, peer!, 8081, 'origin');
      await server(lab, host!, 8080, 'local', { bind: '127.0.0.1' });
      await server(lab, host!, 15001, 'proxy');
      assert.match(connect(host!, '10.21.0.2', 8080), /^origin /, 'reachable before capture');
      const plan: CapturePlan = {
        ...BASE,
        families: ['ipv4', 'ipv6'],
        includePorts: [{ from: 8080, to: 8081 }],
        excludePorts: [{ from: 8081, to: 8081 }],
        excludeUids: [1337],
      };
      applyPlan(plan, backend, { netns: host });
      assert.match(connect(host!, '10.21.0.2', 8080), /^proxy /);
      assert.match(connect(host!, 'fd01::2', 8080), /^proxy /);
      assert.match(connect(host!, '10.21.0.2', 8081), /^origin /, 'excluded port');
      assert.match(connect(host!, '10.21.0.2', 8080, { uid: 1337 }), /^origin /, 'excluded uid');
      assert.match(connect(host!, '127.0.0.1', 8080), /^local /, 'loopback');
      removeRules({ netns: host });
      assert.match(connect(host!, 'fd01::2', 8080), /^origin /);
    }),
  );

  test(`${backend}: TPROXY prerouting hands a routed client's TCP and UDP to transparent listeners`, { skip }, () =>
    withNetns(2, async ([gw, client], lab) => {
      link(gw!, client!, 2);
      runSync('ip', ['-n', client!, 'route', 'add', 'default', 'via', '10.22.0.1']);
      runSync('ip', ['-n', client!, '-6', 'route', 'add', 'default', 'via', 'fd02::1']);
      await server(lab, gw!, 15001, 'proxy', { transparent: true });
      await server(lab, gw!, 15001, 'proxy-udp', { udp: true });
      const plan: CapturePlan = {
        ...BASE,
        mode: 'tproxy',
        capture: ['prerouting'],
        families: ['ipv4', 'ipv6'],
        protocols: ['tcp', 'udp'],
        inInterfaces: ['va'],
        excludeDestinations: [{ family: 'ipv4', text: '198.51.100.99/32' }],
      };
      applyPlan(plan, backend, { netns: gw });
      assert.equal(connect(client!, '198.51.100.7', 8080), 'proxy 198.51.100.7 8080');
      assert.equal(connect(client!, '2001:db8::7', 443), 'proxy 2001:db8::7 443');
      assert.equal(connect(client!, '198.51.100.8', 5353, { udp: true }), 'proxy-udp 198.51.100.8 5353');
      assert.match(connect(client!, '198.51.100.99', 8080, { timeout: 1 }), /^ERR/, 'excluded destination');
      removeRules({ netns: gw });
      assert.match(connect(client!, '198.51.100.7', 8080, { timeout: 1 }), /^ERR/);
    }),
  );

  test(`${backend}: TPROXY output reroutes the host's own TCP through lo to the listener`, { skip }, () =>
    withNetns(2, async ([host, peer], lab) => {
      link(host!, peer!, 3);
      runSync('ip', ['-n', peer!, 'addr', 'add', '198.51.100.7/32', 'dev', 'lo']);
      runSync('ip', ['-n', peer!, '-6', 'addr', 'add', '2001:db8::7/128', 'dev', 'lo']);
      runSync('ip', ['-n', host!, 'route', 'add', '198.51.100.0/24', 'via', '10.23.0.2']);
      runSync('ip', ['-n', host!, '-6', 'route', 'add', '2001:db8::/64', 'via', 'fd03::2']);
      await server(lab, peer!, 8080, 'origin');
      await server(lab, host!, 15001, 'proxy', { transparent: true });
      assert.match(connect(host!, '198.51.100.7', 8080), /^origin /);
      const plan: CapturePlan = {
        ...BASE,
        mode: 'tproxy',
        families: ['ipv4', 'ipv6'],
        includePorts: [{ from: 8080, to: 8080 }],
        excludeUids: [1337],
      };
      applyPlan(plan, backend, { netns: host });
      assert.equal(connect(host!, '198.51.100.7', 8080), 'proxy 198.51.100.7 8080');
      assert.equal(connect(host!, '2001:db8::7', 8080), 'proxy 2001:db8::7 8080');
      assert.match(connect(host!, '198.51.100.7', 8080, { uid: 1337 }), /^origin /, 'excluded uid');
      removeRules({ netns: host });
      assert.match(connect(host!, '2001:db8::7', 8080), /^origin /);
    }),
  );
}

for (const backend of BACKENDS) {
  test(
    `${backend}: TPROXY as the seeds write it: lo down at start, 0x1/0x1 marks, a fixed rule preference`,
    { skip },
    () =>
      withNetns(2, async ([host, peer], lab) => {
        link(host!, peer!, 4);
        runSync('ip', ['-n', peer!, 'addr', 'add', '198.51.100.7/32', 'dev', 'lo']);
        runSync('ip', ['-n', host!, 'route', 'add', '198.51.100.0/24', 'via', '10.24.0.2']);
        runSync('ip', ['-n', host!, 'link', 'set', 'lo', 'down']);
        const plan: CapturePlan = {
          ...PLANS['tproxy-masked']!,
          capture: ['output'],
          families: ['ipv4', 'ipv6'],
          includePorts: [{ from: 8080, to: 8080 }],
        };
        applyPlan(plan, backend, { netns: host });
        assert.match(sh(host!, 'ip', ['link', 'show', 'lo']), /<LOOPBACK,UP,LOWER_UP>/, 'lo brought up');
        applyPlan(plan, backend, { netns: host });
        for (const f of ['-4', '-6']) {
          const rules = sh(host!, 'ip', [f, 'rule', 'show'])
            .split('\n')
            .filter((l) => l.includes('proto 116'));
          assert.deepEqual(
            rules,
            ['90:\tfrom all fwmark 0x1/0x1 lookup 100 proto 116'],
            `${f}: one rule, re-apply kept it`,
          );
        }
        await server(lab, peer!, 8080, 'origin');
        await server(lab, host!, 15001, 'proxy', { transparent: true });
        assert.equal(connect(host!, '198.51.100.7', 8080), 'proxy 198.51.100.7 8080', 'captured with the masked mark');
        removeRules({ netns: host });
        assert.match(connect(host!, '198.51.100.7', 8080), /^origin /);
      }),
  );
}
