/** DKIM signing from the config (src/dkim): one signer over the key store, or none when dkim.sign is off. */
import type { Config } from "../config/schema.js";
import type { ContentStep } from "../smtp/content-steps.js";
import { DkimSigner } from "../dkim/signer.js";
import { KeyStore, dkimKeysDir } from "../dkim/keys.js";

export function createDkimSigner(config: Config): ContentStep[] {
  if (!config.dkim.sign) return [];
  const store = new KeyStore(dkimKeysDir(config));
  return [new DkimSigner({ keys: (domain) => store.signingKeys(domain) })];
}
