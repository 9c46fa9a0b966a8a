import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import { cliEntry } from '../paths.js';

interface ServiceFlags {
  config: string;
  name?: string;
  user?: boolean;
  dir?: string;
  runAs?: string;
  environmentFile?: string;
  print?: boolean;
  dryRun?: boolean;
  force?: boolean;
  json?: boolean;
}

const VERBS = ['up', 'agent', 'edge'] as const;
type Verb = (typeof VERBS)[number];

export function serviceCommand(program: Command): void {
  const service = program
    .command('service')
    .description('run teal under systemd: write (or remove) unit files for teal up, teal agent, teal edge');

  service
    .command('install')
    .description('write a systemd unit that starts teal <verb> at boot and restarts it when it exits')
    .argument('[verb]', 'up (the control plane), agent (a fleet host) or edge', 'up')
    .argument('[options...]', "after --: the verb's own options, as you would give them to it")
    .option('-c, --config <file>', 'the teal.yml of up and edge', 'teal.yml')
    .option('--name <unit>', 'the unit name (default: teal, teal-agent, teal-edge)')
    .option('--user', "a unit of the user's own systemd manager (systemctl --user), not the system's")
    .option('--dir <dir>', 'where to write it (default: /etc/systemd/system; --user: ~/.config/systemd/user)')
    .option(
      '--run-as <user>',
      'User= of the system unit (default: the user running this, SUDO_USER under sudo)',
    )
    // Not --env-file: node 20 reads that flag anywhere on its command line, even after the script.
    .option(
      '--environment-file <file>',
      'the 0600 environment file for TEAL_TOKEN and secrets (default: /etc/teal/<unit>.env)',
    )
    .option('--print', 'print the unit on stdout and write nothing')
    .option('--dry-run', 'the same as --print')
    .option('--force', 'overwrite a unit that differs from the one teal would write now')
    .option('--json', 'print one JSON document')
    .addHelpText(
      'after',
      `
The unit runs the verb in the foreground with Restart=always, after the network (and etcd, docker,
nginx or haproxy when teal.yml uses them on this host), with KillMode=process: a restart or
\`systemctl stop\` signals teal alone, and the data plane and the app instances keep serving (teal
re-attaches to them). \`teal down\` stops those. Secrets go in the environment file, never the unit.

Examples:
  sudo teal service install -c /srv/web/teal.yml
  sudo teal service install -c /srv/web/teal.yml --run-as deploy --print
  sudo teal service install agent -- --id web-1 --address 10.0.1.2 --etcd http://10.0.0.5:2379
  sudo teal service install edge -c /etc/teal/teal.yml -- --id edge-1
  teal service install --user -c ~/app/teal.yml
then: sudo systemctl daemon-reload && sudo systemctl enable --now teal.service`,
    )
    .action(async (verbArg: string, verbArgs: string[], opts: ServiceFlags) => {
      const verb = verbOf(verbArg);
      if (opts.user && opts.runAs)
        throw new TealError('TEAL_USAGE', '--run-as is for system units; a --user unit runs as you');
      const verbOptions = await checkVerbArgs(verb, verbArgs);
      const { planService } = await import('../boot/spec.js');
      const { renderUnit } = await import('../boot/units.js');
      const { packageVersion } = await import('../version.js');
      const plan = planService({
        verb,
        scope: opts.user ? 'user' : 'system',
        config: opts.config,
        verbArgs,
        verbOptions,
        ...(opts.name === undefined ? {} : { name: opts.name }),
        ...(opts.runAs === undefined ? {} : { runAs: opts.runAs }),
        ...(opts.environmentFile === undefined ? {} : { envFile: opts.environmentFile }),
        ...(opts.dir === undefined ? {} : { dir: opts.dir }),
        node: process.execPath,
        entry: installedEntry(),
        teal: packageVersion(),
        cwd: process.cwd(),
        env: process.env,
      });
      const text = renderUnit(plan.spec);
      const unit = `${plan.spec.name}.service`;
      if (opts.print || opts.dryRun) {
        if (opts.json) {
          const { printJson } = await import('./output.js');
          printJson({ unit, file: plan.file, text, envFile: plan.spec.envFile, envNames: plan.envNames });
        } else process.stdout.write(text);
        return;
      }
      const { writeUnit, ensureEnvFile } = await import('../boot/install.js');
      const action = writeUnit(plan.file, text, Boolean(opts.force));
      const envAction = ensureEnvFile(plan.spec.envFile, plan.envNames);
      const ctl = opts.user ? 'systemctl --user' : 'systemctl';
      const enable = `${ctl} daemon-reload && ${ctl} enable --now ${unit}`;
      const logs = `journalctl ${opts.user ? '--user-unit' : '-u'} ${unit} -f`;
      if (opts.json) {
        const { printJson } = await import('./output.js');
        printJson({
          unit,
          file: plan.file,
          action,
          envFile: { file: plan.spec.envFile, action: envAction, names: plan.envNames },
          enable,
          logs,
        });
        return;
      }
      const out = process.stdout;
      out.write(
        `${action === 'unchanged' ? 'kept' : action === 'created' ? 'wrote' : 'rewrote'} ${plan.file}`,
      );
      out.write(plan.spec.user ? ` (teal ${verb} as ${plan.spec.user})\n` : '\n');
      out.write(
        `${envAction === 'created' ? 'created' : 'kept'} ${plan.spec.envFile} (0600): TEAL_TOKEN=, and secrets as NAME=value lines${plan.envNames.length ? ` (teal.yml reads ${plan.envNames.join(', ')})` : ''}\n`,
      );
      out.write(`\nStart it now and at every boot:\n  ${enable}\n`);
      if (opts.user)
        out.write(
          `  loginctl enable-linger ${process.env.USER ?? '$USER'}   # so it starts at boot, without a login\n`,
        );
      out.write(`Logs:\n  ${logs}\n`);
      if (!existsSync('/run/systemd/system'))
        out.write('\n(systemd is not running on this host: the unit takes effect where it does)\n');
    });

  service
    .command('uninstall')
    .description('remove a unit teal service install wrote (disable it first)')
    .argument('[verb]', 'up, agent or edge', 'up')
    .option('--name <unit>', 'the unit name (default: teal, teal-agent, teal-edge)')
    .option('--user', "the user's own systemd manager's unit")
    .option('--dir <dir>', 'where it is (default: /etc/systemd/system; --user: ~/.config/systemd/user)')
    .option('--force', 'remove it even if teal did not write it')
    .option('--json', 'print one JSON document')
    .addHelpText(
      'after',
      `
The environment file is kept (it holds your secrets); the data plane and the app instances keep
running until \`teal down\`.

Examples:
  sudo systemctl disable --now teal.service && sudo teal service uninstall
  teal service uninstall agent --name teal-agent-2`,
    )
    .action(async (verbArg: string, opts: Omit<ServiceFlags, 'config'>) => {
      const verb = verbOf(verbArg);
      const { unitDir, unitName } = await import('../boot/spec.js');
      const { removeUnit } = await import('../boot/install.js');
      const name = unitName(verb, opts.name);
      const dir = path.resolve(opts.dir ?? unitDir(opts.user ? 'user' : 'system', process.env));
      const file = path.join(dir, `${name}.service`);
      const action = removeUnit(file, Boolean(opts.force));
      const reload = `systemctl${opts.user ? ' --user' : ''} daemon-reload`;
      if (opts.json) {
        const { printJson } = await import('./output.js');
        printJson({ unit: `${name}.service`, file, action, reload });
        return;
      }
      process.stdout.write(
        action === 'removed' ? `removed ${file}\nthen: ${reload}\n` : `no unit at ${file}; nothing to do\n`,
      );
    });
}

