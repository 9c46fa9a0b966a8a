import { memoryStore } from './memory.js';
import { storeContract } from './store.contract.js';

storeContract('memory', { create: async () => memoryStore() });
