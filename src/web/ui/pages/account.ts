/** Self-service: change the main password, the user's own app passwords, the Apple profile. */
import { html, type SafeHtml } from "../html.js";
import type { AppPasswordInfo } from "../../../auth/sqlite-store.js";
import { actionButton, csrfField, layout, type PageContext } from "./layout.js";

export function appPasswordTable(ctx: PageContext, list: readonly AppPasswordInfo[], revokeAction: string, fields: Record<string, string> = {}): SafeHtml {
  if (list.length === 0) return html`<p class="muted">No app passwords.</p>`;
  return html`<table><thead><tr><th>Name</th><th>Created</th><th>Last used</th><th></th></tr></thead><tbody>${list.map(
    (a) =>
      html`<tr><td>${a.name}</td><td>${a.createdAt}</td><td>${a.lastUsedAt ? `${a.lastUsedAt} from ${a.lastUsedIp ?? "?"}` : "never"}</td><td>${actionButton(
        ctx,
        revokeAction,
        "Revoke",
        { ...fields, name: a.name },
        true,
      )}</td></tr>`,
  )}</tbody></table>`;
}

export function accountPage(ctx: PageContext, user: string, appPasswords: readonly AppPasswordInfo[], mobileconfig: boolean): SafeHtml {
  const profile = `/apple/mobileconfig?emailaddress=${encodeURIComponent(user)}`;
  return layout(
    ctx,
    "My account",
    html`<h2>Change password</h2>
<form method="post" action="/ui/account/password" class="stack">${csrfField(ctx.session)}
<label>Current password <input type="password" name="old" autocomplete="current-password" required></label>
<label>New password <input type="password" name="new" autocomplete="new-password" required minlength="8"></label>
<label>New password again <input type="password" name="again" autocomplete="new-password" required minlength="8"></label>
<button type="submit">Change password</button>
</form>
<h2>App passwords</h2>
<p class="muted">One per device or mail client: it logs in to send mail, never to these pages, and can be revoked alone.</p>
${appPasswordTable(ctx, appPasswords, "/ui/account/app-passwords/revoke")}
<form method="post" action="/ui/account/app-passwords" class="row">${csrfField(ctx.session)}
<label>Device name <input type="text" name="name" required maxlength="64" placeholder="phone"></label>
<button type="submit">Create app password</button>
</form>
<h2>Set up a device</h2>
${
  mobileconfig
    ? html`<p><a href="${profile}" id="mobileconfig">Download the configuration profile</a> for iPhone, iPad or Mac (it asks for the password on install).</p>`
    : html`<p class="muted">Thunderbird and Outlook set themselves up from your address. (Apple profiles need the admin to set web.incoming.)</p>`
}`,
  );
}
