import { describe, expect, it } from 'vitest';
import { hostOf, normalizePrefix, Router } from './router.js';

describe('Router', () => {
  const router = new Router([
    { path: '/', target: 'web' },
    { path: '/api', target: 'api' },
    { path: '/api/v2/', target: 'api-v2' },
    { host: 'admin.example', path: '/', target: 'admin' },
    { host: 'Shop.Example', path: '/api', target: 'shop-api' },
  ]);

  it('takes the longest matching path prefix across services', () => {
    expect(router.match('x', '/')).toBe('web');
    expect(router.match('x', '/about')).toBe('web');
    expect(router.match('x', '/api')).toBe('api');
    expect(router.match('x', '/api/users')).toBe('api');
    expect(router.match('x', '/api/v2')).toBe('api-v2');
    expect(router.match('x', '/api/v2/users?page=2')).toBe('api-v2');
  });

  it('matches prefixes on path-segment boundaries only', () => {
    expect(router.match('x', '/apix')).toBe('web');
    expect(router.match('x', '/api/v20')).toBe('api');
    expect(router.match('x', '/api?x=1')).toBe('api');
  });

  it('matches a named host without its port or case, and lets a longer prefix of any host win', () => {
    expect(router.match('admin.example', '/')).toBe('admin');
    expect(router.match('ADMIN.example:8080', '/settings')).toBe('admin');
    expect(router.match('admin.example.', '/')).toBe('admin');
    expect(router.match('admin.example', '/api/x')).toBe('api');
    expect(router.match('other.example', '/')).toBe('web');
  });

  it('prefers the route naming the host at equal prefix length', () => {
    expect(router.match('shop.example', '/api/cart')).toBe('shop-api');
    expect(router.match('elsewhere', '/api/cart')).toBe('api');
  });

  it('finds nothing when no route matches', () => {
    const r = new Router([
      { path: '/api', target: 'api' },
      { host: 'a.example', path: '/', target: 'a' },
    ]);
    expect(r.match('b.example', '/')).toBeUndefined();
    expect(r.match(undefined, '/apix')).toBeUndefined();
    expect(r.match(undefined, '/api/x')).toBe('api');
    expect(new Router([]).match('x', '/')).toBeUndefined();
  });
});

describe('hostOf', () => {
  it('drops the port, a trailing dot and case, and keeps IPv6 brackets', () => {
    expect(hostOf('Example.COM:80')).toBe('example.com');
    expect(hostOf('[::1]:8080')).toBe('[::1]');
    expect(hostOf('example.com.')).toBe('example.com');
    expect(hostOf(undefined)).toBe('');
  });
});

describe('normalizePrefix', () => {
  it('treats a trailing slash as the same route', () => {
    expect(normalizePrefix('/api/')).toBe('/api');
    expect(normalizePrefix('/')).toBe('/');
    expect(normalizePrefix('api')).toBe('/api');
  });
});
