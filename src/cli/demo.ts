// `tranproxy demo`: flags → runDemo. The scenario lives in src/demo/.
import { Command } from 'commander';
import { runDemo } from '../demo/index.js';

export function demoCommand(): Command {
  return new Command('demo')
    .description(
      'build a small lab (client ── gw ── server, gw ── node ── remote) and show tranproxy working in it: the sidecar ' +
        'injecting headers, the gateway in TPROXY mode, the gateway in REDIRECT and TPROXY mode through a SOCKS5 node, ' +
        'a published port reached from outside and from 127.0.0.1; check every claim, then remove everything (also on Ctrl-C); ' +
        'as non-root it re-executes itself in a user namespace',
    )
    .option('--json', 'print the report as JSON on stdout (progress stays on stderr)')
    .option('--keep', 'leave the lab up after the report, with instructions to enter it, until Ctrl-C')
    .option('--no-color', 'no colours in the report (default: colours only when stdout is a terminal)')
    .action(async (opts: { json?: boolean; keep?: boolean; color?: boolean }) => {
      const status = await runDemo({
        json: opts.json ?? false,
        keep: opts.keep ?? false,
        color: (opts.color ?? true) && process.stdout.isTTY === true && !process.env.NO_COLOR,
        argv: process.argv.slice(2),
      });
      process.exit(status);
    });
}
