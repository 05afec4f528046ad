import Joi from 'joi';
import { IMAGE_EVENT_CODES, IMAGE_STATUSES } from '../../domain/image-status';
import { LOG_LEVELS } from '../../store/bot-logs';

/**
 * Inputs of the upstream bot protocol (tRPC), as the images send them once superjson has decoded them: ids
 * as numbers or digit strings (the images send both), times as Dates.
 */
const botNumber = Joi.number().integer().min(1).max(Number.MAX_SAFE_INTEGER).required();

export const getConfigInput = Joi.object({ botId: botNumber });
export const getSlotInput = Joi.object({ poolSlotUuid: Joi.string().min(1).max(200).required() });
export const heartbeatInput = Joi.object({ id: botNumber });
export const flushLogsInput = Joi.object({ botId: botNumber });
export const dequeueMessageInput = Joi.object({ botId: botNumber });

export const reportEventInput = Joi.object({
  id: botNumber,
  event: Joi.object({
    eventType: Joi.string()
      .valid(...IMAGE_EVENT_CODES)
      .required(),
    eventTime: Joi.date().required(),
    data: Joi.object({
      description: Joi.string().max(4000),
      sub_code: Joi.string().max(200),
      participantId: Joi.string().max(500),
      message: Joi.string().max(4000),
    }).allow(null),
  }).required(),
});

const timePoint = Joi.alternatives(Joi.number(), Joi.string().max(64)).required();

export const updateStatusInput = Joi.object({
  id: botNumber,
  status: Joi.string()
    .valid(...IMAGE_STATUSES)
    .required(),
  recording: Joi.string().max(1024),
  speakerTimeframes: Joi.array()
    .items(Joi.object({ speakerName: Joi.string().max(500).required(), start: timePoint, end: timePoint }))
    .max(10_000),
});

/** One `logs.stream` call carries at most 1,000 entries (the images send at most 500). */
export const streamLogsInput = Joi.object({
  botId: botNumber,
  entries: Joi.array()
    .items(
      Joi.object({
        id: Joi.string().max(100),
        botId: Joi.number(),
        timestamp: Joi.date().required(),
        level: Joi.string()
          .valid(...LOG_LEVELS)
          .required(),
        message: Joi.string().max(16_384).allow('').required(),
        state: Joi.string().max(100),
        location: Joi.string().max(500),
        context: Joi.object().unknown().allow(null),
        elapsed: Joi.string().max(100),
      }),
    )
    .max(1000)
    .required(),
});
