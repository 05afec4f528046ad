import busboy from 'busboy';
import { Request } from 'express';
import { AppError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from '../errors';
import { SCREENSHOT_MAX_BYTES, SCREENSHOT_MAX_MB, ScreenshotInfo } from '../recordings/screenshots';
import { screenshotFieldsSchema, validate } from './schemas';

/**
 * Reads a screenshot upload as Meeboter's images send it: multipart/form-data with the PNG in `file` (sent
 * first, named screenshot.png, without a content type of its own) and the text fields `type`, `state` and
 * optionally `trigger`. Strict: one file of at most SCREENSHOT_MAX_BYTES that starts with the PNG signature,
 * each field once and no other; any refusal names its field. The body is read to its end either way, so the
 * answer reaches a client still sending.
 */
export interface ScreenshotUpload extends ScreenshotInfo {
  png: Buffer;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Longer than any field the schema accepts, so a cut value is refused by length too. */
const FIELD_MAX_BYTES = 4096;

const invalid = (path: string, message: string) => new ValidationError(`${path} ${message}`, [{ path, message }]);

export function readScreenshotUpload(req: Request): Promise<ScreenshotUpload> {
  return new Promise((resolve, reject: (error: Error) => void) => {
    if (!req.is('multipart/form-data')) {
      req.resume();
      return reject(new UnsupportedMediaTypeError('the request body must be multipart/form-data'));
    }
    let parser: busboy.Busboy;
    try {
      // busboy counts a file that reaches its limit as cut short: the limit is one byte over the largest accepted.
      // Fields beyond the 16th are dropped unread; among the first 16, an unknown or repeated one is named below.
      const limits = { files: 1, fileSize: SCREENSHOT_MAX_BYTES + 1, fields: 16, fieldSize: FIELD_MAX_BYTES };
      parser = busboy({ headers: req.headers, limits });
    } catch (error) {
      req.resume();
      return reject(new ValidationError(`the multipart body is malformed: ${(error as Error).message}`));
    }
    const fields: Record<string, string> = {};
    let png: Buffer | undefined;
    // the first refusal is answered once the whole body has been read
    let refusal: AppError | undefined;
    const refuse = (error: AppError) => (refusal ??= error);

    parser.on('file', (name, stream) => {
      if (name !== 'file') {
        refuse(invalid(name, 'is not allowed (the PNG goes in `file`)'));
        return stream.resume();
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => {
        chunks.length = 0;
        const message = `is larger than ${SCREENSHOT_MAX_MB} MB (${SCREENSHOT_MAX_BYTES} bytes)`;
        refuse(new PayloadTooLargeError(`file ${message}`, [{ path: 'file', message }]));
      });
      stream.on('end', () => {
        if (!stream.truncated) png = Buffer.concat(chunks);
      });
    });
    parser.on('field', (name, value, info) => {
      if (info.nameTruncated || info.valueTruncated) refuse(invalid(name, `is longer than ${FIELD_MAX_BYTES} bytes`));
      else if (Object.hasOwn(fields, name)) refuse(invalid(name, 'is given more than once'));
      else fields[name] = value;
    });
    parser.on('filesLimit', () => refuse(invalid('file', 'is given more than once (one PNG per upload)')));
    parser.on('error', (error: Error) => {
      req.unpipe(parser);
      req.resume();
      reject(new ValidationError(`the multipart body is malformed: ${error.message}`));
    });
    parser.on('close', () => {
      try {
        if (refusal) throw refusal;
        if (!png) throw invalid('file', 'is required (a PNG image)');
        if (!png.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE))
          throw invalid('file', 'must be a PNG image (it does not start with the PNG signature)');
        resolve({ png, ...validate<ScreenshotInfo>(screenshotFieldsSchema, fields) });
      } catch (error) {
        // everything thrown above is an Error: a refusal, or validate's ValidationError
        reject(error as Error);
      }
    });
    req.pipe(parser);
  });
}
