/** What every contender offers the scenarios, and what it is given to start. */
import type { SinkProcess } from "../sink-process.js";

export interface BenchUser {
  address: string;
  password: string;
}

export interface ContenderSetup {
  /** A private folder for this contender's config, spool and logs. */
  workDir: string;
  /** Plain SMTP sink every contender relays remote mail to. */
  sinkPort: number;
  /** ECDSA P-256 self-signed pair shared by all contenders. */
  tls: { key: string; cert: string };
  /** users[0] sends the load; the others log in once each in the AUTH burst (scenario 5). */
  users: BenchUser[];
}

export interface Contender {
  name: string;
  /** STARTTLS + AUTH (port 587 style). */
  submissionPort: number;
  /** Implicit TLS + AUTH (port 465 style), when configured. */
  implicitPort?: number;
  /** Process trees whose memory is the server's. */
  pids(): number[];
  /** The contender is itself the sink: verify arrivals here instead of at the relay sink. */
  ownSink?: SinkProcess;
  /** Where local mail goes (Maildir), when the contender delivers locally. */
  local?: { recipient: string; delivered(): number };
  /** Signs relayed mail with DKIM: a message reaching the sink without a signature is an error. */
  signsDkim?: boolean;
  /** How this contender stores and verifies passwords (for the report). */
  passwordScheme: string;
  /** The work behind each 250, for the report: fsync before 250? relays? discards? */
  work: string;
  /**
   * Answers 250 and throws the message away (no queue, no relay): nothing reaches a sink, so its
   * accepted 250s are counted as they are ("discard: not verified at the sink").
   */
  discards?: boolean;
  /** With --pin: "all" leaves the server on every core (a multi-process contender); default core 0. */
  cores?: "all";
  notes: string[];
  stop(): Promise<void>;
}

export interface ContenderFactory {
  name: string;
  /** null when it can run; else the reason it is skipped. */
  prepare(): Promise<string | null>;
  start(setup: ContenderSetup): Promise<Contender>;
}

export const LOCAL_DOMAIN = "example.org";
export const RELAY_RECIPIENT = "dest@remote.bench.test";
export const LOCAL_RECIPIENT = `inbox@${LOCAL_DOMAIN}`;
