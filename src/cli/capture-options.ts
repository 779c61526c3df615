// Flags shared by `run` and `rules`: what to capture and how.
import { Option, type Command } from 'commander';
import { DEFAULTS } from '../config/run-config.js';

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function addCaptureOptions(cmd: Command): Command {
  return (
    cmd
      .addOption(
        new Option('--mode <mode>', 'how connections are handed over')
          .choices(['redirect', 'tproxy'])
          .default('redirect'),
      )
      .option(
        '--capture <point>',
        "where to capture: 'output' (this host's or pod's own traffic), 'prerouting' (traffic routed through it), 'inbound' (connections to this host's own ports, as Istio's inbound; -H applies to them too); repeatable",
        collect,
      )
      .option(
        '--inbound-port <port>',
        'inbound: capture only connections to these local ports (8080, 9000-9100); repeatable; default: all',
        collect,
      )
      .option(
        '--exclude-inbound-port <port>',
        "inbound: never capture these local ports (tranproxy's own are always left alone); repeatable",
        collect,
      )
      .addOption(
        new Option('--family <family>', 'IP families to capture').choices(['dual', 'ipv4', 'ipv6']).default('dual'),
      )
      .option('--listen-port <port>', 'port the proxy listens on', String(DEFAULTS.listenPort))
      .option(
        '-P, --port <port>',
        'capture only these destination ports (80, 8000-8100); repeatable; default: all',
        collect,
      )
      .option('--exclude-port <port>', 'never capture these destination ports; repeatable', collect)
      .option('--include-cidr <cidr>', 'capture only these destinations; repeatable', collect)
      .option('--exclude-cidr <cidr>', 'never capture these destinations; repeatable', collect)
      .option('--source-cidr <cidr>', 'prerouting: capture only from these sources; repeatable', collect)
      .option('-i, --in-interface <name>', 'prerouting: capture only from these interfaces; repeatable', collect)
      .option('--udp', 'also capture UDP (TPROXY only)')
      .option(
        '--no-bypass-private',
        'prerouting: capture private and reserved destinations too (by default a gateway leaves 10/8, 192.168/16, fc00::/7, … alone)',
      )
      .option(
        '--proxy-user <uid:gid|none>',
        `the proxy runs as this user, whose traffic is never captured (default with --capture output: ${DEFAULTS.proxyUser})`,
      )
      .option('--exclude-uid <uid>', 'never capture traffic of this uid; repeatable', collect)
      .option('--exclude-gid <gid>', 'never capture traffic of this gid; repeatable', collect)
      .addOption(
        new Option('--firewall <backend>', 'firewall backend; none leaves the rules to you')
          .choices(['auto', 'nft', 'iptables', 'none'])
          .default('auto'),
      )
      // No commander default: an untyped bypass mark may move off a masked --tproxy-mark's bits.
      .option(
        '--bypass-mark <mark[/mask]>',
        `packets with this mark (in the mask bits) are never captured (the proxy sets it on its own sockets) (default: 0x${DEFAULTS.bypassMark.toString(16)})`,
      )
      .option(
        '--tproxy-mark <mark[/mask]>',
        'TPROXY: mark of diverted packets; with /mask only those bits are set and matched (e.g. 0x1/0x1)',
        `0x${DEFAULTS.tproxyMark.toString(16)}`,
      )
      .option(
        '--tproxy-table <n>',
        'TPROXY: route table that delivers marked packets locally',
        String(DEFAULTS.tproxyTable),
      )
      .option(
        '--tproxy-rule-pref <n>',
        "TPROXY: preference of the 'ip rule fwmark … lookup TABLE' (1-32765; default: the kernel's choice)",
      )
  );
}