function verbOf(value: string): Verb {
  if ((VERBS as readonly string[]).includes(value)) return value as Verb;
  throw new TealError(
    'TEAL_USAGE',
    `expected the verb the unit runs: up, agent or edge, got ${JSON.stringify(value)}`,
  );
}

/**
 * The verb's options read by the verb's own definition (so a typo or a missing --address fails
 * now, not at boot), without running it: its action is replaced by one that keeps what it read.
 */
async function checkVerbArgs(verb: Verb, args: string[]): Promise<Record<string, unknown>> {
  const { Command } = await import('commander');
  let said = '';
  const program = new Command('teal')
    .exitOverride()
    .configureOutput({ writeErr: (s) => (said += s), writeOut: () => undefined });
  const define = {
    up: (await import('./up.js')).upCommand,
    agent: (await import('./agent.js')).agentCommand,
    edge: (await import('./edge.js')).edgeCommand,
  }[verb];
  define(program);
  let read: Record<string, unknown> = {};
  program.commands
    .find((c) => c.name() === verb)!
    .action((opts: Record<string, unknown>) => {
      read = opts;
    });
  try {
    await program.parseAsync([verb, ...args], { from: 'user' });
  } catch {
    throw new TealError(
      'TEAL_USAGE',
      `teal ${verb} ${args.join(' ')}: ${said.trim().replace(/^error: /, '') || 'not options teal accepts'}`,
    );
  }
  return read;
}

/**
 * teal's entry as installed: the `teal` that was run when it is a link to this package's main.js
 * (npm's bin link, stable across upgrades of the package), else main.js itself.
 */
function installedEntry(): string {
  const main = cliEntry();
  const invoked = process.argv[1];
  try {
    if (invoked && path.isAbsolute(invoked) && realpathSync(invoked) === realpathSync(main)) return invoked;
  } catch {
    // Not a file: fall back to main.js.
  }
  return main;
}
