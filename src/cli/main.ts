#!/usr/bin/env node
/**
 * The `teal` command. `teal proxy` (the data plane, started by `teal up`) takes a short path that
 * loads neither commander nor any control-plane module: its memory is paid on every host, for as
 * long as it runs. Everything else goes through the full command line in program.ts.
 */
// `teal history web | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const args = process.argv.slice(2);
if (args[0] === 'proxy' && !args.includes('--help') && !args.includes('-h')) {
  const { proxyFastPath } = await import('./proxy-fast.js');
  await proxyFastPath(args.slice(1));
} else {
  const { runProgram } = await import('./program.js');
  await runProgram(process.argv);
}
