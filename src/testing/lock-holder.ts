/**
 * A process that takes a lock and holds it until killed: the contract suite kills it with SIGKILL
 * to prove a dead holder's lock frees itself. Usage: lock-holder.js '<store config json>' <name> <ttlMs>
 */
import { openStore, type StoreConfig } from '../stores/open.js';

const [configJson, name, ttl] = process.argv.slice(2);
const config = JSON.parse(configJson!) as StoreConfig & { stateDir?: string };
const store = openStore(config, config.stateDir ?? process.cwd());
await store.lock(name!, { ttlMs: Number(ttl), holder: `pid ${process.pid}` });
process.stdout.write('locked\n');
setInterval(() => {}, 60_000);
