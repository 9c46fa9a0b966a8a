import path from 'node:path';
import { packageRoot } from '../paths.js';

export { cliEntry, distEntry, packageRoot } from '../paths.js';

/**
 * examples/hello as the tests deploy it: the clone's own folder, or, when the clone is where the
 * apps' user cannot reach (run as root from under /root), the copy test/global-setup.ts made and
 * named in TEAL_TEST_HELLO_DIR (reachable-copy.ts).
 */
export const HELLO_DIR = process.env.TEAL_TEST_HELLO_DIR ?? path.join(packageRoot(), 'examples/hello');
