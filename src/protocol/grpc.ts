/**
 * @module The gRPC method description of the control stream. Frames cross gRPC as raw bytes so that
 * each end decodes them itself, with its own size bound and a precise error instead of a torn stream.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { CONNECT_METHOD_PATH } from './control.js';

const identity = (b: Buffer): Buffer => b;

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
