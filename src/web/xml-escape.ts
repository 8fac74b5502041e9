/**
 * The one escape function for every value put into an XML document we build (autoconfig,
 * Autodiscover, plists): the five predefined entities (XML 1.0 §4.6), and characters XML 1.0
 * cannot carry at all (§2.2: C0 controls but tab/LF/CR, U+FFFE/U+FFFF, lone surrogates) refused,
 * so no value can end an element, open a new one or make the document ill-formed.
 */
const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };

const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function escapeXml(value: string | number): string {
  const s = String(value);
  if (NOT_XML_CHAR.test(s)) throw new Error("a character XML 1.0 cannot carry");
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
