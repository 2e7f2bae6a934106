export type { Bus, BusHandlers, PresenceEvent, Refusal } from './bus.js';
export { notFoundMessage } from './bus.js';
export { LocalBus, LocalHub } from './local/index.js';
export { openBus } from './open.js';
