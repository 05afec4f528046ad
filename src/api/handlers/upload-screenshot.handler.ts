import { Handler } from '../http';
import { readScreenshotUpload } from '../screenshot-upload';

/**
 * POST /api/bots/:id/screenshots (bot token; multipart, see screenshot-upload.ts) → 201 `{key, capturedAt,
 * type, state, trigger?}` as upstream Meeboter answers; 410 once ended, 503 without S3.
 */
export const uploadScreenshotHandler: Handler = async (req, ctx, caller) => ({
  status: 201,
  body: await ctx.bots.saveScreenshot(caller.botId!, () => readScreenshotUpload(req)),
});
