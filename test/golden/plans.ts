// Capture plans behind the golden files (test/unit/firewall-render.test.ts) and the plans the
// e2e test loads into a real kernel (test/e2e/firewall.test.ts).
import type { CapturePlan, Cidr } from '../../src/firewall/plan.js';

const v4 = (text: string): Cidr => ({ family: 'ipv4', text });
const v6 = (text: string): Cidr => ({ family: 'ipv6', text });

export const BASE: CapturePlan = {
  mode: 'redirect',
  capture: ['output'],
  families: ['ipv4'],
  protocols: ['tcp'],
  proxyPort: 15001,
  includePorts: [],
  excludePorts: [],
  includeDestinations: [],
  excludeDestinations: [],
  sourceCidrs: [],
  inInterfaces: [],
  excludeUids: [],
  excludeGids: [],
  bypassMark: 0x539,
  tproxyMark: 0x1,
  tproxyTable: 100,
};

export const PLANS: Record<string, CapturePlan> = {
  // The Kubernetes sidecar: the pod's own TCP, minus the proxy's uid/gid.
  'redirect-output': { ...BASE, excludeUids: [1337], excludeGids: [1337] },
  'redirect-output-dualstack': {
    ...BASE,
    families: ['ipv4', 'ipv6'],
    includePorts: [{ from: 80, to: 80 }, { from: 8000, to: 8080 }, { from: 443, to: 443 }],
    excludePorts: [{ from: 8022, to: 8022 }],
    excludeDestinations: [v4('169.254.169.254/32'), v6('fd00:ec2::254/128')],
    excludeUids: [1337, 0],
  },
  // Includes only IPv4: IPv6 must not be captured at all.
  'redirect-output-include-v4': {
    ...BASE,
    families: ['ipv4', 'ipv6'],
    includeDestinations: [v4('10.0.0.0/8'), v4('10.1.0.0/16'), v4('192.168.7.9/24')],
    excludeDestinations: [v4('10.96.0.0/12')],
  },
  'redirect-prerouting': {
    ...BASE,
    capture: ['prerouting'],
    inInterfaces: ['veth-lan', 'br0'],
    sourceCidrs: [v4('10.88.0.0/16')],
    excludePorts: [{ from: 22, to: 22 }],
  },
  'redirect-both-ipv6': {
    ...BASE,
    capture: ['output', 'prerouting'],
    families: ['ipv6'],
    includeDestinations: [v6('2001:db8::/32')],
    excludeGids: [2000],
  },
  'tproxy-prerouting': {
    ...BASE,
    mode: 'tproxy',
    capture: ['prerouting'],
    families: ['ipv4', 'ipv6'],
    protocols: ['tcp', 'udp'],
    inInterfaces: ['eth1'],
    excludeDestinations: [v4('10.0.0.0/8'), v6('fc00::/7')],
  },
  'tproxy-output': {
    ...BASE,
    mode: 'tproxy',
    excludeUids: [1337],
    excludePorts: [{ from: 53, to: 53 }],
    tproxyMark: 0x2a,
    tproxyTable: 4242,
  },
  'tproxy-both': {
    ...BASE,
    mode: 'tproxy',
    capture: ['output', 'prerouting'],
    families: ['ipv4', 'ipv6'],
    protocols: ['tcp', 'udp'],
    includePorts: [{ from: 80, to: 80 }, { from: 443, to: 443 }],
    excludeDestinations: [v4('192.168.0.0/16'), v6('fe80::/10')],
    sourceCidrs: [v4('10.10.0.0/16'), v6('fd10::/64')],
    inInterfaces: ['eth1', 'wg0'],
    excludeUids: [1337],
    excludeGids: [1337],
  },
  // The seeds' spelling: one bit of the mark each, and a fixed rule preference.
  'tproxy-masked': {
    ...BASE,
    mode: 'tproxy',
    capture: ['output', 'prerouting'],
    includePorts: [{ from: 80, to: 80 }],
    tproxyMark: 0x1,
    tproxyMask: 0x1,
    bypassMark: 0x80,
    bypassMask: 0x80,
    rulePref: 90,
  },
  // Istio-style inbound: connections to the pod's own ports, minus tranproxy's own.
  'redirect-inbound': {
    ...BASE,
    capture: ['inbound'],
    families: ['ipv4', 'ipv6'],
    inboundPorts: [{ from: 8080, to: 8080 }, { from: 9000, to: 9100 }],
    excludeInboundPorts: [{ from: 15000, to: 15001 }],
  },
  // The app sees the client's address: the proxy's connection to it keeps the TPROXY mark.
  'tproxy-inbound': {
    ...BASE,
    mode: 'tproxy',
    capture: ['inbound'],
    families: ['ipv4', 'ipv6'],
    excludeInboundPorts: [{ from: 22, to: 22 }, { from: 15000, to: 15001 }],
    inboundPreserveSource: true,
  },
  'tproxy-inbound-output': {
    ...BASE,
    mode: 'tproxy',
    capture: ['output', 'inbound'],
    includePorts: [{ from: 80, to: 80 }],
    inboundPorts: [{ from: 8080, to: 8080 }],
    excludeInboundPorts: [{ from: 15001, to: 15001 }],
    excludeUids: [1337],
    tproxyMark: 0x1,
    tproxyMask: 0x1,
    bypassMark: 0x2,
    inboundPreserveSource: true,
  },
  // More than 15 ports: iptables multiport needs several rules.
  'many-ports': {
    ...BASE,
    includePorts: Array.from({ length: 14 }, (_, i) => ({ from: 1000 + 10 * i, to: 1000 + 10 * i }))
      .concat([{ from: 2000, to: 2100 }, { from: 3000, to: 3000 }]),
  },
};
