/**
 * The queue's schema steps (pg-queue): appended to the core steps by migrations.ts, in this order.
 * Append only: never edit or reorder an entry once shipped; ids are unique ("queue-0001-…").
 */
import type { Migration } from "./migration.js";

export const QUEUE_MIGRATIONS: readonly Migration[] = [
  {
    id: "queue-0001-messages",
    // One row per queued message; the envelope is the source of truth (JSON.stringify only, rule
    // 17), the other columns are what the runners select and lease on. Bytes live in queue_chunks,
    // written in the same transaction (src/store/pg/queue.ts). The foreign key is checked at COMMIT,
    // so the chunks can go in before their message row, and removing a message removes its bytes.
    sql: `
      CREATE TABLE queue_messages (
        id text PRIMARY KEY,
        envelope jsonb NOT NULL,
        size bigint NOT NULL,
        sha256 text NOT NULL,
        received_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,  -- earliest pending recipient's; now() when none is pending
        held boolean NOT NULL DEFAULT false,
        lease_owner text,                      -- store.nodeName of the holder, for the admin
        lease_token uuid,                      -- one per claim: a change under a lease names it
        lease_expires_at timestamptz,          -- the database's clock; renewed while the holder lives
        claims integer NOT NULL DEFAULT 0,     -- times a node took the message to work on
        attempts integer NOT NULL DEFAULT 0,   -- delivery attempts, summed over recipients
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX queue_messages_due ON queue_messages (next_attempt_at) WHERE NOT held;
      CREATE TABLE queue_chunks (
        id text NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        seq integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (id, seq)
      );
      -- Out of line and uncompressed: mail is mostly compressed already (images, zip) and pglz costs CPU.
      ALTER TABLE queue_chunks ALTER COLUMN data SET STORAGE EXTERNAL`,
  },
];
