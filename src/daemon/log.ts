import type { Logger } from '../core/deps.js';
import { visible } from '../core/visible.js';
import type { Json } from '../stores/store.js';

type Level = 'info' | 'warn' | 'error';

/**
 * The daemon's log: one JSON object per line (time, level, msg, fields) for machines, or a short
 * readable line with `pretty` (the default on a terminal).
 */
export function createLogger(options: {
  pretty: boolean;
  write?: (line: string) => void;
  base?: Record<string, Json>;
}): Logger {
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const emit = (level: Level, msg: string, fields: Record<string, Json | undefined> = {}) => {
    const time = new Date().toISOString();
    if (options.pretty) {
      const extra = Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      const tag = level === 'info' ? '' : `${level.toUpperCase()} `;
      // The readable line goes to a terminal; fields carry commit messages, errors, app output.
      write(visible(`${time.slice(11, 23)} ${tag}${msg}${extra ? `  ${extra}` : ''}`) + '\n');
    } else {
      write(`${JSON.stringify({ time, level, msg, ...options.base, ...fields })}\n`);
    }
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
