import { randomUUID } from 'node:crypto';
import { HeadObjectCommand, ListObjectsV2Command, NotFound, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Config } from '../config';
import { UnavailableError } from '../errors';
import { logger } from '../logger';
import { createS3Client, downloadLink } from './s3-client';

/**
 * Screenshots bots take (Meeboter's images send one with each event worth a look: an error, a state change),
 * kept in the fleet's bucket under `bots/<bot id>/screenshots/<capture time in ms>-<uuid>.png`. The bucket is
 * the only record: the owner's list is a listing of that prefix (the names sort oldest first), and what the
 * bot said about each shot rides on the object as S3 user metadata. Without S3_BUCKET_NAME the fleet keeps
 * no screenshots.
 */
export const SCREENSHOT_TYPES = ['error', 'fatal', 'manual', 'state_change'] as const;
export type ScreenshotType = (typeof SCREENSHOT_TYPES)[number];

/** The largest PNG accepted; Meeboter's images send full-page captures of a browser window. */
export const SCREENSHOT_MAX_MB = 10;
export const SCREENSHOT_MAX_BYTES = SCREENSHOT_MAX_MB * 1024 * 1024;
/**
 * Bounds on the bot's free text. S3 allows 2 KB of user metadata in all (UTF-8 bytes of keys and values);
 * these keep the worst case (three-byte characters, base64-encoded) under it.
 */
export const SCREENSHOT_STATE_MAX_CHARS = 64;
export const SCREENSHOT_TRIGGER_MAX_CHARS = 400;

export interface ScreenshotInfo {
  type: ScreenshotType;
  state: string;
  trigger?: string;
}

/** As upstream Meeboter answers an upload: `trigger` only when the bot gave one. */
export interface Screenshot extends ScreenshotInfo {
  key: string;
  capturedAt: string;
}

export interface LinkedScreenshot extends Screenshot {
  url: string;
  expiresAt: string;
}

export interface ScreenshotPage {
  data: LinkedScreenshot[];
  nextCursor: string | null;
}

export interface ScreenshotStore {
  save(botId: string, png: Buffer, info: ScreenshotInfo): Promise<Screenshot>;
  /** Oldest first; `cursor` is the `nextCursor` of the page before. */
  list(botId: string, page: { limit: number; cursor?: string }): Promise<ScreenshotPage>;
}

export const screenshotPrefix = (botId: string) => `bots/${botId}/screenshots/`;

/** A screenshot's name under its bot's prefix, which is also a page's cursor. */
export const SCREENSHOT_NAME = /^\d{13}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.png$/;

const toBase64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const fromBase64 = (text: string) => Buffer.from(text, 'base64').toString('utf8');

/** S3 user metadata travels as HTTP headers (ASCII): the bot's free text is base64 of its UTF-8. */
export function screenshotMetadata({ capturedAt, type, state, trigger }: Screenshot): Record<string, string> {
  return {
    'captured-at': capturedAt,
    type,
    state: toBase64(state),
    ...(trigger !== undefined ? { trigger: toBase64(trigger) } : {}),
  };
}

function fromMetadata(key: string, metadata: Record<string, string>): Screenshot | null {
  const { 'captured-at': capturedAt, type, state, trigger } = metadata;
  if (!capturedAt || !SCREENSHOT_TYPES.includes(type as ScreenshotType) || state === undefined) return null;
  return {
    key,
    capturedAt,
    type: type as ScreenshotType,
    state: fromBase64(state),
    ...(trigger !== undefined ? { trigger: fromBase64(trigger) } : {}),
  };
}

export function createScreenshotStore(s3: Config['s3']): ScreenshotStore | null {
  const bucket = s3.bucketName;
  if (!bucket) return null;
  const client: S3Client = createS3Client(s3);

  /** S3's own failure (after the SDK's retries) is logged with its reason; the caller gets a 503. */
  const unavailable = (what: string, botId: string, error: unknown) => {
    logger.warn(`could not ${what}`, {
      botId,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
    return new UnavailableError(`could not ${what} (S3 did not answer as expected); retry later`);
  };

  return {
    async save(botId, png, info) {
      const capturedAt = new Date();
      const key = `${screenshotPrefix(botId)}${String(capturedAt.getTime()).padStart(13, '0')}-${randomUUID()}.png`;
      const shot: Screenshot = { key, capturedAt: capturedAt.toISOString(), ...info };
      try {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: png,
            ContentType: 'image/png',
            Metadata: screenshotMetadata(shot),
          }),
        );
      } catch (error) {
        throw unavailable('store the screenshot', botId, error);
      }
      return shot;
    },

    async list(botId, { limit, cursor }) {
      const prefix = screenshotPrefix(botId);
      try {
        const listed = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            MaxKeys: limit,
            StartAfter: cursor ? prefix + cursor : undefined,
          }),
        );
        const keys = (listed.Contents ?? [])
          .map((object) => object.Key!)
          .filter((key) => SCREENSHOT_NAME.test(key.slice(prefix.length)));
        const shots = await Promise.all(
          keys.map(async (key) => {
            try {
              const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
              const shot = fromMetadata(key, head.Metadata ?? {});
              return shot && { ...shot, ...(await downloadLink(client, bucket, key)) };
            } catch (error) {
              // removed between the listing and now
              if (error instanceof NotFound) return null;
              throw error;
            }
          }),
        );
        const last = listed.Contents?.at(-1)?.Key;
        return {
          data: shots.filter((shot): shot is LinkedScreenshot => shot !== null),
          nextCursor: listed.IsTruncated && last ? last.slice(prefix.length) : null,
        };
      } catch (error) {
        throw unavailable("list the bot's screenshots", botId, error);
      }
    },
  };
}
