/** The login page: address and main password (app passwords are for mail clients, not for this). */
import { html, type SafeHtml } from "../html.js";
import { layout } from "./layout.js";

export function loginPage(loginToken: string, opts: { error?: string; address?: string } = {}): SafeHtml {
  return layout(
    { adminAllowed: false },
    "Log in",
    html`${opts.error ? html`<div class="flash error" role="alert">${opts.error}</div>` : ""}
<form method="post" action="/ui/login" class="stack">
<input type="hidden" name="csrf" value="${loginToken}">
<label>Address <input type="email" name="address" autocomplete="username" required value="${opts.address ?? ""}"></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
<p class="muted">Log in with your address and your main password (app passwords work in mail clients only).</p>`,
  );
}

/** A plain message page (403, 404, errors). */
export function messagePage(title: string, text: string): SafeHtml {
  return layout({ adminAllowed: false }, title, html`<p>${text}</p><p><a href="/ui">Back</a></p>`);
}
