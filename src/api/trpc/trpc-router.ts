import { initTRPC, TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import Joi from 'joi';
import superjson from 'superjson';
import { BotClaims, readBotToken } from '../../auth/bot-token';
import { ImageStatus } from '../../domain/image-status';
import {
  AppError,
  ConflictError,
  GoneError,
  NotFoundError,
  RateLimitedError,
  UnauthorizedError,
  UnavailableError,
  ValidationError,
} from '../../errors';
import { logger } from '../../logger';
import { LogEntry } from '../../store/bot-logs';
import { SpeakerTimeframe } from '../../store/models';
import type { ApiContext } from '../api-context';
import { validate } from '../schemas';
import * as inputs from './image-schemas';

/**
 * The upstream Meeboter bot protocol: what the prebuilt bot images call at `<MILO_URL>/api/trpc` (tRPC 11
 * with the superjson transformer). Each procedure checks the caller and hands over to the same services the
 * REST bot routes use; nothing of the lifecycle is decided here.
 *
 * `X-Milo-Token` carries the bot's own token, which names its bot: each call, and each call of a batch on
 * its own, may act only on that bot (another bot's number is FORBIDDEN). A bot that has finished is answered
 * PRECONDITION_FAILED with those words in the message, which is what makes an image stop restarting.
 */
export interface TrpcContext {
  /** The bot the presented token speaks for; null without a genuine token. */
  caller: BotClaims | null;
  tokenPresented: boolean;
}

const t = initTRPC.context<TrpcContext>().create({
  transformer: superjson,
  // What a fault of ours says (a Redis or MongoDB error names hosts and ports) stays in our log: the bot gets a
  // plain message for it, and no stack whatever NODE_ENV says, as REST answers do.
  errorFormatter: ({ shape, error }) => {
    const { stack: _stack, ...data } = shape.data;
    return { ...shape, message: error.code === 'INTERNAL_SERVER_ERROR' ? 'internal error' : shape.message, data };
  },
});

/** Every call needs a genuine bot token before its input is even read. */
const botProcedure = t.procedure.use(({ ctx, next }) => {
  if (!ctx.tokenPresented)
    throw new TRPCError({
      code: 'UNAUTHORIZED',
      message: 'X-Milo-Token is required: the bot token MILO_AUTH_TOKEN holds',
    });
  if (!ctx.caller) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'X-Milo-Token is not a valid bot token' });
  return next({ ctx: { caller: ctx.caller } });
});

/** A Joi schema as a tRPC input parser: a failure becomes BAD_REQUEST naming the field. */
const parse =
  <T>(schema: Joi.Schema) =>
  (raw: unknown) =>
    validate<T>(schema, raw, 'input');

/** The caller's own bot, if `number` names it. */
function ownBot(caller: BotClaims, number: number): string {
  if (caller.number !== number)
    throw new TRPCError({ code: 'FORBIDDEN', message: `this token is bot ${caller.number}'s, not bot ${number}'s` });
  return caller.botId;
}

const CODES: Array<[new (...args: never[]) => AppError, TRPC_ERROR_CODE_KEY]> = [
  [ValidationError, 'BAD_REQUEST'],
  [UnauthorizedError, 'UNAUTHORIZED'],
  [NotFoundError, 'NOT_FOUND'],
  [GoneError, 'PRECONDITION_FAILED'],
  [ConflictError, 'CONFLICT'],
  [RateLimitedError, 'TOO_MANY_REQUESTS'],
  [UnavailableError, 'SERVICE_UNAVAILABLE'],
];

/** Runs a service call, answering the fleet's errors with their tRPC codes. */
async function answer<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const code = CODES.find(([type]) => error instanceof type)?.[1];
    if (!code) throw error;
    const message = (error as Error).message;
    // the images stop restarting only on an error whose message holds these words
    if (code === 'PRECONDITION_FAILED')
      throw new TRPCError({ code, message: `PRECONDITION_FAILED: ${message}; the container should exit` });
    throw new TRPCError({ code, message });
  }
}

