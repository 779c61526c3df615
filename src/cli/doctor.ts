// `tranproxy doctor [--json]`: read-only checks of kernel features, tools, sysctls, limits and
// leftover rules. Exit status 1 when any check FAILs, else 0.
import { Command } from 'commander';
import { exitStatusOf, formatText, runDoctor } from '../doctor/index.js';
import { systemProbe } from '../kernel/probe.js';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check kernel features, sysctls, firewall backends, limits and leftover rules (changes nothing)')
    .option('--json', 'print an array of {check, status, detail, fix}')
    .action(async (opts: { json?: boolean }) => {
      const results = await runDoctor(systemProbe);
      process.stdout.write(opts.json ? `${JSON.stringify(results, null, 2)}\n` : formatText(results));
      process.exitCode = exitStatusOf(results);
    });
}
