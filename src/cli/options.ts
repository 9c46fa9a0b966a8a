import type { Command } from 'commander';

/**
 * What every verb's definition needs, and nothing heavy: verbs load their implementation (config
 * parsing, the daemon, the data plane) only when they run, so `teal proxy` does not carry the
 * control plane's modules in its memory.
 */

export interface ConfigOption {
  config: string;
}

/** Adds `-c, --config <file>` (default ./teal.yml), which every verb takes. */
export function withConfig(cmd: Command): Command {
  return cmd.option('-c, --config <file>', 'the teal.yml to use', 'teal.yml');
}
