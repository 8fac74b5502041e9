/**
 * Reading a server's replies strictly (RFC 5321 §4.2): every line ends with CRLF, starts with a
 * three-digit code whose first digit is 2–5, continues with "-" and ends with " " (or nothing);
 * all lines of one reply carry the same code. Anything else is a protocol error — a client that
 * guesses at malformed replies can be desynchronised by the peer.
 */

export interface SmtpReply {
  code: number;
  /** Enhanced status code (RFC 2034 / RFC 3463), e.g. "5.1.1", when the server sent one. */
  enhanced?: string;
  /** Text of each line, without the code, separator and enhanced code. */
  lines: string[];
  /** The lines joined with a space, for logs and results. */
  text: string;
}

export class SmtpProtocolError extends Error {
  override readonly name = "SmtpProtocolError";
}

const LINE = /^([2-5][0-9][0-9])(?:([ -])(.*))?$/s;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/** "550 5.1.1 No such user" — the form stored in RecipientResult.detail and logs. */
export function describeReply(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced, reply.text].filter((s) => s).join(" ");
}

export class ReplyParser {
  private buffer: Buffer = Buffer.alloc(0);
  private code = 0;
  private lines: string[] = [];
  private rawLines: string[] = [];

  constructor(
    private readonly maxLineLength = 2048,
    private readonly maxLines = 200,
  ) {}

  /** True while bytes of an unfinished reply are held. */
  get hasPartial(): boolean {
    return this.buffer.length > 0 || this.lines.length > 0;
  }

  /** Feeds received bytes; returns every reply completed by them. Throws SmtpProtocolError. */
  push(chunk: Buffer): SmtpReply[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const replies: SmtpReply[] = [];
    let start = 0;
    for (;;) {
      const lf = this.buffer.indexOf(0x0a, start);
      if (lf < 0) break;
      if (lf === start || this.buffer[lf - 1] !== 0x0d) throw new SmtpProtocolError("reply line not ended by CRLF");
      if (lf - start > this.maxLineLength) throw new SmtpProtocolError("reply line too long");
      const reply = this.line(this.buffer.toString("utf8", start, lf - 1));
      if (reply) replies.push(reply);
      start = lf + 1;
    }
    this.buffer = this.buffer.subarray(start);
    if (this.buffer.length > this.maxLineLength) throw new SmtpProtocolError("reply line too long");
    if (this.buffer.includes(0x0d) && this.buffer.indexOf(0x0d) !== this.buffer.length - 1) {
      throw new SmtpProtocolError("bare CR in reply");
    }
    return replies;
  }

  private line(line: string): SmtpReply | undefined {
    if (line.includes("\r")) throw new SmtpProtocolError("bare CR in reply");
    const m = LINE.exec(line);
    if (!m) throw new SmtpProtocolError(`malformed reply line: ${JSON.stringify(line.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.lines.length > 0 && code !== this.code) {
      throw new SmtpProtocolError(`reply code changed within a multi-line reply (${this.code} then ${code})`);
    }
    this.code = code;
    this.rawLines.push(m[3] ?? "");
    if (this.rawLines.length > this.maxLines) throw new SmtpProtocolError("too many lines in one reply");
    this.lines.push(m[3] ?? "");
    if (m[2] === "-") return undefined;

    const raw = this.rawLines;
    this.lines = [];
    this.rawLines = [];
    const em = ENHANCED.exec(raw[0]);
    // RFC 3463 §3.1: the class of the enhanced code repeats the first digit of the reply code.
    const enhanced = em && em[1] === String(code)[0] ? `${em[1]}.${em[2]}.${em[3]}` : undefined;
    const lines = enhanced ? raw.map((l) => (l.startsWith(enhanced + " ") ? l.slice(enhanced.length + 1) : l === enhanced ? "" : l)) : raw;
    return { code, enhanced, lines, text: lines.join(" ").trim() };
  }
}

/** What the peer's EHLO reply offers (RFC 5321 §4.1.1.1 and the extension RFCs). */
export interface PeerCapabilities {
  /** EHLO succeeded (false after a HELO fallback: no extensions at all). */
  esmtp: boolean;
  /** RFC 1870: SIZE offered; `sizeLimit` is its fixed maximum (absent or 0 = none). */
  size: boolean;
  sizeLimit?: number;
  pipelining: boolean; // RFC 2920
  starttls: boolean; // RFC 3207
  /** SASL mechanisms, upper-case (RFC 4954). */
  auth: string[];
  eightBitMime: boolean; // RFC 6152
  smtputf8: boolean; // RFC 6531
  dsn: boolean; // RFC 3461
  enhancedStatusCodes: boolean; // RFC 2034
  requireTls: boolean; // RFC 8689 §2
  /** Every keyword with its parameters, upper-cased keyword. */
  keywords: Map<string, string>;
}

export function noCapabilities(): PeerCapabilities {
  return {
    esmtp: false,
    size: false,
    pipelining: false,
    starttls: false,
    auth: [],
    eightBitMime: false,
    smtputf8: false,
    dsn: false,
    enhancedStatusCodes: false,
    requireTls: false,
    keywords: new Map(),
  };
}

/** Parses the EHLO reply's lines after the first (the first is the server's greeting text). */
export function parseEhloReply(reply: SmtpReply): PeerCapabilities {
  const caps = noCapabilities();
  caps.esmtp = true;
  for (const line of reply.lines.slice(1)) {
    // Old servers write "AUTH=LOGIN PLAIN"; treat it as AUTH.
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line.trim());
    if (!m) continue;
    const keyword = m[1].toUpperCase();
    const params = (m[2] ?? "").trim();
    caps.keywords.set(keyword, params);
    switch (keyword) {
      case "SIZE": {
        caps.size = true;
        const n = /^\d{1,20}$/.test(params) ? Number(params) : 0;
        if (n > 0) caps.sizeLimit = n;
        break;
      }
      case "PIPELINING":
        caps.pipelining = true;
        break;
      case "STARTTLS":
        caps.starttls = true;
        break;
      case "AUTH":
        for (const mech of params.split(/\s+/)) {
          const name = mech.toUpperCase();
          if (name && !caps.auth.includes(name)) caps.auth.push(name);
        }
        break;
      case "8BITMIME":
        caps.eightBitMime = true;
        break;
      case "SMTPUTF8":
        caps.smtputf8 = true;
        break;
      case "DSN":
        caps.dsn = true;
        break;
      case "ENHANCEDSTATUSCODES":
        caps.enhancedStatusCodes = true;
        break;
      case "REQUIRETLS":
        caps.requireTls = true;
        break;
    }
  }
  return caps;
}
