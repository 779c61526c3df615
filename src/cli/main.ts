#!/usr/bin/env node
// tranproxy's command line: one file per subcommand; this file only assembles them and
// turns errors into one line and an exit status (2 for usage errors).
import type { Command } from 'commander';
import { TranproxyError } from '../errors.js';
import { withDefaultCommand, wantsLeanRun, wantsOneProcess } from './default-command.js';

/**
 * Each subcommand's module, loaded only when that subcommand runs (or for help), so the
 * long-running `run` supervisor keeps no console, Kubernetes or lab code resident.
 */
const SUBCOMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).runCommand(),
  rules: async () => (await import('./rules.js')).rulesCommand(),
  demo: async () => (await import('./demo.js')).demoCommand(),
  inject: async () => (await import('./inject.js')).injectCommand(),
  webhook: async () => (await import('./webhook.js')).webhookCommand(),
  publish: async () => (await import('./publish.js')).publishCommand(),
  lab: async () => (await import('./lab.js')).labCommand(),
  doctor: async () => (await import('./doctor.js')).doctorCommand(),
  console: async () => (await import('./console.js')).consoleCommand(),
};
const subcommands = Object.keys(SUBCOMMANDS);

let argv: string[];
try {
  argv = [
    ...process.argv.slice(0, 2),
    ...withDefaultCommand(process.argv.slice(2), subcommands, process.env.TRANPROXY_DEFAULT_COMMAND),
  ];
} catch (e) {
  process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
  process.exit(2);
}

// `run --one-process` serves in this process for as long as the pod lives: it keeps no
// command-line or config code resident (a short-lived child parses the arguments).
if (wantsOneProcess(argv.slice(2))) await (await import('./one-process.js')).runOneProcess(argv.slice(2));
// `run` supervises the same way unless its configuration needs the parsers at run time.
if (wantsLeanRun(argv.slice(2))) await (await import('./lean-run.js')).runSupervised(argv.slice(2));

const { Command: Program, CommanderError } = await import('commander');
const program = new Program('tranproxy')
  .description('Linux transparent proxy: capture connections with REDIRECT or TPROXY and relay them')
  .version(process.env.npm_package_version ?? '0.1.0')
  .showHelpAfterError('(add --help for usage)');
// A named subcommand loads alone; anything else (help, version, a typo) needs them all.
const named = argv[2] !== undefined && Object.hasOwn(SUBCOMMANDS, argv[2]) ? [argv[2]] : subcommands;
for (const name of named) program.addCommand(await SUBCOMMANDS[name]!());

function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideAll(sub);
}
exitOverrideAll(program);

program.parseAsync(argv).catch((e: unknown) => {
  if (e instanceof CommanderError) {
    // commander already printed the message; help and version exit 0.
    process.exit(e.exitCode === 0 ? 0 : 2);
  }
  if (e instanceof TranproxyError) {
    process.stderr.write(`tranproxy: ${e.message}\n`);
    process.exit(e.exitCode);
  }
  process.stderr.write(`tranproxy: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
