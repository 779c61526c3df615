#!/usr/bin/env node
// tranproxy's command line: one file per subcommand; this file only assembles them and
// turns errors into one line and an exit status (2 for usage errors).
import { Command, CommanderError } from 'commander';
import { TranproxyError } from '../errors.js';
import { runCommand } from './run.js';
import { rulesCommand } from './rules.js';
import { demoCommand } from './demo.js';
import { withDefaultCommand } from './default-command.js';

const program = new Command('tranproxy')
  .description('Linux transparent proxy: capture connections with REDIRECT or TPROXY and relay them')
  .version(process.env.npm_package_version ?? '0.1.0')
  .showHelpAfterError('(add --help for usage)')
  .addCommand(runCommand())
  .addCommand(rulesCommand())
  .addCommand(demoCommand())
  .addCommand((await import('./inject.js')).injectCommand())
  .addCommand((await import('./webhook.js')).webhookCommand())
  .addCommand((await import('./publish.js')).publishCommand())
  .addCommand((await import('./lab.js')).labCommand())
  .addCommand((await import('./doctor.js')).doctorCommand())
  .addCommand((await import('./console.js')).consoleCommand());

function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideAll(sub);
}
exitOverrideAll(program);

const subcommands = program.commands.map((c) => c.name());
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
