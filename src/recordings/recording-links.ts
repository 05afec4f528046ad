import { Config } from '../config';
import { createS3Client, downloadLink } from './s3-client';

/**
 * Short-lived download links for the recordings bots upload (a bot reports the object's key with its
 * status). Without S3_BUCKET_NAME there are no recordings to link.
 */
export interface RecordingLinks {
  link(key: string): Promise<{ url: string; expiresAt: string }>;
}

export function createRecordingLinks(s3: Config['s3']): RecordingLinks | null {
  const bucket = s3.bucketName;
  if (!bucket) return null;
  const client = createS3Client(s3);
  return { link: (key) => downloadLink(client, bucket, key) };
}
