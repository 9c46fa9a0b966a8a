import { Command } from 'commander';
import { packageVersion } from '../version.js';
import { agentCommand } from './agent.js';
import { deployCommand } from './deploy.js';
import { downCommand } from './down.js';
import { edgeCommand } from './edge.js';
import { gateCommands } from './gate.js';
import { haproxyConfigCommand } from './haproxy-config.js';
import { historyCommand } from './history.js';
import { lockCommand } from './lock.js';
import { logsCommand } from './logs.js';
import { pipelineCommand } from './pipeline.js';
import { previewCommand } from './preview.js';
import { proxyCommand } from './proxy.js';
import { reloadCommand } from './reload.js';
import { restartProxyCommand } from './restart-proxy.js';
import { rollbackCommand } from './rollback.js';
import { run } from './run.js';
import { serviceCommand } from './service.js';
import { statusCommand } from './status.js';
import { upCommand } from './up.js';
import { validateCommand } from './validate.js';

const program = new Command('teal')
  .description('blue-green deploys with zero downtime')
  .version(packageVersion(), '-V, --version', 'print the teal version')
  // Options after a verb belong to the verb: `teal deploy web --version v2` is the deploy's version.
  .enablePositionalOptions()
  // Errors come back to run() as exceptions, so every exit code is decided in one place.
  .exitOverride()
  .showHelpAfterError('(run with --help for usage and examples)')
  .addHelpText(
    'after',
    `
Every command reads ./teal.yml unless -c names another file.

Examples:
  teal up                                  start teal (proxy, API) for ./teal.yml
  teal deploy web --version v2             deploy v2 of web, blue-green
  teal status                              which slot is live, what runs where
  teal rollback web                        switch back to the previous release
  teal pipeline run web                    run web's pipeline on its branch's head
  teal validate                            check teal.yml
  sudo teal service install                start teal up at boot under systemd`,
  );

upCommand(program);
deployCommand(program);
rollbackCommand(program);
gateCommands(program);
previewCommand(program);
lockCommand(program);
statusCommand(program);
reloadCommand(program);
historyCommand(program);
logsCommand(program);
pipelineCommand(program);
validateCommand(program);
downCommand(program);
edgeCommand(program);
agentCommand(program);
serviceCommand(program);
restartProxyCommand(program);
proxyCommand(program);
haproxyConfigCommand(program);

/** The full command line, with every verb and its help. */
export function runProgram(argv: string[]): Promise<void> {
  return run(program, argv);
}
