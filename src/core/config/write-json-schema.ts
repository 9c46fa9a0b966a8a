/** `npm run schema`: regenerates schema/teal.schema.json from the schema the code validates with. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../paths.js';
import { tealJsonSchemaText } from './json-schema.js';

const file = path.join(packageRoot(), 'schema', 'teal.schema.json');
mkdirSync(path.dirname(file), { recursive: true });
writeFileSync(file, tealJsonSchemaText());
process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
