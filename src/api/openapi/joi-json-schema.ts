import type { Schema } from 'joi';

/**
 * Turns the Joi schemas the API validates with into JSON Schema 2020-12, the dialect of OpenAPI 3.1, from
 * Joi's own public `describe()` output. Written here rather than taken from joi-to-json or joi-to-swagger,
 * which on these very schemas lose the type of every `.when()` field (any-type, or OAS 3.0 `x-required`
 * artefacts), keep the `/i` of a regex in its pattern, drop `hex()` and `uri()` or turn `.pattern()` keys
 * into "no keys allowed".
 *
 * Strict on purpose: a Joi type, rule, flag or condition it has no exact translation for throws (at startup
 * and in test/openapi.test.ts), so the document can never quietly say less or other than Joi checks. Two
 * things are left to prose (`description`): `custom()` rules (code, such as the meeting-link check) and
 * `trim()` (a conversion); what a custom rule refuses may also be said beside it with
 * `.meta({ jsonSchema })`. Apart from custom() rules the result is never looser than Joi, and stricter only
 * where Joi converts input (a number sent as a string).
 */
export type JsonSchema = { [key: string]: unknown };

/** Named schemas (`Joi.…id('Bot')`) go here once and are referred to as `#/components/schemas/<id>`. */
export type Components = Record<string, JsonSchema>;

interface Description {
  type: string;
  flags?: { presence?: Presence; [flag: string]: unknown };
  rules?: Array<{ name: string; args?: RuleArgs }>;
  allow?: unknown[];
  invalid?: unknown[];
  keys?: Record<string, Description>;
  patterns?: Array<{ schema?: Description; regex?: string; rule: Description }>;
  dependencies?: Array<{ rel: string; peers: string[] }>;
  whens?: When[];
  items?: Description[];
  matches?: Array<{ schema?: Description }>;
  examples?: unknown[];
  preferences?: Record<string, unknown>;
  metas?: unknown[];
}

interface When {
  ref?: { path: string[]; ancestor?: number; type?: string };
  is?: Description;
  then?: Description;
  otherwise?: Description;
  switch?: unknown;
}

/** The arguments of the rules translated here, as `describe()` gives them. */
interface RuleArgs {
  limit?: number;
  regex?: string;
  options?: { invert?: boolean; prefix?: boolean | 'optional'; scheme?: string[] | string; [option: string]: unknown };
}

type Presence = 'required' | 'optional' | 'forbidden';

/** Flags that change nothing a JSON Schema could say, or that the converter reads itself. */
const KNOWN_FLAGS = new Set([
  'presence',
  'only',
  'default',
  'description',
  'format',
  'unknown',
  'id',
  'label',
  'match',
]);

export function joiToJsonSchema(schema: Schema, components: Components): JsonSchema {
  return convert(schema.describe() as Description, components, 'optional', '(root)');
}

/** A key's presence: its own flag, else what `prefs({presence})` of an ancestor says, else optional (Joi's rules). */
function presenceOf(description: Description, inherited: Presence): Presence {
  return description.flags?.presence ?? inherited;
}

