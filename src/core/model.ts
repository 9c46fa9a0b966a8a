/**
 * The words of DESIGN.md as types. Shared by core and by every adapter (types only, no behaviour),
 * so a runtime, a store and a traffic switch all speak of the same slots, releases and instances.
 */

export type Slot = 'blue' | 'green';
export const SLOTS: readonly Slot[] = ['blue', 'green'];

export function otherSlot(slot: Slot): Slot {
  return slot === 'blue' ? 'green' : 'blue';
}

export interface Endpoint {
  host: string;
  port: number;
}

export function endpointText(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
