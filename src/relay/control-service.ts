/**
 * @module The relay side of `Relay.Connect`: authenticate, take the hello, then route envelopes by
 * header only. Payloads are carried, never parsed.
 */

import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { AI_CHANNEL } from '../protocol/ai-session.js';
import {
  type AgentFrame,
  AgentKind,
  agentKindName,
  DeliveryErrorSchema,
  decodeAgentFrame,
  type Envelope,
  ErrorCode,
  envelopeProblem,
  FrameErrorSchema,
  type Hello,
  helloProblem,
  labelsProblem,
  PROTOCOL_VERSION,
  WelcomeSchema,
  WireError,
} from '../protocol/control.js';
import type { Logger } from '../util/log.js';
import { trace } from '../util/trace.js';
import type { BrowseFrames } from './browse.js';
import type { Cluster } from './cluster.js';
import { AgentConnection, type ConnectionLimits, type ControlCall, overflowStatus } from './connection.js';
import type { HoldQueue } from './hold.js';
import type { Accounting } from './limits.js';
import type { Revocations } from './revocation.js';
import type { Store } from './store/store.js';

export interface ControlServiceOptions extends ConnectionLimits {
  store: Store;
  cluster: Cluster;
  logger: Logger;
  relayId: string;
  keepaliveIntervalMs: number;
  /** How long the first frame (hello) may take after the stream opens. */
  helloTimeoutMs: number;
  /** False once the relay drains: new streams are refused with UNAVAILABLE. */
  accepting: () => boolean;
  /** Holds envelopes for agents that are reconnecting. */
  hold: HoldQueue;
  accounting: Accounting;
  /** Ends the streams of revoked keys. */
  revocations: Revocations;
  /** Takes envelopes on the `nfltr ai` channel (relay/ai-sessions.ts) instead of routing them. */
  ai?: { fromAgent(conn: AgentConnection, env: Envelope): void };
  /** Takes the agents' answers to `/browse` requests, and fails those of agents that leave. */
  browse?: BrowseFrames;
}

/** Reads the API key from `authorization: Bearer <key>` metadata. */
function bearerKey(call: ControlCall): string | undefined {
  const value = call.metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return m?.[1];
}

const fail = (code: grpc.status, details: string) => ({ code, details });

function kindProblem(kind: AgentKind): string | undefined {
  if (kind === AgentKind.UNSPECIFIED) return 'hello names no agent kind';
  if (agentKindName(kind) === undefined) {
    return `hello names agent kind ${kind}, which this relay does not know (expected worker, planner or tunnel)`;
  }
  return undefined;
}

/**
 * The envelope as the relay routes it: the known fields only, so fields a sender added (which the
 * relay cannot vouch for, and which could make the frames it builds grow past its bounds) never
 * travel; and a payload of its own when it would otherwise keep a much larger received frame alive
 * in a queue.
 */
function knownFields(env: Envelope, frameBytes: number): Envelope {
  const payload = frameBytes > 2 * env.payload.byteLength + 4096 ? Buffer.from(env.payload) : env.payload;
  return {
    $typeName: env.$typeName,
    to: env.to,
    from: '',
    channel: env.channel,
    seq: env.seq,
    kind: env.kind,
    payload,
  };
}

