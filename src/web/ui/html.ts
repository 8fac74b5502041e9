/**
 * Server-rendered HTML with one escape function: every value interpolated into an `html` template
 * goes through `escapeHtml`, unless it is itself the output of `html` (already safe). There is no
 * other way to put text into a page, so no attacker-chosen string reaches it unescaped.
 */

/** A piece of markup built by `html` (or `raw` for fixed, trusted text). */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text and attribute values alike (quotes too); a `SafeHtml` is left as it is. */
export function escapeHtml(value: unknown): string {
  if (value instanceof SafeHtml) return value.text;
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

type Interpolation = SafeHtml | string | number | boolean | null | undefined | readonly Interpolation[];

function render(value: Interpolation): string {
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(value);
}

/** Tagged template: html`<p>${userText}</p>`; arrays are joined, null/undefined/false render nothing. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** Fixed markup from our own source (never from input). */
export function raw(text: string): SafeHtml {
  return new SafeHtml(text);
}
