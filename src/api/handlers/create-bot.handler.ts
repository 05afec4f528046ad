import { Handler } from '../http';
import { createBotSchema, idempotencyKeySchema, validate } from '../schemas';
import { CreateBotInput } from '../../services/bots.service';

/** POST /api/bots — 201 with the new bot, or 200 with the bot an earlier request with this Idempotency-Key made. */
export const createBotHandler: Handler = async (req, ctx, caller) => {
  const input = validate<CreateBotInput>(createBotSchema, req.body);
  const key = req.header('idempotency-key');
  if (key !== undefined) validate(idempotencyKeySchema, key, 'Idempotency-Key');
  const { bot, created } = await ctx.bots.create(caller.owner!, input, key);
  return { status: created ? 201 : 200, body: bot };
};
