/**
 * `{{name}}` placeholders in a service's command, cwd and env, filled per release. Values are
 * substituted into argument strings, never into a shell line, so a version like `1.0; rm -rf /`
 * stays one harmless argument.
 */

export interface TemplateVars {
  version: string;
  service: string;
  slot: string;
}

const KNOWN = new Set<keyof TemplateVars>(['version', 'service', 'slot']);
const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

export function unknownPlaceholders(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)]
    .map((m) => m[1]!)
    .filter((name) => !KNOWN.has(name as keyof TemplateVars));
}

/** Fills the placeholders whose values are given; others stay as written (a later step fills them). */
export function interpolate(text: string, vars: Partial<TemplateVars>): string {
  return text.replace(PLACEHOLDER, (whole, name: string) => vars[name as keyof TemplateVars] ?? whole);
}
