import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/testing/daemon.js';
import { verifyUnit } from '../src/testing/systemd-verify.js';

const root = mkdtempSync(path.join(tmpdir(), 'teal-service-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);

function app(name: string, extra = ''): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'teal.yml'),
    `${extra}services:\n  web:\n    command: [node, server.js]\n    env: { TOKEN: { fromEnv: WEB_TOKEN } }\n    ports: { blue: 9001, green: 9002 }\n`,
  );
  return dir;
}

describe('teal service install and uninstall', () => {
  it('writes the unit 0644 and the environment file 0600, keeps both on a second run, and refuses a changed unit without --force', async () => {
    const dir = app('web app');
    const units = path.join(root, 'units-1');
    const envFile = path.join(root, 'etc', 'web.env');
    const args = ['service', 'install', '-c', 'teal.yml', '--dir', units, '--environment-file', envFile];
    const first = await runCli(args, { cwd: dir });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const unit = path.join(units, 'teal.service');
    expect(first.stdout).toContain(`wrote ${unit}`);
    expect(first.stdout).toContain('systemctl daemon-reload && systemctl enable --now teal.service');
    expect(first.stdout).toContain('journalctl -u teal.service -f');
    expect(first.stdout).toContain('WEB_TOKEN');
    expect(mode(unit)).toBe('644');
    expect(mode(envFile)).toBe('600');
    expect(readFileSync(envFile, 'utf8')).toMatch(/^#TEAL_TOKEN=$/m);
    expect(readFileSync(envFile, 'utf8')).toMatch(/^#WEB_TOKEN=$/m);
    expect(await verifyUnit(unit)).toEqual([]);

    // The secrets the user wrote are never rewritten; the unit is kept when nothing changed.
    appendFileSync(envFile, 'TEAL_TOKEN=secret-secret-secret-secret-secret\n');
    const again = await runCli([...args, '--json'], { cwd: dir });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      action: 'unchanged',
      envFile: { action: 'kept', names: ['WEB_TOKEN'] },
    });
    expect(readFileSync(envFile, 'utf8')).toContain('TEAL_TOKEN=secret-secret');
    expect(readFileSync(unit, 'utf8')).not.toContain('secret');

    writeFileSync(unit, readFileSync(unit, 'utf8').replace('RestartSec=1s', 'RestartSec=5s'));
    const refused = await runCli([...args, '--json'], { cwd: dir });
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout).error).toMatchObject({ code: 'TEAL_UNIT_CHANGED' });
    expect(readFileSync(unit, 'utf8')).toContain('RestartSec=5s');
    const forced = await runCli([...args, '--force'], { cwd: dir });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(`rewrote ${unit}`);
    expect(readFileSync(unit, 'utf8')).toContain('RestartSec=1s');
    expect(mode(unit)).toBe('644');
  });

  it('refuses an environment file other users can read', async () => {
    const dir = app('open-env');
    const envFile = path.join(root, 'open.env');
    writeFileSync(envFile, 'TEAL_TOKEN=x\n');
    chmodSync(envFile, 0o644);
    const r = await runCli(
      ['service', 'install', '--dir', path.join(root, 'units-2'), '--environment-file', envFile],
      { cwd: dir },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`chmod 600 ${envFile}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--print writes nothing; bad verb options and bad configs fail with their reason, not a stack', async () => {
    const dir = app('print');
    const units = path.join(root, 'units-3');
    const printed = await runCli(['service', 'install', '--print', '--dir', units], { cwd: dir });
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^# Written by `teal service install`\./);
    expect(printed.stdout).toContain('KillMode=process');
    expect(existsSync(units)).toBe(false);

    const agent = await runCli(
      ['service', 'install', 'agent', '--print', '--', '--etcd', 'http://127.0.0.1:2379'],
      {
        cwd: dir,
      },
    );
    expect(agent.code).toBe(2);
    expect(agent.stderr).toContain("required option '--address <ip>' not specified");
    const typo = await runCli(
      ['service', 'install', 'agent', '--print', '--', '--address', '1.2.3.4', '--capcity', '3'],
      {
        cwd: dir,
      },
    );
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown option '--capcity'");
    const verb = await runCli(['service', 'install', 'deploy', '--print'], { cwd: dir });
    expect(verb.code).toBe(2);
    expect(verb.stderr).toContain('expected the verb the unit runs: up, agent or edge, got "deploy"');

    writeFileSync(path.join(dir, 'teal.yml'), 'services:\n  web:\n    command: 3\n');
    const bad = await runCli(['service', 'install', '--print'], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('services.web.command');
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('uninstall removes the unit it wrote, refuses one still enabled or written by someone else', async () => {
    const dir = app('uninstall');
    const units = path.join(root, 'units-4');
    const envFile = path.join(root, 'uninstall.env');
    const install = await runCli(
      ['service', 'install', 'edge', '--dir', units, '--environment-file', envFile, '--', '--id', 'edge-1'],
      { cwd: dir },
    );
    expect(install.code).toBe(0);
    const unit = path.join(units, 'teal-edge.service');
    expect(readFileSync(unit, 'utf8')).toContain(' edge -c ');

    // What `systemctl enable` leaves: a link from the target's .wants folder.
    mkdirSync(path.join(units, 'multi-user.target.wants'));
    symlinkSync(unit, path.join(units, 'multi-user.target.wants', 'teal-edge.service'));
    const enabled = await runCli(['service', 'uninstall', 'edge', '--dir', units], { cwd: dir });
    expect(enabled.code).toBe(1);
    expect(enabled.stderr).toContain('systemctl disable --now teal-edge.service');
    expect(existsSync(unit)).toBe(true);
    rmSync(path.join(units, 'multi-user.target.wants'), { recursive: true });

    const removed = await runCli(['service', 'uninstall', 'edge', '--dir', units, '--json'], { cwd: dir });
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ action: 'removed', file: unit });
    expect(existsSync(unit)).toBe(false);
    expect(existsSync(envFile)).toBe(true);
    const absent = await runCli(['service', 'uninstall', 'edge', '--dir', units], { cwd: dir });
    expect(absent.code).toBe(0);
    expect(absent.stdout).toContain('nothing to do');

    const foreign = path.join(units, 'teal.service');
    writeFileSync(foreign, '[Service]\nExecStart=/bin/true\n');
    const refused = await runCli(['service', 'uninstall', '--dir', units], { cwd: dir });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('was not written by teal service install');
    expect(existsSync(foreign)).toBe(true);
    expect((await runCli(['service', 'uninstall', '--dir', units, '--force'], { cwd: dir })).code).toBe(0);
    expect(existsSync(foreign)).toBe(false);
  });

  it('--help shows examples and how to enable the unit', async () => {
    const help = await runCli(['service', 'install', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('sudo teal service install agent -- --id web-1');
    expect(help.stdout).toContain('systemctl enable --now teal.service');
  });
});
