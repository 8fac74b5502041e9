/**
 * Policy decisions. The type lives in src/base/decision.ts, so the session (smtp/) and policy/
 * share it without importing each other; this re-export keeps the policy-side import path.
 */
export { ALLOW, deny, type Decision } from "../base/decision.js";
