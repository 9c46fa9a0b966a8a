import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import {
  parseInfo,
  parseMap,
  parseRequestLines,
  parseServersState,
  parseStat,
  tunnelsPerBackend,
} from './show.js';

// Answers as haproxy 2.6 gives them (trimmed to the lines that matter).

describe('haproxy answers', () => {
  it('reads show info', () => {
    const text =
      'Name: HAProxy\nVersion: 2.6.12\nPid: 6003\nUptime_sec: 4\nCumReq: 17\nStart_time_sec: 1795688071\n\n';
    expect(parseInfo(text)).toEqual({ pid: 6003, startedAt: 1795688071, cumulativeRequests: 17 });
  });

  it('refuses a show info without the fields it needs, quoting it', () => {
    let err: unknown;
    try {
      parseInfo('Unknown command\n');
    } catch (e) {
      err = e;
    }
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toContain('Unknown command');
  });

  it('reads show stat by column name', () => {
    const text =
      '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,\n' +
      'teal_lane_0,s1,0,0,1,1,,2,72,102,0,0,,0,0,\n' +
      'teal_lane_0,BACKEND,0,0,1,1,1,2,72,102,0,0,,3,4,\n\n';
    const rows = parseStat(text);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({
      pxname: 'teal_lane_0',
      svname: 'BACKEND',
      scur: '1',
      econ: '3',
      eresp: '4',
    });
    expect(() => parseStat('No such proxy.\n')).toThrow(/show stat/);
  });

  it('reads show servers state', () => {
    const text =
      '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight ' +
      'srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state ' +
      'srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port ' +
      'srv_check_addr srv_agent_addr srv_agent_port\n' +
      '3 teal_lane_0 1 s1 127.0.0.1 2 4 1 1 30 1 0 0 8 0 0 0 unset.teal.invalid 19001 - 0 0 - - 0\n' +
      '3 teal_lane_0 2 s2 ::1 0 5 1 1 44 1 0 0 8 0 0 0 unset.teal.invalid 0 - 0 0 - - 0\n\n';
    expect(parseServersState(text)).toEqual([
      { backend: 'teal_lane_0', server: 's1', addr: '127.0.0.1', port: 19001, op: 2, admin: 4 },
      { backend: 'teal_lane_0', server: 's2', addr: '::1', port: 0, op: 0, admin: 5 },
    ]);
    expect(() => parseServersState('Permission denied\n')).toThrow(/show servers state/);
  });

  it('reads show map', () => {
    const text = '0x55dcaa39b9d0 R*/ web\n0x55dcaa39bee0 Lweb teal_lane_0\n\n';
    expect(parseMap(text)).toEqual([
      { key: 'R*/', value: 'web' },
      { key: 'Lweb', value: 'teal_lane_0' },
    ]);
  });

  it('reads the request lines of the ring, in microseconds when the frontend timed them', () => {
    const text =
      '5 teal_lane_0 200 1 1795688800934192 1795688800935004\n' +
      '6 teal 404 0 1795688800936000 1795688800936100\n' +
      '7 teal 400 3 - 1795688800937000\n' +
      'not a request line\n';
    expect(parseRequestLines(text)).toEqual([
      { rt: 5, backend: 'teal_lane_0', status: 200, ms: 0.812 },
      { rt: 6, backend: 'teal', status: 404, ms: 0.1 },
      { rt: 7, backend: 'teal', status: 400, ms: 3 },
    ]);
  });

  it('counts the tunnels (websockets after their 101) of each backend in show sess all', () => {
    const text = `0x55f0527d6500: [26/Nov/2026:10:28:05.408226] id=21 proto=tcpv4 source=127.0.0.1:57496
  flags=0xc4a, conn_retries=0, conn_exp=<NEVER> conn_et=0x000 srv_conn=0x55dcaa1dafb0, pend_pos=(nil) waiting=0 epoch=0
  frontend=teal (id=2 mode=http), listener=? (id=1) addr=127.0.0.1:18080
  backend=teal_lane_1 (id=4 mode=http) addr=127.0.0.1:42174
  server=s1 (id=1) addr=127.0.0.1:19003
  txn=0x55f0528d3080 flags=0x8000 meth=1 status=101 req.st=MSG_TUNNEL rsp.st=MSG_TUNNEL req.f=0xcc rsp.f=0xcc
0x55dcaa2a4340: [26/Nov/2026:10:15:06.094401] id=18 proto=tcpv4 source=127.0.0.1:34434
  backend=teal_lane_1 (id=4 mode=http) addr=127.0.0.1:58186
  txn=0x55dcaa3a1490 flags=0x3000 meth=1 status=-1 req.st=MSG_DONE rsp.st=MSG_RPBEFORE req.f=0x4c rsp.f=0x00
0x55f0528d3ea0: [26/Nov/2026:10:28:05.415537] id=22 proto=unix_stream source=unix:1
  backend=<NONE> (id=-1 mode=-)
`;
    expect(tunnelsPerBackend(text)).toEqual(new Map([['teal_lane_1', 1]]));
  });
});
