import { LocalBus, LocalHub } from '../../src/relay/bus/local/index.js';
import { NatsBus } from '../../src/relay/bus/nats/index.js';
import { silentLogger } from '../../src/util/log.js';
import { runBusContract } from './bus-contract.js';
import { freshNatsUrl, serviceSkipReason } from './services.js';

runBusContract({
  name: 'local',
  setup: async () => {
    const hub = new LocalHub();
    return { newBus: async () => new LocalBus({ hub }) };
  },
});

runBusContract({
  name: 'nats',
  skip: await serviceSkipReason('NATS'),
  setup: async () => {
    const url = freshNatsUrl();
    return { newBus: () => NatsBus.connect(url, { logger: silentLogger }) };
  },
});
