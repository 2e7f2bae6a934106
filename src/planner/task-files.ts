/**
 * @module The files of the planner's tasks: result files received (one {@link ArtifactReceiver} per task,
 * verified when the final event lists them) and input or answer files sent (one {@link ArtifactSender}
 * per transfer, in the background, resumed after a new session). Which task owns which peer is the task
 * manager's to say.
 */
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  ArtifactReceiver,
  ArtifactSender,
  type ChunkRef,
  DEFAULT_MAX_ARTIFACT_BYTES,
  describeFiles,
  type LocalFile,
  type SendReport,
  type VerifyOutcome,
} from '../agent/artifacts/index.js';
import type { A2aBody } from '../agent/index.js';
import {
  answerWithSideLink,
  type PathChange,
  sendFiles,
  type TransferChannel,
  type TransferIdentity,
} from '../agent/p2p/index.js';
import {
  type ArtifactAck,
  type ArtifactChunk,
  type ArtifactInfo,
  CancelSchema,
  type P2pAnswer,
  type P2pOffer,
} from '../protocol/a2a.js';
import { type Logger, silentLogger } from '../util/log.js';

/** Named in the error of a file over the limit. */
export const LIMIT_FLAG = '--max-artifact-bytes of nfltr mcp';

export interface TaskFilesOptions {
  /** Result files go to `<stateDir>/artifacts/<task_id>/`. */
  stateDir: string;
  maxArtifactBytes?: number;
  /** For tests: the artifact sender corrupts this chunk once. */
  testCorruptChunk?: ChunkRef;
  /** Sends one message on a task's channel. */
  send: (peer: string, taskId: string, msg: A2aBody) => Promise<void>;
  /** Channels are sealed end to end: chunks go without their own SHA-256 (see ArtifactSender). */
  sealed: boolean;
  /** Resolves once the relay link has room again (flow control for files). */
  whenWritable: (signal?: AbortSignal) => Promise<void>;
  /**
   * Direct transfer with workers (`--p2p-threshold`): this end's identity for a peer, and the hosts it
   * advertises. Without it, offers are answered with no address (the worker takes the relay).
   */
  direct?: { threshold: number; identity: (peer: string) => TransferIdentity; addresses: () => string[] };
  logger?: Logger;
}

interface Transfer {
  /** The relay path's sender; or, for files offered on a direct link, {@link sendFiles}' handler. */
  sender?: ArtifactSender;
  handler?: Parameters<TransferChannel['subscribe']>[0];
  abort: AbortController;
}

export class TaskFiles {
  readonly #opts: TaskFilesOptions;
  readonly #log: Logger;
  /** Result files of a task, received before the event that lists them. */
  readonly #receivers = new Map<string, ArtifactReceiver>();
  /** Input and answer files going out, per task. */
  readonly #transfers = new Map<string, Set<Transfer>>();
  /** A task's direct link for result files, while it is open. */
  readonly #sideLinks = new Map<string, () => void>();
  /** Numbers the offers of input files (a task may send several: its inputs, then answers). */
  #offers = 0;

  constructor(opts: TaskFilesOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
  }

  get maxBytes(): number {
    return this.#opts.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES;
  }

  /** Whether result files of the task have arrived (then its final event is checked against them). */
  receiving(taskId: string): boolean {
    return this.#receivers.has(taskId);
  }

  /** Whether files are still going out to the task's worker. */
  sending(taskId: string): boolean {
    return this.#transfers.has(taskId);
  }

  accept(peer: string, chunk: ArtifactChunk, sealed: boolean): Promise<void> {
    return this.#receiver(chunk.taskId, peer).accept(chunk, sealed);
  }

  /**
   * A worker offers the task's result files for a direct link: answered with this end's candidates and
   * where each file stands; chunks on the link go to `onChunk` (the same way as those through the relay).
   */
  async answerOffer(
    peer: string,
    taskId: string,
    offer: P2pOffer,
    onChunk: (chunk: ArtifactChunk) => void,
  ): Promise<void> {
    const receiver = this.#receiver(taskId, peer);
    this.#sideLinks.get(taskId)?.();
    const direct = this.#opts.direct;
    const close = await answerWithSideLink({
      offer,
      send: (msg) => this.#opts.send(peer, taskId, msg),
      identity: direct?.identity(peer),
      addresses: direct?.addresses() ?? [],
      standing: await receiver.standing(),
      onChunk,
      onPath: (c: PathChange) =>
        this.#log.info(`result files: ${c.path} path`, { task: taskId, remote: c.remote, why: c.why }),
      logger: this.#log,
    });
    this.#sideLinks.set(taskId, close);
  }

  /** Checks the files a final event lists against what arrived. */
  verify(peer: string, taskId: string, listed: ArtifactInfo[]): Promise<VerifyOutcome> {
    return this.#receiver(taskId, peer).verify(listed);
  }

