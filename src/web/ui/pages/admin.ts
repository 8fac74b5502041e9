/** The admin pages: dashboard, users, queue, DKIM keys. */
import { html, type SafeHtml } from "../html.js";
import type { AppPasswordInfo } from "../../../auth/sqlite-store.js";
import type { UserInfo } from "../../../auth/types.js";
import type { QueueEntry } from "../../../queue/admin.js";
import type { StoredKey } from "../../../dkim/keys.js";
import { hourlyChart, type ChartHour } from "./chart.js";
import { appPasswordTable } from "./account.js";
import { actionButton, csrfField, layout, type PageContext } from "./layout.js";

export interface DashboardData {
  sessions: Record<string, number>;
  hours: readonly ChartHour[];
  totals: { accepted: number; delivered: number; deferred: number; bounced: number; authFailures: number };
  queued: number;
  throttled: readonly { scope: "ip" | "account"; client: string; account?: string; retryAfterSec: number }[];
}

const card = (label: string, n: number) => html`<div class="card"><div class="n">${n}</div>${label}</div>`;

export function dashboardPage(ctx: PageContext, d: DashboardData): SafeHtml {
  const sessionsNow = Object.values(d.sessions).reduce((a, b) => a + b, 0);
  return layout(
    ctx,
    "Dashboard",
    html`<div class="cards">
${card("SMTP sessions now", sessionsNow)}${card("in the queue", d.queued)}${card("accepted (24 h)", d.totals.accepted)}${card("delivered (24 h)", d.totals.delivered)}${card("deferred (24 h)", d.totals.deferred)}${card("bounced (24 h)", d.totals.bounced)}${card("auth failures (24 h)", d.totals.authFailures)}
</div>
<p class="muted">Sessions per listener: ${
      Object.entries(d.sessions)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") || "none"
    }. Counts since the server started, at most 24 hours (per recipient for delivery outcomes).</p>
<h2>Messages per hour (UTC)</h2>
${hourlyChart(d.hours)}
<h2>Throttled now</h2>
${
  d.throttled.length === 0
    ? html`<p class="muted">Nobody is locked out.</p>`
    : html`<table id="throttled"><thead><tr><th>Scope</th><th>Client</th><th>Account</th><th>For</th></tr></thead><tbody>${d.throttled.map(
        (t) => html`<tr><td>${t.scope}</td><td>${t.client}</td><td>${t.account ?? ""}</td><td>${t.retryAfterSec} s</td></tr>`,
      )}</tbody></table>`
}`,
  );
}

export function usersPage(ctx: PageContext, users: readonly UserInfo[]): SafeHtml {
  return layout(
    ctx,
    "Users",
    html`<table id="users"><thead><tr><th>Address</th><th>State</th><th>May also send as</th><th></th></tr></thead><tbody>${users.map(
      (u) => html`<tr data-user="${u.address}"><td><a href="/ui/admin/user?address=${encodeURIComponent(u.address)}">${u.address}</a></td>
<td>${u.disabled ? "disabled" : "active"}</td><td>${u.senders.join(", ")}</td>
<td>${u.disabled ? actionButton(ctx, "/ui/admin/users/enable", "Enable", { address: u.address }) : actionButton(ctx, "/ui/admin/users/disable", "Disable", { address: u.address }, true)}</td></tr>`,
    )}</tbody></table>
<h2>Add a user</h2>
<form method="post" action="/ui/admin/users" class="stack">${csrfField(ctx.session)}
<label>Address <input type="email" name="address" required></label>
<label>Password <input type="password" name="password" autocomplete="new-password" required minlength="8"></label>
<button type="submit">Add user</button>
</form>`,
  );
}

export function userPage(ctx: PageContext, user: UserInfo, appPasswords: readonly AppPasswordInfo[]): SafeHtml {
  const who = { address: user.address };
  return layout(
    ctx,
    user.address,
    html`<p>State: ${user.disabled ? "disabled" : "active"} ${user.disabled ? actionButton(ctx, "/ui/admin/users/enable", "Enable", who) : actionButton(ctx, "/ui/admin/users/disable", "Disable", who, true)}</p>
<h2>Reset password</h2>
<form method="post" action="/ui/admin/users/password" class="row">${csrfField(ctx.session)}<input type="hidden" name="address" value="${user.address}">
<label>New password <input type="password" name="password" autocomplete="new-password" required minlength="8"></label>
<button type="submit">Set password</button>
</form>
<h2>App passwords</h2>
${appPasswordTable(ctx, appPasswords, "/ui/admin/users/app-passwords/revoke", who)}
<form method="post" action="/ui/admin/users/app-passwords" class="row">${csrfField(ctx.session)}<input type="hidden" name="address" value="${user.address}">
<label>Device name <input type="text" name="name" required maxlength="64"></label>
<button type="submit">Create app password</button>
</form>
<p><a href="/ui/admin/users">All users</a></p>`,
  );
}

