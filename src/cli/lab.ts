// `tranproxy lab up|down|status FILE`: a declarative virtual network (src/netlab/spec.ts
// describes the file). Flags → model → netlab/apply. Nothing else.
import { Command } from 'commander';
import { labDown, labStatus, labUp } from '../netlab/apply.js';
import { loadLabFile, type LabModel } from '../netlab/spec.js';
import { statePath } from '../netlab/state.js';

interface LabOpts {
  name?: string;
  json?: boolean;
}

function load(file: string, opts: LabOpts): LabModel {
  return loadLabFile(file, opts.name !== undefined ? { name: opts.name } : {});
}

const out = (line: string) => process.stdout.write(`${line}\n`);

export function labCommand(): Command {
  const nameOpt = [
    '--name <name>',
    "use this lab name instead of the file's (the prefix of every namespace and interface)",
  ] as const;
  const lab = new Command('lab').description(
    'declarative virtual networks: namespaces, bridges, veth, macvlan, routes, NAT, processes from a YAML file',
  );

  lab
    .command('up')
    .description('create what FILE declares and is missing; a second up changes nothing; a failure undoes this run')
    .argument('<file>', 'lab file (YAML)')
    .option(...nameOpt)
    .action((file: string, opts: LabOpts) => {
      const model = load(file, opts);
      const r = labUp(model, { onChange: (l) => out(`+ ${l}`) });
      if (r.created.length === 0)
        out(`lab ${model.name}: already up, nothing changed (${r.present} declared pieces present)`);
      else
        out(
          `lab ${model.name}: up (${r.created.length} created, ${r.present} already present); state in ${statePath(model.name)}`,
        );
    });

  lab
    .command('down')
    .description(
      'remove everything the lab created (processes, namespaces, interfaces, nft table) and restore root sysctls',
    )
    .argument('<file>', 'lab file (YAML)')
    .option(...nameOpt)
    .action((file: string, opts: LabOpts) => {
      const model = load(file, opts);
      const r = labDown(model);
      for (const l of r.removed) out(`- ${l}`);
      for (const w of r.warnings) process.stderr.write(`tranproxy: warning: ${w}\n`);
      out(
        r.removed.length
          ? `lab ${model.name}: down (${r.removed.length} removed)`
          : `lab ${model.name}: nothing to remove`,
      );
    });

  lab
    .command('status')
    .description(
      'show which declared pieces exist and any forward drop (nft or iptables) outside the lab that breaks its routing; exit status 0 when all exist and nothing drops, 1 otherwise',
    )
    .argument('<file>', 'lab file (YAML)')
    .option(...nameOpt)
    .option('--json', 'print JSON')
    .action((file: string, opts: LabOpts) => {
      const model = load(file, opts);
      const s = labStatus(model);
      const missing = s.lines.filter((l) => !l.present).length;
      if (opts.json) {
        out(
          JSON.stringify(
            {
              name: model.name,
              present: s.lines.length - missing,
              missing,
              pieces: s.lines,
              forwardProblems: s.forwardProblems,
              pids: Object.fromEntries(s.pids),
              state: s.state ? statePath(model.name) : null,
            },
            null,
            2,
          ),
        );
      } else {
        for (const l of s.lines) {
          const key = `${l.place}: ${l.what}`;
          const pid = s.pids.get(key);
          out(`${l.present ? 'ok     ' : 'MISSING'} ${key}${pid !== undefined ? ` (pid ${pid})` : ''}`);
        }
        for (const f of s.forwardProblems) out(`DROPPED ${f.place}: ${f.text}`);
        const dropped = s.forwardProblems.length
          ? `, but ${s.forwardProblems.length} forward drop${s.forwardProblems.length === 1 ? '' : 's'} outside the lab break${s.forwardProblems.length === 1 ? 's' : ''} its routing`
          : '';
        if (missing === 0) out(`lab ${model.name}: all ${s.lines.length} declared pieces present${dropped}`);
        else if (missing === s.lines.length)
          out(`lab ${model.name}: down (none of ${s.lines.length} declared pieces present)`);
        else
          out(`lab ${model.name}: ${missing} of ${s.lines.length} declared pieces missing (run lab up to create them)`);
      }
      if (missing || s.forwardProblems.length) process.exitCode = 1;
    });
  return lab;
}
