/**
 * Authentication-Results: fields that arrive claiming our authserv-id (our hostname) are removed
 * before the message is stored (RFC 8601 §5): a receiver trusts the one from its own border MTA,
 * so a client must not be able to write it. The header collector (headers.ts) drops them whole.
 */

/** The predicate for HeaderCollectorOptions.dropField: an A-R field in the name of `authservId`. */
export function ourAuthResultsField(authservId: string): (name: string, value: string) => boolean {
  return (name, value) => name.toLowerCase() === "authentication-results" && claimsAuthserv(value, authservId);
}

/**
 * The authserv-id of an Authentication-Results: value (unfolded): after optional comments and
 * white space, a token or quoted-string. null when it cannot be read.
 */
export function authservIdOf(value: string): string | null {
  let i = 0;
  const skipCfws = (): boolean => {
    for (;;) {
      while (i < value.length && /\s/.test(value[i]!)) i++;
      if (value[i] !== "(") return true;
      let depth = 0;
      for (; i < value.length; i++) {
        const c = value[i];
        if (c === "\\") i++;
        else if (c === "(") depth++;
        else if (c === ")" && --depth === 0) break;
      }
      if (depth !== 0) return false;
      i++;
    }
  };
  if (!skipCfws()) return null;
  if (value[i] === '"') {
    let out = "";
    for (i++; i < value.length; i++) {
      const c = value[i]!;
      if (c === "\\") out += value[++i] ?? "";
      else if (c === '"') return out;
      else out += c;
    }
    return null;
  }
  const m = /^[^\s;()"]+/.exec(value.slice(i));
  return m ? m[0] : null;
}

/**
 * Is this Authentication-Results: value ours, i.e. to be removed when it arrives (RFC 8601 §5)?
 * Compared without case or a final dot. A value we cannot read counts as ours when it names us
 * anywhere: another parser may read our id where we read none.
 */
export function claimsAuthserv(value: string, authservId: string): boolean {
  const ours = normaliseId(authservId);
  const id = authservIdOf(value);
  if (id === null) return value.toLowerCase().includes(ours);
  return normaliseId(id) === ours;
}

function normaliseId(id: string): string {
  return id.trim().toLowerCase().replace(/\.$/, "");
}
