/** Sends one message to Postern's `mta` listener (from a trusted `mynetworks` client) and returns its queue id. */
import { RawSmtp } from "./raw-smtp.js";

export interface MtaMessage {
  from: string;
  to: string[];
  /** Header section and body, CRLF line ends, without the final ".". */
  data: string;
  mailParams?: string;
  rcptParams?: string;
}

export async function sendViaMta(port: number, msg: MtaMessage): Promise<string> {
  const c = await RawSmtp.open(port);
  try {
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect(`MAIL FROM:<${msg.from}>${msg.mailParams ? " " + msg.mailParams : ""}`, 250);
    for (const to of msg.to) await c.expect(`RCPT TO:<${to}>${msg.rcptParams ? " " + msg.rcptParams : ""}`, 250);
    await c.expect("DATA", 354);
    const r = await c.cmd(`${msg.data}\r\n.`);
    const id = /queued as (\S+)/.exec(r.text)?.[1];
    if (r.code !== 250 || !id) throw new Error(`DATA refused: ${r.text}`);
    await c.cmd("QUIT").catch(() => undefined);
    return id;
  } finally {
    c.close();
  }
}