export function createImageRouter(api: ApiContext) {
  const { bots } = api;
  return t.router({
    bots: t.router({
      getConfig: botProcedure
        .input(parse<{ botId: number }>(inputs.getConfigInput))
        .query(({ ctx, input }) => answer(() => bots.imageConfig(ownBot(ctx.caller, input.botId)))),
      sendHeartbeat: botProcedure
        .input(parse<{ id: number }>(inputs.heartbeatInput))
        .mutation(({ ctx, input }) => answer(() => bots.heartbeat(ownBot(ctx.caller, input.id)))),
      updateStatus: botProcedure
        .input(
          parse<{ id: number; status: ImageStatus; recording?: string; speakerTimeframes?: SpeakerTimeframe[] }>(
            inputs.updateStatusInput,
          ),
        )
        .mutation(({ ctx, input }) =>
          answer(async () => ({
            id: input.id,
            ...(await bots.reportImageStatus(ownBot(ctx.caller, input.id), input)),
          })),
        ),
      events: t.router({
        report: botProcedure
          .input(
            parse<{ id: number; event: { eventType: string; eventTime: Date; data: unknown } }>(
              inputs.reportEventInput,
            ),
          )
          .mutation(({ ctx, input }) =>
            answer(async () => {
              const { eventType, eventTime, data } = input.event;
              await bots.reportEvent(ownBot(ctx.caller, input.id), {
                type: eventType,
                at: eventTime,
                data: data ?? undefined,
              });
            }),
          ),
      }),
      chat: t.router({
        dequeueMessage: botProcedure
          .input(parse<{ botId: number }>(inputs.dequeueMessageInput))
          .query(({ ctx, input }) =>
            answer(async () => {
              const message = await bots.takeChat(ownBot(ctx.caller, input.botId));
              return message && { messageText: message.messageText, userId: message.userId };
            }),
          ),
      }),
      logs: t.router({
        stream: botProcedure
          .input(parse<{ botId: number; entries: LogEntry[] }>(inputs.streamLogsInput))
          .mutation(({ ctx, input }) => answer(() => bots.streamLogs(ownBot(ctx.caller, input.botId), input.entries))),
        flush: botProcedure.input(parse<{ botId: number }>(inputs.flushLogsInput)).mutation(({ ctx, input }) =>
          answer(async () => {
            // entries are kept as they arrive: a flush only confirms the bot may still log
            await bots.streamLogs(ownBot(ctx.caller, input.botId), []);
            return { success: true };
          }),
        ),
      }),
    }),
    infrastructure: t.router({
      coolify: t.router({
        pool: t.router({
          getSlot: botProcedure.input(parse<{ poolSlotUuid: string }>(inputs.getSlotInput)).query(({ ctx, input }) =>
            answer(async () => {
              const holder = api.slotHolder ? await api.slotHolder(input.poolSlotUuid) : null;
              if (!holder) throw new NotFoundError(`no bot holds pool slot ${input.poolSlotUuid}`);
              if (holder !== ctx.caller.botId)
                throw new TRPCError({
                  code: 'FORBIDDEN',
                  message: `pool slot ${input.poolSlotUuid} holds another bot`,
                });
              return bots.imageConfig(holder);
            }),
          ),
        }),
      }),
    }),
  });
}

export type ImageRouter = ReturnType<typeof createImageRouter>;

/** The caller of a request, from its `X-Milo-Token` (one HMAC, no I/O). */
export function imageCaller(secret: string, header: string | string[] | undefined): TrpcContext {
  const token = typeof header === 'string' ? header.trim() : '';
  return { tokenPresented: token !== '', caller: token ? readBotToken(secret, token) : null };
}

/** Logs what the protocol answers with a 5xx (never a caller's mistake), with its stack. */
export function logServerErrors({ error, path }: { error: TRPCError; path?: string }): void {
  if (error.code === 'INTERNAL_SERVER_ERROR') logger.error('tRPC call failed', { path, error: error.cause ?? error });
}
