// `tranproxy rules plan|apply|remove|show`: the firewall part alone.
import { Command } from 'commander';
import { runConfigOf, type RunConfig } from '../config/run-config.js';
import { capturePlanOf } from '../config/capture-plan.js';
import { applyPlan, detectBackend, removeRules, renderPlan, showRules, type Backend } from '../firewall/apply.js';
import { addCaptureOptions } from './capture-options.js';
import { loadWithFile } from './file-options.js';
import { UsageError } from '../errors.js';

function backendOf(cfg: RunConfig): Backend {
  const fw = cfg.firewall;
  if (fw === 'none') throw new UsageError('--firewall none means no rules: choose nft, iptables or auto');
  return fw === 'nft' || fw === 'iptables' ? fw : detectBackend();
}

/** The same --config as `run`: the file's settings, flags typed on the command line win. */
function withConfig(cmd: Command): Command {
  return cmd.option(
    '-c, --config <file>',
    'YAML config file, as for tranproxy run; flags given on the command line win',
  );
}

export function rulesCommand(): Command {
  const rules = new Command('rules').description(
    'plan, apply, remove or show the firewall rules without running the proxy',
  );
  const plan = withConfig(
    addCaptureOptions(new Command('plan').description('print the rules that would be applied (dry run)')),
  ).action((opts: { config?: string }, self: Command) => {
    const { settings, file, warnings } = loadWithFile(opts.config, self);
    for (const w of warnings) process.stderr.write(`tranproxy: warning: ${w}\n`);
    const cfg = runConfigOf(settings, [], undefined, file);
    process.stdout.write(renderPlan(capturePlanOf(cfg), backendOf(cfg)));
  });
  const apply = withConfig(
    addCaptureOptions(new Command('apply').description('apply the rules (replacing any tranproxy rules present)')),
  ).action((opts: { config?: string }, self: Command) => {
    const { settings, file, warnings } = loadWithFile(opts.config, self);
    for (const w of warnings) process.stderr.write(`tranproxy: warning: ${w}\n`);
    const cfg = runConfigOf(settings, [], undefined, file);
    applyPlan(capturePlanOf(cfg), backendOf(cfg));
    process.stderr.write('tranproxy: rules applied\n');
  });
  const remove = new Command('remove')
    .description('remove every tranproxy rule (nft table, TRANPROXY_* chains, ip rules); safe to repeat')
    .action(() => {
      removeRules();
      process.stderr.write('tranproxy: rules removed\n');
    });
  const show = new Command('show').description('print the tranproxy rules in force').action(() => {
    const text = showRules();
    process.stdout.write(text || 'no tranproxy rules\n');
  });
  return rules.addCommand(plan).addCommand(apply).addCommand(remove).addCommand(show);
}