export function createControlHandler(
  opts: ControlServiceOptions,
): grpc.handleBidiStreamingCall<Buffer, Buffer> {
  const { store, cluster, logger } = opts;

  return (call: ControlCall) => {
    let conn: AgentConnection | undefined;
    let keyId: string | undefined;
    let account: string | undefined;
    /** True while the hello is being admitted (a store round trip): frames wait in `early`. */
    let admitting = false;
    const early: Buffer[] = [];
    /** Bytes in `early`: bounded, as a real agent sends nothing but its hello before the welcome. */
    let earlyBytes = 0;
    let ended = false;
    let unregister = () => {};
    const peer = call.getPeer();

    /** Ends the stream once: with an error status, or cleanly when `status` is absent. */
    const end = (status?: { code: grpc.status; details: string }) => {
      if (ended) return;
      ended = true;
      clearTimeout(helloTimer);
      if (conn) conn.close(status);
      else if (status) call.emit('error', status);
      else call.end();
    };

    const helloTimer = setTimeout(
      () => end(fail(grpc.status.DEADLINE_EXCEEDED, `no hello within ${opts.helloTimeoutMs} ms`)),
      opts.helloTimeoutMs,
    );
    helloTimer.unref();

    /** Only once admitted: before, a refused frame ends the stream. */
    const frameError = (err: WireError) =>
      conn?.sendControl({
        case: 'error',
        value: create(FrameErrorSchema, { code: err.code, message: err.message }),
      });

    const onHello = (hello: Hello) => {
      const problem = helloProblem(hello);
      if (problem) return end(fail(grpc.status.INVALID_ARGUMENT, `${problem} (check --name and --labels)`));
      const kind = kindProblem(hello.kind);
      if (kind) return end(fail(grpc.status.INVALID_ARGUMENT, kind));
      if (hello.protocolVersion !== PROTOCOL_VERSION) {
        return end(
          fail(
            grpc.status.FAILED_PRECONDITION,
            `protocol version ${hello.protocolVersion} is not supported; this relay speaks version ${PROTOCOL_VERSION}: upgrade nfltr on the older side`,
          ),
        );
      }
      const candidate = new AgentConnection(
        call,
        {
          account: account!,
          keyId: keyId!,
          agentId: hello.agentId,
          kind: hello.kind,
          sessionToken: hello.sessionToken,
        },
        { ...hello.labels },
        opts,
        opts.accounting,
        (details) => {
          logger.warn('ending the stream of an agent that does not read it', {
            agent: hello.agentId,
            account,
            peer,
          });
          cluster.leave(candidate);
          end(overflowStatus(details));
        },
      );
      admitting = true;
      cluster
        .admit(candidate, () => ended)
        .then(
          (admitted) => {
            admitting = false;
            if (!admitted.ok) {
              if (admitted.code === grpc.status.CANCELLED) return;
              return end(fail(admitted.code, admitted.message));
            }
            clearTimeout(helloTimer);
            conn = candidate;
            for (const held of opts.hold.release(account!, hello.agentId)) conn.enqueue(held);
            if (admitted.replaced) {
              logger.info('agent reconnected; old stream replaced', { agent: hello.agentId, account });
              admitted.replaced.close(
                fail(grpc.status.ABORTED, 'replaced by a newer connection of the same agent'),
              );
            }
            conn.sendControl({
              case: 'welcome',
              value: create(WelcomeSchema, {
                agentId: hello.agentId,
                account,
                protocolVersion: PROTOCOL_VERSION,
                maxFrameBytes: opts.maxFrameBytes,
                keepaliveIntervalMs: opts.keepaliveIntervalMs,
                relayId: opts.relayId,
                observedAddr: peer.replace(/^ipv[46]:/, ''),
              }),
            });
            logger.info('agent connected', {
              agent: hello.agentId,
              account,
              kind: AgentKind[hello.kind],
              peer,
            });
            earlyBytes = 0;
            for (const b of early.splice(0)) onData(b);
          },
          (err: Error) => {
            admitting = false;
            logger.error('store failed while admitting an agent', {
              agent: hello.agentId,
              error: err.message,
            });
            end(fail(grpc.status.UNAVAILABLE, 'relay store unavailable; redial'));
          },
        );
    };

    const route = (from: AgentConnection, env: Envelope, frameBytes: number) => {
      // A closed stream (revoked, replaced) routes nothing more, even from frames already read.
      if (from.closed) return opts.accounting.dropped(from.identity.account, 'sender_closed');
      trace('relay.read', env.channel);
      const problem = envelopeProblem(env);
      if (!problem && opts.ai && env.channel === AI_CHANNEL) return opts.ai.fromAgent(from, env);
      if (!problem) return cluster.route(from, knownFields(env, frameBytes));
      from.sendControl({
        case: 'deliveryError',
        value: create(DeliveryErrorSchema, {
          to: env.to,
          channel: env.channel,
          seq: env.seq,
          kind: env.kind,
          code: ErrorCode.INVALID_ARGUMENT,
          message: problem,
        }),
      });
    };

    const handle = (frame: AgentFrame, frameBytes: number) => {
      const f = frame.frame;
      if (!conn) {
        if (f.case === 'hello' && !admitting) return onHello(f.value);
        return end(fail(grpc.status.INVALID_ARGUMENT, `first frame must be hello, got ${f.case}`));
      }
      switch (f.case) {
        case 'hello':
          return frameError(
            new WireError(ErrorCode.INVALID_ARGUMENT, 'hello was already sent on this stream'),
          );
        case 'labels': {
          const problem = labelsProblem(f.value.labels);
          if (problem) return frameError(new WireError(ErrorCode.INVALID_ARGUMENT, problem));
          conn.labels = { ...f.value.labels };
          cluster.labelsChanged(conn);
          return;
        }
        case 'envelopes':
          for (const env of f.value.envelopes) route(conn, env, frameBytes);
          return;
        case 'http':
          return opts.browse?.onFrame(conn, f.value);
      }
    };

    const onData = (bytes: Buffer) => {
      if (ended) return;
      if (account === undefined || admitting) {
        earlyBytes += bytes.byteLength;
        if (earlyBytes > opts.maxFrameBytes) {
          return end(
            fail(
              grpc.status.RESOURCE_EXHAUSTED,
              `${earlyBytes} bytes sent before the relay welcomed this stream (limit ${opts.maxFrameBytes}); send hello, then wait for the welcome`,
            ),
          );
        }
        early.push(bytes);
        return;
      }
      try {
        handle(decodeAgentFrame(bytes, opts.maxFrameBytes), bytes.byteLength);
      } catch (err) {
        // A frame never takes the relay down: wire errors go back to the sender, anything else is ours.
        const wire =
          err instanceof WireError
            ? err
            : new WireError(
                ErrorCode.UNSPECIFIED,
                `relay failed to handle the frame: ${(err as Error).message}`,
              );
        if (!(err instanceof WireError))
          logger.error('frame handler failed', { error: (err as Error).stack });
        logger.warn('refused frame', { agent: conn?.identity.agentId, peer, error: wire.message });
        if (!conn) return end(fail(grpc.status.INVALID_ARGUMENT, wire.message));
        frameError(wire);
      }
    };

    call.on('data', onData);
    call.on('error', () => {}); // a reset stream ends in 'close' below; nothing else to do
    call.on('end', () => end());
    call.on('close', () => {
      clearTimeout(helloTimer);
      ended = true;
      unregister();
      if (conn && cluster.leave(conn)) {
        logger.info('agent disconnected', { agent: conn.identity.agentId, account: conn.identity.account });
      }
      conn?.close();
      if (conn) opts.browse?.onClosed(conn);
    });

    if (!opts.accepting()) return end(fail(grpc.status.UNAVAILABLE, 'relay is shutting down; redial'));
    const key = bearerKey(call);
    if (!key) {
      return end(fail(grpc.status.UNAUTHENTICATED, 'missing API key: pass --api-key or set NFLTR_API_KEY'));
    }
    const generation = opts.revocations.generation;
    store.authenticate(key).then(
      (auth) => {
        if (ended) return;
        if (!auth.ok) {
          logger.warn('refused agent', { peer, reason: auth.reason });
          return end(fail(grpc.status.UNAUTHENTICATED, `${auth.message}: check --api-key / NFLTR_API_KEY`));
        }
        keyId = auth.keyId;
        account = auth.account;
        const revoked = (details: string) => {
          if (conn) cluster.leave(conn);
          end(fail(grpc.status.UNAUTHENTICATED, details));
        };
        unregister = opts.revocations.add(auth.keyId, revoked);
        // A revocation acted on while this key was being checked may have missed this stream.
        if (opts.revocations.generation !== generation) {
          opts.revocations.isRevoked(auth.keyId).then(
            (yes) => yes && revoked(`API key ${auth.keyId} was revoked`),
            () => {},
          );
        }
        earlyBytes = 0;
        for (const b of early.splice(0)) onData(b);
      },
      (err: Error) => {
        logger.error('store failed during authentication', { error: err.message });
        end(fail(grpc.status.UNAVAILABLE, 'relay store unavailable; retry'));
      },
    );
  };
}
