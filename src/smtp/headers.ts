/**
 * Inspects the header section of a message while it streams to the spool.
 * Holds bytes (at most maxHeaderBytes) until the header section ends, then asks
 * a hook for a prefix (trace fields such as Received:, Message-ID:, Date:) that
 * goes on top, and from then on passes chunks straight through.
 *
 * Input from SMTP has CRLF line ends only (the DATA reader and the BDAT text reader refuse or
 * normalise bare CR/LF before the bytes get here, SECURITY.md rule 1); a bare LF is tolerated as a
 * line end for local submission (sendmail), where this module only reads and never decides
 * framing. A last line without any line end is still a line: every next hop reads it as one.
 */

export interface HeaderField {
  /** Field name as written. */
  name: string;
  /** Unfolded value (RFC 5322 §2.2.3), decoded as UTF-8 (RFC 6532), outer whitespace trimmed. */
  value: string;
}

export interface HeaderInfo {
  /** Complete fields only, in order. */
  fields: HeaderField[];
  /** The limit was reached before the header section ended. */
  truncated: boolean;
  /** Some line in the header section was neither a field nor a continuation. */
  malformed: boolean;
  /** The header section holds a NUL byte (a parser that drops NULs reads other names than ours). */
  nul: boolean;
  /**
   * Lower-cased names a lenient parser could read in a line (with its continuation lines) that is
   * no field to us: the text before the first colon without white space, line ends, controls and
   * 8-bit bytes. "From\v:", "From\xa0:" and "From\r\n :" are From: fields to mailparser (it
   * trims names with JavaScript's trim() and takes a missing colon from a continuation line),
   * "Fr\0om:" to a parser that drops NULs. A check on a field refuses a message that disguises it.
   */
  disguised: string[];
  /** Value of the first field with this name (case-insensitive). */
  get(name: string): string | undefined;
  /** Values of all fields with this name (case-insensitive). */
  getAll(name: string): string[];
  count(name: string): number;
}

export type HeaderEndHook = (info: HeaderInfo) => Buffer;

export interface HeaderCollectorOptions {
  /** Most header bytes held in memory, e.g. 262144. */
  maxHeaderBytes: number;
  /**
   * Fields to remove before the header section is passed on (an Authentication-Results: field in
   * our name, RFC 8601 §5): called with the name (or the name a lenient parser reads in a line
   * that is no field to us) and the unfolded value. A removed field goes whole, folded lines and
   * all, and is not in HeaderInfo.fields: what is stored and what the checks read stay the same.
   */
  dropField?: (name: string, value: string) => boolean;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const utf8 = new TextDecoder("utf-8");

export class HeaderCollector {
  private readonly maxHeaderBytes: number;
  private hook: HeaderEndHook | undefined;
  private held: Buffer[] = [];
  private heldLength = 0;
  /** The current line, not yet ended by LF. */
  private partialLine: Buffer[] = [];
  /** Lines of the logical line being read: a first line and the continuation lines after it. */
  private current: Buffer[] = [];
  /** Its first line starts a field (a name, optional white space, a colon); else it is malformed. */
  private currentIsField = false;
  private fields: HeaderField[] = [];
  private malformed = false;
  private nul = false;
  private disguised: string[] = [];
  private released = false;
  /** Octets of complete lines read so far, from the message's first byte. */
  private consumed = 0;
  /** Where the logical line being read starts. */
  private currentStart = 0;
  /** [start, end) of each field to remove, in order. */
  private dropped: [number, number][] = [];

  constructor(private readonly options: HeaderCollectorOptions) {
    this.maxHeaderBytes = options.maxHeaderBytes;
  }

  setHeaderEndHook(fn: HeaderEndHook): void {
    this.hook = fn;
  }

  get headerComplete(): boolean {
    return this.released;
  }

  /** Returns the bytes to write now, in order (concatenate them); empty while headers are held. */
  push(data: Buffer): Buffer[] {
    if (this.released) return data.length > 0 ? [data] : [];
    const room = this.maxHeaderBytes - this.heldLength;
    const end = this.scan(data, Math.min(data.length, room));
    if (end >= 0) return this.release(false, data.subarray(0, end), data.subarray(end));
    if (data.length > room) {
      // Limit reached inside the header section: hold no more, let the rest through.
      return this.release(true, data.subarray(0, room), data.subarray(room));
    }
    this.hold(data);
    return [];
  }

  /** End of message: releases whatever is held (a message may be all header, or empty). */
  finish(): Buffer[] {
    if (this.released) return [];
    // A last line without a line end is a line all the same (a relay adds the CRLF, a Maildir
    // reader takes it as it is): a "From:" there must not go unread.
    const last = Buffer.concat(this.partialLine);
    this.partialLine = [];
    if (last.length > 0 && !(last.length === 1 && last[0] === CR)) this.onLine(last);
    return this.release(false, Buffer.alloc(0), Buffer.alloc(0));
  }

  /**
   * Parses data[0, limit) line by line. Returns the offset just past the empty
   * line ending the header section, or -1 if it is not within the range.
   */
  private scan(data: Buffer, limit: number): number {
    let lineStart = 0;
    for (;;) {
      const lf = data.indexOf(LF, lineStart);
      if (lf < 0 || lf >= limit) {
        if (limit > lineStart) this.partialLine.push(data.subarray(lineStart, limit));
        return -1;
      }
      this.partialLine.push(data.subarray(lineStart, lf + 1));
      lineStart = lf + 1;
      const line = Buffer.concat(this.partialLine);
      this.partialLine = [];
      if (this.onLine(line)) return lineStart;
    }
  }

