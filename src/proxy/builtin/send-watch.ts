import type { Socket } from 'node:net';

/** libuv's count of bytes it still has to write on a stream (partial writes lower it). */
interface StreamHandle {
  writeQueueSize?: number;
}

/**
 * Write-stall detection for one socket, polled by the data plane's sweep (no timer, no allocation
 * per request). Only a stall counts: output pending whose amount has not changed since the last
 * look. A slow reader that takes a few bytes between two looks moves libuv's write queue (which
 * shrinks on partial writes, not only when a whole write completes), so a long stream (SSE, a big
 * download to a slow client, a websocket) that keeps draining is never cut; a peer that stopped
 * reading is closed `limitMs` after its output stopped moving (nginx's send_timeout: "between two
 * successive write operations").
 *
 * The writers never queue more while output is pending (they wait for 'drain'), so a change in the
 * pending amount means the peer took something.
 */
export class SendWatch {
  private mark = 0;
  private since = 0;

  /** Whether the socket's output has been stuck for longer than `limitMs`. */
  stalled(socket: Socket, now: number, limitMs: number): boolean {
    const pending =
      socket.writableLength +
      ((socket as unknown as { _handle?: StreamHandle })._handle?.writeQueueSize ?? 0);
    if (pending === 0) {
      this.since = 0;
      return false;
    }
    if (this.since === 0 || pending !== this.mark) {
      this.mark = pending;
      this.since = now;
      return false;
    }
    return now - this.since > limitMs;
  }

  reset(): void {
    this.since = 0;
  }
}
