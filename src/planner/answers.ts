/**
 * @module respond_to_worker's checks, before anything is stored or sent: the task must wait on a question
 * not answered yet, the content must match the question's schema, and the files must be readable, under
 * the limit and not clash with the task's input files. And the Respond message itself.
 */
import { create } from '@bufbuild/protobuf';
import {
  checkArtifactLimit,
  describeFiles,
  type LocalFile,
  resolveLocalPaths,
} from '../agent/artifacts/index.js';
import type { A2aBody } from '../agent/index.js';
import { answerObject, RespondSchema } from '../protocol/a2a.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/control.js';
import { answerProblem } from './answer-schema.js';
import { PlannerError } from './errors.js';
import { LIMIT_FLAG } from './task-files.js';
import type { QueuedAnswer, StoredTask } from './task-store.js';

/** The largest `content` of one answer: a relay frame, less room for the envelope and encryption. */
export const MAX_ANSWER_BYTES = DEFAULT_MAX_FRAME_BYTES - 64 * 1024;

export type AnswerAction = 'accept' | 'decline' | 'cancel';
export type FileInfos = Awaited<ReturnType<typeof describeFiles>>;

/**
 * The seq of the question `task` waits on and the answer's JSON (empty for decline and cancel).
 * `answering` when another respond_to_worker for the task is still reading its files.
 */
export function checkAnswer(
  task: StoredTask,
  content: unknown,
  action: AnswerAction,
  answering: boolean,
): { seq: number; json: string } {
  const s = task.snapshot;
  const taskId = s.task_id;
  if (s.state !== 'waiting_input' || !s.pending) {
    throw new PlannerError(
      'wrong_state',
      `task ${taskId} is ${s.state}, not waiting_input: respond_to_worker only answers a pending question. ` +
        'Call get_task_status to see what the task is doing',
    );
  }
  if (task.answered_seq === s.pending.seq || answering) {
    throw new PlannerError(
      'wrong_state',
      `the question of task ${taskId} (event ${s.pending.seq}) was already answered; the worker has not ` +
        'moved on yet. Call get_task_status in a moment',
    );
  }
  if (action !== 'accept') return { seq: s.pending.seq, json: '' };
  if (content === undefined) {
    throw new PlannerError(
      'invalid_argument',
      `content is required to accept the question of task ${taskId}: an object shaped by its schema ` +
        '(pending_question.schema), or action "decline" / "cancel" to answer without content',
    );
  }
  const schema = s.pending.schema as Parameters<typeof answerObject>[1];
  const answer = answerObject(content, schema);
  const problem = answerProblem(answer, schema);
  if (problem) {
    throw new PlannerError(
      'invalid_argument',
      `content does not match the schema of the question of task ${taskId}: ${problem}. Nothing was ` +
        'sent; the task is still waiting_input: answer again with respond_to_worker',
    );
  }
  const json = JSON.stringify(answer);
  // One Respond must fit one relay frame: refused before it is stored, so the question stays open.
  const size = Buffer.byteLength(json);
  if (size > MAX_ANSWER_BYTES) {
    throw new PlannerError(
      'invalid_argument',
      `the answer's content is ${size} bytes, over the ${MAX_ANSWER_BYTES} bytes one answer can carry (one relay frame); ` +
        'put large data in a file and pass it in artifact_files instead. The answer was not sent; the question is still open',
    );
  }
  return { seq: s.pending.seq, json };
}

/** Reads and hashes an answer's files; input files of the task are never replaced. */
export async function readAnswerFiles(
  task: StoredTask,
  paths: string[],
  maxBytes: number,
): Promise<{ files: LocalFile[]; infos: FileInfos }> {
  try {
    const files = await resolveLocalPaths(paths);
    checkArtifactLimit(files, maxBytes, LIMIT_FLAG);
    const taken = new Set((task.request.input_files ?? []).map((f) => f.name));
    const clash = files.find((f) => taken.has(f.name));
    if (clash) {
      throw new Error(
        `${clash.name} was already sent with the task (input files are never replaced); give the new file another name`,
      );
    }
    return { files, infos: await describeFiles(files) };
  } catch (err) {
    throw new PlannerError('invalid_argument', `${(err as Error).message}; the answer was not sent`);
  }
}

/** A queued answer's files, read again for a resend; an error when they cannot be read any more. */
export async function rereadAnswerFiles(
  answer: QueuedAnswer,
): Promise<{ files: LocalFile[]; infos: FileInfos }> {
  if (answer.files.length === 0) return { files: [], infos: [] };
  const files = await resolveLocalPaths(answer.files);
  return { files, infos: await describeFiles(files) };
}

/** The Respond for the question at `questionSeq` (the worker ignores one for a question it took). */
export function respondMessage(
  taskId: string,
  questionSeq: number,
  answer: QueuedAnswer,
  infos: FileInfos,
): A2aBody {
  return {
    case: 'respond',
    value: create(RespondSchema, {
      taskId,
      contentJson: answer.content_json,
      files: infos,
      action: answer.action,
      questionSeq: BigInt(questionSeq),
    }),
  };
}
