/**
 * @module P2P direct transfer: files between two agents over a direct TCP connection bound to their
 * A2A identities, signalled on the sealed A2A channel, with the relay as the fallback path. This list is
 * the public surface.
 */

export { a2aTransferChannel } from './a2a-channel.js';
export { advertisedHosts, candidateList, hostOfAddr, localAddresses, parseCandidate } from './candidates.js';
export { DirectRace, type RaceOptions, type RaceResult } from './connect.js';
export { DirectLink, type LinkIdentity } from './direct-link.js';
export { FrameError, FrameReader, frameHeader, MAX_DIRECT_FRAME_BYTES } from './frames.js';
export { answerWithSideLink, type SideLinkOptions } from './side-link.js';
export {
  DEFAULT_DIRECT_TIMEOUT_MS,
  InboundFiles,
  IncomingTransfer,
  type PathChange,
  type ReceiveFilesOptions,
  type SendFilesOptions,
  type SendFilesReport,
  sendFiles,
  type TransferChannel,
  type TransferIdentity,
  type TransferPath,
} from './transfer.js';
