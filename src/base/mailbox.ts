/**
 * Mailbox spellings shared by sender ownership (src/policy/sender.ts) and aliases
 * (src/delivery/aliases.ts): RFC 5233 sub-addressing with one configured separator.
 */

/** aliases.recipientDelimiter's default (Postfix recipient_delimiter): "john+lists" is john's. */
export const DEFAULT_RECIPIENT_DELIMITER = "+";

/**
 * Is `local` the mailbox `base` or one of its "base<delimiter>detail" forms? "" turns
 * sub-addressing off. Case is the caller's business.
 */
export function isSubaddressOf(local: string, base: string, delimiter: string): boolean {
  if (local === base) return true;
  return delimiter !== "" && local.startsWith(base + delimiter);
}
