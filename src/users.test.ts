import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { distEntry } from './paths.js';
import { reachableExample } from './reachable-copy.js';
import { assertReachable, lookupGroup, lookupUser, resolveRunUser, userProblem } from './users.js';

const root = process.getuid?.() === 0;

describe('run users', () => {
  it('reads names and ids from passwd and group files, without NSS or a shell', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-users-'));
    writeFileSync(
      path.join(dir, 'passwd'),
      '# comment\nroot:x:0:0:root:/root:/bin/sh\nweb:x:1001:1002:Web:/srv/web:/bin/false\n',
    );
    writeFileSync(path.join(dir, 'group'), 'root:x:0:\nwebgrp:x:1002:\n');
    expect(lookupUser('web', path.join(dir, 'passwd'))).toEqual({
      name: 'web',
      uid: 1001,
      gid: 1002,
      home: '/srv/web',
    });
    expect(lookupUser('1001', path.join(dir, 'passwd'))).toMatchObject({ name: 'web' });
    expect(lookupUser('nosuch', path.join(dir, 'passwd'))).toBeUndefined();
    expect(lookupUser('4242', path.join(dir, 'passwd'))).toMatchObject({ uid: 4242, gid: 4242 });
    expect(lookupGroup('webgrp', path.join(dir, 'group'))).toBe(1002);
    expect(lookupGroup('nosuch', path.join(dir, 'group'))).toBeUndefined();
    expect(userProblem({ user: 'no-such-user-teal' })).toContain(
      'no user "no-such-user-teal" in /etc/passwd',
    );
    expect(userProblem({ group: 'no-such-group-teal' })).toContain(
      'no group "no-such-group-teal" in /etc/group',
    );
  });

  it.runIf(root)('as root: nobody when none is set, the named user and group otherwise', () => {
    expect(resolveRunUser({}, 'services.web')).toMatchObject({
      name: 'nobody',
      uid: 65534,
      gid: 65534,
      switchTo: { uid: 65534, gid: 65534 },
    });
    expect(resolveRunUser({ user: 'root' }, 'services.web')).toMatchObject({
      uid: 0,
      switchTo: { uid: 0, gid: 0 },
    });
    expect(resolveRunUser({ user: '4242', group: 'nogroup' }, 'services.web').switchTo).toEqual({
      uid: 4242,
      gid: 65534,
    });
    expect(() => resolveRunUser({ user: 'no-such-user-teal' }, 'pipelines.web')).toThrow(
      /pipelines\.web: no user "no-such-user-teal"/,
    );
  });

  it.runIf(root)(
    'not as root: runs as itself, and a user: naming anyone else is an error naming both',
    () => {
      // nobody runs teal's own module: from a copy when the clone is where nobody cannot enter.
      const dist = reachableExample(path.dirname(distEntry('users.js')), 'teal-users-dist-', {
        recursive: true,
      });
      onTestFinished(() => {
        if (dist.copied) rmSync(dist.dir, { recursive: true, force: true });
      });
      const script = `import(${JSON.stringify(pathToFileURL(path.join(dist.dir, 'users.js')).href)}).then((u) => {
      console.log(JSON.stringify(u.resolveRunUser({}, 'services.web')));
      try { u.resolveRunUser({ user: 'root' }, 'services.web'); console.log('switched'); } catch (e) { console.log(e.code + ' ' + e.message); }
    });`;
      const out = execFileSync(process.execPath, ['-e', script], {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        encoding: 'utf8',
      });
      const [self, refused] = out.trim().split('\n');
      expect(JSON.parse(self!)).toMatchObject({ name: 'nobody', uid: 65534 });
      expect(JSON.parse(self!).switchTo).toBeUndefined();
      expect(refused).toBe(
        'TEAL_CONFIG_INVALID services.web: teal runs as nobody (uid 65534, gid 65534) and cannot switch to user root (uid 0), group 0: start teal up as root, or remove user:/group:',
      );
    },
  );

  it.runIf(root)('a folder the run user cannot search is named, with its mode, owner and the fix', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-users-'));
    const app = path.join(dir, 'app');
    mkdirSync(app);
    const nobody = resolveRunUser({}, 'services.web');
    expect(() => assertReachable(app, nobody, 'services.web')).toThrow(
      `services.web: nobody (uid 65534) cannot reach ${app}: ${dir} is mode 700, owner 0:0. Make it searchable for that user (chmod o+x ${dir}, or chown it), or set user: to one who can`,
    );
    chmodSync(dir, 0o711);
    expect(() => assertReachable(app, nobody, 'services.web')).not.toThrow();
  });
});