  #receiver(taskId: string, peer: string): ArtifactReceiver {
    let r = this.#receivers.get(taskId);
    if (!r) {
      r = new ArtifactReceiver({
        taskId,
        dir: join(this.#opts.stateDir, 'artifacts', taskId),
        partialDir: join(this.#opts.stateDir, 'artifacts', '.partial', taskId),
        maxBytes: this.maxBytes,
        limitFlag: LIMIT_FLAG,
        acceptUnannounced: true,
        logger: this.#log,
        sendAck: (ack) => this.#trySend(peer, taskId, { case: 'artifactAck', value: ack }),
      });
      this.#receivers.set(taskId, r);
    }
    return r;
  }

  /**
   * Streams files to a task's worker in the background; one that cannot be sent cancels the task. With
   * a file above `--p2p-threshold` they are offered on a direct link first (the relay when none connects).
   */
  send(peer: string, taskId: string, files: LocalFile[], what: string): void {
    const abort = new AbortController();
    const entry: Transfer = { abort };
    const set = this.#transfers.get(taskId) ?? new Set();
    set.add(entry);
    this.#transfers.set(taskId, set);
    const direct = this.#opts.direct;
    let run: Promise<SendReport>;
    if (direct && files.some((f) => f.size > direct.threshold)) {
      run = (async () =>
        sendFiles({
          channel: {
            send: (msg) => this.#opts.send(peer, taskId, msg),
            whenWritable: (signal) => this.#opts.whenWritable(signal),
            subscribe: (handler) => {
              entry.handler = handler;
              return () => {
                entry.handler = undefined;
              };
            },
          },
          identity: direct.identity(peer),
          addresses: direct.addresses(),
          transferId: `${taskId}/input/${++this.#offers}`,
          taskId,
          files,
          infos: await describeFiles(files),
          relayIfUnanswered: true,
          signal: abort.signal,
          corruptChunk: this.#opts.testCorruptChunk,
          onPath: (c) =>
            this.#log.info(`${what}: ${c.path} path`, { task: taskId, remote: c.remote, why: c.why }),
          logger: this.#log,
        }))();
    } else {
      entry.sender = new ArtifactSender(files, {
        taskId,
        send: (msg) => this.#opts.send(peer, taskId, msg),
        whenWritable: (signal) => this.#opts.whenWritable(signal),
        signal: abort.signal,
        chunkHashes: !this.#opts.sealed,
        sendConsumesData: this.#opts.sealed,
        corruptChunk: this.#opts.testCorruptChunk,
        logger: this.#log,
      });
      run = entry.sender.run();
    }
    run
      .then(
        (r) =>
          this.#log.info(`${what} sent`, {
            task: taskId,
            files: r.files,
            bytes: r.bytes,
            bytes_sent: r.bytesSent,
            bytes_resent: r.bytesResent,
            discarded: r.failed.length ? r.failed : undefined,
          }),
        (err: Error) => {
          if (abort.signal.aborted) return;
          this.#log.warn(`${what} could not be sent; cancelling the task`, {
            task: taskId,
            error: err.message,
          });
          this.#trySend(peer, taskId, {
            case: 'cancel',
            value: create(CancelSchema, { taskId, reason: `${what} could not be sent: ${err.message}` }),
          });
        },
      )
      .finally(() => {
        set.delete(entry);
        if (set.size === 0 && this.#transfers.get(taskId) === set) this.#transfers.delete(taskId);
      });
  }

  onAck(taskId: string, ack: ArtifactAck): void {
    for (const t of this.#transfers.get(taskId) ?? []) {
      t.sender?.onAck(ack);
      t.handler?.message({ case: 'artifactAck', value: ack });
    }
  }

  /** The worker's answer to an offer of input files on a direct link. */
  onP2pAnswer(taskId: string, answer: P2pAnswer): void {
    for (const t of this.#transfers.get(taskId) ?? [])
      t.handler?.message({ case: 'p2pAnswer', value: answer });
  }

  /** A new session with a worker: the transfers of its tasks go on from the acknowledged offsets. */
  resync(ownedByPeer: (taskId: string) => boolean): void {
    for (const [taskId, set] of this.#transfers)
      if (ownedByPeer(taskId))
        for (const t of set) {
          t.sender?.resync();
          t.handler?.resync?.();
        }
    for (const [taskId, r] of this.#receivers) if (ownedByPeer(taskId)) r.resync();
  }

  /** The task ended: what it still receives or sends is dropped. */
  end(taskId: string, why: string): void {
    this.#sideLinks.get(taskId)?.();
    this.#sideLinks.delete(taskId);
    const r = this.#receivers.get(taskId);
    this.#receivers.delete(taskId);
    void r?.abort();
    for (const t of this.#transfers.get(taskId) ?? []) t.abort.abort(why);
  }

  close(why: string): void {
    for (const close of this.#sideLinks.values()) close();
    for (const set of this.#transfers.values()) for (const t of set) t.abort.abort(why);
  }

  #trySend(peer: string, taskId: string, msg: A2aBody): void {
    this.#opts.send(peer, taskId, msg).catch((err: Error) => {
      this.#log.debug('A2A send failed', { peer, channel: taskId, kind: msg.case, error: err.message });
    });
  }
}
