import Joi from 'joi';
import { SCREENSHOT_MAX_MB } from '../../recordings/screenshots';
import { errorResponseSchema } from '../response-schemas';
import { ROUTES } from '../routes';
import { botRefSchema, platformControlSchema } from '../schemas';
import { Components, joiToJsonSchema, JsonSchema } from './joi-json-schema';
import { Answer, ErrorExample, OPERATIONS, Tag } from './operations';

/**
 * The OpenAPI 3.1 document of the API, served at GET /api/openapi.json: every route of the route table (and
 * nothing else), with the schemas its handlers validate with and the answers of src/api/response-schemas.ts,
 * all turned into JSON Schema by joi-json-schema.ts. Built once per process from the fleet's configuration
 * (the platform names and limits PATCH /api/platforms/:name accepts).
 */
export const API_VERSION = '0.1.0';

export interface OpenApiOptions {
  platforms: ReadonlyArray<{ name: string; limit: number }>;
}

type Guard = (typeof ROUTES)[number][2];

const SECURITY: Record<Guard, Array<Record<string, string[]>>> = {
  none: [],
  client: [{ apiKey: [] }, { apiKeyHeader: [] }],
  bot: [{ botToken: [] }, { botTokenHeader: [] }],
  admin: [{ adminKey: [] }, { adminKeyHeader: [] }, { adminBasic: [] }],
};

const SECURITY_SCHEMES = {
  apiKey: {
    type: 'http',
    scheme: 'bearer',
    description: 'A client API key (`npm run apikey -- create <owner>`) as `Authorization: Bearer <key>`',
  },
  apiKeyHeader: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'The same API key in `x-api-key`' },
  botToken: {
    type: 'http',
    scheme: 'bearer',
    description: "The bot's own `MILO_AUTH_TOKEN` (valid for that one bot only) as `Authorization: Bearer <token>`",
  },
  botTokenHeader: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Milo-Token',
    description: 'The same bot token in `X-Milo-Token`',
  },
  adminKey: { type: 'http', scheme: 'bearer', description: '`ADMIN_API_KEY` as `Authorization: Bearer <key>`' },
  adminKeyHeader: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'The same admin key in `x-api-key`' },
  adminBasic: {
    type: 'http',
    scheme: 'basic',
    description: 'HTTP basic auth with the admin key as password (any user name), for browsers',
  },
};

const TAGS: Array<{ name: Tag; description: string }> = [
  {
    name: 'Bots',
    description: 'Clients (API key): send bots to meetings, follow and end them. An owner only ever sees its own bots.',
  },
  { name: 'Platforms', description: 'Where bots run: limits, occupancy, queues; runtime controls with the admin key.' },
  {
    name: 'Bot protocol',
    description: 'What a bot container calls, with its own token (`MILO_URL`, `MILO_AUTH_TOKEN`).',
  },
  { name: 'Health', description: 'Liveness and readiness, without credentials.' },
];

/** Errors by status: when they happen on any route, and an example body. */
const ERRORS: Record<number, ErrorExample> = {
  400: {
    when: 'Validation failed: `details` names each failing field by its path',
    code: 'VALIDATION_FAILED',
    message: 'meeting.url is required',
    details: [{ path: 'meeting.url', message: 'is required' }],
  },
  401: {
    when: 'Missing or wrong credentials',
    code: 'UNAUTHORIZED',
    message: 'an API key is required (Authorization: Bearer <key>)',
  },
  404: {
    when: 'No such bot (or one of another owner)',
    code: 'NOT_FOUND',
    message: 'bot 6751c0a4e3b2f1a9c8d7e6f5 not found',
  },
  409: {
    when: 'Conflict',
    code: 'ILLEGAL_TRANSITION',
    message: 'cannot move a bot from IN_CALL to JOINING_CALL',
    details: { from: 'IN_CALL', to: 'JOINING_CALL' },
  },
  410: {
    when: 'The bot has ended: its token is no longer accepted',
    code: 'GONE',
    message: 'bot 6751c0a4e3b2f1a9c8d7e6f5 has ended (ENDED)',
  },
  413: {
    when: 'The body is larger than 64 KB',
    code: 'PAYLOAD_TOO_LARGE',
    message: 'request body is larger than 64 KB',
  },
  415: {
    when: 'The body is not JSON (`application/json` or `application/*+json`, UTF-8)',
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'the request body must be JSON (Content-Type: application/json)',
  },
  429: {
    when: 'More than API_RATE_LIMIT_PER_MINUTE requests a minute with this API key; see Retry-After',
    code: 'RATE_LIMITED',
    message: 'more than 6000 requests a minute with this API key; retry in 12 s',
    details: { retryAfterSeconds: 12 },
  },
  503: {
    when: 'A backing service is unreachable',
    code: 'UNAVAILABLE',
    message: 'the placement queue is unavailable; nothing was created, retry later',
  },
};

