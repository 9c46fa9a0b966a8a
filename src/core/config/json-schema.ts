import { z } from 'zod';
import { TealConfig } from './schema.js';

/** The JSON Schema of teal.yml for editors, generated from the schema the code validates with. */
export function tealJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(TealConfig, { io: 'input', target: 'draft-7' }) as Record<string, unknown>;
  return { ...schema, $id: 'https://teal.dev/schema/teal.schema.json' };
}

export function tealJsonSchemaText(): string {
  return `${JSON.stringify(tealJsonSchema(), null, 2)}\n`;
}
