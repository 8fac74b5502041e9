/** One schema step in PostgreSQL (src/store/pg/migrations.ts applies them). */
export interface Migration {
  /** Unique forever, recorded in postern_schema once applied; e.g. "0001-users", "queue-0001-messages". */
  readonly id: string;
  /** Statements run in the migrating transaction (several allowed, separated by ";"). */
  readonly sql: string;
}
