/** The ceiling: the bench sink itself with TLS and AUTH (any password), accepting and discarding. */
import { startSinkProcess } from "../sink-process.js";
import type { Contender, ContenderFactory, ContenderSetup } from "./types.js";

export const bareSink: ContenderFactory = {
  name: "Node sink",
  async prepare() {
    return null;
  },
  async start(setup: ContenderSetup): Promise<Contender> {
    const sink = await startSinkProcess({ tls: setup.tls, auth: true });
    return {
      name: "Node sink",
      submissionPort: sink.port,
      implicitPort: sink.implicitPort,
      pids: () => [sink.pid],
      ownSink: sink,
      passwordScheme: "none (accepts any password)",
      work: "discards after hashing the body (no queue, no fsync, no relay); verified at itself",
      notes: ["bare Node TLS SMTP: accept and discard, no queue, no checks"],
      stop: () => sink.stop(),
    };
  },
};