function convert(description: Description, components: Components, inherited: Presence, where: string): JsonSchema {
  const flags = description.flags ?? {};
  for (const flag of Object.keys(flags)) {
    if (!KNOWN_FLAGS.has(flag))
      throw new Error(`joi-json-schema: ${where}: flag "${flag}" has no JSON Schema translation`);
  }
  for (const preference of Object.keys(description.preferences ?? {})) {
    if (preference !== 'messages' && preference !== 'presence') {
      throw new Error(`joi-json-schema: ${where}: preference "${preference}" has no JSON Schema translation`);
    }
  }
  if (description.invalid?.length)
    throw new Error(`joi-json-schema: ${where}: invalid() has no JSON Schema translation`);
  const presence = (description.preferences?.presence as Presence | undefined) ?? inherited;
  const schema = typed(description, components, presence, where);
  annotate(schema, description);
  for (const meta of description.metas ?? []) {
    // `.meta({ jsonSchema })`: what a custom() rule beside it refuses, said in JSON Schema
    const extra = (meta as { jsonSchema?: JsonSchema }).jsonSchema;
    if (!extra || Object.keys(meta as object).length !== 1)
      throw new Error(`joi-json-schema: ${where}: meta() other than { jsonSchema }`);
    schema.allOf = [...((schema.allOf as JsonSchema[]) ?? []), extra];
  }
  const id = flags.id as string | undefined;
  if (!id) return schema;
  const known = components[id];
  if (known && JSON.stringify(known) !== JSON.stringify(schema)) {
    throw new Error(`joi-json-schema: two different schemas are both named "${id}"`);
  }
  components[id] = schema;
  return { $ref: `#/components/schemas/${id}` };
}

function annotate(schema: JsonSchema, description: Description): void {
  const flags = description.flags ?? {};
  if (typeof flags.description === 'string') schema.description = flags.description;
  if (flags.default !== undefined && typeof flags.default !== 'function') schema.default = flags.default;
  if (description.examples?.length) schema.examples = description.examples;
}

function typed(description: Description, components: Components, presence: Presence, where: string): JsonSchema {
  switch (description.type) {
    case 'any':
      return withValues({}, description, where);
    case 'string':
      return withValues(stringSchema(description, where), description, where);
    case 'number':
      return withValues(numberSchema(description, where), description, where);
    case 'boolean':
      return withValues({ type: 'boolean' }, description, where);
    case 'date':
      if (description.flags?.format !== 'iso')
        throw new Error(`joi-json-schema: ${where}: only Joi.date().iso() is translated`);
      return withValues({ type: 'string', format: 'date-time' }, description, where);
    case 'object':
      return withValues(objectSchema(description, components, presence, where), description, where);
    case 'array':
      return withValues(arraySchema(description, components, presence, where), description, where);
    case 'alternatives': {
      const options = (description.matches ?? []).map((match, index) => {
        if (!match.schema) throw new Error(`joi-json-schema: ${where}: conditional alternatives are not translated`);
        return convert(match.schema, components, presence, `${where}[${index}]`);
      });
      return withValues({ [description.flags?.match === 'one' ? 'oneOf' : 'anyOf']: options }, description, where);
    }
    default:
      throw new Error(`joi-json-schema: ${where}: Joi type "${description.type}" is not translated`);
  }
}

/** `valid()` becomes an enum (or const), `allow(null)` a null in the type; other allowed values throw. */
function withValues(schema: JsonSchema, description: Description, where: string): JsonSchema {
  const allowed = (description.allow ?? []).filter(
    (value) => !(value && typeof value === 'object' && 'override' in value),
  );
  if (description.flags?.only) {
    if (allowed.length === 1) return { ...withoutType(schema), const: allowed[0] };
    return { ...withoutType(schema), enum: allowed };
  }
  for (const value of allowed) {
    if (value === null) {
      if (typeof schema.type === 'string') schema.type = [schema.type, 'null'];
      else if (Array.isArray(schema.anyOf)) schema.anyOf = [...(schema.anyOf as unknown[]), { type: 'null' }];
      else if (schema.type === undefined && Object.keys(schema).length === 0)
        continue; // any: null is already allowed
      else throw new Error(`joi-json-schema: ${where}: allow(null) on a schema without a single type`);
    } else if (value === '' && schema.type === 'string') {
      delete schema.minLength;
    } else {
      throw new Error(`joi-json-schema: ${where}: allow(${JSON.stringify(value)}) has no JSON Schema translation`);
    }
  }
  return schema;
}

/** An enum names its values; the string/number keywords beside it would only repeat them. */
function withoutType(schema: JsonSchema): JsonSchema {
  return Object.fromEntries(
    Object.entries(schema).filter(([key]) => !['type', 'minLength', 'maxLength', 'pattern', 'format'].includes(key)),
  );
}

