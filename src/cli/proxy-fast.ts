import { parseArgs } from 'node:util';
import { EXIT, toTealError } from '../core/errors.js';
import { type DataPlaneSettings, SETTINGS_OPTIONS, settingsFromFlags } from '../proxy/builtin/settings.js';

/** `teal proxy --listen --admin --state`, parsed without commander (see main.ts). */
export async function proxyFastPath(args: string[]): Promise<void> {
  let values: { listen?: string; 'preview-listen'?: string; admin?: string; state?: string } & Record<
    string,
    string | boolean | undefined
  >;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        'preview-listen': { type: 'string' },
        admin: { type: 'string' },
        state: { type: 'string' },
        handoff: { type: 'boolean' },
        ...SETTINGS_OPTIONS,
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`teal proxy: ${(err as Error).message} (see teal proxy --help)\n`);
    process.exitCode = EXIT.usage;
    return;
  }
  const missing = (['listen', 'admin', 'state'] as const).filter((k) => !values[k]);
  if (missing.length > 0) {
    process.stderr.write(
      `teal proxy: required option(s) ${missing.map((m) => `--${m}`).join(', ')} not specified (see teal proxy --help)\n`,
    );
    process.exitCode = EXIT.usage;
    return;
  }
  let settings: DataPlaneSettings;
  try {
    settings = settingsFromFlags(values);
  } catch (err) {
    process.stderr.write(`teal proxy: ${(err as Error).message}\n`);
    process.exitCode = EXIT.usage;
    return;
  }
  try {
    const { runDataPlaneProcess } = await import('../proxy/builtin/process-main.js');
    await runDataPlaneProcess({
      listen: values.listen!,
      ...(values['preview-listen'] ? { previewListen: values['preview-listen'] } : {}),
      admin: values.admin!,
      state: values.state!,
      handoff: values.handoff === true,
      settings,
    });
  } catch (err) {
    const e = toTealError(err);
    process.stderr.write(`teal: ${e.message}\n`);
    process.exitCode = e.exitCode;
  }
}
