import { formatDuration } from '../core/config/duration.js';
import type { DeploymentEvent } from '../core/records.js';
import { paint } from './output.js';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * Shows a deployment's steps as they happen. On a terminal, the running step is one live line with
 * a spinner and its elapsed time, and each finished step is printed once with its duration; off a
 * terminal (CI logs, pipes), one plain line per event.
 */
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #c: ReturnType<typeof paint>;
  #running: { step: string; message: string; since: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;

  constructor(out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#live = Boolean(out.isTTY);
    this.#c = paint(out);
  }

  event(e: DeploymentEvent): void {
    const c = this.#c;
    const time = c.dim(`${(e.t / 1000).toFixed(1).padStart(6)}s`);
    const step = e.step.padEnd(7);
    if (e.step === 'plan' && e.status === 'info' && e.message.includes('\n')) {
      this.#clear();
      this.#out.write(
        `${time}  ${c.bold('plan')}\n${e.message
          .split('\n')
          .map((l) => `           ${c.dim('·')} ${l}`)
          .join('\n')}\n`,
      );
      this.#redraw();
      return;
    }
    if (e.status === 'started') {
      if (!this.#live) this.#out.write(`${time}  ${c.cyan('…')} ${step} ${e.message}\n`);
      this.#running = { step, message: e.message, since: Date.now() };
      this.#redraw();
      return;
    }
    this.#clear();
    this.#running = undefined;
    const mark = e.status === 'done' ? c.green('✓') : e.status === 'failed' ? c.red('✗') : c.blue('•');
    const took = e.ms === undefined ? '' : c.dim(`  ${formatDuration(e.ms)}`);
    const lines = e.message.split('\n');
    this.#out.write(`${time}  ${mark} ${step} ${lines[0]}${took}\n`);
    for (const extra of lines.slice(1)) this.#out.write(`           ${extra}\n`);
  }

  stop(): void {
    this.#clear();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #redraw(): void {
    if (!this.#live || !this.#running) return;
    this.#timer ??= setInterval(() => this.#redraw(), 100);
    const r = this.#running;
    const spin = this.#c.cyan(SPINNER[this.#frame++ % SPINNER.length]!);
    const width = (this.#out.columns ?? 100) - 12;
    const text = `${r.step} ${r.message}`.split('\n')[0]!.slice(0, Math.max(20, width - 10));
    this.#out.write(`\r\x1b[2K         ${spin} ${text} ${this.#c.dim(formatDuration(Date.now() - r.since))}`);
  }

  #clear(): void {
    if (this.#live && this.#running) this.#out.write('\r\x1b[2K');
  }
}