function stringSchema(description: Description, where: string): JsonSchema {
  // Joi refuses the empty string unless it is allowed or a min() says otherwise.
  const schema: JsonSchema = { type: 'string', minLength: 1 };
  const patterns: string[] = [];
  for (const rule of description.rules ?? []) {
    const args = rule.args ?? {};
    switch (rule.name) {
      case 'min':
        schema.minLength = args.limit;
        break;
      case 'max':
        schema.maxLength = args.limit;
        break;
      case 'length':
        schema.minLength = args.limit;
        schema.maxLength = args.limit;
        break;
      case 'pattern': {
        if (args.options?.invert) throw new Error(`joi-json-schema: ${where}: an inverted pattern is not translated`);
        const match = /^\/(.*)\/([a-z]*)$/s.exec(String(args.regex));
        if (!match || match[2])
          throw new Error(`joi-json-schema: ${where}: pattern ${args.regex} has flags, which JSON Schema has not`);
        patterns.push(match[1]);
        break;
      }
      case 'hex':
        if (args.options?.prefix) throw new Error(`joi-json-schema: ${where}: hex with a prefix is not translated`);
        patterns.push('^[0-9a-fA-F]*$');
        break;
      case 'uri': {
        schema.format = 'uri';
        const schemes = args.options?.scheme;
        if (schemes) patterns.push(`^(?:${[schemes].flat().join('|')}):`);
        for (const option of Object.keys(args.options ?? {})) {
          if (option !== 'scheme')
            throw new Error(`joi-json-schema: ${where}: uri option "${option}" is not translated`);
        }
        break;
      }
      case 'isoDate':
        schema.format = 'date-time';
        break;
      case 'trim':
      case 'custom':
        break; // a conversion and code: told in the description, not in keywords
      default:
        throw new Error(`joi-json-schema: ${where}: string rule "${rule.name}" is not translated`);
    }
  }
  if (patterns.length === 1) schema.pattern = patterns[0];
  if (patterns.length > 1) schema.allOf = patterns.map((pattern) => ({ pattern }));
  return schema;
}

function numberSchema(description: Description, where: string): JsonSchema {
  const schema: JsonSchema = { type: 'number' };
  for (const rule of description.rules ?? []) {
    const limit = rule.args?.limit;
    switch (rule.name) {
      case 'integer':
        schema.type = 'integer';
        break;
      case 'min':
        schema.minimum = limit;
        break;
      case 'max':
        schema.maximum = limit;
        break;
      case 'greater':
        schema.exclusiveMinimum = limit;
        break;
      case 'less':
        schema.exclusiveMaximum = limit;
        break;
      default:
        throw new Error(`joi-json-schema: ${where}: number rule "${rule.name}" is not translated`);
    }
  }
  return schema;
}

function arraySchema(description: Description, components: Components, presence: Presence, where: string): JsonSchema {
  const schema: JsonSchema = { type: 'array' };
  const items = description.items ?? [];
  if (items.length > 1) throw new Error(`joi-json-schema: ${where}: arrays of several item schemas are not translated`);
  if (items.length === 1) schema.items = convert(items[0], components, presence, `${where}[]`);
  for (const rule of description.rules ?? []) {
    if (rule.name === 'min') schema.minItems = rule.args?.limit;
    else if (rule.name === 'max') schema.maxItems = rule.args?.limit;
    else throw new Error(`joi-json-schema: ${where}: array rule "${rule.name}" is not translated`);
  }
  return schema;
}