const DESCRIPTION = [
  'meeboter places meeting bots on platforms under per-platform limits (see the README).',
  '',
  "**Credentials.** Client routes take an API key, bot routes the bot's own token, admin routes `ADMIN_API_KEY`; each as " +
    '`Authorization: Bearer …` or its header (`x-api-key`, `X-Milo-Token`). Health routes and this document need none.',
  '',
  '**Errors** are `{"error": {"code", "message", "details", "requestId"}}`, never with a stack; `requestId` is also the ' +
    "`X-Request-Id` header of every answer (the caller's own, if it sent a plausible one).",
  '',
  '**Bodies** are JSON (`application/json` or `application/*+json`, at most 64 KB) on the routes that read one, but for the ' +
    'screenshot upload (`multipart/form-data`); others ignore any body.',
].join('\n');

export function buildOpenApiDocument(options: OpenApiOptions): JsonSchema {
  const components: Components = {};
  const schema = (joi: Joi.Schema) => joiToJsonSchema(joi, components);
  const routeKeys = ROUTES.map(([method, path]) => `${method.toUpperCase()} ${path}`);
  const unrouted = Object.keys(OPERATIONS).filter((key) => !routeKeys.includes(key));
  if (unrouted.length) throw new Error(`openapi: described but not in the route table: ${unrouted.join(', ')}`);

  const ceiling = Math.max(1, ...options.platforms.map((platform) => platform.limit));
  const pathParameters: Record<string, { schema: Joi.Schema; description: string }> = {
    id: { schema: botRefSchema, description: 'The bot, by its id or its number' },
    name: {
      schema: Joi.string().valid(...options.platforms.map((platform) => platform.name)),
      description: 'A platform of this fleet',
    },
  };

  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const [method, route, guard, body] of ROUTES) {
    const key = `${method.toUpperCase()} ${route}`;
    const doc = OPERATIONS[key];
    if (!doc) throw new Error(`openapi: route ${key} has no entry in src/api/openapi/operations.ts`);
    const names = [...route.matchAll(/:(\w+)/g)].map((match) => match[1]);
    const parameters: JsonSchema[] = names.map((name) => {
      const param = pathParameters[name];
      if (!param) throw new Error(`openapi: path parameter :${name} of ${key} has no schema`);
      return { name, in: 'path', required: true, description: param.description, schema: schema(param.schema) };
    });
    if (doc.query) parameters.push(...queryParameters(schema(doc.query), key));
    for (const header of doc.headers ?? []) {
      parameters.push({
        name: header.name,
        in: 'header',
        required: false,
        description: header.description,
        schema: schema(header.schema),
      });
    }
    if ((body !== 'none') !== Boolean(doc.body))
      throw new Error(`openapi: ${key} reads a body in the route table, not in its entry (or the reverse)`);

    const errors = new Map<number, ErrorExample>();
    const add = (status: number, own?: string | ErrorExample) => {
      if (typeof own !== 'object' && !ERRORS[status]) throw new Error(`openapi: ${key}: no example for a ${status}`);
      errors.set(status, typeof own === 'object' ? own : { ...ERRORS[status], when: own ?? ERRORS[status].when });
    };
    if (names.includes('id')) add(404);
    if (body !== 'none') [400, 413, 415].forEach((status) => add(status));
    if (doc.query || doc.headers) add(400);
    if (guard !== 'none') add(401);
    if (guard === 'client') add(429);
    if (guard === 'bot') add(410);
    for (const [status, own] of Object.entries(doc.errors ?? {})) add(Number(status), own);

    const responses: Record<string, JsonSchema> = {};
    for (const [status, answer] of Object.entries(doc.answers)) responses[status] = response(answer, schema);
    for (const [status, error] of [...errors].sort(([a], [b]) => a - b)) {
      responses[String(status)] = errorResponse(error, schema, status === 429);
    }

    const operation: JsonSchema = {
      operationId: doc.operationId,
      tags: [doc.tag],
      summary: doc.summary,
      ...(doc.description ? { description: doc.description } : {}),
      security: SECURITY[guard],
      ...(parameters.length ? { parameters } : {}),
      ...(doc.body
        ? {
            requestBody: {
              required: true,
              content:
                body === 'multipart'
                  ? multipartContent(schema(doc.body.schema as Joi.Schema), doc.body.example, key)
                  : {
                      'application/json': {
                        schema: schema(
                          doc.body.schema === 'platform-control' ? platformControlSchema(ceiling) : doc.body.schema,
                        ),
                        example: doc.body.example,
                      },
                    },
            },
          }
        : {}),
      responses,
    };
    const openApiPath = route.replace(/:(\w+)/g, '{$1}');
    paths[openApiPath] = { ...paths[openApiPath], [method]: operation };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'meeboter',
      version: API_VERSION,
      description: DESCRIPTION,
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: TAGS,
    paths,
    components: {
      schemas: components,
      securitySchemes: SECURITY_SCHEMES,
      headers: {
        'X-Request-Id': {
          description: 'The request id, also in error bodies and the logs',
          schema: { type: 'string' },
        },
        'Retry-After': {
          description: 'Seconds until the API key may call again',
          schema: { type: 'integer', minimum: 1 },
        },
      },
    },
  };
}

