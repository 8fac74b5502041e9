/**
 * Who may act as whom (SASL authzid, RFC 4422 §3.4.1): a login may name itself (in any case), and
 * the logins listed in `smtp.authzidAdmins` may name anyone. Everything else is refused with 535
 * by the mechanism (src/sasl/server-support.ts; SECURITY.md rule 11).
 */
export type AuthzidRule = (authcid: string, authzid: string) => boolean;

export function authzidRule(admins: readonly string[]): AuthzidRule {
  const allowed = new Set(admins.map((a) => a.toLowerCase()));
  return (authcid, authzid) => authcid.toLowerCase() === authzid.toLowerCase() || allowed.has(authcid.toLowerCase());
}
