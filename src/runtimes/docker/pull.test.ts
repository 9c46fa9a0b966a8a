import { describe, expect, it } from 'vitest';
import { parseImageRef } from './pull.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('image references', () => {
  it('splits name, tag and digest, telling a registry port from a tag', () => {
    expect(parseImageRef('nginx')).toEqual({ name: 'nginx' });
    expect(parseImageRef('web:1.4.2')).toEqual({ name: 'web', tag: '1.4.2' });
    expect(parseImageRef('registry.local:5000/team/web')).toEqual({ name: 'registry.local:5000/team/web' });
    expect(parseImageRef('registry.local:5000/team/web:abc123')).toEqual({
      name: 'registry.local:5000/team/web',
      tag: 'abc123',
    });
    expect(parseImageRef(`web:1@${DIGEST}`)).toEqual({ name: 'web', tag: '1', digest: DIGEST });
    expect(parseImageRef(`web@${DIGEST}`)).toEqual({ name: 'web', digest: DIGEST });
  });

  it('refuses what is not a reference, rather than put it in an engine URL', () => {
    for (const bad of [
      '',
      'web:',
      'Web:1',
      '../containers/x',
      'web:1?x=1',
      'a b',
      'web@sha256:zz',
      'team//web',
    ]) {
      expect(parseImageRef(bad), bad).toBeUndefined();
    }
  });
});
