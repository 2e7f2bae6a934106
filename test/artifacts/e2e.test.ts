import { artifactsEndToEnd } from './e2e-suite.js';

// 32 MiB: four send windows each way, enough for the relay-restart case; 200 MiB runs in `npm run soak`.
artifactsEndToEnd(32);
