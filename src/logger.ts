import pino from 'pino';

/**
 * The one logger: pino, one JSON line per event on stdout, `{level, time, ...scope, ...meta, msg}` with the
 * level as a word and the time in ISO 8601. Scopes (`botId`, `platform`, `role`) come from `child()`. Values
 * under keys that look secret are masked before pino sees them, so a token passed by mistake never reaches
 * the log; an Error keeps its stack (5xx answers are logged with it).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogMeta = Record<string, unknown>;

const SECRET_KEY = /(token|secret|password|authorization|api[-_]?key)/i;

export interface Logger {
  debug(msg: string, meta?: LogMeta): void;
  info(msg: string, meta?: LogMeta): void;
  warn(msg: string, meta?: LogMeta): void;
  error(msg: string, meta?: LogMeta): void;
  child(scope: LogMeta): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (without their newline); stdout by default. */
  write?: (line: string) => void;
}

export function createLogger(options: LoggerOptions = {}, scope: LogMeta = {}): Logger {
  const destination = options.write
    ? { write: (chunk: string) => options.write!(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk) }
    : pino.destination({ sync: true });
  const root = pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // what pino-http adds: credentials in request headers never reach the log
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers["x-milo-token"]',
          'req.headers.cookie',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
  return new ScopedLogger(root, redact(scope));
}

/**
 * A scope is merged into each line written rather than made a pino child: a pino child (or an object of
 * closures) costs kilobytes of heap, and the occupy job makes a scoped logger per held bot, so at 10,000
 * held bots that was a large part of what holding a bot cost the worker. This costs two small objects.
 */
class ScopedLogger implements Logger {
  constructor(
    readonly instance: pino.Logger,
    readonly scope: LogMeta,
  ) {}

  debug(msg: string, meta?: LogMeta) {
    this.write('debug', msg, meta);
  }
  info(msg: string, meta?: LogMeta) {
    this.write('info', msg, meta);
  }
  warn(msg: string, meta?: LogMeta) {
    this.write('warn', msg, meta);
  }
  error(msg: string, meta?: LogMeta) {
    this.write('error', msg, meta);
  }
  child(extra: LogMeta): Logger {
    return new ScopedLogger(this.instance, { ...this.scope, ...redact(extra) });
  }

  private write(level: LogLevel, msg: string, meta?: LogMeta) {
    if (!this.instance.isLevelEnabled(level)) return;
    this.instance[level](meta ? { ...this.scope, ...redact(meta) } : this.scope, msg);
  }
}

/** The pino instance of a logger made here, with its scope bound (pino-http logs requests through it). */
export function pinoOf(log: Logger): pino.Logger {
  const scoped = log as ScopedLogger;
  return scoped.instance.child(scoped.scope);
}

function redact(meta: LogMeta): LogMeta {
  const out: LogMeta = {};
  for (const [key, value] of Object.entries(meta)) {
    if (SECRET_KEY.test(key)) out[key] = '[redacted]';
    else if (value instanceof Error) out[key] = { name: value.name, message: value.message, stack: value.stack };
    else out[key] = value;
  }
  return out;
}

/** Until main() configures one, modules log through this default. */
export let logger: Logger = createLogger({ level: (process.env.LOG_LEVEL as LogLevel) || 'info' });

export function setLogger(next: Logger): void {
  logger = next;
}
