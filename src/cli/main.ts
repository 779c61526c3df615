#!/usr/bin/env node
// tranproxy's command line: one file per subcommand; this file only assembles them and
// turns errors into one line and an exit status (2 for usage errors).
import { Command, CommanderError } from 'commander';
import { TranproxyError } from '../errors.js';
import { runCommand } from './run.js';
import { rulesCommand } from './rules.js';
import { demoCommand } from './demo.js';

const program = new Command('tranproxy')
  .description('Linux transparent proxy: capture connections with REDIRECT or TPROXY and relay them')
  .version(process.env.npm_package_version ?? '0.1.0')
  .showHelpAfterError("(add --help for usage)")
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

program.parseAsync(process.argv).catch((e: unknown) => {
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
