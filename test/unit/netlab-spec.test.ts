// Lab files (src/netlab/spec.ts): the examples parse into the expected model, derived names
// fit 15 characters and never collide, route syntax, NAT rendering, and broken files give
// exact FILE:LINE:COL: path: reason messages.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/file.js';
import { UsageError } from '../../src/errors.js';
import {
  loadLabFile,
  networkOf,
  parseCidrText,
  parseLabText,
  parseRoute,
  renderNat,
  rootIfName,
  shortIfName,
  type LabModel,
} from '../../src/netlab/spec.js';
import { mergeResources, type Resource } from '../../src/netlab/state.js';

function errors(text: string, opts = {}): string[] {
  try {
    parseLabText(text, 'lab.yaml', opts);
  } catch (e) {
    assert.ok(e instanceof ConfigError && e instanceof UsageError, String(e));
    assert.equal(e.exitCode, 2);
    return e.message.split('\n');
  }
  assert.fail('parsed without error');
}

const lab = (text: string, opts = {}): LabModel => parseLabText(text, 'lab.yaml', opts);

test('every example parses; root interface names carry the lab name and fit 15 characters', () => {
  const files = readdirSync('examples').filter((f) => f.endsWith('.yaml'));
  assert.deepEqual(files.sort(), [
    'calico-proxyarp.yaml',
    'docker-bridge.yaml',
    'macvlan-gateway.yaml',
    'publish.yaml',
  ]);
  for (const f of files) {
    const m = loadLabFile(`examples/${f}`);
    for (const i of m.interfaces) {
      assert.ok(i.name.length <= 15, `${f}: ${i.name}`);
      if (i.place === 'root') assert.ok(i.name.startsWith(`${m.name}-`), `${f}: ${i.name}`);
    }
    for (const h of m.hosts) assert.equal(h.netns, `${m.name}-${h.name}`);
    // --name renames everything
    const r = loadLabFile(`examples/${f}`, { name: 'zz' });
    assert.ok(r.hosts.every((h) => h.netns!.startsWith('zz-')));
    assert.ok(r.interfaces.filter((i) => i.place === 'root').every((i) => i.name.startsWith('zz-')));
    assert.equal(r.table, 'tpxlab_zz');
  }
});

