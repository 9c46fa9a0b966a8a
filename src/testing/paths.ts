export { cliEntry, distEntry, packageRoot } from '../paths.js';
