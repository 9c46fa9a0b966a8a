import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../paths.js';
import { tealJsonSchema, tealJsonSchemaText } from './json-schema.js';

describe('the JSON Schema for editors', () => {
  it('schema/teal.schema.json is what the validating schema generates (run `npm run schema` after changing it)', () => {
    const committed = readFileSync(path.join(packageRoot(), 'schema/teal.schema.json'), 'utf8');
    expect(committed).toBe(tealJsonSchemaText());
  });

  it('describes durations as strings with units and refuses unknown keys', () => {
    const schema = tealJsonSchema() as {
      additionalProperties: boolean;
      properties: {
        services: { additionalProperties: { properties: { drain: { type: string; pattern: string } } } };
      };
    };
    expect(schema.additionalProperties).toBe(false);
    const drain = schema.properties.services.additionalProperties.properties.drain;
    expect(drain.type).toBe('string');
    expect(new RegExp(drain.pattern).test('30s')).toBe(true);
    expect(new RegExp(drain.pattern).test('30')).toBe(false);
  });
});
