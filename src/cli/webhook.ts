// `tranproxy webhook`: the mutating admission webhook that injects the sidecar into pods
// as they are created. Flags → options; the work is src/k8s.
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { parseDuration, parsePort } from '../config/values.js';
import { createLogger } from '../observe/log.js';
import { startWebhookServer } from '../k8s/webhook-server.js';
import { addInjectDefaultsOptions, injectDefaultsOf, type RawInjectDefaults } from './inject.js';

/** `:8443`, `8443`, `0.0.0.0:8443`, `[::1]:8443`; an empty host means every address. */
export function parseListen(text: string): { host: string; port: number } {
  const t = text.trim();
  const m = t.match(/^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d+)$/) ?? (/^\d+$/.test(t) ? [t, undefined, '', t] : null);
  if (!m) throw new UsageError(`--listen: '${text}' is not HOST:PORT (e.g. :8443, 127.0.0.1:8443, [::]:8443)`);
  const port = m[3] === '0' ? 0 : parsePort(m[3]!, '--listen');
  return { host: m[1] ?? m[2] ?? '', port };
}

export function webhookCommand(): Command {
  const cmd = new Command('webhook')
    .description(
      'serve the mutating admission webhook (AdmissionReview v1 on POST /mutate, GET /healthz) that injects the sidecar into new pods',
    )
    .requiredOption('--tls-cert <file>', 'serving certificate (PEM); re-read when it changes')
    .requiredOption('--tls-key <file>', 'its private key (PEM)')
    .option('--listen <host:port>', 'address to serve HTTPS on', ':8443')
    .option('--cert-reload-interval <duration>', 'how often to look for a renewed certificate', '30s')
    .option(
      '--shutdown-delay <duration>',
      'on SIGTERM keep serving this long (while endpoints drop this pod), then stop',
      '0s',
    )
    .addOption(new Option('--log-format <format>', 'text or json').choices(['text', 'json']).default('text'));
  addInjectDefaultsOptions(cmd);
  cmd.action(
    async (
      opts: RawInjectDefaults & {
        tlsCert: string;
        tlsKey: string;
        listen: string;
        certReloadInterval: string;
        shutdownDelay: string;
        logFormat: 'text' | 'json';
      },
    ) => {
      const defaults = injectDefaultsOf(opts);
      const { host, port } = parseListen(opts.listen);
      const reload = parseDuration(opts.certReloadInterval, '--cert-reload-interval');
      const delay = /^0+(ms|s|m|h)?$/.test(opts.shutdownDelay.trim())
        ? 0
        : parseDuration(opts.shutdownDelay, '--shutdown-delay');
      const log = createLogger(opts.logFormat);
      const server = await startWebhookServer({
        certFile: opts.tlsCert,
        keyFile: opts.tlsKey,
        host,
        port,
        defaults,
        log,
        reloadIntervalMs: reload,
      });
      const a = server.address;
      const shown = a.family === 'IPv6' || a.family === (6 as unknown) ? `[${a.address}]` : a.address;
      log.info(`webhook listening on https://${shown}:${a.port}/mutate`, {
        mode: defaults.mode,
        image: defaults.image,
      });
      let stopping = false;
      const stop = (sig: NodeJS.Signals): void => {
        if (stopping) return;
        stopping = true;
        log.info('webhook stopping', { signal: sig, delay_ms: delay });
        setTimeout(() => void server.close().then(() => process.exit(0)), delay);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
  );
  return cmd;
}
