import { Types } from 'mongoose';
import { meetings } from './fleet';

/**
 * A bot document as MongoDB holds one, for tests that put bots there directly: bots a fleet's Redis no
 * longer holds (lost, expired) or records from before versions were kept.
 */
export interface StoredBot {
  _id: Types.ObjectId;
  createdAt: Date;
  [field: string]: unknown;
}

export function storedBot(fields: Record<string, unknown> = {}): StoredBot {
  return {
    _id: new Types.ObjectId(),
    ownerId: 'owner-a',
    status: 'QUEUED',
    meeting: meetings.zoom,
    displayName: 'Meeboter',
    recording: false,
    metadata: [],
    platform: null,
    platformIdentifier: null,
    excludedPlatforms: [],
    attempts: [],
    createdAt: new Date(),
    statusVersion: 0,
    ...fields,
  };
}