function response(answer: Answer, schema: (joi: Joi.Schema) => JsonSchema): JsonSchema {
  return {
    description: answer.description,
    headers: { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } },
    content: { 'application/json': { schema: schema(answer.schema), example: answer.example } },
  };
}

function errorResponse(error: ErrorExample, schema: (joi: Joi.Schema) => JsonSchema, retryAfter: boolean): JsonSchema {
  const { when, code, message, details } = error;
  const example = {
    error: { code, message, details: details ?? null, requestId: '2f1c7a9e-5b0d-4c8e-9f3a-1d2e3c4b5a69' },
  };
  const answer = response({ description: when, schema: errorResponseSchema, example }, schema);
  if (retryAfter)
    answer.headers = { ...(answer.headers as JsonSchema), 'Retry-After': { $ref: '#/components/headers/Retry-After' } };
  return answer;
}

/** A multipart upload: the PNG in `file` beside the text fields of the entry's schema (a plain Joi object). */
function multipartContent(fields: JsonSchema, example: unknown, key: string): JsonSchema {
  if (fields.type !== 'object' || fields.allOf || !fields.properties)
    throw new Error(`openapi: the multipart fields of ${key} must be a plain Joi object`);
  // a file part (with a filename); Meeboter's images give it no type of their own, so it goes as octet-stream
  const file = {
    type: 'string',
    contentMediaType: 'application/octet-stream',
    description: `A PNG image (told by its signature, whatever the part's type), at most ${SCREENSHOT_MAX_MB} MB`,
  };
  return {
    'multipart/form-data': {
      schema: {
        ...fields,
        properties: { file, ...(fields.properties as JsonSchema) },
        required: ['file', ...((fields.required as string[] | undefined) ?? [])],
      },
      encoding: { file: { contentType: 'image/png, application/octet-stream' } },
      example: { file: '(the PNG)', ...(example as object) },
    },
  };
}

/** A Joi object of query parameters becomes one parameter per key. */
function queryParameters(object: JsonSchema, key: string): JsonSchema[] {
  if (object.type !== 'object' || object.allOf || !object.properties)
    throw new Error(`openapi: the query of ${key} must be a plain Joi object`);
  const required = (object.required as string[] | undefined) ?? [];
  return Object.entries(object.properties as Record<string, JsonSchema>).map(([name, schema]) => {
    const { description, ...rest } = schema;
    return {
      name,
      in: 'query',
      required: required.includes(name),
      ...(description ? { description } : {}),
      schema: rest,
    };
  });
}
