import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Config } from '../config';

/**
 * The fleet's S3 client, from its S3_* settings: with an S3_ENDPOINT (MinIO, moto, another S3-compatible
 * store) addressing is path-style; without S3_ACCESS_KEY the SDK's own chain (an instance or task role,
 * AWS_PROFILE, ...) signs. The SDK retries a failed call itself (3 attempts, exponential backoff with jitter).
 */
export function createS3Client(s3: Config['s3']): S3Client {
  return new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: Boolean(s3.endpoint),
    credentials:
      s3.accessKey && s3.secretKey ? { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey } : undefined,
  });
}

export const DOWNLOAD_LINK_TTL_SECONDS = 900;

/** A short-lived GET link to an object, signed locally: it costs no request to S3. */
export async function downloadLink(
  client: S3Client,
  bucket: string,
  key: string,
): Promise<{ url: string; expiresAt: string }> {
  const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), {
    expiresIn: DOWNLOAD_LINK_TTL_SECONDS,
  });
  return { url, expiresAt: new Date(Date.now() + DOWNLOAD_LINK_TTL_SECONDS * 1000).toISOString() };
}