  /** Handles one complete line (with its line end); true when it is the empty line ending the section. */
  private onLine(line: Buffer): boolean {
    const isEmpty = (line.length === 1 && line[0] === LF) || (line.length === 2 && line[0] === CR && line[1] === LF);
    if (isEmpty) {
      this.endLine();
      this.consumed += line.length;
      return true;
    }
    if (line.includes(0)) this.nul = true;
    const first = line[0];
    if (first === SP || first === HTAB) {
      // Continuation of a folded field (RFC 5322 §2.2.3); before any line it is malformed.
      if (this.current.length > 0) this.current.push(line);
      else this.malformed = true;
      this.consumed += line.length;
      return false;
    }
    this.endLine();
    this.currentStart = this.consumed;
    this.consumed += line.length;
    this.current = [line];
    this.currentIsField = fieldNameEnd(line) > 0;
    if (!this.currentIsField) this.malformed = true;
    return false;
  }

  private endLine(): void {
    if (this.current.length === 0) return;
    const raw = Buffer.concat(this.current);
    this.current = [];
    if (!this.currentIsField) {
      // Not a field to us, but a parser that trims names or takes the colon from a continuation
      // line ("From\r\n : x" is a From: to mailparser) may read one: remember which.
      const lenient = lenientName(raw);
      if (lenient !== null && this.dropField?.(lenient, unfoldedValue(raw, raw.indexOf(COLON)))) this.dropped.push([this.currentStart, this.consumed]);
      else if (lenient !== null) this.disguised.push(lenient);
      return;
    }
    const nameEnd = fieldNameEnd(raw);
    const colon = raw.indexOf(COLON, nameEnd);
    const name = raw.toString("latin1", 0, nameEnd);
    const value = unfoldedValue(raw, colon);
    if (this.dropField?.(name, value)) this.dropped.push([this.currentStart, this.consumed]);
    else this.fields.push({ name, value });
  }

  private get dropField(): HeaderCollectorOptions["dropField"] {
    return this.options.dropField;
  }

  private hold(data: Buffer): void {
    if (data.length === 0) return;
    this.held.push(data);
    this.heldLength += data.length;
  }

  private release(truncated: boolean, lastHeld: Buffer, rest: Buffer): Buffer[] {
    this.hold(lastHeld);
    this.released = true;
    // The field being read is complete if the next line has started without
    // whitespace, or if the message ended right after it; otherwise (cut at the
    // limit) it might still get continuation lines, so it is dropped.
    const next = this.partialLine[0]?.[0];
    if (next === undefined ? !truncated : next !== SP && next !== HTAB) this.endLine();
    this.current = [];
    this.partialLine = [];
    const prefix = this.hook ? this.hook(makeInfo(this.fields, truncated, this.malformed, this.nul, this.disguised)) : undefined;
    if (this.dropped.length > 0) this.held = withoutRanges(Buffer.concat(this.held), this.dropped);
    const out = [prefix, ...this.held, rest].filter((b): b is Buffer => b !== undefined && b.length > 0);
    this.held = [];
    return out;
  }
}

/** Unfolding removes the line breaks and keeps the whitespace after them. */
function unfoldedValue(raw: Buffer, colon: number): string {
  return utf8
    .decode(raw.subarray(colon + 1))
    .replace(/\r?\n/g, "")
    .trim();
}

/** `bytes` without the given [start, end) ranges (in order, not overlapping). */
function withoutRanges(bytes: Buffer, ranges: readonly [number, number][]): Buffer[] {
  const kept: Buffer[] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (start > at) kept.push(bytes.subarray(at, start));
    at = end;
  }
  if (at < bytes.length) kept.push(bytes.subarray(at));
  return kept;
}

/**
 * Length of the field name if the line starts a field: printable ASCII except
 * ":" (RFC 5322 §3.6.8), then optional whitespace (obsolete syntax, §4.5), then ":".
 * Returns 0 if the line is not a field.
 */
function fieldNameEnd(line: Buffer): number {
  let i = 0;
  while (i < line.length && line[i]! >= 0x21 && line[i]! <= 0x7e && line[i] !== COLON) i++;
  const nameEnd = i;
  if (nameEnd === 0) return 0;
  while (i < line.length && (line[i] === SP || line[i] === HTAB)) i++;
  return line[i] === COLON ? nameEnd : 0;
}

/**
 * The name a lenient parser might read in a logical line (a line and its continuation lines):
 * the bytes before the first colon, minus white space, line ends, controls, DEL and 8-bit bytes,
 * lower-cased. null when there is no colon or nothing is left.
 */
function lenientName(line: Buffer): string | null {
  const colon = line.indexOf(COLON);
  if (colon < 0) return null;
  let name = "";
  for (let i = 0; i < colon; i++) {
    const b = line[i]!;
    if (b > 0x20 && b < 0x7f) name += String.fromCharCode(b);
  }
  return name === "" ? null : name.toLowerCase();
}

function makeInfo(fields: HeaderField[], truncated: boolean, malformed: boolean, nul: boolean, disguised: string[]): HeaderInfo {
  const matching = (name: string) => {
    const wanted = name.toLowerCase();
    return fields.filter((f) => f.name.toLowerCase() === wanted).map((f) => f.value);
  };
  return {
    fields,
    truncated,
    malformed,
    nul,
    disguised,
    get: (name) => matching(name)[0],
    getAll: matching,
    count: (name) => matching(name).length,
  };
}
