import { Handler } from '../http';
import { chatMessageSchema, validate } from '../schemas';

/** POST /api/bots/:id/chat {message} — queued for the bot to post (202); it takes each once, in order. */
export const sendChatHandler: Handler = async (req, ctx, caller) => {
  const { message } = validate<{ message: string }>(chatMessageSchema, req.body);
  return { status: 202, body: await ctx.bots.sendChat(caller.owner!, String(req.params.id), message) };
};
