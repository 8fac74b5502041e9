/** Keys, DKIM signatures and DNS zone entries for the inbound tests. */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { dkimSign } from "mailauth";
import type { ZoneEntry } from "../delivery/helpers/dns-server.js";

export interface TestKey {
  privateKey: string;
  /** The DKIM TXT record (RFC 6376 §3.6.1). */
  record: string;
}

export function rsaKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { privateKey: pem(privateKey), record: `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}` };
}

function pem(key: KeyObject): string {
  return key.export({ type: "pkcs8", format: "pem" }).toString();
}

/** The message with a DKIM-Signature on top, relaxed/relaxed, by `domain` with `selector`. */
export async function signed(message: string, domain: string, selector: string, key: TestKey): Promise<string> {
  // mailauth's types name the single-signature form, its code reads signatureData.
  const options = { canonicalization: "relaxed/relaxed", signatureData: [{ signingDomain: domain, selector, privateKey: key.privateKey }] };
  const r = await dkimSign(message, options as unknown as Parameters<typeof dkimSign>[1]);
  if (!r.signatures.startsWith("DKIM-Signature:")) throw new Error("no signature made");
  if (r.errors.length > 0) throw new Error(`signing failed: ${JSON.stringify(r.errors)}`);
  return r.signatures + message;
}

/** A DKIM key record at selector._domainkey.domain. */
export function dkimEntry(key: TestKey): ZoneEntry {
  return { TXT: [key.record] };
}