test('docker-bridge example: bridge ports, the uplink, NAT rendered into the lab table', () => {
  const m = loadLabFile('examples/docker-bridge.yaml');
  const root = m.interfaces
    .filter((i) => i.place === 'root')
    .map((i) => [i.name, i.master ?? '', i.addresses.map((a) => a.text).join(',')]);
  assert.deepEqual(root, [
    ['dock-br0', '', '172.18.0.1/16'],
    ['dock-c1', 'dock-br0', ''],
    ['dock-c2', 'dock-br0', ''],
    ['dock-uplink', '', '203.0.113.1/24'],
  ]);
  assert.deepEqual(
    m.creates.map((c) => c.kind),
    ['bridge', 'veth', 'veth', 'veth'],
  );
  assert.deepEqual(m.root.sysctls, [{ key: 'net.ipv4.ip_forward', value: '1' }]);
  const c1 = m.hosts.find((h) => h.name === 'c1')!;
  assert.deepEqual(c1.routes[0]!.args, ['default', 'via', '172.18.0.1']);
  assert.deepEqual(c1.processes[0]!.argv, ['python3', '-m', 'http.server', '80', '--bind', '0.0.0.0']);
  assert.equal(c1.processes[0]!.waitPort, 80);
  assert.match(c1.processes[0]!.cwd, /examples$/);
  const nft = renderNat('dock', m.root.nat)!;
  assert.match(nft, /^table inet tpxlab_dock \{\n\tcomment "tranproxy lab dock [0-9a-f]{12}"\n/);
  assert.match(nft, /\t\tiifname "dock-uplink" tcp dport 8080 dnat ip to 172\.18\.0\.2:80\n/);
  assert.match(nft, /\t\tip saddr 172\.18\.0\.0\/16 oifname "dock-uplink" masquerade\n/);
  assert.equal(renderNat('dock', []), undefined);
});

test('calico example: sysctl keys and routes name the host interfaces, /32 pod addresses', () => {
  const m = loadLabFile('examples/calico-proxyarp.yaml');
  const node = m.hosts.find((h) => h.name === 'node')!;
  assert.ok(node.sysctls.some((s) => s.key === 'net.ipv4.conf.cali1.proxy_arp' && s.value === '1'));
  const pod = m.hosts.find((h) => h.name === 'pod1')!;
  assert.deepEqual(
    pod.routes.map((r) => r.args.join(' ')),
    [
      '169.254.1.1/32 dev eth0 scope link',
      'default via 169.254.1.1 dev eth0 onlink',
      'default via fe80::ecee:eeff:feee:eeee dev eth0',
    ],
  );
  assert.deepEqual(
    m.interfaces.filter((i) => i.place === 'root'),
    [],
  );
});

test('macvlan example: root sub-interface, parent translated, extra addresses on lo', () => {
  const m = loadLabFile('examples/macvlan-gateway.yaml');
  const mv = m.creates.filter((c) => c.kind === 'macvlan');
  assert.equal(mv.length, 4);
  for (const c of mv) {
    assert.ok(c.kind === 'macvlan');
    assert.deepEqual(c.parent, { place: 'root', name: 'mvgw-lan0' });
    assert.equal(c.mode, 'bridge');
  }
  assert.deepEqual(
    m.root.routes.map((r) => r.args.join(' ')),
    ['192.168.77.2/32 dev mvgw-mvhost', 'fd77::2/128 dev mvgw-mvhost'],
  );
  const router = m.hosts.find((h) => h.name === 'router')!;
  assert.deepEqual(
    router.extraAddresses.map((x) => [x.dev, x.addresses.map((a) => a.text)]),
    [['lo', ['198.51.100.10/32', '2001:db8:100::10/128']]],
  );
  const gw = m.hosts.find((h) => h.name === 'gw')!;
  assert.match(renderNat('mvgw', gw.nat)!, /ip6 saddr fd77::\/64 oifname "eth0" masquerade/);
});

test('generated names: ethN in hosts skip explicit ones; root ends and bridge ports after the host', () => {
  const m = lab(`
name: t
hosts: {a: , b: }
bridges: {br0: {}, br1: {host: b}}
links:
  - {a: {host: a}, b: {bridge: br0}}
  - {a: {host: a, ifname: eth1}, b: {host: root}}
  - {a: {host: a}, b: {bridge: br1}}
  - {a: {host: a}, b: {bridge: br0}}
`);
  const names = m.interfaces.map((i) => `${i.place}:${i.name}`);
  assert.deepEqual(names, [
    'root:t-br0',
    'b:br1',
    'a:eth0',
    'root:t-a-eth0',
    'a:eth1',
    'root:t-a-eth1',
    'a:eth2',
    'b:a',
    'a:eth3',
    'root:t-a-eth3',
  ]);
});

test('names: shortened with a hash past 15 characters, stable, distinct', () => {
  assert.equal(rootIfName('dock', 'uplink'), 'dock-uplink');
  const long1 = rootIfName('labname8', 'averylongname');
  const long2 = rootIfName('labname8', 'averylongname2');
  assert.equal(long1.length, 15);
  assert.ok(long1.startsWith('labname8-av'));
  assert.notEqual(long1, long2);
  assert.equal(long1, rootIfName('labname8', 'averylongname'));
  assert.equal(shortIfName('', 'short'), 'short');
  const m = lab('name: labname8\nhosts: {outside: }\nlinks: [{a: {host: root}, b: {host: outside}}]\n');
  assert.ok(m.interfaces[0]!.name.length <= 15 && m.interfaces[0]!.name.startsWith('labname8-'));
});

test('routes: the ip-route subset, normalized', () => {
  assert.deepEqual(parseRoute('default via 10.0.0.1'), { family: 4, dst: 'default', via: '10.0.0.1', onlink: false });
  assert.deepEqual(parseRoute('default via FD00:0::1'), { family: 6, dst: 'default', via: 'fd00::1', onlink: false });
  assert.deepEqual(parseRoute('169.254.1.1 dev eth0 scope link'), {
    family: 4,
    dst: '169.254.1.1/32',
    dev: 'eth0',
    scope: 'link',
    onlink: false,
  });
  assert.equal(parseRoute('10.1.0.0/16 via 10.0.0.1 dev eth0 metric 50 src 10.0.0.2').metric, 50);
  for (const [bad, why] of [
    ['', /empty route/],
    ['10.0.0.1/24 dev eth0', /host bits set: write 10\.0\.0\.0\/24/],
    ['default via fd00::1 src 10.0.0.1', /src 10\.0\.0\.1 is not IPv6/],
    ['10.0.0.0/8 via fd00::1', /gateway fd00::1 is IPv6, the destination is IPv4/],
    ['default', /needs "via GATEWAY" or "dev INTERFACE"/],
    ['default dev eth0 onlink', /onlink needs "via GATEWAY"/],
    ['default viaa 10.0.0.1', /unknown route word 'viaa'; did you mean 'via'\?/],
    ['default via 10.0.0.1 via 10.0.0.2', /'via' given twice/],
    ['default via', /'via' needs a value/],
    ['nowhere dev eth0', /not a route destination/],
  ] as const) {
    assert.throws(() => parseRoute(bad), why, bad);
  }
});

test('addresses: host addresses without a length, IPv6 normalized, networks', () => {
  assert.deepEqual(parseCidrText('10.0.0.2'), { family: 4, addr: '10.0.0.2', len: 32, text: '10.0.0.2/32' });
  assert.equal(parseCidrText('FD00:0:0::2/64').text, 'fd00::2/64');
  assert.equal(networkOf(parseCidrText('172.18.5.6/16')), '172.18.0.0');
  assert.equal(networkOf(parseCidrText('fd00:1:2:3::9/48')), 'fd00:1:2::');
  assert.throws(() => parseCidrText('10.0.0.1/33'), /prefix length 33/);
  assert.throws(() => parseCidrText('10.0.0/8'), /not an address/);
});

test('errors: unknown references, bad values, too-long and duplicate names, each with its line', () => {
  const text = `name: dock
hosts:
  c1:
    routes:
      - default via 10.0.0.300
      - 10.0.0.5/24 dev eth0
      - default via fd00::1 dev eth9
    sysctls:
      net.ipv4.conf.eth7.forwarding: 1
  c2:
  thisnameiswaytoolong: {}
bridges:
  br0:
    addresses: [172.18.0.1/33]
links:
  - a: {host: c3, addresses: [10.0.0.2/24]}
    b: {bridge: br0}
  - a: {host: c1, ifname: averyveryverylongname}
    b: {bridge: br0}
  - a: {host: c1, ifname: eth0}
    b: {host: c2, ifname: eth0}
  - a: {host: c1, ifname: eth0}
    b: {host: c2}
  - a: {host: c2, ifname: lo}
    b: {bridge: br9}
root:
  nat:
    - {type: dnat, port: 80}
    - {type: masquerade}
    - {type: snat, out: uplink, to: "fd00::1", source: 10.0.0.0/8}
    - {type: dnat, port: 70000, to: 10.0.0.1}
    - {type: masquerade, out: x, port: 80}
`;
  assert.deepEqual(errors(text), [
    "lab.yaml:5:9: hosts.c1.routes[0]: via '10.0.0.300' is not an IP address",
    'lab.yaml:6:9: hosts.c1.routes[1]: destination 10.0.0.5/24 has host bits set: write 10.0.0.0/24',
    "lab.yaml:7:9: hosts.c1.routes[2]: unknown interface 'eth9' in host 'c1'; did you mean 'eth0'? (interfaces: lo, eth0)",
    `lab.yaml:9:7: hosts.c1.sysctls["net.ipv4.conf.eth7.forwarding"]: unknown interface 'eth7' in host 'c1'; did you mean 'eth0'? (interfaces: lo, eth0)`,
    "lab.yaml:11:3: hosts.thisnameiswaytoolong: host name 'thisnameiswaytoolong' is too long (20 characters, at most 15)",
    "lab.yaml:14:17: bridges.br0.addresses[0]: '172.18.0.1/33': prefix length 33 is more than 32",
    "lab.yaml:16:15: links[0].a.host: unknown host 'c3'; did you mean 'c1'? (hosts: c1, c2, thisnameiswaytoolong; 'root' is the namespace lab up runs in)",
    "lab.yaml:18:27: links[1].a.ifname: interface name 'averyveryverylongname' is too long (21 characters, at most 15)",
    "lab.yaml:22:27: links[3].a.ifname: duplicate interface name 'eth0' in host 'c1' (first at links[2].a.ifname)",
    "lab.yaml:25:17: links[4].b.bridge: unknown bridge 'br9'; did you mean 'br0'? (bridges: br0)",
    'lab.yaml:28:7: root.nat[0].to: required: where to send it, e.g. 172.18.0.2:80',
    'lab.yaml:29:7: root.nat[1]: masquerade needs source: (a CIDR) or out: (an interface), or both',
    'lab.yaml:30:37: root.nat[2].to: fd00::1 is IPv6, source 10.0.0.0/8 is IPv4',
    "lab.yaml:31:26: root.nat[3].port: '70000' is not a port or range (1–65535, e.g. 8080 or 8000-8010)",
    "lab.yaml:32:34: root.nat[4].port: 'port' does not apply to masquerade (keys: type, source, out)",
  ]);
});

test('errors: lab name, duplicate YAML keys, shapes and unknown keys with suggestions', () => {
  assert.deepEqual(errors('name: averylongname\n'), [
    "lab.yaml:1:7: name: lab name 'averylongname' is too long (13 characters, at most 8): it prefixes interface names, which have at most 15",
  ]);
  assert.deepEqual(errors('name: Dock-1\n'), [
    "lab.yaml:1:7: name: lab name 'Dock-1' must be a lower-case letter followed by letters and digits",
  ]);
  assert.match(errors('name: ok\n', { name: 'bad-name' })[0]!, /\(given with --name\)/);
  assert.deepEqual(errors('name: d\nhosts:\n  c1: {}\n  c1: {}\n'), ['lab.yaml:4:3: YAML: Map keys must be unique']);
  assert.deepEqual(errors('hosts: [a]\nlinkz: []\n'), [
    'lab.yaml:1:1: name: required',
    'lab.yaml:1:8: hosts: expected a mapping, got a list',
    "lab.yaml:2:1: unknown key 'linkz'; did you mean 'links'?",
  ]);
  assert.deepEqual(errors('name: d\nhosts:\n  a:\n    procesess: []\n'), [
    "lab.yaml:4:5: hosts.a: unknown key 'procesess'; did you mean 'processes'?",
  ]);
  assert.deepEqual(errors('name: d\nhosts: {root: {}, a-b: {}}\n'), [
    "lab.yaml:2:9: hosts.root: 'root' names the namespace lab up runs in: choose another host name",
    "lab.yaml:2:19: hosts.a-b: host name 'a-b' must be a lower-case letter followed by lower-case letters, digits or '_'",
  ]);
  assert.deepEqual(
    errors(
      'name: d\nhosts: {a: }\nlinks:\n  - a: {host: a}\n    b: {host: a}\n  - a: {host: a, bridge: x}\n    b: {host: root}\n',
    ),
    [
      "lab.yaml:5:15: links[0].b.host: both ends are in host 'a': a link joins two namespaces",
      'lab.yaml:6:8: links[1].a: an end is either on a host or on a bridge, not both',
    ],
  );
  assert.deepEqual(errors('name: d\nhosts: {a: }\nmacvlan:\n  - {host: a, parent: eth5, mode: bridged}\n'), [
    "lab.yaml:4:35: macvlan[0].mode: 'bridged' is not one of bridge, private, vepa, passthru",
  ]);
  assert.deepEqual(errors('name: d\nhosts: {a: }\nmacvlan:\n  - {host: a, parent: eth5, parent-host: a}\n'), [
    "lab.yaml:4:23: macvlan[0].parent: unknown interface 'eth5' in host 'a'; did you mean 'eth0'? (interfaces: lo, eth0)",
  ]);
  assert.deepEqual(
    errors(
      'name: d\nhosts: {a: }\nlinks: [{a: {host: a, addresses: [10.0.0.1/24]}, b: {host: root, addresses: 10.0.0.2/24}}]\nroot:\n  routes: [10.0.0.0/24 dev eth0, 10.0.0.0/24 dev eth1]\n',
    ),
    ['lab.yaml:5:34: root.routes[1]: a second route to 10.0.0.0/24: the kernel keeps one per destination and metric'],
  );
});

test('processes: command as a list, env, relative cwd from the file, wait-port', () => {
  const m = parseLabText(
    'name: d\nhosts:\n  a:\n    processes:\n      - {command: [sh, -c], args: ["sleep 9"], env: {A: 1}, cwd: sub, wait-port: 9}\n',
    '/x/y/lab.yaml',
  );
  assert.deepEqual(m.hosts[0]!.processes[0], {
    argv: ['sh', '-c', 'sleep 9'],
    env: { A: '1' },
    cwd: '/x/y/sub',
    waitPort: 9,
  });
});

test('state: a newer record replaces an older one; a sysctl keeps its first old value', () => {
  const a: Resource = { kind: 'sysctl', netns: null, key: 'net.ipv4.ip_forward', old: '0' };
  const b: Resource = { kind: 'sysctl', netns: null, key: 'net.ipv4.ip_forward', old: '1' };
  const p1: Resource = { kind: 'process', netns: 'd-a', host: 'a', pid: 1, start: '5', argv: ['x'], log: '/l' };
  const p2: Resource = { ...p1, pid: 2 };
  assert.deepEqual(mergeResources([a, p1], [b, p2]), [a, p2]);
});

test('negated interfaces in NAT and forward rules (! -i / ! -o), the forward chain rendered in the lab table', () => {
  const m = lab(`
name: neg
root:
  nat:
    - {type: masquerade, source: 172.18.0.0/16, out: "!br0"}
    - {type: dnat, in: "! br0", port: 8080, to: "172.18.0.2:80"}
  forward:
    policy: drop
    accept:
      - {in: br0, out: "!br0"}
      - {out: br0, destination: 172.18.0.2/32, port: 80}
      - {in: eth9, protocol: udp}
bridges:
  br0: {addresses: [172.18.0.1/16]}
`);
  assert.deepEqual(m.root.nat[0], {
    type: 'masquerade',
    source: m.root.nat[0]!.type === 'masquerade' ? m.root.nat[0]!.source : undefined,
    out: 'neg-br0',
    outNot: true,
  });
  const nft = renderNat('neg', m.root.nat, m.root.forward)!;
  assert.match(nft, /\t\tip saddr 172\.18\.0\.0\/16 oifname != "neg-br0" masquerade\n/);
  assert.match(nft, /\t\tiifname != "neg-br0" tcp dport 8080 dnat ip to 172\.18\.0\.2:80\n/);
  assert.match(
    nft,
    /\tchain forward \{\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,related accept\n/,
  );
  assert.match(nft, /\t\tiifname "neg-br0" oifname != "neg-br0" accept\n/);
  assert.match(nft, /\t\toifname "neg-br0" ip daddr 172\.18\.0\.2\/32 tcp dport 80 accept\n/);
  assert.match(nft, /\t\tiifname "eth9" meta l4proto udp accept\n/, 'an undeclared root interface is an existing one');
  // A forward declaration alone makes a table.
  assert.match(renderNat('neg', [], { policy: 'accept', accept: [] })!, /policy accept;/);
  assert.deepEqual(
    errors(`
name: neg
root:
  forward: {policy: reject, accept: [{in: br0, dport: 80}]}
`).map((l) => l.replace(/^lab\.yaml:\d+:\d+: /, '')),
    [
      "root.forward.policy: 'reject' is not one of accept, drop",
      "root.forward.accept[0]: unknown key 'dport'; did you mean 'port'?",
    ],
  );
});

test("link settings: mac (unicast, normalised), mtu (the link's for both ends, an end's own wins), promisc", () => {
  const m = lab(`
name: ls
hosts:
  a:
  b:
links:
  - a: {host: a, mac: "EE:EE:EE:EE:EE:EE", promisc: true}
    b: {host: b, mtu: 9000}
    mtu: 1400
bridges:
  br0: {mac: "02:00:00:00:00:01", mtu: 1450}
`);
  const byName = new Map(m.interfaces.map((i) => [`${i.place}/${i.name}`, i.settings]));
  assert.deepEqual(byName.get('a/eth0'), { mac: 'ee:ee:ee:ee:ee:ee', mtu: 1400, promisc: true });
  assert.deepEqual(byName.get('b/eth0'), { mtu: 9000 });
  assert.deepEqual(byName.get('root/ls-br0'), { mac: '02:00:00:00:00:01', mtu: 1450 });
  const errs = errors(`
name: ls
hosts:
  a:
  b:
links:
  - {a: {host: a, mac: "01:00:5e:00:00:01"}, b: {host: b, mac: nope}}
`).join('\n');
  assert.match(errs, /links\[0\]\.a\.mac: 01:00:5e:00:00:01 is a multicast address/);
  assert.match(errs, /links\[0\]\.b\.mac: 'nope' is not a MAC address/);
  assert.match(
    errors('name: ls\nhosts: {a: , b: }\nlinks: [{a: {host: a, promisc: yes please}, b: {host: b}}]\n').join('\n'),
    /links\[0\]\.a\.promisc: expected (true or false|boolean)/,
  );
});

test('a lab file is read by the config loader: alias cycles and prototype keys refused with their line', () => {
  const cyclic = errors('name: x\nhosts: &h\n  a: *h\n');
  assert.ok(
    cyclic.some((l) => /lab\.yaml:3:.*alias refers to a node that contains it/.test(l)),
    cyclic.join('\n'),
  );
  const proto = errors('name: x\nhosts:\n  __proto__: {}\n');
  assert.ok(
    proto.some((l) => /lab\.yaml:3:.*'__proto__' cannot be a key/.test(l)),
    proto.join('\n'),
  );
});
