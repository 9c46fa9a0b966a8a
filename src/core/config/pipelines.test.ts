import { describe, expect, it } from 'vitest';
import { isTealError } from '../errors.js';
import { type Problem, parseConfig } from './load.js';

const services =
  'services:\n  web-staging:\n    command: [node, server.js]\n    routes: [{ path: /staging }]\n  web:\n    command: [node, server.js]\n';

function problemsOf(text: string): Problem[] {
  try {
    parseConfig(text, '/srv/app/teal.yml');
  } catch (err) {
    if (isTealError(err, 'TEAL_CONFIG_INVALID')) return (err.details as { problems: Problem[] }).problems;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

describe('pipelines in teal.yml', () => {
  it('fills the defaults: branch main, a 10m stage timeout, environments as services', () => {
    const { config } = parseConfig(
      `${services}pipelines:\n  web:\n    source: { repo: /srv/git/web.git }\n    stages:\n      - { name: test, run: "npm test" }\n      - { name: build, run: "npm run build", timeout: 2m }\n    artifact: { path: dist }\n    environments: [web-staging, { service: web }]\nwebhooks:\n  github: { secretEnv: TEAL_GITHUB_SECRET }\n`,
      '/srv/app/teal.yml',
    );
    expect(config.pipelines.web).toEqual({
      source: { repo: '/srv/git/web.git', branches: ['main'] },
      stages: [
        { name: 'test', run: 'npm test', timeout: 600_000 },
        { name: 'build', run: 'npm run build', timeout: 120_000 },
      ],
      artifact: { path: 'dist' },
      environments: [{ service: 'web-staging' }, { service: 'web' }],
      env: {},
      inheritEnv: [],
    });
    expect(config.webhooks).toEqual({ github: { secretEnv: 'TEAL_GITHUB_SECRET' } });
  });

  it('a config without pipelines has none', () => {
    expect(parseConfig(services, '/srv/app/teal.yml').config.pipelines).toEqual({});
  });

  it('locates an environment naming no service, a duplicate stage, an escaping artifact and a bad secretEnv', () => {
    const problems = problemsOf(
      `${services}pipelines:\n  web:\n    source: { repo: /srv/git/web.git, branches: [main] }\n    stages:\n      - { name: test, run: "npm test" }\n      - { name: test, run: "npm test", timeout: soon }\n    artifact: { path: ../etc }\n    environments: [web-staging, { service: api }]\nwebhooks:\n  github: { secretEnv: "my secret" }\n`,
    );
    expect(problems.map((p) => `${p.line} ${p.path}: ${p.message}`)).toEqual([
      '12 pipelines.web.stages.1.timeout: expected a duration like "10m", got "soon"',
      '13 pipelines.web.artifact.path: expected a folder inside the checkout (relative, without "..")',
      '16 webhooks.github.secretEnv: expected the name of an environment variable like "TEAL_GITHUB_SECRET", got "my secret"',
    ]);
    const twice = problemsOf(
      `${services}pipelines:\n  web:\n    source: { repo: /srv/git/web.git }\n    stages:\n      - { name: test, run: "npm test" }\n      - { name: test, run: "npm test" }\n`,
    );
    expect(twice).toEqual([
      expect.objectContaining({
        line: 11,
        path: 'pipelines.web.stages',
        message: 'expected each stage to have its own name',
      }),
    ]);
    // Cross-references are checked once the rest is valid.
    const missing = problemsOf(
      `${services}pipelines:\n  web:\n    source: { repo: /srv/git/web.git }\n    environments: [web-staging, { service: api }, web-staging]\n`,
    );
    expect(missing).toEqual([
      expect.objectContaining({
        line: 10,
        path: 'pipelines.web.environments.1',
        message: 'no service named api (services: web-staging, web)',
      }),
      expect.objectContaining({
        path: 'pipelines.web.environments.2',
        message: 'web-staging is already an environment of this pipeline',
      }),
    ]);
  });

  it('refuses a repo that git would read as an option and unknown keys', () => {
    const problems = problemsOf(
      `${services}pipelines:\n  web:\n    source: { repo: "--upload-pack=evil", branch: main }\n`,
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'pipelines.web.source.repo: expected a git URL or a path, not an option',
      'pipelines.web.source.branch: unknown key (expected one of: repo, branches)',
    ]);
  });
});