function objectSchema(description: Description, components: Components, presence: Presence, where: string): JsonSchema {
  const schema: JsonSchema = { type: 'object' };
  const conditions: JsonSchema[] = [];
  if (description.keys) {
    const properties: Record<string, JsonSchema> = {};
    const required: string[] = [];
    for (const [key, child] of Object.entries(description.keys)) {
      const childPresence = presenceOf(child, presence);
      if (childPresence === 'forbidden') continue;
      const { whens, ...base } = child;
      properties[key] = convert(base, components, presence, `${where}.${key}`);
      if (childPresence === 'required') required.push(key);
      for (const when of whens ?? []) conditions.push(condition(when, key, `${where}.${key}`));
    }
    schema.properties = properties;
    if (required.length) schema.required = required;
    if (description.flags?.unknown !== true && !description.patterns) schema.additionalProperties = false;
  }
  for (const [index, pattern] of (description.patterns ?? []).entries()) {
    if (index > 0 || pattern.regex)
      throw new Error(`joi-json-schema: ${where}: only one pattern() with a key schema is translated`);
    schema.propertyNames = convert(pattern.schema!, components, 'optional', `${where}{key}`);
    schema.additionalProperties = convert(pattern.rule, components, presence, `${where}{value}`);
  }
  for (const rule of description.rules ?? []) {
    if (rule.name === 'min') schema.minProperties = rule.args?.limit;
    else if (rule.name === 'max') schema.maxProperties = rule.args?.limit;
    else if (rule.name !== 'custom')
      throw new Error(`joi-json-schema: ${where}: object rule "${rule.name}" is not translated`);
  }
  for (const dependency of description.dependencies ?? []) {
    if (dependency.rel !== 'or')
      throw new Error(`joi-json-schema: ${where}: object dependency "${dependency.rel}" is not translated`);
    conditions.push({ anyOf: dependency.peers.map((peer) => ({ required: [peer] })) });
  }
  if (conditions.length) schema.allOf = [...((schema.allOf as JsonSchema[]) ?? []), ...conditions];
  return schema;
}

/**
 * `key: Joi.…when('sibling', {is, then, otherwise})` whose branches only make `key` required (or nest
 * another such when) becomes `if: <sibling matches is> then: <required key> else: …` on the parent object.
 */
function condition(when: When, key: string, where: string): JsonSchema {
  const ref = when.ref;
  if (!ref || when.switch || ref.type || (ref.ancestor !== undefined && ref.ancestor !== 1) || ref.path.length !== 1) {
    throw new Error(`joi-json-schema: ${where}: only when() on a sibling key with is/then/otherwise is translated`);
  }
  const sibling = ref.path[0];
  const is = when.is!;
  if (is.flags?.presence !== 'required') throw new Error(`joi-json-schema: ${where}: when() needs is: ….required()`);
  const isFlags = { ...is.flags };
  delete isFlags.presence;
  const matched =
    Object.keys(isFlags).length || is.rules?.length || is.allow?.length
      ? convert({ ...is, flags: isFlags }, {}, 'optional', `${where} (is)`)
      : undefined;
  const test: JsonSchema = matched
    ? { properties: { [sibling]: matched }, required: [sibling] }
    : { required: [sibling] };
  const result: JsonSchema = { if: test };
  if (when.then) result.then = branch(when.then, key, where);
  if (when.otherwise) result.else = branch(when.otherwise, key, where);
  return result;
}

function branch(description: Description, key: string, where: string): JsonSchema {
  const { presence, ...others } = description.flags ?? {};
  if (
    description.type !== 'any' ||
    Object.keys(others).length ||
    description.rules?.length ||
    description.allow?.length
  ) {
    throw new Error(`joi-json-schema: ${where}: a when() branch may only change presence`);
  }
  const parts: JsonSchema[] = [];
  if (presence === 'required') parts.push({ required: [key] });
  else if (presence === 'forbidden') parts.push({ not: { required: [key] } });
  else if (presence !== undefined)
    throw new Error(`joi-json-schema: ${where}: a when() branch with presence ${String(presence)}`);
  for (const when of description.whens ?? []) parts.push(condition(when, key, where));
  if (parts.length === 0) throw new Error(`joi-json-schema: ${where}: an empty when() branch`);
  return parts.length === 1 ? parts[0] : { allOf: parts };
}
