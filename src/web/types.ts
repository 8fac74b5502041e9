/**
 * The web face (issue 17): one HTTPS listener (`web:` in the config) whose requests go to a list of
 * apps in order — client autoconfiguration (autoconfig.ts), then the admin and self-service UI
 * (ui/). An app answers the requests it owns and returns true; false passes the request on.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

export interface WebRequest {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The client's address (after a trusted proxy header, if ever supported; today the socket's). */
  remoteIp: string;
}

export interface WebApp {
  /** Short name for logs ("autoconfig", "ui"). */
  readonly name: string;
  handle(request: WebRequest): Promise<boolean>;
  close?(): Promise<void>;
}
