import { type Command, CommanderError } from 'commander';
import { EXIT, toTealError } from '../core/errors.js';
import { jsonText, visible } from '../core/visible.js';

/**
 * The one place errors become exit codes: every verb throws TealErrors (or anything else, which is
 * an internal error), and this prints the message (or, with --json, one JSON document) and exits.
 */
export async function run(program: Command, argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0; usage mistakes were already printed by commander.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    const e = toTealError(err);
    if (argv.includes('--json')) {
      process.stdout.write(`${jsonText({ error: e.toJSON() })}\n`);
    } else {
      // A message may quote what came from outside (a config value, a path, a process's output).
      process.stderr.write(`teal: ${visible(e.message)}\n`);
      if (e.code === 'TEAL_INTERNAL' && err instanceof Error && err.stack)
        process.stderr.write(`${visible(err.stack)}\n`);
    }
    process.exitCode = e.exitCode;
  }
}
