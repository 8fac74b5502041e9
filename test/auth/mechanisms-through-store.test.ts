/** Every SASL mechanism, server and client, and app passwords, against the real SqliteUserStore on a temp file. */
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { CredentialCache } from "../../src/auth/cache.js";
import { appPasswordCases, mechanismCases, type WithCaseStore } from "./store-cases.js";
import { HOSTNAME, withStore } from "./store-helpers.js";

const withSqlite: WithCaseStore = (body, options = {}) =>
  withStore(
    (store, { path, hasher }) => {
      const others: SqliteUserStore[] = [];
      return body(store, {
        hasher,
        other: async () => {
          const other = new SqliteUserStore({ path, hostname: HOSTNAME, hasher });
          others.push(other);
          return other;
        },
      }).finally(() => {
        for (const o of others) o.close();
      });
    },
    {
      ...(options.requireAppPasswords !== undefined ? { requireAppPasswords: options.requireAppPasswords } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.cacheTtlSec ? { cache: new CredentialCache({ ttlMs: options.cacheTtlSec * 1000 }) } : {}),
    },
  );

mechanismCases(withSqlite);
appPasswordCases(withSqlite);
