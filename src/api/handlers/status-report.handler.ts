import { BotStatus, EndReason } from '../../domain/bot.lifecycle';
import { Handler } from '../http';
import { statusReportSchema, validate } from '../schemas';

/** POST /api/bots/:id/status (bot token) — 409 for a transition the lifecycle does not allow, 410 once ended. */
export const statusReportHandler: Handler = async (req, ctx, caller) => {
  const report = validate<{ status: BotStatus; reason?: EndReason; message?: string; recordingKey?: string }>(
    statusReportSchema,
    req.body,
  );
  return { status: 200, body: await ctx.bots.reportStatus(caller.botId!, report) };
};
