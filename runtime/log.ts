/** Structured logging: a fixed message with data in fields, one JSON object per line; levels settable at runtime per component. */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const RANK: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 5 };

export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

/** Where lines go; tests swap in a collector, production writes to stderr. */
let sink: LogSink = (line) => process.stderr.write(line + '\n');
let defaultLevel: LogLevel = 'info';
const componentLevels = new Map<string, LogLevel>();

export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Sets the level for everything (`component` omitted) or one component; Istio's `/logging?level=` semantics. */
export function setLogLevel(level: LogLevel, component?: string): void {
  if (component === undefined) {
    defaultLevel = level;
    componentLevels.clear();
  } else componentLevels.set(component, level);
}

export function logLevels(): Record<string, LogLevel> {
  return { default: defaultLevel, ...Object.fromEntries(componentLevels) };
}

export class Logger {
  readonly component: string;

  constructor(component: string) {
    this.component = component;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[componentLevels.get(this.component) ?? defaultLevel];
  }

  trace(fields: LogFields, msg: string): void {
    if (this.enabled('trace')) this.write('trace', fields, msg);
  }
  debug(fields: LogFields, msg: string): void {
    if (this.enabled('debug')) this.write('debug', fields, msg);
  }
  info(fields: LogFields, msg: string): void {
    if (this.enabled('info')) this.write('info', fields, msg);
  }
  warn(fields: LogFields, msg: string): void {
    if (this.enabled('warn')) this.write('warn', fields, msg);
  }
  error(fields: LogFields, msg: string): void {
    if (this.enabled('error')) this.write('error', fields, msg);
  }

  private write(level: LogLevel, fields: LogFields, msg: string): void {
    sink(JSON.stringify({ time: new Date().toISOString(), level, component: this.component, msg, ...fields }, errorReplacer));
  }
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' || typeof code === 'number' ? `${code}: ${value.message}` : value.message;
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function createLogger(component: string): Logger {
  return new Logger(component);
}