export function queuePage(ctx: PageContext, entries: readonly QueueEntry[]): SafeHtml {
  return layout(
    ctx,
    "Queue",
    html`<p>${entries.length} message(s). ${actionButton(ctx, "/ui/admin/queue/flush", "Flush all (retry now)")}</p>
${
  entries.length === 0
    ? html`<p class="muted">The queue is empty.</p>`
    : html`<table id="queue"><thead><tr><th>Id</th><th>Status</th><th>Age</th><th>Size</th><th>From</th><th>To</th><th>Last error</th><th></th></tr></thead><tbody>${entries.map(
        (
          e,
        ) => html`<tr data-id="${e.id}"><td><a href="/ui/admin/queue/show?id=${encodeURIComponent(e.id)}">${e.id}</a></td><td class="status">${e.status}</td><td>${e.ageSec} s</td><td>${e.size}</td>
<td>${e.sender || "<>"}</td><td>${e.recipients.map((r) => r.address).join(", ")}</td><td>${e.lastError ?? ""}</td>
<td>${queueActions(ctx, e)}</td></tr>`,
      )}</tbody></table>`
}`,
  );
}

function queueActions(ctx: PageContext, e: QueueEntry): SafeHtml {
  const id = { id: e.id };
  return html`${e.status === "held" ? actionButton(ctx, "/ui/admin/queue/release", "Release", id) : html`${actionButton(ctx, "/ui/admin/queue/hold", "Hold", id)} ${actionButton(ctx, "/ui/admin/queue/flush", "Retry now", id)}`} ${actionButton(ctx, "/ui/admin/queue/delete", "Delete", id, true)}`;
}

export function queueShowPage(ctx: PageContext, entry: QueueEntry, headers: string): SafeHtml {
  return layout(
    ctx,
    `Message ${entry.id}`,
    html`<p>Status: <span class="status">${entry.status}</span>, received ${entry.receivedAt}, ${entry.size} bytes, from ${entry.sender || "<>"}. ${queueActions(ctx, entry)}</p>
<table><thead><tr><th>Recipient</th><th>Status</th><th>Attempts</th><th>Next attempt</th><th>Last result</th></tr></thead><tbody>${entry.recipients.map(
      (r) => html`<tr><td>${r.address}</td><td>${r.status}</td><td>${r.attempts}</td><td>${r.nextAttemptAt ?? ""}</td><td>${r.lastResult ?? ""}</td></tr>`,
    )}</tbody></table>
<h2>Header</h2>
<pre>${headers}</pre>
<p><a href="/ui/admin/queue">Queue</a></p>`,
  );
}

export function dkimPage(ctx: PageContext, keys: readonly StoredKey[], records: readonly string[]): SafeHtml {
  return layout(
    ctx,
    "DKIM keys",
    html`${
      keys.length === 0
        ? html`<p class="muted">No DKIM keys: <code>postern dkim keygen DOMAIN</code> makes them.</p>`
        : html`<table id="dkim"><thead><tr><th>Domain</th><th>Selector</th><th>Algorithm</th><th>State</th><th>Created</th><th>Activated</th><th>Retired</th></tr></thead><tbody>${keys.map(
            (k) =>
              html`<tr><td>${k.domain}</td><td>${k.selector}</td><td>${k.algorithm}</td><td>${k.state}</td><td>${k.created}</td><td>${k.activated ?? ""}</td><td>${k.retired ?? ""}</td></tr>`,
          )}</tbody></table>`
    }
<h2>DNS records to publish</h2>
<p class="muted">As <code>postern dkim dns DOMAIN</code> prints them (pending keys too, retired ones for the grace period).</p>
<pre id="dkim-dns">${records.join("\n")}</pre>`,
  );
}
