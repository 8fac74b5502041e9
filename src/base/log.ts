/**
 * What the layers below server/ log through: the part of pino's Logger they call (fields first,
 * then the message), so a pino logger fits and a test passes a plain object. Only server/ knows pino.
 */
export interface Log {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** For modules that never log an error of their own (the session, the credential backends). */
export type InfoWarnLog = Pick<Log, "info" | "warn">;
