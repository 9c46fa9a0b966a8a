/** Sizes in teal.yml and on command lines: "512KB", "100MB", "1GiB", "2048B" (K/M/G are 1024-based). */

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
export const SIZE_PATTERN = '^\\d+(\\.\\d+)?\\s*([KkMmGg][Ii]?)?[Bb]$';
const SIZE = new RegExp(SIZE_PATTERN);

export function parseSize(text: string): number {
  if (!SIZE.test(text)) throw new Error(`expected a size like "100MB", got ${JSON.stringify(text)}`);
  const m = /^(\d+(?:\.\d+)?)\s*(.*)$/.exec(text)!;
  return Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}
