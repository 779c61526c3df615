// `tranproxy run`: flags → RunConfig → Supervisor. Nothing else.
import { dirname } from 'node:path';
import { Command, Option } from 'commander';
import { parseRunOptions, type RawRunOptions } from '../config/run-config.js';
import { loadConfigFile, type ConfigFile } from '../config/file.js';
import { checkConfigFile } from '../config/file-permissions.js';
import { createLogger } from '../observe/log.js';
import { LogRing } from '../observe/log-ring.js';
import { Supervisor, type SupervisorOptions } from '../proxy/supervisor.js';
import { UsageError } from '../errors.js';
import { addCaptureOptions, collect } from './capture-options.js';
import { withFile } from './file-options.js';

export function runCommand(): Command {
  const cmd = new Command('run')
    .description(
      'run the transparent proxy (sidecar or gateway); with -- CMD, run CMD once ready and exit with its status',
    )
    .argument('[command...]', 'program to run, after --, once the proxy and rules are ready');
  addCaptureOptions(cmd)
    .option(
      '--preserve-source',
      "TPROXY: connect upstream from the client's own address (default in tproxy prerouting mode)",
    )
    .option('--no-preserve-source', "TPROXY: connect upstream from this host's address")
    .option('--connect-timeout <duration>', 'upstream connect timeout', '10s')
    .option('--idle-timeout <duration>', 'close connections idle in both directions this long', '10m')
    .option('--udp-idle-timeout <duration>', 'UDP: forget a flow after this long without datagrams', '60s')
    .option('--max-connections <n>', 'refuse connections beyond this many at once', '8000')
    .option('--log-format <format>', 'text or json', 'text')
    .option('--workers <n>', 'data-plane processes sharing the listeners (like nginx worker_processes)', '1')
    .option(
      '--admin [address:port]',
      'admin HTTP listener: /healthz /readyz /metrics /connections /groups, POST /quitquitquit (default 127.0.0.1:15000)',
    )
    .option(
      '--admin-token-file <file>',
      'admin API: /connections and POST /quitquitquit need Authorization: Bearer <the token in FILE>; probes and /metrics stay open',
    )
    .option(
      '--console [address:port]',
      'web console (needs --config and a password from `tranproxy console passwd`; default 127.0.0.1:8080)',
    )
    .option(
      '--listen-proxy <address:port>',
      'proxy mode: an HTTP proxy (CONNECT and http:// URLs) and SOCKS5 (CONNECT, UDP ASSOCIATE) on this address, routed by the same rules and nodes; repeatable. WARNING: without --proxy-auth, anyone who can reach this address can use the gateway as a proxy',
      collect,
    )
    .option(
      '--proxy-auth <user:pass>',
      'proxy mode: require this user and password (HTTP Basic, SOCKS5 username/password)',
    )
    .option('--proxy-auth-file <file>', 'proxy mode: like --proxy-auth, USER:PASS read from FILE (mode 600)')
    .option(
      '--drain-timeout <duration>',
      'on SIGTERM, how long in-flight connections may finish before the rules go',
      '5s',
    )
    .option(
      '-H, --header <name:value>',
      "HTTP: add this header to every request (replaces a same-named one; the value may contain ':'); repeatable",
      collect,
    )
    .option(
      '--Set-Forwarded-For [value]',
      'HTTP: add X-Forwarded-For (default or no value: $PODIP, else the primary interface address)',
    )
    .addOption(new Option('--set-forwarded-for [value]').hideHelp())
    .option('--Set-Client-Hostname [value]', 'HTTP: add X-Client-Hostname (default or no value: this host name)')
    .addOption(new Option('--set-client-hostname [value]').hideHelp())
    .addOption(
      new Option('--xff-mode <mode>', 'X-Forwarded-For: append to what the client sent, or replace it').choices([
        'append',
        'replace',
      ]),
    )
    .option('--max-head-size <bytes>', 'HTTP: largest request head accepted (larger gets 431)', '65536')
    .option(
      '--head-timeout <duration>',
      'HTTP: a request head must be complete this long after its first byte, else 408 (0: no limit)',
      '30s',
    )
    .option(
      '--allow-h2c',
      'HTTP: let cleartext HTTP/2 (prior knowledge or Upgrade: h2c) through unstamped instead of refusing it with 400',
    )
    .option(
      '--http-only',
      'HTTP: close connections that do not start like HTTP/1.x (e.g. TLS) instead of passing them through untouched',
    )
    .option(
      '-N, --nameserver <ip>',
      'resolver for every name tranproxy resolves itself (--dst-from-host, upstream node names, console checks); repeatable (default: /etc/resolv.conf, or the system resolver for node names)',
      collect,
    )
    .option('-c, --config <file>', 'YAML config file (nodes, rules, and any flag); flags given on the command line win')
    .option(
      '--upstream <uri>',
      'send every flow through this node: socks5://[user:pass@]host:port, http://…, ss://…, vmess://…, vless://…, trojan://…',
    )
    .option(
      '--sniff-timeout <duration>',
      "gateway: how long to wait for a client's first bytes to find its domain",
      '300ms',
    )
    .addOption(
      new Option(
        '--relay <engine>',
        'byte pump: splice(2) for flows nobody inspects, else JS (auto); js only; splice required',
      ).choices(['auto', 'js', 'splice']),
    )
    .option(
      '--dst-from-host',
      "HTTP: when the kernel has no original destination (no NAT), connect to the Host header's name instead",
    )
    .action(async (command: string[], opts: RawRunOptions & { config?: string }, self: Command) => {
      if (command.length > 0 && !process.argv.includes('--')) {
        throw new UsageError(
          `unexpected argument '${command[0]}': put the program to run after --, e.g. tranproxy run -P 80 -- curl http://example`,
        );
      }
      let file = opts.config ? loadConfigFile(opts.config) : undefined;
      // Refuses a file others could change; warns about secrets everybody can read.
      const permissionWarnings = file ? checkConfigFile(file) : [];
      let cfg = parseRunOptions(file ? withFile(file.run, opts, self) : opts, command, undefined, file);
      // The console's code loads only when it is asked for: a sidecar keeps none of it resident.
      const consoleModule = cfg.console ? await import('../console/index.js') : undefined;
      consoleModule?.checkConsoleConfig(cfg, opts.config, file);
      // The console's Logs page reads the last lines from memory (no log file needed).
      const logRing = cfg.console ? new LogRing() : undefined;
      const log = createLogger(cfg.logFormat, undefined, logRing);
      for (const w of permissionWarnings) log.warn(w);
      // SIGHUP re-reads the file (and the console applies its edits the same way); flags
      // typed on the command line still win.
      const build = (f: ConfigFile) => {
        file = f;
        return parseRunOptions(withFile(f.run, opts, self), command, undefined, f);
      };
      const reload = opts.config
        ? () => {
            const f = loadConfigFile(opts.config!);
            for (const w of checkConfigFile(f)) log.warn(w);
            return build(f);
          }
        : undefined;
      const ruleSets = opts.config ? { baseDir: dirname(opts.config), log } : undefined;
      // The fetcher loads only for a file that names rule sets (its HTTP client stays out of a sidecar).
      const updater = Object.keys(file?.ruleSets ?? {}).length ? await import('../ruleset/updater.js') : undefined;
      // Rule sets never fetched are fetched before the first generation; the others start from their copy.
      if (file && ruleSets && updater && (await updater.fetchMissingRuleSets(file.ruleSets, ruleSets))) cfg = reload!();
      const services = combineServices(
        cfg.console && opts.config ? consoleModule?.consoleService(cfg.console, opts.config, build, log) : undefined,
        ruleSets && reload && updater
          ? updater.ruleSetService(ruleSets, () => file?.ruleSets ?? {}, reload)
          : undefined,
      );
      const status = await new Supervisor(cfg, log, {
        ...(reload ? { reload } : {}),
        ...(services ? { services } : {}),
        ...(logRing ? { logRing } : {}),
      }).run();
      process.exit(status);
    });
  return cmd;
}

type Service = NonNullable<SupervisorOptions['services']>;

/** One `services` hook running each given one; closed in reverse order. */
function combineServices(...hooks: (Service | undefined)[]): Service | undefined {
  const given = hooks.filter((h): h is Service => h !== undefined);
  if (given.length <= 1) return given[0];
  return async (ctl) => {
    const started: { close(): Promise<void> }[] = [];
    const closeAll = async () => {
      for (const s of started.reverse()) await s.close();
    };
    try {
      for (const h of given) started.push(await h(ctl));
    } catch (e) {
      await closeAll();
      throw e;
    }
    return {
      close: closeAll,
    };
  };
}
