/**
 * One place for the property tests' seed and run counts. `npm test` uses a fixed seed, so a run
 * is reproducible; `npm run fuzz` sets FUZZ_SCALE (many more runs) and a fresh seed, printed so a
 * failure can be replayed with FUZZ_SEED=<seed>.
 */
import fc from "fast-check";

export const FUZZ_SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? 1));
export const FUZZ_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : FUZZ_SCALE > 1 ? Date.now() % 2 ** 31 : 20_260_304;

fc.configureGlobal({ seed: FUZZ_SEED });
if (FUZZ_SCALE > 1) console.log(`# fuzz: seed ${FUZZ_SEED}, runs x${FUZZ_SCALE} (replay with FUZZ_SEED=${FUZZ_SEED})`);

/** The run count for a property: n in `npm test`, n × FUZZ_SCALE in `npm run fuzz`. */
export function runs(n: number): number {
  return Math.ceil(n * FUZZ_SCALE);
}
