import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Config } from '../config';

/**
 * Short-lived download links for the recordings bots upload (a bot reports the object's key with its
 * status). Signed locally with the fleet's S3_* settings, so a link costs no request to S3; with an
 * S3_ENDPOINT (MinIO, another S3-compatible store) addressing is path-style. Without S3_BUCKET_NAME there are
 * no recordings to link.
 */
export interface RecordingLinks {
  link(key: string): Promise<{ url: string; expiresAt: string }>;
}

export const RECORDING_LINK_TTL_SECONDS = 900;

export function createRecordingLinks(s3: Config['s3']): RecordingLinks | null {
  if (!s3.bucketName) return null;
  const client = new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: Boolean(s3.endpoint),
    // Without S3_ACCESS_KEY the SDK's own chain (an instance or task role, AWS_PROFILE, ...) signs.
    credentials: s3.accessKey && s3.secretKey ? { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey } : undefined,
  });
  return {
    async link(key) {
      const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucketName, Key: key }), {
        expiresIn: RECORDING_LINK_TTL_SECONDS,
      });
      return { url, expiresAt: new Date(Date.now() + RECORDING_LINK_TTL_SECONDS * 1000).toISOString() };
    },
  };
}
