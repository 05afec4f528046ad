import { Handler } from '../http';

/** GET /api/bots/:id/recording — a short-lived link to the bot's recording: `{url, expiresAt}`. */
export const recordingHandler: Handler = async (req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.recording(caller.owner!, String(req.params.id)),
});
