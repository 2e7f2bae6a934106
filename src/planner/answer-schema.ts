/**
 * @module respond_to_worker's check: an answer is validated against the JSON Schema its question asked
 * for (MCP elicitation's `requestedSchema`) before it leaves, so a mismatch is the planner's error to
 * fix, not a task the worker's executor fails for good.
 */
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS: its default import is the module object under NodeNext.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;
// strict off: elicitation schemas carry annotations ajv does not know (enumNames, title).
const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
addFormats(ajv);

type Schema = { type?: unknown; properties?: Record<string, { type?: unknown }> };

function describe(e: ErrorObject, schema: Schema): string {
  const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const at = field || 'content';
  const got = (v: unknown) =>
    `got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v} ${JSON.stringify(v)?.slice(0, 60)}`;
  switch (e.keyword) {
    case 'type':
      return `${at} must be ${String(e.params.type)} (${got(e.data)})`;
    case 'required': {
      const name = String(e.params.missingProperty);
      const type = schema.properties?.[name]?.type;
      return `${name} is required${type ? ` (${String(type)})` : ''}`;
    }
    case 'additionalProperties':
      return `unknown field ${JSON.stringify(e.params.additionalProperty)} (the schema has ${Object.keys(schema.properties ?? {}).join(', ') || 'no fields'})`;
    case 'enum':
      return `${at} must be one of ${JSON.stringify(e.params.allowedValues)} (${got(e.data)})`;
    default:
      return `${at} ${e.message ?? 'is not valid'} (${got(e.data)})`;
  }
}

/** What is wrong with `content` for `schema`, naming each field and the type it wants; undefined if it fits. */
export function answerProblem(content: unknown, schema: unknown): string | undefined {
  if (schema === null || typeof schema !== 'object') return undefined; // the question set no schema
  let validate: ReturnType<typeof ajv.compile>;
  try {
    validate = ajv.compile(schema);
  } catch {
    return undefined; // a schema ajv cannot read is the executor's to enforce
  } finally {
    ajv.removeSchema(schema); // questions are few, but a planner runs for days
  }
  if (validate(content)) return undefined;
  return (validate.errors ?? []).map((e) => describe(e, schema as Schema)).join('; ');
}
