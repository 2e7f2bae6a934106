/**
 * @module The gRPC method description of the control stream. Frames cross gRPC as raw bytes so that
 * each end decodes them itself, with its own size bound and a precise error instead of a torn stream.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { CONNECT_METHOD_PATH } from './control.js';

const identity = (b: Buffer): Buffer => b;

/**
 * HTTP/2 flow-control window (per stream and per connection) that each end of the control stream
 * grants the other. The default of 64 KiB lets one 1 MiB artifact chunk through only after 16 round
 * trips of WINDOW_UPDATE between two busy event loops; the artifact window (8 MiB unacknowledged per
 * transfer) bounds what a transfer puts in flight, and this lets it all be in flight.
 */
export const HTTP2_WINDOW_BYTES = 8 * 1024 * 1024;

export const relayServiceDefinition = {
  connect: {
    path: CONNECT_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'Connect',
  },
} satisfies ServiceDefinition;
