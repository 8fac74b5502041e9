/**
 * Domain and address spellings compared by policy and routing. Domains compare without case and
 * without the one trailing dot of the DNS root (RFC 5321 §2.4, SECURITY rule 7). Syntax checks and
 * U-label/A-label conversion live in src/smtp/domain.ts; this is only the comparison form.
 */

/** "Example.ORG." → "example.org". */
export function normaliseDomain(domain: string): string {
  const d = domain.toLowerCase();
  return d.endsWith(".") ? d.slice(0, -1) : d;
}

/** The domain of an address (after the last "@": a quoted local part may hold one), normalised; "" without "@". */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : normaliseDomain(address.slice(at + 1));
}
