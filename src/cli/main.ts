#!/usr/bin/env node
import { Command } from 'commander';
import { run } from './run.js';
import { proxyCommand } from './proxy.js';

const program = new Command('teal')
  .description('blue-green deploys with zero downtime')
  .showHelpAfterError('(run with --help for usage and examples)');

proxyCommand(program);

await run(program, process.argv);
