/**
 * The one logger: one JSON line per event on stdout, `{time, level, msg, ...scope, ...meta}`.
 * Scopes (`botId`, `platform`, `jobId`) come from `child()`. Values under keys that look secret are masked,
 * so a token passed by mistake never reaches the log.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogMeta = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
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
  write?: (line: string) => void;
}

export function createLogger(options: LoggerOptions = {}, scope: LogMeta = {}): Logger {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, meta?: LogMeta) => {
    if (LEVELS[level] < threshold) return;
    const record = { time: new Date().toISOString(), level, msg, ...scope, ...(meta ? redact(meta) : {}) };
    write(JSON.stringify(record));
  };
  return {
    debug: (msg, meta) => emit('debug', msg, meta),
    info: (msg, meta) => emit('info', msg, meta),
    warn: (msg, meta) => emit('warn', msg, meta),
    error: (msg, meta) => emit('error', msg, meta),
    child: (extra) => createLogger(options, { ...scope, ...redact(extra) }),
  };
}

function redact(meta: LogMeta): LogMeta {
  const out: LogMeta = {};
  for (const [key, value] of Object.entries(meta)) {
    if (SECRET_KEY.test(key)) out[key] = '[redacted]';
    else if (value instanceof Error) out[key] = { name: value.name, message: value.message };
    else out[key] = value;
  }
  return out;
}

/** Until main() configures one, modules log through this default. */
export let logger: Logger = createLogger({ level: (process.env.LOG_LEVEL as LogLevel) || 'info' });

export function setLogger(next: Logger): void {
  logger = next;
}
