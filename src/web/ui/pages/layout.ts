/** The frame every page shares: head (stylesheet only: no script anywhere), navigation, flash message. */
import { html, type SafeHtml } from "../html.js";
import type { WebSession } from "../session.js";

export interface PageContext {
  session?: WebSession;
  /** Whether the admin pages are open to this session from this address. */
  adminAllowed: boolean;
}

/** The hidden CSRF field every form carries. */
export function csrfField(session: WebSession | undefined): SafeHtml {
  return html`<input type="hidden" name="csrf" value="${session?.csrfToken ?? ""}">`;
}

/** A one-button form posting to `action` (hold, release, revoke …): a change is never a GET. */
export function actionButton(ctx: PageContext, action: string, label: string, fields: Record<string, string> = {}, danger = false): SafeHtml {
  return html`<form method="post" action="${action}" class="inline">${csrfField(ctx.session)}${Object.entries(fields).map(
    ([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`,
  )}<button type="submit"${danger ? html` class="danger"` : ""}>${label}</button></form>`;
}

export function layout(ctx: PageContext, title: string, body: SafeHtml): SafeHtml {
  const s = ctx.session;
  const flash = s?.flash;
  if (s) delete s.flash; // shown once
  const nav = s
    ? html`<nav>
  ${ctx.adminAllowed ? html`<a href="/ui/admin">Dashboard</a> <a href="/ui/admin/users">Users</a> <a href="/ui/admin/queue">Queue</a> <a href="/ui/admin/dkim">DKIM</a> ` : ""}<a href="/ui/account">My account</a>
  <span class="who">${s.user}</span>
  <form method="post" action="/ui/logout" class="inline">${csrfField(s)}<button type="submit">Log out</button></form>
</nav>`
    : "";
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Postern</title>
<link rel="stylesheet" href="/ui/static/ui.css">
</head>
<body>
<header><strong>Postern</strong>${nav}</header>
<main>
<h1>${title}</h1>
${
  flash
    ? html`<div class="flash ${flash.kind}" role="status">${flash.text}${
        flash.secret ? html`<p>Shown once — copy it now:</p><code class="secret" id="new-secret">${flash.secret}</code>` : ""
      }</div>`
    : ""
}
${body}
</main>
</body>
</html>
`;
}
