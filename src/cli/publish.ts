// `tranproxy publish`: flags → PublishConfig → publisher. Nothing else.
import { Command, Option } from 'commander';
import { parseChoice, parseDuration, parsePositiveInt } from '../config/values.js';
import { UsageError } from '../errors.js';
import { pidAlive } from '../kernel/exec.js';
import { createLogger } from '../observe/log.js';
import { formatListing } from '../publish/list.js';
import { parseMappings, SYNTAX } from '../publish/mapping.js';
import { dryRun, runPublisher, type PublishConfig } from '../publish/publisher.js';
import { listedMappings } from '../publish/render-nft.js';
import { readLiveTable, removePublish } from '../publish/system.js';

interface RawPublishOptions {
  userlandProxy: string;
  firewall: string;
  list?: boolean;
  removeAll?: boolean;
  dryRun?: boolean;
  connectTimeout: string;
  idleTimeout: string;
  udpIdleTimeout: string;
  maxConnections: string;
  maxUdpFlows: string;
  logFormat: string;
}

function parseBool(text: string, flag: string): boolean {
  const t = text.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes') return true;
  if (t === 'false' || t === '0' || t === 'no') return false;
  throw new UsageError(`${flag}: '${text}' is not true or false`);
}

export function parsePublishOptions(args: string[], opts: RawPublishOptions): PublishConfig {
  if (args.length === 0)
    throw new UsageError(
      `publish: nothing to publish: give at least one mapping ${SYNTAX}, e.g. tranproxy publish 8080:10.0.0.2:80`,
    );
  const cfg: PublishConfig = {
    mappings: parseMappings(args),
    userlandProxy: parseBool(opts.userlandProxy, '--userland-proxy'),
    firewall: parseChoice(opts.firewall, ['nft', 'none'] as const, '--firewall'),
    connectTimeoutMs: parseDuration(opts.connectTimeout, '--connect-timeout'),
    tcpIdleTimeoutMs: /^(0|none)$/.test(opts.idleTimeout.trim())
      ? 0
      : parseDuration(opts.idleTimeout, '--idle-timeout'),
    udpIdleTimeoutMs: parseDuration(opts.udpIdleTimeout, '--udp-idle-timeout'),
    maxConnections: parsePositiveInt(opts.maxConnections, '--max-connections', 9000),
    maxUdpFlowsPerPort: parsePositiveInt(opts.maxUdpFlows, '--max-udp-flows', 9000),
  };
  if (!cfg.userlandProxy && cfg.firewall === 'none') {
    throw new UsageError('--userland-proxy=false needs NAT rules: it cannot be combined with --firewall none');
  }
  return cfg;
}

export function publishCommand(): Command {
  return new Command('publish')
    .description(
      `publish host ports to other addresses, like docker run -p: ${SYNTAX} ...; ` +
        'ports may be equal-length ranges (8000-8010:10.0.0.2:80-90), IPv6 in brackets ([::1]:8080:[fd00::2]:80); ' +
        "remote clients are DNATed (the target sees their address), the host's own clients too, 127.0.0.1 goes through " +
        "tranproxy's userland proxy, which holds every host port while it runs; rules go on exit",
    )
    .argument('[mapping...]', SYNTAX)
    .option(
      '--userland-proxy <bool>',
      'true: tranproxy relays 127.0.0.1/::1 itself; false: NAT for 127.0.0.1 too (sets net.ipv4.conf.all.route_localnet=1 while running)',
      'true',
    )
    .addOption(
      new Option(
        '--firewall <backend>',
        "nft: NAT rules in table inet tranproxy_publish; none: userland proxy only (targets see this host's address)",
      )
        .choices(['nft', 'none'])
        .default('nft'),
    )
    .option('--list', 'show the published mappings (read back from the nft table) and exit')
    .option(
      '--remove-all',
      'remove every published-port rule (e.g. leftovers of a crashed run), restore route_localnet, and exit',
    )
    .option('--dry-run', 'print the nft transaction that would be applied and exit')
    .option('--connect-timeout <duration>', 'userland proxy: connect timeout to the target', '10s')
    .option(
      '--idle-timeout <duration>',
      'userland proxy: close TCP connections idle in both directions this long (0: never)',
      '0',
    )
    .option(
      '--udp-idle-timeout <duration>',
      'userland proxy: forget a UDP client after this long without packets',
      '90s',
    )
    .option('--max-connections <n>', 'userland proxy: TCP connections at once, all ports together', '8000')
    .option(
      '--max-udp-flows <n>',
      'userland proxy: UDP clients per port (the least recently active goes first)',
      '1024',
    )
    .addOption(new Option('--log-format <format>', 'log lines on stderr').choices(['text', 'json']).default('text'))
    .action(async (args: string[], opts: RawPublishOptions) => {
      const log = createLogger(opts.logFormat === 'json' ? 'json' : 'text');
      if (opts.list || opts.removeAll) {
        if (args.length) throw new UsageError(`--${opts.list ? 'list' : 'remove-all'} takes no mappings`);
        if (opts.list && opts.removeAll) throw new UsageError('--list and --remove-all exclude each other');
        if (opts.list) {
          process.stdout.write(formatListing(listedMappings(readLiveTable()), pidAlive));
          return;
        }
        const r = removePublish();
        const live = r.owners.filter((p) => p !== process.pid && pidAlive(p));
        if (live.length)
          log.warn(
            `removed the rules of running publishers too (pid ${live.join(', ')}): their NAT is gone, their userland proxies still run`,
          );
        log.info('published-port rules removed', {
          rules: r.removed,
          ...(r.restoredLocalnet !== undefined ? { restored_route_localnet: r.restoredLocalnet } : {}),
        });
        return;
      }
      const cfg = parsePublishOptions(args, opts);
      if (opts.dryRun) {
        process.stdout.write(
          cfg.firewall === 'none'
            ? '# --firewall none: no NAT rules; the userland proxy serves every mapping\n'
            : dryRun(cfg, process.pid),
        );
        return;
      }
      const status = await runPublisher(cfg, log);
      process.exit(status);
    });
}
